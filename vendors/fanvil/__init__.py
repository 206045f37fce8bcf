"""Fanvil (X-series): what is true of the vendor, and its mapping to the text configuration.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/fanvil.md):

- `<mac>.cfg` (12 lowercase hex digits), in the *text* dialect every current X model accepts
  [V tancredi]: line 1 `<<VOIP CONFIG FILE>>Version:2.0000000000`, then modules
  (`<SIP CONFIG MODULE>`, `<PHONE FEATURE MODULE>`, ...) of `Name<padding>:value` lines, and
  `<<END OF FILE>>` last. The model / hardware common files (`F0V00X…cfg`, `fanvil_<model>…txt`)
  have irregular names and are not written; `Download CommonConf` is 0 so the phone does not
  look for them.
- In a customer's bootstrap directory (docs/zero-touch.md), `<mac>.cfg` is
  `bootstrap_phone_files()`: only the Flash keys naming the phone's own file, and SNTP.

The text format has no escaping [I]: a value runs to the end of its line. `build()` refuses a
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
- Language: a number on classic models, the short name on newer ones (issue 15.8); PC-port
  VLAN: `Enable PVID` 2 (issue 15.9).
- Keys (`line_keys[K]` → `FkeyK` in the DSSKEY module): line → type 2 `SIP<line>`, blf → type 1
  `<value>@<line>/b`, park → type 1 `<value>@<line>/b` (the park slot is watched) [I],
  speed_dial → type 1 `<value>@<line>/f`, dtmf → type 4, none → type 0 [V tancredi].
- User-owned parameters: no mechanism known [I]; they are not written.
- `raw` keys are `MODULE NAME/Key Name` (e.g. `PHONE FEATURE MODULE/LCD Title`); a raw key equal
  to a generated one replaces it, others are appended to their module.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from typing import Any
from urllib.parse import urlsplit

from vendors import kit, timezones
from vendors.base import BootstrapInput, LineInput, ModelInfo, OutputFile, UserAgent
from vendors.common import mac12, match_user_agent

HEADER = "<<VOIP CONFIG FILE>>Version:2.0000000000"
FOOTER = "<<END OF FILE>>"
PAD = 20  # key column width, as every sample pads to a fixed column [V tancredi]

# name: SIP lines [V wazo serie_x/plugin-info]; the family says how the language is written:
# "new" models match wazo's _NEW_MODEL_REGEX ^X([4-9][UC]|(210i?)|7)([- ](Pro|V2))?$
# [V wazo plugins/wazo_fanvil/common/common.py], the others are "classic".
_MODELS: dict[str, tuple[int, str]] = {
    "X3S": (2, "classic"), "X3SG": (2, "classic"), "X4": (4, "classic"), "X4U": (12, "new"),
    "X5S": (16, "classic"), "X5U": (16, "new"), "X6": (20, "classic"), "X6U": (20, "new"),
    "X7": (20, "new"), "X7C": (20, "new"), "X210": (20, "new"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family)
    for name, (lines, family) in _MODELS.items()
}

# ISO 639-1 code -> `Default Language`. Classic models take a number [V wazo serie_x/entry.py
# _LOCALE: en 0, nl 3, fr 4, it 7, es 10, de 16; tancredi data/templates/fanvil.macros
# language_code: en 0, it 7]; new models a short name [V wazo _NEW_SUPPORTED_LANGUAGES;
# tancredi language_codeNEW].
LANGUAGE_NUMBERS = {"en": "0", "nl": "3", "fr": "4", "it": "7", "es": "10", "de": "16"}
LANGUAGE_NAMES = {"en": "en", "it": "it", "de": "de", "fr": "fr", "es": "es", "pt": "pt",
                  "ru": "ru", "tr": "tr", "pl": "pl", "nl": "nl"}
LANGUAGES = LANGUAGE_NAMES

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
VERSIONS = kit.VersionScheme("Fanvil firmware version",
                             "<major>.<minor>.<patch>.<build>, e.g. 2.12.22.2",
                             re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$"))


def zone_name(minutes: int) -> str:
    hours, rest = divmod(abs(minutes), 60)
    sign = "-" if minutes < 0 else "+"
    return "UTC" if minutes == 0 else f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def file_context(modules: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, Any]:
    """The template's context: each module's `Key<padding>:value` lines (empty modules left
    out), keys padded to a common column as every sample does [V tancredi]."""
    out = []
    for module, items in modules:
        if items:
            width = max(PAD, *(len(key) + 1 for key, _ in items))
            out.append({"name": module, "settings": [
                {"key": key.ljust(width), "value": value} for key, value in items]})
    return {"header": HEADER, "footer": FOOTER, "modules": out}


class Builder(kit.Builder):
    label = "Fanvil"
    carrier = "the Fanvil text format"
    languages = LANGUAGES

    def language_table(self) -> Mapping[str, Any]:
        return LANGUAGE_NUMBERS if self.device.model.family == "classic" else LANGUAGE_NAMES

    def unknown_language(self, language: str) -> str:
        return (f"language: {language!r} has no Fanvil equivalent on the "
                f"{self.device.model.name} (known: {', '.join(sorted(self.language_table()))})")

    def set(self, module: str, key: str, value: Any, param: str) -> None:
        self.put(key, value, param, section=module)

    def key_of(self, setting: kit.Setting) -> Hashable:
        return (setting.section, setting.key)  # a key is unique within its module

    def steps(self) -> None:
        self.lines()
        self.time_and_language()
        self.features()
        self.provisioning()
        if self.device.lines:
            self.keys()

    def files(self) -> list[OutputFile]:
        names = list(MODULES) + sorted({s.section for s in self.settings} - set(MODULES))
        modules = [(module, [(s.key, s.value) for s in self.settings if s.section == module])
                   for module in names]
        return [OutputFile(f"{self.device.mac}.cfg", "fanvil/mac.cfg.j2", file_context(modules))]

    def provisioning(self) -> None:
        url = urlsplit(self.device.provisioning_url)
        self.set(AUTOUPDATE, "Download CommonConf", 0, "provisioning url")
        self.set(AUTOUPDATE, "Flash Server IP", url.netloc, "provisioning url")
        # the literal name we publish, not the $mac macro (its case is not documented) [I]
        self.set(AUTOUPDATE, "Flash File Name", url.path.lstrip("/") + f"{self.device.mac}.cfg",
                 "provisioning url")
        self.set(AUTOUPDATE, "Flash Protocol", PROTOCOLS.get(url.scheme.lower(), 5),
                 "provisioning url")
        self.set(AUTOUPDATE, "Flash Mode", 2, "provisioning.resync")  # periodic [I]
        self.set(AUTOUPDATE, "Flash Interval", 24, "provisioning.resync")  # hours [I]
        if self.device.firmware is not None:
            self.set(AUTOUPDATE, "Auto Image Url", self.device.firmware.url, "firmware")
        password = self.params.get("admin_password")
        if password:
            self.set(MMI, "Account1 Name", "admin", "admin_password")
            self.set(MMI, "Account1 Password", password, "admin_password")
            self.set(MMI, "Account1 Level", 10, "admin_password")

    def time_and_language(self) -> None:
        code = self.language()
        if code is not None:
            self.set(PHONE, "Default Language", code, "language")
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.set(PHONE, "Enable SNTP", 1, "ntp.server")
            self.set(PHONE, "SNTP Server", ntp["server"], "ntp.server")
        if ntp.get("server2"):
            self.set(PHONE, "Second SNTP Server", ntp["server2"], "ntp.server2")
        self.timezone()

    def put_timezone(self, name: str) -> None:
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
        self.set(PHONE, "Time Zone", standard // 15, "timezone")
        self.set(PHONE, "Time Zone Name", zone_name(standard), "timezone")
        self.set(PHONE, "DST Type", 0 if rule is None else 1, "timezone")  # 1 = by rule [I]
        if rule is None:
            return
        self.set(PHONE, "DST Rule Mode", 0, "timezone")
        self.set(PHONE, "DST Min Offset", rule.save_minutes, "timezone")
        for label, change, minutes in changes:
            self.set(PHONE, f"DST {label} Mon", change.month, "timezone")
            self.set(PHONE, f"DST {label} Week", change.week, "timezone")
            self.set(PHONE, f"DST {label} Wday", change.weekday, "timezone")
            self.set(PHONE, f"DST {label} Hour", (minutes // 60) % 24, "timezone")

    def features(self) -> None:
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.set(CALL, "P1 CallWaiting", bool(waiting), "call_waiting")  # [V tancredi]
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.set(QOS, "Enable VLAN", 1, "vlan.id")
            self.set(QOS, "VLAN ID", vlan["id"], "vlan.id")
        if vlan.get("pc_id"):
            # 2 = enabled [V tancredi fanvil-X5.tmpl, fusion fanvil/x5u and x3sg EnablePVID]
            self.set(QOS, "Enable PVID", 2, "vlan.pc_id")
            self.set(QOS, "PVID Value", vlan["pc_id"], "vlan.pc_id")

    def lines(self) -> None:
        by_port = self.ports("SIP lines")
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.set(SIP, f"SIP{n} Enable Reg", 0, f"port {n}")
                for key in ("Phone Number", "Display Name", "Sip Name", "Register Addr",
                            "Register User", "Register Pswd", "Proxy Addr"):
                    self.set(SIP, f"SIP{n} {key}", "", f"port {n}")
            else:
                self.line(n, assigned)

    def line(self, n: int, line: LineInput) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}

        def put(key: str, value: Any, param: str) -> None:
            self.set(SIP, f"SIP{n} {key}", value, f"{param} {where}")

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
        codecs = self.line_codecs(line)
        if codecs is not None:
            names = self.codec_choice(codecs, CODECS, f" {where}", "Fanvil phones")
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
            self.set(DSSKEY, f"Fkey{k} Type", code, param)
            self.set(DSSKEY, f"Fkey{k} Value", text, param)
            self.set(DSSKEY, f"Fkey{k} Title", key.get("label") or "", param)

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        match = RAW_KEY.match(key)
        if not match or match.group(2) != match.group(2).strip():
            self.problem(f"raw.fanvil: {key!r} is not 'MODULE NAME/Key Name' (e.g. "
                         "'PHONE FEATURE MODULE/LCD Title'; no ':' in the key)")
            return None
        module, name = match.groups()
        return kit.Setting(name, self.text(value), f"raw.fanvil.{key}", module)


class Fanvil(kit.VendorBase):
    name = "fanvil"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = False
    supported = kit.DESK_PHONE
    notes = NOTES
    redirect_kinds = ()  # FDPS is not implemented in provctl
    builder = Builder
    versions = VERSIONS

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """`<mac>.cfg` in the bootstrap directory, what a factory phone asks for there [V
        reference §6]: the Flash keys name the phone's own file (as its own file does), checked
        every hour until that file sets its daily interval [V tancredi fanvil-X5.tmpl: Flash
        Interval 1 until provisioning is complete]. `DHCP Option` 0: the phone asks DHCP first,
        before its flash [V Fanvil i23 manual p. 47: "DHCP option -> PnP server -> Phone
        Flash"], and the option names the bootstrap directory; tancredi writes 0 [V
        fanvil-X5.tmpl] (its meaning, "do not take the server from DHCP", is I); a factory reset
        restores it. SNTP when set."""
        url = urlsplit(phone.provisioning_url)
        update = [("Download CommonConf", "0"), ("Flash Server IP", url.netloc),
                  ("Flash File Name", url.path.lstrip("/") + f"{phone.mac}.cfg"),
                  ("Flash Protocol", str(PROTOCOLS.get(url.scheme.lower(), 5))),
                  ("Flash Mode", "2"), ("Flash Interval", "1"), ("DHCP Option", "0")]
        time = ([("Enable SNTP", "1"), ("SNTP Server", phone.ntp_server)]
                if phone.ntp_server else [])
        return (OutputFile(f"{phone.mac}.cfg", "fanvil/mac.cfg.j2",
                           file_context([(PHONE, time), (AUTOUPDATE, update)])),)


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
    match = match_user_agent(text, "Fanvil", _UA)
    if match is None:
        return None
    model = re.sub(r"\s+", "-", match["model"])
    return UserAgent("fanvil", model, match["firmware"], mac12(match["mac"]))
