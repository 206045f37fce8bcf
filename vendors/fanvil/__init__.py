"""Fanvil (X-series): what is true of the vendor, and its mapping to the text configuration.

Files per phone (see ../shared/reference/vendor-formats.md, "6. Fanvil"):

- `<mac>.cfg` (12 lowercase hex digits), in the *text* dialect every current X model accepts
  [V tancredi]: line 1 `<<VOIP CONFIG FILE>>Version:2.0000000000`, then modules
  (`<SIP CONFIG MODULE>`, `<PHONE FEATURE MODULE>`, ...) of `Name<padding>:value` lines, and
  `<<END OF FILE>>` last. The model / hardware common files (`F0V00X…cfg`, `fanvil_<model>…txt`)
  have irregular names and are not written; `Download CommonConf` is 0 so the phone does not
  look for them.

The text format has no escaping [I]: a value runs to the end of its line. `check()` refuses a
line break in any value, and a ':' or line break in a `raw` key name, naming the parameter.

Conventions (documented for operators):

- SIP line N = port N. Lines of the model without an account are cleared (`SIPN Enable Reg` 0
  and the identity/credential keys empty): partial files leave absent keys as they were [I].
- `SIPN Phone Number` = extension, `SIPN Register User` = auth user (Fanvil registers with
  it [V]), `SIPN Transport` 0 UDP / 1 TCP / 3 TLS [V].
- Codecs: `SIPN VoiceCodecMap` = the listed codecs in order [V names].
- Time zone: `Time Zone` = standard offset in quarter hours, `Time Zone Name` = `UTC+1` style
  [V tancredi]; DST as an explicit rule: `DST Type` 1, `DST Rule Mode` 0, month / week (5 =
  last) / weekday (0 = Sunday) / hour, hours in *standard* time (the end of EU summer time is
  hour 2, as tancredi writes it) [I]. Switches at other than whole hours are refused.
- Provisioning: `Flash Server IP` = host[:port], `Flash File Name` = the path of this very file
  (literal MAC, no `$mac` macro), `Flash Protocol` 4 HTTP / 5 HTTPS, `Flash Mode` 2 periodic,
  `Flash Interval` 24 (hours) [I]. Fanvil has no nightly window and always checks on boot:
  `provisioning.resync.start/end/on_boot` are not expressed (NOTES).
- Firmware, only when pinned: `Auto Image Url`.
- Admin password: `Account1 Name` admin / `Account1 Password` / `Account1 Level` 10 (MMI).
- Keys (`line_keys[K]` → `FkeyK` in the DSSKEY module): line → type 2 `SIP<line>`, blf → type 1
  `<value>@<line>/b`, park → type 1 `<value>@<line>/b` (the park slot is watched) [I],
  speed_dial → type 1 `<value>@<line>/f`, dtmf → type 4, none → type 0 [V tancredi].
- User-owned parameters: no mechanism known [I]; they are not written.
- `raw` keys are `MODULE NAME/Key Name` (e.g. `PHONE FEATURE MODULE/LCD Title`); a raw key equal
  to a generated one replaces it, others are appended to their module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from vendors import timezones
from vendors.base import LineInput, ModelInfo, OutputFile, RenderInput, UserAgent
from vendors.common import language_code, mac12, user_agent_text
from vendors.common import text as _text

HEADER = "<<VOIP CONFIG FILE>>Version:2.0000000000"
FOOTER = "<<END OF FILE>>"
PAD = 20  # key column width, as every sample pads to a fixed column [V tancredi]

# name: SIP lines [V wazo serie_x/plugin-info]
_MODELS: dict[str, int] = {
    "X3S": 2, "X3SG": 2, "X4": 4, "X4U": 12, "X5S": 16, "X5U": 16, "X6": 20, "X6U": 20,
    "X7": 20, "X7C": 20, "X210": 20,
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines) for name, lines in _MODELS.items()
}

# ISO 639-1 code -> `Default Language` (two-letter codes of current firmware [I])
LANGUAGES = {"en": "en", "it": "it", "de": "de", "fr": "fr", "es": "es", "pt": "pt",
             "ru": "ru", "tr": "tr", "pl": "pl", "nl": "nl"}

# neutral codec -> VoiceCodecMap name [V tancredi list]
CODECS = {"pcmu": "PCMU", "pcma": "PCMA", "g722": "G722", "g729": "G729", "g726": "G726-32",
          "ilbc": "iLBC", "opus": "opus"}
TRANSPORTS = {"udp": 0, "tcp": 1, "tls": 3}
PROTOCOLS = {"http": 4, "https": 5}

# sections in file order
SIP, PHONE, CALL, MMI, QOS, AUTOUPDATE, DSSKEY = (
    "SIP CONFIG MODULE", "PHONE FEATURE MODULE", "CALL FEATURE MODULE", "MMI CONFIG MODULE",
    "QOS CONFIG MODULE", "AUTOUPDATE CONFIG MODULE", "DSSKEY CONFIG MODULE")
MODULES = (SIP, PHONE, CALL, MMI, QOS, AUTOUPDATE, DSSKEY)

NOTES = {
    "provisioning.resync": "daily interval only (no window, always on boot)",
    "vlan.priority": "no key known",
    "line_keys": "DSS keys; park watches the slot like blf [I]",
}

RAW_KEY = re.compile(r"^([A-Z0-9 ]+ MODULE)/([^:\r\n]+)$")
FIRMWARE_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Setting:
    module: str
    key: str
    value: str
    param: str


@dataclass
class _Built:
    settings: list[Setting] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def modules(self) -> list[dict[str, Any]]:
        out = []
        names = list(MODULES) + sorted({s.module for s in self.settings} - set(MODULES))
        for module in names:
            items = [s for s in self.settings if s.module == module]
            if items:
                width = max(PAD, *(len(s.key) + 1 for s in items))
                out.append({"name": module, "settings": [
                    {"key": s.key.ljust(width), "value": s.value} for s in items]})
        return out


def zone_name(minutes: int) -> str:
    hours, rest = divmod(abs(minutes), 60)
    sign = "-" if minutes < 0 else "+"
    return "UTC" if minutes == 0 else f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


class _Builder:
    def __init__(self, device: RenderInput):
        self.device = device
        self.params = device.params
        self.owned = device.user_owned
        self.built = _Built()

    def put(self, module: str, key: str, value: Any, param: str) -> None:
        self.built.settings.append(Setting(module, key, _text(value), param))

    def problem(self, text: str) -> None:
        self.built.problems.append(text)

    def build(self) -> _Built:
        self.lines()
        self.time_and_language()
        self.features()
        self.provisioning()
        if self.device.lines:
            self.keys()
        self.raw()
        return self.built

    def provisioning(self) -> None:
        url = urlsplit(self.device.provisioning_url)
        self.put(AUTOUPDATE, "Download CommonConf", 0, "provisioning url")
        self.put(AUTOUPDATE, "Flash Server IP", url.netloc, "provisioning url")
        # the literal name we publish, not the $mac macro (its case is not documented) [I]
        self.put(AUTOUPDATE, "Flash File Name", url.path.lstrip("/") + f"{self.device.mac}.cfg",
                 "provisioning url")
        self.put(AUTOUPDATE, "Flash Protocol", PROTOCOLS.get(url.scheme.lower(), 5),
                 "provisioning url")
        self.put(AUTOUPDATE, "Flash Mode", 2, "provisioning.resync")  # periodic [I]
        self.put(AUTOUPDATE, "Flash Interval", 24, "provisioning.resync")  # hours [I]
        if self.device.firmware is not None:
            self.put(AUTOUPDATE, "Auto Image Url", self.device.firmware.url, "firmware")
        password = self.params.get("admin_password")
        if password:
            self.put(MMI, "Account1 Name", "admin", "admin_password")
            self.put(MMI, "Account1 Password", password, "admin_password")
            self.put(MMI, "Account1 Level", 10, "admin_password")

    def time_and_language(self) -> None:
        language = self.params.get("language")
        if language and "language" not in self.owned:
            code = LANGUAGES.get(language_code(str(language)))
            if code is None:
                self.problem(f"language: {language!r} has no Fanvil equivalent (known: "
                             f"{', '.join(sorted(LANGUAGES))})")
            else:
                self.put(PHONE, "Default Language", code, "language")
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put(PHONE, "Enable SNTP", 1, "ntp.server")
            self.put(PHONE, "SNTP Server", ntp["server"], "ntp.server")
        if ntp.get("server2"):
            self.put(PHONE, "Second SNTP Server", ntp["server2"], "ntp.server2")
        tz = self.params.get("timezone")
        if tz:
            try:
                self.timezone(str(tz))
            except ValueError as exc:
                self.problem(f"timezone: {exc}")

    def timezone(self, name: str) -> None:
        rule = timezones.dst_rule(name)
        standard = timezones.clock(name).standard_minutes
        if standard % 15:
            raise ValueError(f"time zone {name!r}: offset is not whole quarter hours")
        changes = []
        if rule is not None:
            # hours in standard time [I]: the end switch happens save_minutes later in DST
            changes = [("Start", rule.start, rule.start.minutes),
                       ("End", rule.end, rule.end.minutes - rule.save_minutes)]
            for _, change, minutes in changes:
                if minutes % 60:
                    raise ValueError(f"time zone {name!r} switches at {change.minutes // 60}:"
                                     f"{change.minutes % 60:02d}; Fanvil takes whole hours")
        self.put(PHONE, "Time Zone", standard // 15, "timezone")
        self.put(PHONE, "Time Zone Name", zone_name(standard), "timezone")
        self.put(PHONE, "DST Type", 0 if rule is None else 1, "timezone")  # 1 = by rule [I]
        if rule is None:
            return
        self.put(PHONE, "DST Rule Mode", 0, "timezone")
        self.put(PHONE, "DST Min Offset", rule.save_minutes, "timezone")
        for label, change, minutes in changes:
            self.put(PHONE, f"DST {label} Mon", change.month, "timezone")
            self.put(PHONE, f"DST {label} Week", change.week, "timezone")
            self.put(PHONE, f"DST {label} Wday", change.weekday, "timezone")
            self.put(PHONE, f"DST {label} Hour", (minutes // 60) % 24, "timezone")

    def features(self) -> None:
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.put(CALL, "P1 CallWaiting", bool(waiting), "call_waiting")  # [V tancredi]
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.put(QOS, "Enable VLAN", 1, "vlan.id")
            self.put(QOS, "VLAN ID", vlan["id"], "vlan.id")
        if vlan.get("pc_id"):
            self.put(QOS, "Enable PVID", 1, "vlan.pc_id")
            self.put(QOS, "PVID Value", vlan["pc_id"], "vlan.pc_id")

    def lines(self) -> None:
        model = self.device.model
        by_port: dict[int, LineInput] = {}
        for line in self.device.lines:
            if not 1 <= line.port <= model.lines:
                self.problem(f"port {line.port} ({line.account}): {model.name} has SIP lines 1 "
                             f"to {model.lines}")
                continue
            by_port[line.port] = line
        for n in range(1, model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.put(SIP, f"SIP{n} Enable Reg", 0, f"port {n}")
                for key in ("Phone Number", "Display Name", "Sip Name", "Register Addr",
                            "Register User", "Register Pswd", "Proxy Addr"):
                    self.put(SIP, f"SIP{n} {key}", "", f"port {n}")
            else:
                self.line(n, assigned)

    def line(self, n: int, line: LineInput) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}

        def put(key: str, value: Any, param: str) -> None:
            self.put(SIP, f"SIP{n} {key}", value, f"{param} {where}")

        put("Phone Number", line.extension, "extension")
        put("Display Name", line.display_name, "display_name")
        put("Sip Name", line.label, "label")
        put("Register Addr", sip.get("server") or "", "sip.server")
        if sip.get("port"):
            put("Register Port", sip["port"], "sip.port")
        put("Register User", line.auth_user, "auth_user")
        put("Register Pswd", line.password, "password")
        if sip.get("expires"):
            put("Register TTL", sip["expires"], "sip.expires")
        put("Enable Reg", 1, "account")
        if sip.get("transport"):
            put("Transport", TRANSPORTS[sip["transport"]], "sip.transport")
        proxy = sip.get("outbound_proxy")
        put("Proxy Addr", proxy or "", "sip.outbound_proxy")
        if proxy:
            port = sip.get("outbound_proxy_port") or sip.get("port")
            if port:
                put("Proxy Port", port, "sip.outbound_proxy_port")
        codecs = (line.params or {}).get("codecs")
        if codecs is None:
            codecs = self.params.get("codecs")
        if codecs is not None:
            names: list[str] = []
            for codec in codecs:
                if codec not in CODECS:
                    self.problem(f"codecs {where}: {codec} is not supported by Fanvil phones "
                                 f"(supported: {', '.join(sorted(CODECS))})")
                elif CODECS[codec] not in names:
                    names.append(CODECS[codec])
            put("VoiceCodecMap", ",".join(names), "codecs")

    def keys(self) -> None:
        keys = self.params.get("line_keys") or []
        if "line_keys" in self.owned:
            return
        for k, key in enumerate(keys, start=1):
            param = f"line_keys[{k}]"
            kind = key.get("type") or "none"
            value = str(key.get("value") or "")
            line = int(key.get("line") or 1)
            types = {"line": (2, f"SIP{line}"), "blf": (1, f"{value}@{line}/b"),
                     "park": (1, f"{value}@{line}/b"), "speed_dial": (1, f"{value}@{line}/f"),
                     "dtmf": (4, value), "none": (0, "")}
            if kind not in types:
                self.problem(f"{param}: key type {kind!r} is not supported")
                continue
            code, text = types[kind]
            self.put(DSSKEY, f"Fkey{k} Type", code, param)
            self.put(DSSKEY, f"Fkey{k} Value", text, param)
            self.put(DSSKEY, f"Fkey{k} Title", key.get("label") or "", param)

    def raw(self) -> None:
        raw = self.device.raw or {}
        added: list[Setting] = []
        for key, value in raw.items():
            match = RAW_KEY.match(str(key))
            if not match or match.group(2) != match.group(2).strip():
                self.problem(f"raw.fanvil: {key!r} is not 'MODULE NAME/Key Name' (e.g. "
                             "'PHONE FEATURE MODULE/LCD Title'; no ':' in the key)")
                continue
            module, name = match.groups()
            added.append(Setting(module, name, _text(value), f"raw.fanvil.{key}"))
        replaced = {(s.module, s.key) for s in added}
        kept = [s for s in self.built.settings if (s.module, s.key) not in replaced]
        self.built.settings = kept + added


def _build(device: RenderInput) -> _Built:
    return _Builder(device).build()


class Fanvil:
    name = "fanvil"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = False
    supported = frozenset({
        "sip", "codecs", "ntp", "timezone", "language", "admin_password", "call_waiting",
        "vlan", "line_keys", "provisioning", "raw",
    })
    notes = NOTES
    redirect_kinds: tuple[str, ...] = ()  # FDPS is not implemented in provctl

    def files(self, device: RenderInput) -> list[OutputFile]:
        built = _build(device)
        return [OutputFile(f"{device.mac}.cfg", "fanvil/mac.cfg.j2", {
            "header": HEADER, "footer": FOOTER, "modules": built.modules(),
        })]

    def check(self, device: RenderInput) -> list[str]:
        built = _build(device)
        problems = list(built.problems)
        for s in built.settings:
            if "\n" in s.value or "\r" in s.value:
                problems.append(f"{s.param}: contains a line break, which the Fanvil text "
                                f"format cannot carry ({s.key})")
        return problems

    def firmware_version(self, version: str) -> tuple[int, ...]:
        match = FIRMWARE_VERSION.match(version.strip())
        if not match:
            raise ValueError(f"Fanvil firmware version {version!r} is not "
                             "<major>.<minor>.<patch>.<build>, e.g. 2.12.22.2")
        return tuple(int(part) for part in match.groups())

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        return None  # every version that parses fits every model of this vendor


VENDOR = Fanvil()


# --- User-Agent -------------------------------------------------------------------------------
# "Fanvil X4 2.10.2.6887 0c383e07e16c", "Fanvil X6U Pro 0.0.10 0c383e2cd782",
# "Fanvil X5U-V2 2.12.16.17 0c383e557eb1" [V wazo plugins/wazo_fanvil/common/common.py; fusion
# app/provision/index.php writes the same with a stray ")" at the end, accepted]. "X6U Pro" is
# reported as "X6U-Pro", as wazo does.
_UA = re.compile(r"^Fanvil\s+(?P<model>[A-Za-z0-9]+(?:-V\d)?(?:\s?Pro)?)\s+"
                 r"(?P<firmware>\d+(?:\.\d+)+)(?:\s+(?P<mac>[0-9A-Fa-f]{12}))?\)?$")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Fanvil phone's model, firmware and MAC from its User-Agent; None if not Fanvil."""
    ua = user_agent_text(text)
    if ua is None or not ua.startswith("Fanvil"):
        return None
    match = _UA.match(ua)
    if match is None:
        return None
    model = re.sub(r"\s+", "-", match["model"])
    return UserAgent("fanvil", model, match["firmware"], mac12(match["mac"]))
