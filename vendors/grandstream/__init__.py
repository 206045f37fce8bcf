"""Grandstream (GXP21xx, GRP26xx): what is true of the vendor, and its P-value mapping.

Files per phone (see ../shared/reference/vendor-formats.md, "4. Grandstream"):

- `cfg<mac>.xml` (12 lowercase hex digits): `<gs_provision version="1">` with `<mac>` (the phone
  rejects a file whose `<mac>` is not its own [V]) and `<config version="1">` holding
  `<Pnnn>value</Pnnn>`. The phone asks for this name before `cfg<model>.xml` and `cfg.xml`,
  which provctl does not write (their content would be shared between phones).

XML, rendered with autoescape; a line break or control character in a value is refused by
`check()`, naming the parameter. Only P-values present are changed on the phone [I], so unused
accounts are cleared explicitly.

Conventions (documented for operators):

- Account N = port N, at the P-values of the GXP21xx / GRP261x numbering: account 1 is
  irregular (P271 active, P47 server, P35 user, P36 auth, P34 password, P3 display name, P270
  account name, P130 transport, P57…P62 + P46 codec choices, P32 expiry in minutes); accounts
  2-4 are at 400/500/600 + offset and 5-6 at 1700/1800 + offset [V fusion gxp21xx template for
  1-5; account 6 I: same pattern]. The P-values of accounts 7 and up are not verified: a port
  above 6 is refused by `check()` rather than written to a guessed P-value (conservative).
- Codecs: the listed codecs fill the vocoder choices in order; the remaining choices repeat the
  last listed codec, so codecs left out are not offered [I: common practice]. Opus (125) only
  on GRP models [I].
- Time zone: P64 = a POSIX TZ string computed from the zone [V example
  `CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00`].
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
  as v2 aliases only: `line_keys` on a GRP is refused by `check()`.
- User-owned parameters: Grandstream has no per-parameter flag; they are not written.
- Not expressible, documented (`NOTES`): `ntp.server2`, `vlan.pc_id`, `soft_keys`,
  `expansion_keys`, `screensaver`.
- `raw` keys are P-values (`P1234`), written last; a raw key equal to a generated one replaces
  it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vendors import timezones
from vendors.base import LineInput, ModelInfo, OutputFile, RenderInput, UserAgent
from vendors.common import get as _get
from vendors.common import language_code, mac12, user_agent_text
from vendors.common import text as _text

# name: (accounts, family) [V GXP2135 8 wazo; others I: datasheets per the reference]
_MODELS: dict[str, tuple[int, str]] = {
    "GXP2130": (3, "gxp"), "GXP2135": (8, "gxp"), "GXP2140": (4, "gxp"),
    "GXP2160": (6, "gxp"), "GXP2170": (12, "gxp"),
    "GRP2612": (2, "grp"), "GRP2613": (3, "grp"), "GRP2614": (4, "grp"),
    "GRP2615": (5, "grp"), "GRP2616": (6, "grp"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family)
    for name, (lines, family) in _MODELS.items()
}
PROVISIONED_ACCOUNTS = 6  # accounts with verified P-values

# account -> P-values; account 1 irregular [V fusion gxp21xx]
_ACCOUNT_1 = {"active": 271, "name": 270, "server": 47, "outbound": 48, "user": 35,
              "auth": 36, "password": 34, "display": 3, "expires": 32, "transport": 130,
              "codecs": (57, 58, 59, 60, 61, 62, 46)}
_BASES = {2: 400, 3: 500, 4: 600, 5: 1700, 6: 1800}  # 6: [I] same pattern as 5


def account_pvalues(n: int) -> dict[str, Any]:
    if n == 1:
        return _ACCOUNT_1
    b = _BASES[n]
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
    "sip": "accounts 1-6 only (P-values of 7+ unverified)",
    "provisioning.resync": "whole hours",
    "line_keys": "GXP only; line, blf, speed_dial, park",
}

RAW_KEY = re.compile(r"^P\d{1,6}$")
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
FIRMWARE_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Setting:
    p: int
    value: str
    param: str

    @property
    def name(self) -> str:
        return f"P{self.p}"


def _without_scheme(url: str) -> tuple[int, str]:
    parts = urlsplit(url)
    return SCHEMES.get(parts.scheme.lower(), 2), (parts.netloc + parts.path).rstrip("/")


class _Builder:
    def __init__(self, device: RenderInput):
        self.device = device
        self.params = device.params
        self.owned = device.user_owned
        self.settings: list[Setting] = []
        self.problems: list[str] = []

    def put(self, p: int, value: Any, param: str) -> None:
        self.settings.append(Setting(p, _text(value), param))

    def build(self) -> _Builder:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.accounts()
        if self.device.lines:
            self.keys()
        self.raw()
        return self

    def provisioning(self) -> None:
        scheme, path = _without_scheme(self.device.provisioning_url)
        self.put(212, scheme, "provisioning url")
        self.put(237, path, "provisioning url")
        resync = _get(self.params, "provisioning", "resync") or {}
        self.put(194, 2, "provisioning.resync")  # daily
        self.put(285, int((resync.get("start") or "02:00")[:2]), "provisioning.resync.start")
        self.put(8459, int((resync.get("end") or "04:00")[:2]), "provisioning.resync.end")
        self.put(8458, 1, "provisioning.resync")  # random time in the window
        firmware = self.device.firmware
        if firmware is not None:
            # [I] the phone fetches its family image by its fixed name from this directory
            scheme, path = _without_scheme(firmware.url.rsplit("/", 1)[0] + "/")
            self.put(6767, scheme, "firmware")
            self.put(192, path, "firmware")
            self.put(8375, 0, "firmware")
        password = self.params.get("admin_password")
        if password:
            self.put(2, password, "admin_password")

    def time_and_language(self) -> None:
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put(30, ntp["server"], "ntp.server")
        tz = self.params.get("timezone")
        if tz:
            try:
                self.put(64, timezones.posix(str(tz)), "timezone")
            except ValueError as exc:
                self.problems.append(f"timezone: {exc}")
        language = self.params.get("language")
        if language and "language" not in self.owned:
            code = LANGUAGES.get(language_code(str(language)))
            if code is None:
                self.problems.append(f"language: {language!r} has no Grandstream equivalent "
                                     f"(known: {', '.join(sorted(LANGUAGES))})")
            else:
                self.put(1362, code, "language")

    def network_and_features(self) -> None:
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.put(51, vlan["id"], "vlan.id")
            if vlan.get("priority") is not None:
                self.put(87, vlan["priority"], "vlan.priority")
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.put(91, not bool(waiting), "call_waiting")  # P91 = disable call waiting [I]

    def accounts(self) -> None:
        model = self.device.model
        by_port: dict[int, LineInput] = {}
        for line in self.device.lines:
            if not 1 <= line.port <= model.lines:
                self.problems.append(f"port {line.port} ({line.account}): {model.name} has "
                                     f"accounts 1 to {model.lines}")
            elif line.port > PROVISIONED_ACCOUNTS:
                self.problems.append(
                    f"port {line.port} ({line.account}): provctl writes Grandstream accounts 1 "
                    f"to {PROVISIONED_ACCOUNTS} only (the P-values of accounts 7 and up are "
                    "not verified)")
            else:
                by_port[line.port] = line
        for n in range(1, min(model.lines, PROVISIONED_ACCOUNTS) + 1):
            assigned = by_port.get(n)
            pv = account_pvalues(n)
            if assigned is None:
                self.put(pv["active"], 0, f"port {n}")
                for field in ("server", "user", "auth", "password", "display", "name"):
                    self.put(pv[field], "", f"port {n}")
            else:
                self.account(n, assigned, pv)

    def account(self, n: int, line: LineInput, pv: dict[str, Any]) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}

        def put(field: str, value: Any, param: str) -> None:
            self.put(pv[field], value, f"{param} {where}")

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
        codecs = (line.params or {}).get("codecs")
        if codecs is None:
            codecs = self.params.get("codecs")
        if codecs is not None:
            self.codecs(list(codecs), pv["codecs"], where)

    def codecs(self, codecs: list[str], slots: tuple[int, ...], where: str) -> None:
        chosen: list[int] = []
        for codec in codecs:
            if codec not in CODECS or (codec == "opus" and self.device.model.family != "grp"):
                self.problems.append(f"codecs {where}: {codec} is not supported by "
                                     f"{self.device.model.name}")
            elif CODECS[codec] not in chosen:
                chosen.append(CODECS[codec])
        if not chosen:
            return
        # [I] the remaining choices repeat the last listed codec, so codecs left out are not
        # offered (conservative: a choice left unwritten keeps whatever the phone had)
        for i, slot in enumerate(slots):
            self.put(slot, chosen[min(i, len(chosen) - 1)], f"codecs {where}")

    def keys(self) -> None:
        keys = self.params.get("line_keys") or []
        if not keys or "line_keys" in self.owned:
            return
        if self.device.model.family != "gxp":
            self.problems.append(f"line_keys: {self.device.model.name} takes keys as config v2 "
                                 "aliases, which provctl does not write")
            return
        for k, key in enumerate(keys, start=1):
            param = f"line_keys[{k}]"
            kind = key.get("type") or "none"
            if kind == "none":
                continue
            if kind not in KEY_MODES:
                self.problems.append(f"{param}: key type {kind!r} is not supported on "
                                     "Grandstream keys")
                continue
            step = 2 * (k - 1)  # [V] keys 1 and 2; the step of 2 for later keys is [I]
            self.put(1363 + step, KEY_MODES[kind], param)
            self.put(1364 + step, int(key.get("line") or 1) - 1, param)  # account, 0-based
            self.put(1465 + step, key.get("label") or "", param)
            self.put(1466 + step, key.get("value") or "", param)

    def raw(self) -> None:
        raw = self.device.raw or {}
        added: list[Setting] = []
        for key, value in raw.items():
            key = str(key)
            if not RAW_KEY.match(key):
                self.problems.append(f"raw.grandstream: {key!r} is not a P-value (P1234)")
                continue
            added.append(Setting(int(key[1:]), _text(value), f"raw.grandstream.{key}"))
        replaced = {s.p for s in added}
        self.settings = [s for s in self.settings if s.p not in replaced] + added


def _build(device: RenderInput) -> _Builder:
    return _Builder(device).build()


class Grandstream:
    name = "grandstream"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = True
    supported = frozenset({
        "sip", "codecs", "ntp", "timezone", "language", "admin_password", "call_waiting",
        "vlan", "line_keys", "provisioning", "raw",
    })
    notes = NOTES
    redirect_kinds: tuple[str, ...] = ()  # GDMS is not implemented in provctl

    def files(self, device: RenderInput) -> list[OutputFile]:
        built = _build(device)
        return [OutputFile(f"cfg{device.mac}.xml", "grandstream/cfgmac.xml.j2", {
            "mac": device.mac, "model": device.model.name,
            "settings": [{"name": s.name, "value": s.value} for s in built.settings],
        })]

    def check(self, device: RenderInput) -> list[str]:
        built = _build(device)
        problems = list(built.problems)
        for s in built.settings:
            if "\n" in s.value or "\r" in s.value:
                problems.append(f"{s.param}: contains a line break, which a Grandstream "
                                f"P-value cannot carry ({s.name})")
            elif XML_ILLEGAL.search(s.value):
                problems.append(f"{s.param}: contains a control character XML cannot carry "
                                f"({s.name})")
        return problems

    def firmware_version(self, version: str) -> tuple[int, ...]:
        match = FIRMWARE_VERSION.match(version.strip())
        if not match:
            raise ValueError(f"Grandstream firmware version {version!r} is not "
                             "<major>.<minor>.<patch>.<build>, e.g. 1.0.11.79")
        return tuple(int(part) for part in match.groups())

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        return None  # every version that parses fits every model of this vendor


VENDOR = Grandstream()


# --- User-Agent -------------------------------------------------------------------------------
# "Grandstream Model HW GXP2135 SW 1.0.7.97 DevId 000b828aa872", with a hardware revision on
# some models: "Grandstream Model HW GXP2200 V2.2A SW 1.0.1.33 DevId 000b82462d97" [V wazo
# plugins/wazo_grandstream/common/common.py; fusion app/provision/index.php]. DevId is the MAC.
_UA = re.compile(r"^Grandstream Model HW (?P<model>[A-Za-z0-9]+)(?:\s+V\S+)?\s+SW\s+"
                 r"(?P<firmware>\d+(?:\.\d+)+)\s+DevId\s+(?P<mac>[0-9A-Fa-f]{12})\b")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Grandstream phone's model, firmware and MAC from its User-Agent; None if not one."""
    ua = user_agent_text(text)
    if ua is None or not ua.startswith("Grandstream"):
        return None
    match = _UA.match(ua)
    if match is None:
        return None
    return UserAgent("grandstream", match["model"], match["firmware"], mac12(match["mac"]))
