"""Cisco MPP (68xx / 78xx / 88xx, 3PCC firmware): what is true of the vendor, and its mapping.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/cisco.md):

- `<mac>.xml` (12 lowercase hex digits, the `$MA` macro): an XML `<flat-profile>` with one
  element per parameter. `Profile_Rule` inside it is the literal URL of this file, so the phone
  keeps resyncing from it once it has fetched it (via DHCP option 150/160, the web UI or a
  redirect that set `Profile_Rule` to `<directory>/$MA.xml`).
- `/$PSN.xml` (e.g. `8841-3PCC.xml`), what a factory phone asks for at the root of the server
  its DHCP option names, is `VENDOR.bootstrap_files()`: it sends the phone on to `$MA.xml` in a
  given directory through `Profile_Rule` and `Profile_Rule_B` (issue 15.14). In a customer's
  bootstrap directory (docs/zero-touch.md) that `$MA.xml` is `VENDOR.bootstrap_phone_files()`,
  which points the rules at the phone's own file; this file then clears rules B and C.

XML, rendered with autoescape; UTF-8 only [V]. Duplicate elements: the last one wins [V], so
`raw` keys replace generated ones (never duplicated). An empty value is `<X ua="na"></X>`, never
self-closing, the only form surely taken as empty (issue 15.4). A line break or control character
in a value is refused by `build()`, naming the parameter.

Conventions (documented for operators):

- User-owned mechanism: the `ua` attribute. Everything provctl writes is `ua="na"` (secrets,
  provisioning, firmware) or `ua="ro"` (the user sees it but cannot change it). `ua` does not
  keep a user's value once the profile carries one [V], and the `preserve-value` attribute that
  would is [I]; so a *user-owned* parameter is not written at all (unspecified parameters are
  left unchanged [V]) and the user's own value survives.
- Line N = port N. Lines of the model without an account are cleared: `Line_Enable_N_` No and
  the identity/credential elements empty, because the phone keeps whatever an earlier profile
  set [V: unspecified parameters are left unchanged].
- Codecs: `Preferred_Codec_N_`, `Second_…`, `Third_…`; a list of more than three codecs cannot be
  ordered on the phone and is refused by `build()`. Codecs left out stay allowed at lower
  preference (`Use_Pref_Codec_Only_N_` No).
- Time zone: `Time_Zone` = `GMT±HH:MM` (standard offset) and `Daylight_Saving_Time_Rule` =
  `start=M/D/W/H;end=M/D/W/H;save=H` with D = -1 (last) or the first day of the n-th week,
  W 1 = Monday … 7 = Sunday [V example].
- Language: only English (`English-US`, `en-US`); other languages need a dictionary server and
  are refused by `build()`.
- Keys (`line_keys[K]` → line key K): `line` → `Extension_K_` = line; `blf`, `speed_dial` →
  `Extension_K_` Disabled + `Extended_Function_K_` (`fnc=blf+sd+cp;sub=…@$PROXY;nme=…` /
  `fnc=sd;ext=…@$PROXY;nme=…` [I syntax]); `none` → `Extension_K_` Disabled. `park` and `dtmf`
  are refused by `build()` (no verified syntax).
- Resync: on reset (`provisioning.resync.on_boot`), and daily at `start` with a random delay up
  to `end` (`Resync_At__HHmm_`, `Resync_At_Random_Delay` in seconds).
- Not expressible, documented (`NOTES`): `vlan.priority`, `soft_keys`, `expansion_keys`,
  `screensaver`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vendors import kit, timezones
from vendors.base import BootstrapInput, LineInput, ModelInfo, OutputFile, UserAgent
from vendors.common import get as _get
from vendors.common import mac12, match_user_agent

# name: (lines, family) [I: datasheet line counts per the reference — verify]
_MODELS: dict[str, tuple[int, str]] = {
    "CP-6821-3PCC": (2, "68xx"), "CP-6841-3PCC": (4, "68xx"), "CP-6851-3PCC": (4, "68xx"),
    "CP-6861-3PCC": (4, "68xx"), "CP-6871-3PCC": (6, "68xx"),
    "CP-7811-3PCC": (1, "78xx"), "CP-7821-3PCC": (2, "78xx"), "CP-7841-3PCC": (4, "78xx"),
    "CP-7861-3PCC": (16, "78xx"),
    "CP-8811-3PCC": (10, "88xx"), "CP-8841-3PCC": (10, "88xx"), "CP-8845-3PCC": (10, "88xx"),
    "CP-8851-3PCC": (10, "88xx"), "CP-8861-3PCC": (10, "88xx"), "CP-8865-3PCC": (10, "88xx"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family, keys=lines)
    for name, (lines, family) in _MODELS.items()
}

# ISO 639-1 code -> (Language_Selection, Locale); others need a dictionary server
LANGUAGES = {"en": ("English-US", "en-US")}

# neutral codec -> codec name in Preferred_Codec_N_ [V reference; OPUS/iLBC I]
CODECS = {"pcmu": "G711u", "pcma": "G711a", "g729": "G729a", "g722": "G722", "opus": "OPUS",
          "ilbc": "iLBC"}
CODEC_KEYS = ("Preferred_Codec_{}_", "Second_Preferred_Codec_{}_", "Third_Preferred_Codec_{}_")

TRANSPORTS = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}

NA, RO = "na", "ro"  # ua: no access / read-only for the user

NOTES = {
    "vlan.priority": "no key known",
    "codecs": "at most three, in order",
    "language": "English only (others need a dictionary server)",
    "line_keys": "line, blf, speed_dial, none",
    "user_owned": "not written (ua cannot keep a user's value)",
}

ELEMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
# sip78xx.11-0-0MPP-7, 11-3-7MPP0001-609, 12.0.1MPP-308, 11.3.7
FIRMWARE_VERSION = re.compile(
    r"^(?:sip(\d\d)xx\.)?(\d+)[-.](\d+)[-.](\d+)(?:(?:MPP|MSR)(\d*)(?:dev)?)?(?:-(\d+))?$")


def _version_parts(match: re.Match[str]) -> tuple[int, ...]:
    _, major, minor, maint, sub, build = match.groups()
    return (int(major), int(minor), int(maint), int(sub or 0), int(build or 0))


VERSIONS = kit.VersionScheme(
    "Cisco MPP firmware version",
    "<major>-<minor>-<maint>MPP[<sub>]-<build> (e.g. 11-3-7MPP0001-609, sip88xx.12-0-1MPP-308)",
    FIRMWARE_VERSION, _version_parts)


def gmt_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"GMT{sign}{hours:02d}:{rest:02d}"


def _hour(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    return f"{hours}" + (f":{rest:02d}" if rest else "")


def dst_rule(rule: timezones.DstRule) -> str:
    def part(change: timezones.Change) -> str:
        day = -1 if change.last else (change.week - 1) * 7 + 1
        weekday = 7 if change.weekday == 0 else change.weekday  # 1 = Monday ... 7 = Sunday
        return f"{change.month}/{day}/{weekday}/{_hour(change.minutes)}"

    return f"start={part(rule.start)};end={part(rule.end)};save={_hour(rule.save_minutes)}"


def psn_file(model: ModelInfo) -> str:
    """"CP-8841-3PCC" -> "8841-3PCC.xml": the name a factory phone asks for (/$PSN.xml)."""
    return model.name.removeprefix("CP-") + ".xml"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class Builder(kit.Builder):
    label = "Cisco MPP"
    carrier = "a Cisco profile value"
    xml = True
    true, false = "Yes", "No"
    languages = LANGUAGES

    def element(self, name: str, value: Any, param: str, ua: str = RO) -> None:
        self.put(name, value, param, flag=ua)

    def steps(self) -> None:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.lines()
        if self.device.lines:
            self.keys()

    def files(self) -> list[OutputFile]:
        device = self.device
        return [OutputFile(f"{device.mac}.xml", "cisco/mac.xml.j2", {
            "mac": device.mac, "model": device.model.name,
            "settings": [{"name": s.key, "ua": s.flag, "value": s.value}
                         for s in self.settings],
        })]

    def provisioning(self) -> None:
        url = self.device.provisioning_url + f"{self.device.mac}.xml"
        resync = _get(self.params, "provisioning", "resync") or {}
        start = resync.get("start") or "02:00"
        end = resync.get("end") or "04:00"
        on_boot = resync.get("on_boot")
        window = (_minutes(end) - _minutes(start)) % (24 * 60)
        self.element("Provision_Enable", True, "provisioning url", NA)
        self.element("Profile_Rule", url, "provisioning url", NA)
        # the bootstrap files (/$PSN.xml, then $MA.xml in the bootstrap directory) led here
        # through rules B and C; this file is the rule from now on, so a withdrawn bootstrap
        # never fails a resync [I: wazo's bootstrap uses rules B and C]
        self.element("Profile_Rule_B", "", "provisioning url", NA)
        self.element("Profile_Rule_C", "", "provisioning url", NA)
        self.element("Resync_On_Reset", True if on_boot is None else bool(on_boot),
                     "provisioning.resync.on_boot", NA)
        self.element("Resync_Periodic", 0, "provisioning.resync", NA)
        self.element("Resync_At__HHmm_", start.replace(":", ""), "provisioning.resync.start",
                     NA)
        self.element("Resync_At_Random_Delay", window * 60, "provisioning.resync.end", NA)
        if self.device.firmware is not None:
            self.element("Upgrade_Enable", True, "firmware", NA)
            self.element("Upgrade_Rule", self.device.firmware.url, "firmware", NA)
        password = self.params.get("admin_password")
        if password:
            self.element("Admin_Password", password, "admin_password", NA)

    def time_and_language(self) -> None:
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.element("Primary_NTP_Server", ntp["server"], "ntp.server")
        if ntp.get("server2"):
            self.element("Secondary_NTP_Server", ntp["server2"], "ntp.server2")
        self.timezone()
        names = self.language()
        if names is not None:
            self.element("Language_Selection", names[0], "language")
            self.element("Locale", names[1], "language")

    def unknown_language(self, language: str) -> str:
        return (f"language: {language!r}: Cisco MPP phones show other languages than English "
                "only from a dictionary server, which provctl does not set up")

    def put_timezone(self, name: str) -> None:
        rule = timezones.dst_rule(name)
        self.element("Time_Zone", gmt_offset(timezones.clock(name).standard_minutes),
                     "timezone")
        self.element("Daylight_Saving_Time_Enable", rule is not None, "timezone")
        if rule is not None:
            self.element("Daylight_Saving_Time_Rule", dst_rule(rule), "timezone")

    def network_and_features(self) -> None:
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.element("Enable_VLAN", True, "vlan.id", NA)
            self.element("VLAN_ID", vlan["id"], "vlan.id", NA)
        if vlan.get("pc_id"):
            self.element("PC_Port_VLAN_ID", vlan["pc_id"], "vlan.pc_id", NA)
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.element("CW_Setting", bool(waiting), "call_waiting")  # [I] key name

    def lines(self) -> None:
        by_port = self.ports("lines")
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.element(f"Line_Enable_{n}_", False, f"port {n}", NA)
                for name in ("Display_Name", "User_ID", "Auth_ID", "Password", "Proxy"):
                    ua = RO if name in ("Display_Name", "User_ID") else NA  # as when assigned
                    self.element(f"{name}_{n}_", "", f"port {n}", ua)
            else:
                self.line(n, assigned)

    def line(self, n: int, line: LineInput) -> None:
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}

        def put(name: str, value: Any, param: str, ua: str = NA) -> None:
            self.element(f"{name}_{n}_", value, f"{param} {where}", ua)

        server = str(sip.get("server") or "")
        put("Line_Enable", True, "account")
        put("Display_Name", line.display_name, "display_name", RO)
        put("User_ID", line.extension, "extension", RO)
        put("Use_Auth_ID", True, "auth_user")
        put("Auth_ID", line.auth_user, "auth_user")
        put("Password", line.password, "password")
        put("Proxy", f"{server}:{sip['port']}" if sip.get("port") else server, "sip.server")
        if sip.get("transport"):
            put("SIP_Transport", TRANSPORTS[sip["transport"]], "sip.transport")
        if sip.get("expires"):
            put("Register_Expires", sip["expires"], "sip.expires")
        proxy = sip.get("outbound_proxy")
        if proxy:
            port = sip.get("outbound_proxy_port") or sip.get("port")
            put("Outbound_Proxy", f"{proxy}:{port}" if port else proxy, "sip.outbound_proxy")
            put("Use_OB_Proxy_In_Dialog", True, "sip.outbound_proxy")
        else:
            put("Outbound_Proxy", "", "sip.outbound_proxy")
        codecs = self.line_codecs(line)
        if codecs is not None:
            names = self.codec_choice(codecs, CODECS, f" {where}", "Cisco MPP phones")
            if len(names) > len(CODEC_KEYS):
                self.problem(f"codecs {where}: Cisco MPP phones order at most "
                             f"{len(CODEC_KEYS)} codecs, got {len(names)}")
            for key, name in zip(CODEC_KEYS, names, strict=False):
                self.element(key.format(n), name, f"codecs {where}", NA)
            self.element(f"Use_Pref_Codec_Only_{n}_", False, f"codecs {where}", NA)

    def keys(self) -> None:
        if "line_keys" in self.owned:
            return
        keys = self.params.get("line_keys") or []
        model = self.device.model
        for k, key in enumerate(keys, start=1):
            param = f"line_keys[{k}]"
            if k > model.keys:
                self.problem(f"{param}: {model.name} has {model.keys} line keys")
                continue
            kind = key.get("type") or "none"
            value = str(key.get("value") or "")
            label = str(key.get("label") or "")
            if kind == "line":
                self.element(f"Extension_{k}_", int(key.get("line") or 1), param)
                if label:
                    self.element(f"Short_Name_{k}_", label, param)
            elif kind == "none":
                self.element(f"Extension_{k}_", "Disabled", param)
                self.element(f"Extended_Function_{k}_", "", param)
            elif kind in ("blf", "speed_dial"):
                if ";" in value or ";" in label:
                    self.problem(f"{param}: ';' cannot appear in a Cisco extended function")
                    continue
                function = (f"fnc=blf+sd+cp;sub={value}@$PROXY" if kind == "blf"
                            else f"fnc=sd;ext={value}@$PROXY")  # [I] syntax
                self.element(f"Extension_{k}_", "Disabled", param)
                self.element(f"Extended_Function_{k}_", f"{function};nme={label or value}",
                             param)
            else:
                self.problem(f"{param}: key type {kind!r} has no verified Cisco MPP syntax; "
                             "not supported")

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        if not ELEMENT.match(key):
            self.problem(f"raw.cisco: {key!r} is not a Cisco element name (letters, digits and "
                         "_ . - only)")
            return None
        return kit.Setting(key, self.text(value), f"raw.cisco.{key}", flag=NA)


class Cisco(kit.VendorBase):
    name = "cisco"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = True
    supported = kit.DESK_PHONE
    notes = NOTES
    redirect_kinds = ()  # no redirect client in provctl
    builder = Builder
    versions = VERSIONS

    def bootstrap_files(self, model: ModelInfo, directory_url: str) -> tuple[OutputFile, ...]:
        """`/$PSN.xml`: the factory Profile_Rule [V Cisco 7800 MPP provisioning guide,
        "Provisioning Parameters": Profile Rule default /$PSN.xml]. $PSN is the model number
        with "-3PCC", e.g. 8841-3PCC.xml [V wazo plugins/wazo_cisco_sip/v11_3_1/entry.py
        _COMMON_FILENAMES; the guide's own example value "V03" is I]. It points Profile_Rule at
        `$MA.xml` in `directory_url`, `$MA` = the MAC in lower case [V guide, Macro Expansion
        Variables], for the resyncs to come, and Profile_Rule_B as well: the phone reads rules
        A, B, C, D in order in one resync [V reference: 6800 guide], so it reaches its file in
        this one, as wazo's common/model.cfg.tpl does with rules B and C [V]; that a rule set by
        an earlier rule of the same resync is the one read is [I]."""
        rule = f"{directory_url}$MA.xml"
        settings = [
            {"name": "Resync_On_Reset", "ua": NA, "value": "Yes"},
            {"name": "Profile_Rule", "ua": NA, "value": rule},
            {"name": "Profile_Rule_B", "ua": NA, "value": rule},
        ]
        return (OutputFile(psn_file(model), "cisco/bootstrap.xml.j2",
                           {"note": f"{model.name}, /$PSN.xml", "settings": settings}),)

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """`$MA.xml` in the bootstrap directory (where `/$PSN.xml` sent the phone): Profile_Rule
        becomes the phone's own file for the resyncs to come, and Profile_Rule_C the same file
        for this resync (it came here through rule A or B, so C is read next [I, as above]);
        rule B is cleared. NTP when set, so that the HTTPS resyncs have a clock [I]."""
        own = f"{phone.provisioning_url}{phone.mac}.xml"
        settings = [
            {"name": "Provision_Enable", "ua": NA, "value": "Yes"},
            {"name": "Resync_On_Reset", "ua": NA, "value": "Yes"},
            {"name": "Profile_Rule", "ua": NA, "value": own},
            {"name": "Profile_Rule_B", "ua": NA, "value": ""},
            {"name": "Profile_Rule_C", "ua": NA, "value": own},
        ]
        if phone.ntp_server:
            settings.append({"name": "Primary_NTP_Server", "ua": RO, "value": phone.ntp_server})
        return (OutputFile(f"{phone.mac}.xml", "cisco/bootstrap.xml.j2",
                           {"note": f"{phone.mac} ({phone.model.name})", "settings": settings}),)

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        family = self.versions.match(version).group(1)
        if family and model.family and f"{family}xx" != model.family:
            return (f"firmware {version} is for Cisco {family}xx phones, but {model.name} is a "
                    f"{model.family} phone")
        return None


VENDOR = Cisco()


# --- User-Agent -------------------------------------------------------------------------------
# "Cisco-CP-8841-3PCC/11.0 (00562b043615)" [V Cisco IP Phone 8800 Series Multiplatform Phones
# Provisioning Guide, "In-House Preprovisioning and Provisioning Servers", HTTP Provisioning;
# wazo plugins/wazo_cisco_sip/v11_3_1/common.py]. The guide calls the value in parentheses the
# serial number; in its example and in wazo it is the MAC, so it is taken as the MAC only when it
# is 12 hex digits [I]. "Cisco-CP8841-3PCC/…" without the first hyphen is accepted [I].
_UA = re.compile(r"^Cisco-CP-?(?P<number>\d{4}[A-Z]?)-3PCC/(?P<firmware>\S+)"
                 r"(?:\s+\((?P<serial>[^)]*)\))?")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Cisco MPP phone's model, firmware and MAC from its User-Agent; None if not one."""
    match = match_user_agent(text, "Cisco-", _UA)
    if match is None:
        return None
    return UserAgent("cisco", f"CP-{match['number']}-3PCC", match["firmware"],
                     mac12(match["serial"]))
