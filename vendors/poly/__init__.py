"""Poly / Polycom (VVX, Edge E; UC Software): what is true of the vendor, and its mapping.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/poly.md):

- `<mac>.cfg` (12 lowercase hex digits): the *master* configuration file the phone requests
  first (before the shared default `000000000000.cfg`, which provctl never writes: its content
  would differ per phone). `<APPLICATION APP_FILE_PATH=... CONFIG_FILES=.../>`.
- `<mac>-provctl.cfg`: the phone's settings, named in CONFIG_FILES. Never `<mac>-phone.cfg`
  or `<mac>-web.cfg`: those are the files the phone itself writes with the user's UI changes.

XML, rendered with autoescape; every parameter is an *attribute* of `<polycomConfig>`, so
`& < > "` are escaped and a line break (attribute-value normalisation turns it into a space)
or a control character is refused by `build()`, naming the parameter.

Conventions (documented for operators):

- Registration N = port N. Registrations of the model without a line are cleared (address,
  credentials, label and server set to ""), so an account removed from git stops registering
  even if the phone merged it earlier [I: UC Software rebuilds its configuration from the files
  on each update, so this is belt and braces].
- `device.*` parameters only apply with `device.set="1"` and their own `.set="1"` [V].
- Provisioning server: `device.prov.serverName` = the phone's directory URL (scheme included)
  and `device.prov.serverType` = 2 (HTTP) / 3 (HTTPS) [I: codes unverified; the URL carries the
  scheme too]. The same directory URL is what the Poly ZTP profile points at (`redirect_url`).
- Nightly resync: `prov.polling.mode="random"` between `provisioning.resync.start` and `.end`
  [I: the literal "random" is from the admin guide's mode names]. Poly always checks on boot,
  so `resync.on_boot` has no key.
- Firmware: `APP_FILE_PATH` is the firmware URL when a version is pinned, else the default
  `sip.ld`, which provctl never publishes, so the phone keeps its software (issue 15.13).
- User-owned parameters: Poly has no per-parameter flag; UI changes are kept by the phone in its
  override files and win over provisioning anyway. User-owned parameters are simply not written.
- Keys: `line_keys` of type `blf` / `park` become `attendant.resourceList.K.*` (the slot is
  watched; wazo does the same for park). `line` and `none` need no key (registrations get line
  keys by themselves). `speed_dial` and `dtmf` need contact-directory entries / enhanced
  feature keys and are refused by `build()` naming the key.
- Not expressible, documented (`NOTES`): `ntp.server2`, `vlan.priority`, `vlan.pc_id`,
  `soft_keys`, `expansion_keys`, `screensaver`.
- Codecs: `voice.codecPref.*` is phone-wide, so every line of a phone must want the same list
  (else `build()` says so); unlisted codecs get priority 0 (off) [I].
- `raw` keys are parameter names, written as attributes last; a raw key equal to a generated
  one replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from vendors import kit, timezones
from vendors.base import LineInput, ModelInfo, OutputFile, UserAgent
from vendors.common import get as _get
from vendors.common import mac12, match_user_agent

# name: (registrations, family) [V wazo v6_4_6/plugin-info for VVX; Edge E counts I: datasheets]
_MODELS: dict[str, tuple[int, str]] = {
    "VVX101": (1, "vvx"), "VVX150": (2, "vvx"), "VVX201": (2, "vvx"), "VVX250": (4, "vvx"),
    "VVX301": (6, "vvx"), "VVX311": (6, "vvx"), "VVX350": (6, "vvx"), "VVX401": (12, "vvx"),
    "VVX411": (12, "vvx"), "VVX450": (12, "vvx"), "VVX501": (12, "vvx"), "VVX601": (16, "vvx"),
    "EdgeE100": (2, "edge"), "EdgeE220": (4, "edge"), "EdgeE300": (8, "edge"),
    "EdgeE320": (8, "edge"), "EdgeE350": (8, "edge"), "EdgeE400": (16, "edge"),
    "EdgeE450": (16, "edge"), "EdgeE500": (16, "edge"), "EdgeE550": (16, "edge"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family)
    for name, (lines, family) in _MODELS.items()
}

# ISO 639-1 code -> lcl.ml.lang [V wazo _LOCALE; others I: same naming scheme]
LANGUAGES = {
    "en": "English_United_States",
    "de": "German_Germany",
    "fr": "French_France",
    "it": "Italian_Italy",
    "es": "Spanish_Spain",
    "nl": "Dutch_Netherlands",
    "pt": "Portuguese_Portugal",
}

# neutral codec -> voice.codecPref.<name> [V reference]; opus/ilbc/g726/gsm names unverified
CODECS = {"g722": "G722", "pcmu": "G711_Mu", "pcma": "G711_A", "g729": "G729_AB"}

TRANSPORTS = {"udp": "UDPOnly", "tcp": "TCPOnly", "tls": "TLS"}
SERVER_TYPES = {"http": "2", "https": "3"}  # [I] device.prov.serverType codes

NOTES = {
    "ntp.server2": "one SNTP server only",
    "vlan.priority": "no key known",
    "vlan.pc_id": "no key known",
    "line_keys": "blf and park only (attendant resource list)",
}

PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
MAX_PATH = 255  # APP_FILE_PATH and each CONFIG_FILES entry [V]
# Without a pin, APP_FILE_PATH names the default application file, as every master file in the
# sources does [V wazo plugins/wazo_polycom/v6_4_6/var/tftpboot/000000000000.cfg, fusion
# polycom/*/{$mac}.cfg: "sip.ld"]. provctl never publishes one in the phone's directory, so the
# phone finds none and keeps the software it runs [I: an empty path is documented nowhere].
UNPINNED_APP = "sip.ld"
VERSIONS = kit.VersionScheme("Poly UC Software version",
                             "<major>.<minor>.<maintenance>[.<build>], e.g. 6.4.6.2390",
                             re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?$"))


def config_file(mac: str) -> str:
    return f"{mac}-provctl.cfg"


class Builder(kit.Builder):
    label = "Poly"
    carrier = "a Poly parameter (an XML attribute)"
    xml = True
    languages = LANGUAGES

    def steps(self) -> None:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.phone_codecs()
        self.registrations()
        if self.device.lines:
            self.keys()

    def files(self) -> list[OutputFile]:
        device = self.device
        return [
            OutputFile(f"{device.mac}.cfg", "poly/master.cfg.j2", {
                "app_file_path": device.firmware.url if device.firmware else UNPINNED_APP,
                "config_files": config_file(device.mac),
            }),
            OutputFile(config_file(device.mac), "poly/mac-provctl.cfg.j2", {
                "mac": device.mac, "model": device.model.name,
                "settings": [{"key": s.key, "value": s.value} for s in self.settings],
            }),
        ]

    def values(self) -> list[tuple[str, str, str]]:
        values = [(s.param, s.key, s.value) for s in self.settings]
        if self.device.firmware is not None:
            values.append(("firmware", "APP_FILE_PATH", self.device.firmware.url))
        return values

    def value_problems(self) -> list[str]:
        out = []
        firmware = self.device.firmware
        if firmware is not None and len(firmware.url) > MAX_PATH:
            out.append(f"firmware: URL longer than {MAX_PATH} characters, which APP_FILE_PATH "
                       "cannot carry")
        return out + super().value_problems()

    def provisioning(self) -> None:
        url = self.device.provisioning_url
        scheme = urlsplit(url).scheme.lower()
        self.put("device.set", "1", "provisioning url")
        self.put("device.prov.serverType.set", "1", "provisioning url")
        self.put("device.prov.serverType", SERVER_TYPES.get(scheme, "3"), "provisioning url")
        self.put("device.prov.serverName.set", "1", "provisioning url")
        self.put("device.prov.serverName", url, "provisioning url")
        resync = _get(self.params, "provisioning", "resync") or {}
        self.put("prov.polling.enabled", "1", "provisioning.resync")
        self.put("prov.polling.mode", "random", "provisioning.resync")  # [I] literal
        self.put("prov.polling.period", "86400", "provisioning.resync")
        self.put("prov.polling.time", resync.get("start") or "02:00", "provisioning.resync.start")
        self.put("prov.polling.timeRandomEnd", resync.get("end") or "04:00",
                 "provisioning.resync.end")
        password = self.params.get("admin_password")
        if password:
            self.put("device.auth.localAdminPassword.set", "1", "admin_password")
            self.put("device.auth.localAdminPassword", password, "admin_password")

    def time_and_language(self) -> None:
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put("tcpIpApp.sntp.address.overrideDHCP", "1", "ntp.server")
            self.put("tcpIpApp.sntp.address", ntp["server"], "ntp.server")
        self.timezone()
        name = self.language()
        if name is not None:
            self.put("lcl.ml.lang", name, "language")

    def put_timezone(self, name: str) -> None:
        rule = timezones.dst_rule(name)
        standard = timezones.clock(name).standard_minutes
        base = "tcpIpApp.sntp."
        self.put(base + "gmtOffset.overrideDHCP", "1", "timezone")
        self.put(base + "gmtOffset", standard * 60, "timezone")  # seconds [V]
        if rule is None:
            self.put(base + "daylightSavings.enable", "0", "timezone")
            return
        for change in (rule.start, rule.end):
            if change.minutes % 60:
                raise ValueError(f"time zone {name!r} switches at {change.minutes // 60}:"
                                 f"{change.minutes % 60:02d}; Poly takes whole hours")
        self.put(base + "daylightSavings.enable", "1", "timezone")
        self.put(base + "daylightSavings.fixedDayEnable", "0", "timezone")
        for label, change in (("start", rule.start), ("stop", rule.end)):
            p = f"{base}daylightSavings.{label}."
            self.put(p + "month", change.month, "timezone")
            self.put(p + "dayOfWeek", change.weekday + 1, "timezone")  # 1 = Sunday [V]
            self.put(p + "dayOfWeek.lastInMonth", "1" if change.last else "0", "timezone")
            if not change.last:
                self.put(p + "date", (change.week - 1) * 7 + 1, "timezone")  # [V wazo]
            self.put(p + "time", change.minutes // 60, "timezone")

    def network_and_features(self) -> None:
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.put("device.net.vlanId.set", "1", "vlan.id")
            self.put("device.net.vlanId", vlan["id"], "vlan.id")
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.put("call.callWaiting.enable", bool(waiting), "call_waiting")

    def registrations(self) -> None:
        by_port = self.ports("registrations")
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                # [I] UC Software rebuilds its configuration from the files, so this is belt
                # and braces: a registration removed from git can never linger
                for field in ("address", "auth.userId", "auth.password", "label",
                              "displayName", "server.1.address"):
                    self.put(f"reg.{n}.{field}", "", f"port {n}")
            else:
                self.registration(n, assigned)

    def registration(self, n: int, line: LineInput) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}
        p = f"reg.{n}."

        def put(key: str, value: Any, param: str) -> None:
            self.put(p + key, value, f"{param} {where}")

        put("address", line.extension, "extension")
        put("auth.userId", line.auth_user, "auth_user")
        put("auth.password", line.password, "password")
        put("label", line.label, "label")
        put("displayName", line.display_name, "display_name")
        put("server.1.address", sip.get("server") or "", "sip.server")
        if sip.get("port"):
            put("server.1.port", sip["port"], "sip.port")
        if sip.get("transport"):
            put("server.1.transport", TRANSPORTS[sip["transport"]], "sip.transport")
        if sip.get("expires"):
            put("server.1.expires", sip["expires"], "sip.expires")
        if sip.get("outbound_proxy"):
            put("outboundProxy.address", sip["outbound_proxy"], "sip.outbound_proxy")
            port = sip.get("outbound_proxy_port") or sip.get("port")
            if port:
                put("outboundProxy.port", port, "sip.outbound_proxy_port")
            if sip.get("transport"):
                put("outboundProxy.transport", TRANSPORTS[sip["transport"]], "sip.transport")

    def phone_codecs(self) -> None:
        """voice.codecPref.* is phone-wide [V key names]: every line must want the same list."""
        wanted = self.params.get("codecs")
        where = ""
        lists = {}
        for line in self.device.lines:
            codecs = (line.params or {}).get("codecs")
            lists[line.account] = list(codecs if codecs is not None else wanted or [])
        if len({tuple(v) for v in lists.values()}) > 1:
            self.problem(
                "codecs: Poly phones take one codec preference list for all registrations, "
                "but the lines differ (" + "; ".join(f"{a}: {', '.join(v)}"
                                                     for a, v in lists.items()) + ")")
            return
        if lists:
            wanted = next(iter(lists.values()))
            where = " of " + ", ".join(lists)
        if wanted is not None:
            self.codecs(list(wanted), where)

    def codecs(self, codecs: list[str], where: str) -> None:
        enabled = self.codec_choice(codecs, CODECS, where, "Poly phones")
        for priority, name in enumerate(enabled, start=1):
            self.put(f"voice.codecPref.{name}", priority, f"codecs{where}")
        for name in CODECS.values():
            if name not in enabled:
                self.put(f"voice.codecPref.{name}", "0", f"codecs{where}")  # 0 = off [I]

    def keys(self) -> None:
        keys = self.params.get("line_keys") or []
        if "line_keys" in self.owned:
            return
        for k, key in enumerate(keys, start=1):
            param = f"line_keys[{k}]"
            kind = key.get("type") or "none"
            if kind in ("line", "none"):
                continue
            if kind not in ("blf", "park"):
                self.problem(f"{param}: key type {kind!r} needs a Poly contact directory or "
                             "enhanced feature key; not supported")
                continue
            base = f"attendant.resourceList.{k}."
            self.put(base + "address", key.get("value") or "", param)
            self.put(base + "label", key.get("label") or "", param)

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        if not PARAM_NAME.match(key):
            self.problem(f"raw.poly: {key!r} is not a Poly parameter name (letters, digits and "
                         "_ . - only)")
            return None
        return kit.Setting(key, self.text(value), f"raw.poly.{key}")


class Poly(kit.VendorBase):
    name = "poly"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = True
    supported = kit.DESK_PHONE
    notes = NOTES
    # Redirect service: Poly ZTP. Its profiles hold a server address: the phone's directory,
    # where it finds <mac>.cfg (reference rps-apis.md §3.1).
    redirect_kinds = ("poly-ztp",)
    builder = Builder
    versions = VERSIONS

    def redirect_url(self, provisioning_url: str, mac: str) -> str:
        """The URL to register at the redirect service for this phone."""
        return provisioning_url

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        major = self.firmware_version(version)[0]
        # VVX runs UC Software 5.x/6.x; Edge E runs 8.x and later [I]
        if model.family == "vvx" and major > 6:
            return f"UC Software {version} is not for {model.name} (VVX runs 5.x and 6.x)"
        if model.family == "edge" and major < 8:
            return f"UC Software {version} is not for {model.name} (Edge E runs 8.x or later)"
        return None


VENDOR = Poly()


# --- User-Agent -------------------------------------------------------------------------------
# "FileTransport PolycomVVX-VVX_450-UA/5.9.1.0615 Type/Application" [V wazo
# plugins/wazo_polycom/common/common.py]; newer firmware adds the serial, which is the MAC:
# "FileTransport PolyCCX-CCX_500-UA/9.4.1.0508 (SN:64167f9f4c90) Type/Application"; Edge E:
# "FileTransport PolyEdge-Edge_E450-UA/8.0.0.15602 Type/Application" [I: public provisioning
# code, not a Poly document]. During boot the *updater* asks first and reports its own version
# (wazo: "the version number will either be the BootROM version … or the SIP application
# version"), so the firmware is taken only from "Type/Application" requests [I].
_UA = re.compile(r"^FileTransport\s+Poly(?:com)?[A-Za-z]+-(?P<model>[A-Za-z0-9_]+?)-UA/"
                 r"(?P<firmware>\d+(?:\.\d+)+)(?P<rest>.*)$")
_UA_SERIAL = re.compile(r"\(SN:([0-9A-Fa-f]{12})\)")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Poly phone's model, firmware and MAC from its User-Agent; None if not Poly."""
    match = match_user_agent(text, "FileTransport", _UA)
    if match is None:
        return None
    rest = match["rest"]
    serial = _UA_SERIAL.search(rest)
    firmware = match["firmware"] if "Type/Application" in rest else None
    return UserAgent("poly", match["model"].replace("_", ""), firmware,
                     mac12(serial.group(1)) if serial else None)
