"""Snom (D1xx/D3xx/D7xx/D8xx): what is true of the vendor, and its parameter mapping.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/snom.md):

- `<MAC>.xml` (12 uppercase hex digits): `<settings>` with `<phone-settings>` and
  `<functionKeys>`. XML, rendered with autoescape, so `& < > "` in values are escaped.
- `snom<MODEL>-firmware.xml`, only when a firmware version is pinned:
  `<firmware-settings><firmware>URL</firmware></firmware-settings>`, referenced by
  `firmware_status` with `update_policy auto_update`. With "installed firmware" neither the file
  nor any firmware key is written.

As for Yealink, the mapping is done here as an ordered list of settings
`{name, idx, perm, value}` and function keys `{idx, context, label, perm, value}`; the template
only lays them out.

Conventions (documented for operators):

- `perm="R"` (read-only for the user) for everything the provider controls. A user-owned
  parameter (`RenderInput.user_owned`: `line_keys`, `language`, `call_waiting`) is written with
  `perm="!"`: our value is the default, and a change the user makes survives re-provisioning.
- Identity N = port N. Identities of the model without a line are cleared: `user_active` off and
  the identity/credential settings empty.
- Transport and outbound proxy go in `user_outbound` = `host:port;transport=udp|tcp|tls` (the
  outbound proxy when set, else the SIP server); `user_host` = server[:port].
- Function keys: `line_keys[K]` → `<fkey idx="K-1">`; `context="active"` for keys on line 1,
  else the identity number; values `line`, `blf <v>`, `speed <v>`, `dest <v>`, `orbit <v>`
  (a park slot: Snom has no park type), `dtmf <v>`, `none`. Keys are personal: written only
  when the phone has a line.
- `raw` keys are setting names, written as `<name perm="R">value</name>`; a key written
  `name[N]` becomes `<name idx="N" perm="R">`. A raw key equal to a generated (name, idx)
  replaces it. Booleans become on/off.
- `ntp.server2`, `provisioning.resync.on_boot` (Snom always fetches on boot [I]),
  `soft_keys`, `expansion_keys` and `screensaver` have no mapping and are not in `supported`
  (server2 is silently dropped: Snom takes one NTP server [I]).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
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
from vendors.common import mac12, user_agent_text

# name: identities [V wazo v10_1_215_13/plugin-info]
_MODELS: dict[str, int] = {
    "D713": 6, "D715": 4, "D717": 6, "D735": 12, "D785": 12,
    "D810": 12, "D812": 12, "D815": 12, "D862": 8, "D865": 12, "D892": 12,
    "D335": 12, "D385": 12, "D140": 2, "D150": 2,
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines) for name, lines in _MODELS.items()
}

# ISO 639-1 code -> `language` / `web_language` value [I: tancredi snom.macros]
LANGUAGES = {
    "en": "English",
    "de": "Deutsch",
    "fr": "Français",
    "it": "Italiano",
    "es": "Español",
    "nl": "Nederlands",
    "pt": "Português",
    "da": "Dansk",
    "sv": "Svenska",
    "no": "Norsk",
    "fi": "Suomi",
    "cs": "Čeština",
    "tr": "Türkçe",
}

# neutral codec -> codec_priority_list name; ilbc has none [I]
CODECS = {
    "g722": "g722",
    "pcmu": "pcmu",
    "pcma": "pcma",
    "g729": "g729",
    "g726": "g726-32",
    "gsm": "gsm",
    "opus": "opus",
}

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

# neutral key type -> fkey value prefix. A park slot is watched as a park orbit: Snom has no
# "park" type [V wazo plugins/wazo_snom/common/common.py _add_fkeys "orbit" (for the 7xx and
# D765; wazo falls back to a speed dial on others, the orbit type there is I)]
KEY_TYPES = {"line": "line", "blf": "blf", "speed_dial": "speed", "park": "orbit",
             "dtmf": "dtmf", "none": "none"}

PROVIDER, USER = "R", "!"  # perm flags: read-only for the user / default the user may change

SETTING_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)(?:\[(\d+)\])?$")
VERSIONS = kit.VersionScheme("Snom firmware version",
                             "<major>.<minor>.<patch>.<build>, e.g. 10.1.54.13",
                             re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$"))


@dataclass(frozen=True)
class FunctionKey:
    idx: int
    context: str
    label: str
    perm: str
    value: str
    param: str


def firmware_file(model: str) -> str:
    return f"snom{model}-firmware.xml"


class Builder(kit.Builder):
    label = "Snom"
    carrier = "a Snom setting"
    xml = True
    true, false = "on", "off"
    languages = LANGUAGES

    def __init__(self, device: RenderInput):
        super().__init__(device)
        self.fkeys: list[FunctionKey] = []

    def perm(self, param: str) -> str:
        return USER if param in self.owned else PROVIDER

    def put(self, key: str, value: Any, param: str, *, idx: int | None = None,
            flag: str = "", section: str | None = None) -> None:
        super().put(key, value, param, idx=idx, flag=flag or self.perm(param.split()[0]))

    def steps(self) -> None:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.identities()
        if self.device.lines:
            self.keys()

    def files(self) -> list[OutputFile]:
        device = self.device
        out = [OutputFile(f"{device.mac.upper()}.xml", "snom/mac.xml.j2", {
            "mac": device.mac.upper(),
            "model": device.model.name,
            "settings": [{"name": s.key, "idx": s.idx, "perm": s.flag, "value": s.value}
                         for s in self.settings],
            "function_keys": [{"idx": k.idx, "context": k.context, "label": k.label,
                               "perm": k.perm, "value": k.value} for k in self.fkeys],
        })]
        if device.firmware is not None:
            out.append(OutputFile(firmware_file(device.model.name), "snom/firmware.xml.j2",
                                  {"firmware_url": device.firmware.url}))
        return out

    def values(self) -> list[tuple[str, str, str]]:
        values = [(s.param, s.key, s.value) for s in self.settings]
        values += [(k.param, "fkey", k.value) for k in self.fkeys]
        values += [(k.param, "fkey label", k.label) for k in self.fkeys]
        if self.device.firmware is not None:
            values.append(("firmware", "firmware", self.device.firmware.url))
        return values

    def provisioning(self) -> None:
        url = self.device.provisioning_url
        # The literal file name, not Snom's "{mac}" placeholder: we publish <MAC>.xml in upper
        # case and the case the phone substitutes is not documented [I] (server is case-sensitive).
        self.put("setting_server", f"{url}{self.device.mac.upper()}.xml", "provisioning url")
        resync = _get(self.params, "provisioning", "resync") or {}
        self.put("prov_polling_enabled", "on", "provisioning.resync")
        self.put("prov_polling_mode", "random", "provisioning.resync")  # [I]
        self.put("prov_polling_period", 86400, "provisioning.resync")
        self.put("prov_polling_time", resync.get("start") or "02:00",
                 "provisioning.resync.start")
        self.put("prov_polling_time_rand_end", resync.get("end") or "04:00",
                 "provisioning.resync.end")
        if self.device.firmware is not None:
            self.put("update_policy", "auto_update", "firmware")
            self.put("firmware_status", url + firmware_file(self.device.model.name),
                     "firmware")
        password = self.params.get("admin_password")
        if password:
            for name in ("admin_mode_password", "admin_mode_password_confirm", "http_pass"):
                self.put(name, password, "admin_password", flag=PROVIDER)
            self.put("http_user", "admin", "admin_password", flag=PROVIDER)

    def time_and_language(self) -> None:
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put("ntp_server", ntp["server"], "ntp.server")
        self.timezone()
        # a user-owned language is written as a default the user may change (perm "!")
        name = self.language(skip_owned=False)
        if name is not None:
            self.put("language", name, "language")
            self.put("web_language", name, "language")

    def put_timezone(self, name: str) -> None:
        self.put("timezone", timezones.snom(name), "timezone")

    def network_and_features(self) -> None:
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.put("vlan_id", vlan["id"], "vlan.id")
            if vlan.get("priority") is not None:
                self.put("vlan_qos", vlan["priority"], "vlan.priority")
        if vlan.get("pc_id"):
            self.put("vlan_pc_id", vlan["pc_id"], "vlan.pc_id")
            self.put("vlan_port_tagging", "on", "vlan.pc_id")  # [I]
        waiting = self.params.get("call_waiting")
        if waiting is not None:
            self.put("call_waiting", bool(waiting), "call_waiting")  # [I]

    def identities(self) -> None:
        by_port = self.ports("identities")
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.put("user_active", "off", f"port {n}", idx=n, flag=PROVIDER)
                for name in ("user_idle_text", "user_realname", "user_name", "user_pname",
                             "user_pass", "user_host", "user_outbound"):
                    self.put(name, "", f"port {n}", idx=n, flag=PROVIDER)
            else:
                self.identity(n, assigned)

    def identity(self, n: int, line: LineInput) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}  # resolved for this line: every layer down to the line

        def put(name: str, value: Any, param: str) -> None:
            self.put(name, value, f"{param} {where}", idx=n, flag=PROVIDER)

        put("user_active", "on", "account")
        put("user_idle_text", line.label, "label")
        put("user_realname", line.display_name, "display_name")
        put("user_name", line.extension, "extension")
        put("user_pname", line.auth_user, "auth_user")
        put("user_pass", line.password, "password")
        server = str(sip.get("server") or "")
        put("user_host", f"{server}:{sip['port']}" if sip.get("port") else server, "sip.server")
        transport = sip.get("transport")
        proxy = sip.get("outbound_proxy")
        if proxy:
            port = sip.get("outbound_proxy_port") or sip.get("port")
            outbound = f"{proxy}:{port}" if port else str(proxy)
        elif transport:
            port = sip.get("port") or DEFAULT_PORTS[transport]
            outbound = f"{server}:{port}"
        else:
            outbound = ""
        if outbound and transport:
            outbound += f";transport={transport}"
        put("user_outbound", outbound, "sip.outbound_proxy")
        if sip.get("expires"):
            put("user_expiry", sip["expires"], "sip.expires")  # [I]
        codecs = self.line_codecs(line)
        if codecs is not None:
            names = self.codec_choice(codecs, CODECS, f" {where}", "Snom phones")
            put("codec_priority_list", ",".join([*names, "telephone-event"]), "codecs")

    def keys(self) -> None:
        keys = self.params.get("line_keys") or []
        perm = self.perm("line_keys")
        for k, key in enumerate(keys, start=1):
            param = f"line_keys[{k}]"
            kind = key.get("type") or "none"
            if kind not in KEY_TYPES:
                self.problem(f"{param}: key type {kind!r} is not supported")
                continue
            value = " ".join(filter(None, [KEY_TYPES[kind], str(key.get("value") or "")]))
            line = int(key.get("line") or 1)
            context = "active" if line == 1 else str(line)
            self.fkeys.append(FunctionKey(k - 1, context, str(key.get("label") or ""), perm,
                                          value, param))

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        match = SETTING_NAME.match(key)
        if not match:
            self.problem(f"raw.snom: {key!r} is not a setting name (name or name[idx], "
                         "letters, digits and _ . -)")
            return None
        idx = int(match.group(2)) if match.group(2) is not None else None
        return kit.Setting(match.group(1), self.text(value), f"raw.snom.{key}", idx=idx,
                           flag=PROVIDER)


class Snom(kit.VendorBase):
    name = "snom"
    redirect_kinds = ("snom-sraps",)
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = True
    supported = kit.DESK_PHONE
    builder = Builder
    versions = VERSIONS

    def redirect_url(self, directory_url: str, mac: str) -> str:
        """SRAPS hands the phone a settings URL, not a directory: our per-MAC file."""
        return f"{directory_url}{mac.upper()}.xml"

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """For a network that hands out the bootstrap URL by DHCP instead of SRAPS: `<MAC>.xml`
        in the bootstrap directory (the DHCP value names it, vendors/zerotouch.py) with
        `setting_server` = the phone's own file, polled every minute until that file sets the
        nightly poll (tancredi writes rel / 60 s until provisioning is complete [V
        data/templates/snom.tmpl]). Whether a Snom phone prefers the DHCP value at its next
        boot over the setting_server it stored is not known [I]: docs/zero-touch.md."""
        mac = phone.mac.upper()
        settings = [{"name": "setting_server", "idx": None, "perm": PROVIDER,
                     "value": f"{phone.provisioning_url}{mac}.xml"},
                    {"name": "prov_polling_enabled", "idx": None, "perm": PROVIDER,
                     "value": "on"},
                    {"name": "prov_polling_mode", "idx": None, "perm": PROVIDER, "value": "rel"},
                    {"name": "prov_polling_period", "idx": None, "perm": PROVIDER,
                     "value": "60"}]
        if phone.ntp_server:
            settings.append({"name": "ntp_server", "idx": None, "perm": PROVIDER,
                             "value": phone.ntp_server})
        return (OutputFile(f"{mac}.xml", "snom/mac.xml.j2", {
            "mac": mac, "model": phone.model.name, "settings": settings,
            "function_keys": []}),)


VENDOR = Snom()


# --- User-Agent -------------------------------------------------------------------------------
# "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g9ba52f5 000413922D24 SXM:0
# UXM:0)" and, with a build date in parentheses, "… snomD785-SIP 10.1.169.16
# 2010.12-00001-gd311851f1 (Feb 25 2019 - 14:19:43) 00041396D9B4 SXM:0 UXM:0 UXMC:0)" [V wazo
# plugins/wazo_snom/common/common.py; fusion app/provision/index.php]. Firmware 8.x sends no MAC
# ("snom710-SIP 8.7.3.19 1.1.5-IFX-05.01.12") [V wazo]. The MAC is the first whole 12-hex-digit
# word after the version [I: wazo takes the last word before the next blank]. DECT bases:
# "Mozilla/4.0 (compatible; Snom M900 05.20.0001 000413b60680)" [V wazo common_dect].
_UA = re.compile(r"\bsnom(?P<model>[A-Za-z0-9]+)-SIP\s+(?P<firmware>\d+(?:\.\d+)+)(?P<rest>.*)$")
_UA_DECT = re.compile(r"\b[sS]nom\s?(?P<model>M\d{3})\s+(?P<firmware>[\d.]+)(?P<rest>.*)$")
_UA_MAC = re.compile(r"(?<![0-9A-Za-z])([0-9A-Fa-f]{12})(?![0-9A-Za-z])")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Snom phone's model, firmware and MAC from its User-Agent; None if not Snom."""
    ua = user_agent_text(text)
    if ua is None or "snom" not in ua.lower():
        return None
    match = _UA.search(ua) or _UA_DECT.search(ua)
    if match is None:
        return None
    mac = _UA_MAC.search(match["rest"])
    return UserAgent("snom", match["model"], match["firmware"],
                     mac12(mac.group(1)) if mac else None)
