"""Grandstream (GXP21xx, GRP26xx): what is true of the vendor, and its P-value mapping.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/grandstream.md):

- `cfg<mac>.xml` (12 lowercase hex digits): `<gs_provision version="1">` with `<mac>` (the phone
  rejects a file whose `<mac>` is not its own [V]) and `<config version="1">` holding
  `<Pnnn>value</Pnnn>`. The phone asks for this name before `cfg<model>.xml` and `cfg.xml`,
  which provctl does not write (their content would be shared between phones). The same name
  in a customer's bootstrap directory (docs/zero-touch.md) is `bootstrap_phone_files()`: it
  sends the phone to its own directory.

XML, rendered with autoescape; a line break or control character in a value is refused by
`build()`, naming the parameter. Only P-values present are changed on the phone [I], so unused
accounts are cleared explicitly.

Conventions (documented for operators):

- Account N = port N, up to the model's SIP accounts (not its line keys, which are more on some
  models). Account 1 is irregular (P271 active, P47 server, P35 user, P36 auth, P34 password,
  P3 display name, P270 account name, P130 transport, P57…P62 + P46 codec choices, P32 expiry
  in minutes); accounts 2-4 are at 400/500/600 + offset; 5-6 at 1700/1800 on GXP21xx and at
  700/800 on GRP26xx (issues 15.1, 15.2).
- Codecs: the listed codecs fill the vocoder choices in order; the remaining choices repeat the
  last listed codec, so codecs left out are not offered [I: common practice]. Opus (125) only
  on GRP models [I].
- Time zone: P64 = the listed value that states the zone's rule exactly, else `customize` with
  the zone's POSIX TZ string in P246 (issue 15.3; `time_zone()`).
- Provisioning: P212 config via HTTP (1) / HTTPS (2), P237 = the phone's directory without
  the scheme; resync P194 = 2 (daily) at hour P285 (`resync.start`, minutes dropped) with a
  random delay until hour P8459 (`resync.end`), P8458 = 1. The phone checks on boot by itself,
  so `resync.on_boot` has no key.
- Firmware, only when pinned: P6767 firmware via HTTP/HTTPS, P192 = the firmware directory
  without the scheme (the phone downloads its family image by its fixed name from there [I],
  so the catalog `file` must be that name), P8375 = 0 (do not ask the user).
- call_waiting → P91 "disable call waiting" (inverted) [I].
- Keys (`line_keys[K]`, GXP21xx virtual / multi-purpose keys): P1363+2(K-1) mode, P1364+2(K-1)
  account, P1465+2(K-1) label, P1466+2(K-1) value [V keys 1 and 2; pattern I]; modes 0 line,
  10 speed dial, 11 BLF, 19 park; `dtmf` and `none` are refused / skipped. GRP models take keys
  as v2 aliases only: `line_keys` on a GRP is refused by `build()`.
- User-owned parameters: Grandstream has no per-parameter flag; they are not written.
- Not expressible, documented (`NOTES`): `ntp.server2`, `vlan.pc_id`, `soft_keys`,
  `expansion_keys`, `screensaver`.
- `raw` keys are P-values (`P1234`), written last; a raw key equal to a generated one replaces
  it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from vendors import kit, timezones
from vendors.base import BootstrapInput, LineInput, ModelInfo, OutputFile, UserAgent
from vendors.common import get as _get
from vendors.common import mac12, match_user_agent

# name: (SIP accounts, family, line keys). Accounts [V wazo v1_0_11_85/plugin-info "lines"
# (GXP2130 3, GXP2135 4, GXP2140 4, GXP2160 6, GXP2170 6)]; line keys [I: datasheets]. GRP
# accounts [I: datasheets; wazo v1_0_5_48 lists fewer, fusion grp26xx has accounts 1-5 and
# "Account 1 - Account 6" choices].
_MODELS: dict[str, tuple[int, str, int]] = {
    "GXP2130": (3, "gxp", 3), "GXP2135": (4, "gxp", 8), "GXP2140": (4, "gxp", 4),
    "GXP2160": (6, "gxp", 6), "GXP2170": (6, "gxp", 12),
    "GRP2612": (2, "grp", 0), "GRP2613": (3, "grp", 0), "GRP2614": (4, "grp", 0),
    "GRP2615": (5, "grp", 0), "GRP2616": (6, "grp", 0),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family, keys=keys)
    for name, (lines, family, keys) in _MODELS.items()
}
# account -> P-values; account 1 irregular [V fusion gxp21xx]. Accounts 2-4 at 400/500/600 +
# offset on both families; 5 and 6 at 1700/1800 on GXP21xx [V fusion gxp21xx {$mac}.xml] but
# at 700/800 on GRP26xx [V fusion grp26xx {$mac}.xml account 5 = P701...; wazo base.tpl
# P{line+2}01 for account 6].
_ACCOUNT_1 = {"active": 271, "name": 270, "server": 47, "outbound": 48, "user": 35,
              "auth": 36, "password": 34, "display": 3, "expires": 32, "transport": 130,
              "codecs": (57, 58, 59, 60, 61, 62, 46)}
_BASES = {"gxp": {2: 400, 3: 500, 4: 600, 5: 1700, 6: 1800},
          "grp": {2: 400, 3: 500, 4: 600, 5: 700, 6: 800}}


def account_pvalues(n: int, family: str = "gxp") -> dict[str, Any]:
    if n == 1:
        return _ACCOUNT_1
    b = _BASES[family][n]
    return {"active": b + 1, "name": b + 17, "server": b + 2, "outbound": b + 3, "user": b + 4,
            "auth": b + 5, "password": b + 6, "display": b + 7, "expires": b + 12,
            "transport": b + 48, "codecs": tuple(b + 51 + i for i in range(7))}


# ISO 639-1 code -> P1362 [V wazo LOCALE; others I]
LANGUAGES = {"en": "en", "de": "de", "fr": "fr", "it": "it", "es": "es", "nl": "nl",
             "pt": "pt", "ru": "ru", "pl": "pl", "tr": "tr"}

# neutral codec -> vocoder code [V reference]; opus GRP only [I]
CODECS = {"pcmu": 0, "pcma": 8, "g722": 9, "g729": 18, "g726": 2, "ilbc": 98, "opus": 125}
TRANSPORTS = {"udp": 0, "tcp": 1, "tls": 2}
SCHEMES = {"http": 1, "https": 2}
KEY_MODES = {"line": 0, "speed_dial": 10, "blf": 11, "park": 19}

NOTES = {
    "ntp.server2": "one NTP server only",
    "vlan.pc_id": "no key known",
    "provisioning.resync": "whole hours",
    "line_keys": "GXP only; line, blf, speed_dial, park",
    "timezone": "a listed zone by its P64 value, others as a self-defined POSIX zone (P246)",
}

# P64, the time zone: one of the values the phone's web UI lists, or "customize" with a POSIX TZ
# string in P246 (at most 64 characters) [V fusion gxp2170 / grp26xx {$mac}.xml "Time Zone" and
# "Self Defined Time Zone"]. A zone gets a listed value only when that value states exactly the
# zone's rule; entries with a DST name but no rule ("EST5EDT") leave the rule to the firmware's
# C library and are never chosen [I], and neither are entries whose rule is outdated or differs.
GXP_ZONES = (
    "TAZ+12", "TAB+11", "HAW10", "AKST9AKDT", "PST8PDT", "PST8PDT,M3.2.0,M11.1.0", "MST7MDT",
    "MST7", "MST7MDT,M4.1.0,M10.5.0", "CST6CDT", "CST+6", "CST6CDT,M4.1.0,M10.5.0", "EST5EDT",
    "EST5", "TZf+4:30", "AST4ADT", "AST4ADT,M3.2.0,M11.1.0", "CLT4CLST,M9.1.6/24:00,M4.1.6/24:00",
    "NST+3:30NDT+2:30,M3.2.0/02:00:00,M11.1.0/02:00:00", "TZK+3",
    "BRST+3BRDT+2,M11.1.0,M2.3.0", "UTC+3", "TZL+2", "TZM+1",
    "TZM+1TZN+0,M3.4.6/24:00:00,M10.4.0/1:00:00", "TZN+0",
    "GMT+0BST-1,M3.5.0/01:00:00,M10.5.0/02:00:00", "WET-0WEST-1,M3.5.0/01:00:00,M10.5.0/02:00:00",
    "GMT+0IST-1,M3.5.0/01:00:00,M10.5.0/02:00:00", "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00",
    "TZP-2", "EET-2EEST-3,M3.4.5/02:00:00,M10.4.0/02:00:00",
    "EET-2EEST-3,M3.5.0/03:00:00,M10.4.0/04:00:00", "EET-2EEST,M3.5.0/3,M10.5.0/4", "TZQ-3",
    "MSK-3", "IRST-3:30IRDT-4:30,M3.3.5/24:00:00,M9.3.0/24:00:00", "TZR-4", "TZS-5", "TZT-5:30",
    "TZU-5:45", "TZV-6", "TZW-6:30", "TZX-7", "WIB-7", "TZY-8", "SGT-8", "ULAT-8", "WST-8",
    "TZZ-9", "CST-9:30CDT-10:30,M10.5.0/02:00:00,M3.5.0/03:00:00", "CST-9:30", "TZb-10",
    "EST-10EDT-11,M10.1.0/02:00:00,M4.1.0/03:00:00", "EST-10", "TZc-11",
    "NZST-12NZDT-13,M9.4.0/02:00:00,M4.1.0/03:00:00",
    "FJT-12FJST-13,M11.2.0/02:00:00,M1.2.0/03:00:00", "TZe-13",
)
GRP_ZONES = (
    "TAZ+12", "TAB+11", "HAW10", "AKST9AKDT", "PST8PDT", "PST8PDT,M3.2.0,M11.1.0", "MST7MDT",
    "MST7", "MST7MDT,M4.1.0,M10.5.0", "CST6CDT", "CST+6", "CST6CDT,M4.1.0,M10.5.0", "EST5EDT",
    "EST5", "TZf+4:30", "AST4ADT", "AST4ADT,M3.2.0,M11.1.0",
    "NST+3:30NDT+2:30,M4.1.0/00:01:00,M10.5.0/00:01:00", "TZK+3",
    "BRST+3BRDT+2,M11.1.0,M2.3.0", "UTC+3", "TZL+2", "TZM+1", "TZN+0",
    "GMT+0BST-1,M3.5.0/01:00:00,M10.5.0/02:00:00", "WET-0WEST-1,M3.5.0/01:00:00,M10.5.0/02:00:00",
    "GMT+0IST-1,M3.5.0/01:00:00,M10.5.0/02:00:00", "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00",
    "TZP-2", "EET-2EEST-3,M3.5.0/03:00:00,M10.5.0/04:00:00", "EET-2EEST,M3.5.0/3,M10.5.0/4",
    "TZQ-3", "MSK-3", "TZR-4", "TZS-5", "TZT-5:30", "TZU-5:45", "TZV-6", "TZW-6:30", "TZX-7",
    "WIB-7", "TZY-8", "SGT-8", "ULAT-8", "WST-8", "TZZ-9",
    "CST-9:30CDT-10:30,M10.1.0/02:00:00,M4.1.0/03:00:00", "CST-9:30", "TZb-10",
    "EST-10EDT-11,M10.1.0/02:00:00,M4.1.0/03:00:00", "EST-10", "TZc-11",
    "NZST-12NZDT-13,M9.5.0/02:00:00,M4.1.0/03:00:00", "TZd-12", "TZe-13",
)
ZONES = {"gxp": GXP_ZONES, "grp": GRP_ZONES}
MAX_CUSTOM_ZONE = 64  # P246 [V fusion "Max length allowed is 64 characters"]


@cache
def time_zone(name: str, family: str) -> tuple[str, str | None]:
    """(P64, P246) for an IANA zone: a listed value (the one with the zone's own abbreviations
    when several say the same) or ("customize", its POSIX string)."""
    own = timezones.posix(name)
    mine = timezones.posix_zone(own)
    matches = [z for z in ZONES[family] if timezones.same_rules(name, z)]
    for listed in matches:
        zone = timezones.posix_zone(listed)
        if mine is not None and zone is not None and (zone.std_name, zone.dst_name) == (
                mine.std_name, mine.dst_name):
            return listed, None
    if matches:
        return matches[0], None
    if len(own) > MAX_CUSTOM_ZONE:
        raise ValueError(f"time zone {name!r}: its POSIX string is longer than the "
                         f"{MAX_CUSTOM_ZONE} characters P246 takes")
    return "customize", own

RAW_KEY = re.compile(r"^P\d{1,6}$")
VERSIONS = kit.VersionScheme("Grandstream firmware version",
                             "<major>.<minor>.<patch>.<build>, e.g. 1.0.11.79",
                             re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$"))


def _without_scheme(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    return SCHEMES.get(parts.scheme.lower(), 2), (parts.netloc + parts.path).rstrip("/")


class Builder(kit.Builder):
    label = "Grandstream"
    carrier = "a Grandstream P-value"
    xml = True
    languages = LANGUAGES

    def pv(self, p: int, value: Any, param: str) -> None:
        self.put(f"P{p}", value, param)

    def steps(self) -> None:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.accounts()
        if self.device.lines:
            self.keys()

    def files(self) -> list[OutputFile]:
        device = self.device
        return [OutputFile(f"cfg{device.mac}.xml", "grandstream/cfgmac.xml.j2", {
            "mac": device.mac, "model": device.model.name,
            "settings": [{"name": s.key, "value": s.value} for s in self.settings],
        })]

    def provisioning(self) -> None:
        scheme, path = _without_scheme(self.device.provisioning_url)
        self.pv(212, scheme, "provisioning url")
        self.pv(237, path, "provisioning url")
        resync = _get(self.params, "provisioning", "resync") or {}
        self.pv(194, 2, "provisioning.resync")  # daily
        self.pv(285, int((resync.get("start") or "02:00")[:2]), "provisioning.resync.start")
        self.pv(8459, int((resync.get("end") or "04:00")[:2]), "provisioning.resync.end")
        self.pv(8458, 1, "provisioning.resync")  # random time in the window
        firmware = self.device.firmware
        if firmware is not None:
            # [I] the phone fetches its family image by its fixed name from this directory
            scheme, path = _without_scheme(firmware.url.rsplit("/", 1)[0] + "/")
            self.pv(6767, scheme, "firmware")
            self.pv(192, path, "firmware")
            self.pv(8375, 0, "firmware")
        password = self.params.get("admin_password")
        if password:
            self.pv(2, password, "admin_password")

    def time_and_language(self) -> None:
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.pv(30, ntp["server"], "ntp.server")
        self.timezone()
        code = self.language()
        if code is not None:
            self.pv(1362, code, "language")

    def put_timezone(self, name: str) -> None:
        listed, custom = time_zone(name, self.device.model.family)
        self.pv(64, listed, "timezone")
        if custom is not None:
            self.pv(246, custom, "timezone")

    def network_and_features(self) -> None:
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.pv(51, vlan["id"], "vlan.id")
            if vlan.get("priority") is not None:
                self.pv(87, vlan["priority"], "vlan.priority")
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.pv(91, not bool(waiting), "call_waiting")  # P91 = disable call waiting [I]

    def accounts(self) -> None:
        model = self.device.model
        by_port = self.ports("accounts")
        for n in range(1, model.lines + 1):
            assigned = by_port.get(n)
            pv = account_pvalues(n, model.family)
            if assigned is None:
                self.pv(pv["active"], 0, f"port {n}")
                for field in ("server", "user", "auth", "password", "display", "name"):
                    self.pv(pv[field], "", f"port {n}")
            else:
                self.account(n, assigned, pv)

    def account(self, n: int, line: LineInput, pv: dict[str, Any]) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}

        def put(field: str, value: Any, param: str) -> None:
            self.pv(pv[field], value, f"{param} {where}")

        server = str(sip.get("server") or "")
        put("active", 1, "account")
        put("name", line.label, "label")
        put("display", line.display_name, "display_name")
        put("server", f"{server}:{sip['port']}" if sip.get("port") else server, "sip.server")
        put("user", line.extension, "extension")
        put("auth", line.auth_user, "auth_user")
        put("password", line.password, "password")
        if sip.get("transport"):
            put("transport", TRANSPORTS[sip["transport"]], "sip.transport")
        if sip.get("expires"):
            put("expires", max(1, round(int(sip["expires"]) / 60)), "sip.expires")  # minutes
        proxy = sip.get("outbound_proxy")
        if proxy:
            port = sip.get("outbound_proxy_port") or sip.get("port")
            put("outbound", f"{proxy}:{port}" if port else proxy, "sip.outbound_proxy")
        else:
            put("outbound", "", "sip.outbound_proxy")
        codecs = self.line_codecs(line)
        if codecs is not None:
            self.codecs(codecs, pv["codecs"], where)

    def codecs(self, codecs: list[str], slots: tuple[int, ...], where: str) -> None:
        chosen: list[int] = []
        for codec in codecs:
            if codec not in CODECS or (codec == "opus" and self.device.model.family != "grp"):
                self.problem(f"codecs {where}: {codec} is not supported by "
                             f"{self.device.model.name}")
            elif CODECS[codec] not in chosen:
                chosen.append(CODECS[codec])
        if not chosen:
            return
        # [I] the remaining choices repeat the last listed codec, so codecs left out are not
        # offered (conservative: a choice left unwritten keeps whatever the phone had)
        for i, slot in enumerate(slots):
            self.pv(slot, chosen[min(i, len(chosen) - 1)], f"codecs {where}")

    def keys(self) -> None:
        keys = self.params.get("line_keys") or []
        if not keys or "line_keys" in self.owned:
            return
        if self.device.model.family != "gxp":
            self.problem(f"line_keys: {self.device.model.name} takes keys as config v2 "
                         "aliases, which provctl does not write")
            return
        for k, key in enumerate(keys, start=1):
            param = f"line_keys[{k}]"
            kind = key.get("type") or "none"
            if kind == "none":
                continue
            if kind not in KEY_MODES:
                self.problem(f"{param}: key type {kind!r} is not supported on Grandstream keys")
                continue
            step = 2 * (k - 1)  # [V] keys 1 and 2; the step of 2 for later keys is [I]
            self.pv(1363 + step, KEY_MODES[kind], param)
            self.pv(1364 + step, int(key.get("line") or 1) - 1, param)  # account, 0-based
            self.pv(1465 + step, key.get("label") or "", param)
            self.pv(1466 + step, key.get("value") or "", param)

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        if not RAW_KEY.match(key):
            self.problem(f"raw.grandstream: {key!r} is not a P-value (P1234)")
            return None
        return kit.Setting(f"P{int(key[1:])}", self.text(value), f"raw.grandstream.{key}")


class Grandstream(kit.VendorBase):
    name = "grandstream"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = True
    supported = kit.DESK_PHONE
    notes = NOTES
    redirect_kinds = ()  # GDMS is not implemented in provctl
    builder = Builder
    versions = VERSIONS

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """`cfg<mac>.xml` in the bootstrap directory, the first XML name a factory phone asks
        for there [V reference §4]: P212/P237 name the phone's own directory (as in its own
        file), P145 0 stops DHCP option 43/66 from overriding that server [V fusion
        gxp21xx/{$mac}.xml: "When set to Yes(1), it will override the configured provision path
        and method", default 1; a factory reset restores it] and P30 the NTP server when set.
        P145 needs a reboot [V HT8xx template comments], after which the phone fetches from
        P237 [I]. `<mac>` makes the file the phone's only [V reference §4]."""
        scheme, path = _without_scheme(phone.provisioning_url)
        settings = [{"name": "P212", "value": str(scheme)}, {"name": "P237", "value": path},
                    {"name": "P145", "value": "0"}]
        if phone.ntp_server:
            settings.append({"name": "P30", "value": phone.ntp_server})
        return (OutputFile(f"cfg{phone.mac}.xml", "grandstream/cfgmac.xml.j2", {
            "mac": phone.mac, "model": f"{phone.model.name}, bootstrap", "settings": settings}),)


VENDOR = Grandstream()


# --- User-Agent -------------------------------------------------------------------------------
# "Grandstream Model HW GXP2135 SW 1.0.7.97 DevId 000b828aa872", with a hardware revision on
# some models: "Grandstream Model HW GXP2200 V2.2A SW 1.0.1.33 DevId 000b82462d97" [V wazo
# plugins/wazo_grandstream/common/common.py; fusion app/provision/index.php]. DevId is the MAC.
_UA = re.compile(r"^Grandstream Model HW (?P<model>[A-Za-z0-9]+)(?:\s+V\S+)?\s+SW\s+"
                 r"(?P<firmware>\d+(?:\.\d+)+)\s+DevId\s+(?P<mac>[0-9A-Fa-f]{12})\b")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Grandstream phone's model, firmware and MAC from its User-Agent; None if not one."""
    match = match_user_agent(text, "Grandstream", _UA)
    if match is None:
        return None
    return UserAgent("grandstream", match["model"], match["firmware"], mac12(match["mac"]))
