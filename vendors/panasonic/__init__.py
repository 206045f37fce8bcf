"""Panasonic (KX-HDV desk phones, KX-TGP5xx DECT): what is true of the vendor, and its mapping.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/panasonic.md):

- `Config<MAC>.cfg` (12 *uppercase* hex digits, the `{MAC}` macro) [V wazo]: the *standard*
  (per-device) configuration file, which `CFG_STANDARD_FILE_PATH` points at.
- `<MODEL>.cfg` (e.g. `KX-HDV230.cfg`; a KX-TGP's name carries its region, `KX-TGP550T04.cfg`):
  a bootstrap holding only `CFG_STANDARD_FILE_PATH`, for a factory phone pointed at the
  directory; `bootstrap_files()` (issue 15.6). It names the per-device file with the `{MAC}`
  macro, so it is identical for every phone of the model in one directory. In a customer's
  bootstrap directory (docs/zero-touch.md) the `Config<MAC>.cfg` it names is
  `bootstrap_phone_files()`, pointing at the phone's own directory.

Text, `NAME="value"` per line, CRLF line endings (`OutputFile.line_ending`), the magic comment
on line 1 (`# Panasonic SIP Phone Standard Format File #`; KX-TGP5xx: `# PCC Standard Format
File #` [V]) and an empty line at the end [V]. There is no escape: `build()` refuses, naming the
parameter, a value holding `"`, a line break or a control character, a value over 500
characters, a line over 537 bytes with its CRLF, and a file over 120 KB [V limits]. If a
parameter appears twice the *first* wins [V], so a `raw` key replaces the generated one in place
(never a second line).

Conventions (documented for operators):

- Line N = port N. Lines of the model without an account are cleared (`LINE_ENABLE_N`
  "Disabled", identity and credentials ""): the phone keeps values an earlier file set [I].
- Codecs: KX-HDV `CODEC_ENABLE<x>_N` / `CODEC_PRIORITY<x>_N` with x = 0 G.722, 1 PCMA,
  3 G.729A, 4 PCMU [I: index mapping]; listed codecs get priority 1, 2, ... and the others
  `CODEC_ENABLE` "N". KX-TGP5xx: `SDP_CODEC<k>_N` = the codec names in order [V FusionPBX], the
  remaining positions "".
- Time zone: `TIME_ZONE` = standard offset in minutes, `DST_ENABLE`, `DST_OFFSET`, and the rule
  as `DST_START_MONTH`, `_ORDINAL_DAY` (1-4, 5 = last [I]), `_DAY_OF_WEEK` (0 = Sunday),
  `_TIME` (minutes after midnight, wall clock before the switch) and the same for `DST_STOP_*`.
- Provisioning: `CFG_STANDARD_FILE_PATH` = the literal URL of `Config<MAC>.cfg`;
  `CFG_RESYNC_TIME` = `provisioning.resync.start` (daily; no window end) [V key];
  `CFG_CYCLIC` "N", the factory default, which a bootstrap file turned on [V key].
- Firmware, only when pinned: `FIRM_UPGRADE_ENABLE` "Y", `FIRM_FILE_PATH` and `FIRM_VERSION`
  (KX-HDV) or `FIRM_VER_USDECT` / `FIRM_VER_EUDECT` with `FIRM_UPGRADE_AUTO` (KX-TGP, 15.5).
- Language: `DEFAULT_LANGUAGE` as a language tag (`de-DE`); `WEB_LANGUAGE` is not written
  (numeric codes per model, issue 15.10).
- User-owned parameters: in this text format settings made on the phone or its web UI already
  win over every provisioning file [V]; per-parameter `perm` flags exist only in the XML variant
  of other models (KX-UTG / UT670). A user-owned parameter is not written at all, so nothing of
  ours competes with the user's value.
- Not expressible (the core warns or NOTES say): `line_keys` and other keys (the
  `FLEX_BUTTON_*` facility codes for BLF / speed dial are not verified), `screensaver`,
  `ntp.server2`, `provisioning.resync.end`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vendors import kit, timezones
from vendors.base import (
    BootstrapInput,
    LineInput,
    ModelInfo,
    OutputFile,
    RenderInput,
    UserAgent,
)
from vendors.common import get as _get
from vendors.common import mac12, match_user_agent

HEADERS = {
    "hdv": "# Panasonic SIP Phone Standard Format File # DO NOT CHANGE THIS LINE!",
    "tgp": "# PCC Standard Format File # DO NOT CHANGE THIS LINE!",
}
CRLF = "\r\n"
ONBOARDING_INTERVAL = 10  # minutes between downloads while a bootstrap file points the way
MAX_VALUE = 500  # characters [V]
MAX_LINE = 537  # bytes including CRLF [V]
MAX_NAME = 32  # characters [V]
MAX_FILE = 120 * 1024  # bytes [V KX-UT; the conservative limit of the family]

# name: (lines, family) [I: datasheets; TGP5xx lines 1-8 V FusionPBX template]
_MODELS: dict[str, tuple[int, str]] = {
    "KX-HDV130": (2, "hdv"), "KX-HDV230": (6, "hdv"), "KX-HDV330": (12, "hdv"),
    "KX-HDV430": (16, "hdv"), "KX-TGP500": (8, "tgp"), "KX-TGP550": (8, "tgp"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family)
    for name, (lines, family) in _MODELS.items()
}

# ISO 639-1 code -> DEFAULT_LANGUAGE, a language tag: "en-US" [V fusion panasonic/ut670/{$mac}.cfg,
# utg200b/{$mac}.xml]; the other tags follow the same language-COUNTRY form [I]. WEB_LANGUAGE is
# a numeric code per model (0 = English [V fusion utg200b]; others unknown), so it is not written.
LANGUAGES = {"en": "en-US", "de": "de-DE", "fr": "fr-FR", "it": "it-IT", "es": "es-ES",
             "nl": "nl-NL", "pt": "pt-PT", "ru": "ru-RU", "pl": "pl-PL", "sv": "sv-SE"}

# The name a factory phone asks for, {MODEL}.cfg, carries a KX-TGP's regional suffix
# [V fusion panasonic/tgp550/KX-TGP550T04.cfg, tgp500/KX-TGP500B04.cfg]; other regional
# variants are not known (add them here). KX-HDV: the model as sold [I].
REGIONAL_MODELS: dict[str, tuple[str, ...]] = {
    "KX-TGP500": ("KX-TGP500B04",),
    "KX-TGP550": ("KX-TGP550T04",),
}

# neutral codec -> KX-HDV codec index [I] / KX-TGP5xx SDP codec name [V FusionPBX]
HDV_CODECS = {"g722": 0, "pcma": 1, "g729": 3, "pcmu": 4}
TGP_CODECS = {"g722": "G722", "pcma": "PCMA", "g726": "G726-32", "g729": "G729A",
              "pcmu": "PCMU"}
TGP_CODEC_SLOTS = 5
TRANSPORTS = {"udp": 0, "tcp": 1, "tls": 2}  # [I]

NOTES = {
    "ntp.server2": "one NTP server only",
    "provisioning.resync": "daily at start (no window end)",
    "user_owned": "not written (phone/web UI changes win by default)",
    "language": "the phone's display language (DEFAULT_LANGUAGE); the web UI's is left alone",
}

PARAM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
CONTROL = re.compile("[\x00-\x1f\x7f]")
VERSIONS = kit.VersionScheme("Panasonic firmware version", "NN.NNN (e.g. 01.133, 12.81)",
                             re.compile(r"^(\d{1,2})\.(\d{2,3})$"))


def bootstrap_files(model: ModelInfo, directory_url: str) -> tuple[OutputFile, ...]:
    """{MODEL}.cfg, one per regional variant: only CFG_STANDARD_FILE_PATH, with the phone's own
    {MAC} macro [V wazo, fusion], so one file serves every phone of the model."""
    return tuple(
        OutputFile(f"{name}.cfg", "panasonic/config.cfg.j2", {
            "header": HEADERS[model.family],
            "settings": [{"name": "CFG_STANDARD_FILE_PATH",
                          "value": directory_url + "Config{MAC}.cfg"}],
        }, line_ending=CRLF)
        for name in REGIONAL_MODELS.get(model.name, (model.name,)))


def line_text(setting: kit.Setting) -> str:
    return f'{setting.key}="{setting.value}"'


def standard_file(mac: str) -> str:
    return f"Config{mac.upper()}.cfg"


def file_size(header: str, settings: list[kit.Setting]) -> int:
    """Bytes of the rendered standard file (CRLF, trailing empty line), as the template lays it."""
    lines = [header, *(line_text(s) for s in settings), ""]
    return len(CRLF.join(lines).encode("utf-8")) + len(CRLF)


class Builder(kit.Builder):
    label = "Panasonic"
    carrier = "a Panasonic value"
    true, false = "Y", "N"
    raw_in_place = True  # the first of two equal names wins on the phone [V]
    languages = LANGUAGES

    def __init__(self, device: RenderInput):
        super().__init__(device)
        self.family = device.model.family

    def steps(self) -> None:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.lines()

    def files(self) -> list[OutputFile]:
        device = self.device
        return [
            OutputFile(standard_file(device.mac), "panasonic/config.cfg.j2", {
                "header": HEADERS[device.model.family],
                "settings": [{"name": s.key, "value": s.value} for s in self.settings],
            }, line_ending=CRLF),
            # for a phone pointed at its own directory (DHCP, or typed in by hand)
            *bootstrap_files(device.model, device.provisioning_url),
        ]

    def value_problems(self) -> list[str]:
        out = []
        for s in self.settings:
            if "\n" in s.value or "\r" in s.value:
                out.append(f"{s.param}: contains a line break, which {self.carrier} cannot "
                           f"carry ({s.key})")
            elif '"' in s.value:
                out.append(f'{s.param}: contains ", which a Panasonic value (always in double '
                           f'quotes, no escape) cannot carry ({s.key})')
            elif CONTROL.search(s.value):
                out.append(f"{s.param}: contains a control character ({s.key})")
            elif len(s.value) > MAX_VALUE:
                out.append(f"{s.param}: {len(s.value)} characters, more than the {MAX_VALUE} "
                           f"a Panasonic value may have ({s.key})")
            elif len(line_text(s).encode("utf-8")) + len(CRLF) > MAX_LINE:
                out.append(f"{s.param}: the line is longer than the {MAX_LINE} bytes a "
                           f"Panasonic phone reads ({s.key})")
        size = file_size(HEADERS[self.device.model.family], self.settings)
        if size > MAX_FILE:
            out.append(f"{standard_file(self.device.mac)}: {size} bytes, more than the "
                       f"{MAX_FILE} bytes a Panasonic phone accepts (remove raw.panasonic "
                       "keys)")
        return out

    def provisioning(self) -> None:
        url = self.device.provisioning_url
        self.put("PROVISION_ENABLE", True, "provisioning url")
        self.put("CFG_STANDARD_FILE_PATH", url + standard_file(self.device.mac),
                 "provisioning url")
        resync = _get(self.params, "provisioning", "resync") or {}
        # daily at the window's start; the window's end has no key [V CFG_RESYNC_TIME]
        self.put("CFG_RESYNC_TIME", resync.get("start") or "02:00", "provisioning.resync.start")
        # the factory default [V fusion tgp550/{$mac}.cfg]: ends the short cycle a bootstrap
        # file (docs/zero-touch.md) set while the phone was being onboarded
        self.put("CFG_CYCLIC", False, "provisioning.resync")
        firmware = self.device.firmware
        if firmware is not None:
            self.put("FIRM_UPGRADE_ENABLE", True, "firmware")
            if self.family == "tgp":
                # per DECT band, and the base upgrades without asking [V fusion
                # tgp550/KX-TGP550T04.cfg]; both bands, as the model does not say which [I]
                self.put("FIRM_VER_USDECT", firmware.version, "firmware")
                self.put("FIRM_VER_EUDECT", firmware.version, "firmware")
                self.put("FIRM_UPGRADE_AUTO", True, "firmware")
            else:
                self.put("FIRM_VERSION", firmware.version, "firmware")
            self.put("FIRM_FILE_PATH", firmware.url, "firmware")
        password = self.params.get("admin_password")
        if password:
            self.put("ADMIN_ID", "admin", "admin_password")
            self.put("ADMIN_PASS", password, "admin_password")

    def time_and_language(self) -> None:
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put("NTP_ADDR", ntp["server"], "ntp.server")
        self.timezone()
        tag = self.language()
        if tag is not None:
            self.put("DEFAULT_LANGUAGE", tag, "language")

    def put_timezone(self, name: str) -> None:
        rule = timezones.dst_rule(name)
        self.put("TIME_ZONE", timezones.clock(name).standard_minutes, "timezone")
        self.put("DST_ENABLE", rule is not None, "timezone")
        if rule is None:
            return
        self.put("DST_OFFSET", rule.save_minutes, "timezone")
        for label, change in (("START", rule.start), ("STOP", rule.end)):
            self.put(f"DST_{label}_MONTH", change.month, "timezone")
            self.put(f"DST_{label}_ORDINAL_DAY", change.week, "timezone")  # 5 = last [I]
            self.put(f"DST_{label}_DAY_OF_WEEK", change.weekday, "timezone")
            self.put(f"DST_{label}_TIME", change.minutes, "timezone")

    def network_and_features(self) -> None:
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.put("VLAN_ENABLE", True, "vlan.id")
            self.put("VLAN_ID_IP_PHONE", vlan["id"], "vlan.id")
            if vlan.get("priority") is not None:
                self.put("VLAN_PRI_IP_PHONE", vlan["priority"], "vlan.priority")
        if vlan.get("pc_id"):
            self.put("VLAN_ID_PC", vlan["pc_id"], "vlan.pc_id")

    def lines(self) -> None:
        by_port = self.ports("lines")
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.put(f"LINE_ENABLE_{n}", "Disabled", f"port {n}")
                for name in ("PHONE_NUMBER", "DISPLAY_NAME", "SIP_AUTHID", "SIP_PASS",
                             "SIP_RGSTR_ADDR", "SIP_PRXY_ADDR", "SIP_SVCDOMAIN"):
                    self.put(f"{name}_{n}", "", f"port {n}")
            else:
                self.line(n, assigned)

    def line(self, n: int, line: LineInput) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}

        def put(name: str, value: Any, param: str) -> None:
            self.put(f"{name}_{n}", value, f"{param} {where}")

        server = sip.get("server") or ""
        put("LINE_ENABLE", "Enabled", "account")
        put("PHONE_NUMBER", line.extension, "extension")
        if self.family == "tgp":
            put("LINE_ID", line.label, "label")
        put("DISPLAY_NAME", line.display_name, "display_name")
        put("SIP_AUTHID", line.auth_user, "auth_user")
        put("SIP_PASS", line.password, "password")
        put("SIP_RGSTR_ADDR", server, "sip.server")
        put("SIP_PRXY_ADDR", server, "sip.server")
        put("SIP_SVCDOMAIN", server, "sip.server")
        if sip.get("port"):
            put("SIP_RGSTR_PORT", sip["port"], "sip.port")
            put("SIP_PRXY_PORT", sip["port"], "sip.port")
        if sip.get("transport"):
            put("SIP_TRANSPORT", TRANSPORTS[sip["transport"]], "sip.transport")
        if sip.get("expires"):
            put("REG_EXPIRE_TIME", sip["expires"], "sip.expires")
        proxy = sip.get("outbound_proxy")
        put("SIP_OUTPROXY_ADDR", proxy or "", "sip.outbound_proxy")
        if proxy:
            port = sip.get("outbound_proxy_port") or sip.get("port")
            if port:
                put("SIP_OUTPROXY_PORT", port, "sip.outbound_proxy_port")
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            put("CW_ENABLE", bool(waiting), "call_waiting")  # [V FusionPBX key]
        codecs = self.line_codecs(line)
        if codecs is not None:
            self.codecs(n, codecs, where)

    def codecs(self, n: int, codecs: list[str], where: str) -> None:
        table: Mapping[str, Any] = TGP_CODECS if self.family == "tgp" else HDV_CODECS
        chosen = self.codec_choice(codecs, table, f" {where}", self.device.model.name)
        param = f"codecs {where}"
        if self.family == "tgp":
            for k in range(TGP_CODEC_SLOTS):
                self.put(f"SDP_CODEC{k}_{n}", chosen[k] if k < len(chosen) else "", param)
            return
        for index in sorted(HDV_CODECS.values()):
            if index in chosen:
                self.put(f"CODEC_ENABLE{index}_{n}", True, param)
                self.put(f"CODEC_PRIORITY{index}_{n}", chosen.index(index) + 1, param)
            else:
                self.put(f"CODEC_ENABLE{index}_{n}", False, param)

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        if not PARAM_NAME.match(key) or len(key) > MAX_NAME:
            self.problem(f"raw.panasonic: {key!r} is not a Panasonic parameter name (A-Z, 0-9 "
                         f"and _, at most {MAX_NAME} characters)")
            return None
        return kit.Setting(key, self.text(value), f"raw.panasonic.{key}")


class Panasonic(kit.VendorBase):
    name = "panasonic"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = False
    supported = kit.DESK_PHONE - {"line_keys"}
    notes = NOTES
    redirect_kinds = ()  # no Panasonic redirect client in provctl
    builder = Builder
    versions = VERSIONS

    def bootstrap_files(self, model: ModelInfo, directory_url: str) -> tuple[OutputFile, ...]:
        return bootstrap_files(model, directory_url)

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """`Config<MAC>.cfg` in the bootstrap directory, the standard file `{MODEL}.cfg` named
        there: CFG_STANDARD_FILE_PATH becomes the phone's own standard file. The phone reads
        the new path at its next download [I], so it downloads again every CFG_CYCLIC_INTVL
        minutes until then (CFG_CYCLIC; the phone's own file turns it off again) [V keys: fusion
        tgp550/{$mac}.cfg, KX-UTG200 admin guide §2.4.5 "regular intervals", in minutes].
        OPTION66_ENABLE "N" so that the DHCP option, which names the bootstrap directory, no
        longer sends it back there once the window is over [V key fusion tgp550/{$mac}.cfg;
        the meaning is I]; a factory reset restores it. NTP_ADDR when set."""
        settings = [
            {"name": "CFG_STANDARD_FILE_PATH",
             "value": phone.provisioning_url + standard_file(phone.mac)},
            {"name": "CFG_CYCLIC", "value": "Y"},
            {"name": "CFG_CYCLIC_INTVL", "value": str(ONBOARDING_INTERVAL)},
            {"name": "OPTION66_ENABLE", "value": "N"},
        ]
        if phone.ntp_server:
            settings.append({"name": "NTP_ADDR", "value": phone.ntp_server})
        return (OutputFile(standard_file(phone.mac), "panasonic/config.cfg.j2", {
            "header": HEADERS[phone.model.family], "settings": settings}, line_ending=CRLF),)


VENDOR = Panasonic()


# --- User-Agent -------------------------------------------------------------------------------
# "Panasonic_KX-UT113/01.133 (0080f0c8c381)" [V wazo plugins/wazo_panasonic/common/common.py];
# "Panasonic_KX-UT670/01.022 (0080f000000)" [V fusion app/provision/index.php; that sample has
# 11 digits, so no MAC is taken from it]. KX-TGP bases report the model with its regional
# suffix, e.g. "KX-TGP550T04" [I]; it is kept as sent.
_UA = re.compile(r"^Panasonic_(?P<model>[A-Za-z0-9-]+)/(?P<firmware>[0-9A-Za-z.]+)"
                 r"(?:\s+\((?P<mac>[^)]*)\))?")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Panasonic phone's model, firmware and MAC from its User-Agent; None if not one."""
    match = match_user_agent(text, "Panasonic_", _UA)
    if match is None:
        return None
    return UserAgent("panasonic", match["model"], match["firmware"], mac12(match["mac"]))
