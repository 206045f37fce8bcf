"""Yealink (T2x/T3x/T4x/T5x/CP): what is true of the vendor, and its parameter mapping.

Files per phone (sources for every mapping, and what is still [I]: docs/vendors/yealink.md):

- `<mac>.boot` (12 lowercase hex digits): includes only `<mac>.cfg` and sets
  `overwrite_mode = 0`, so keys the cfg file leaves out (user-owned ones) are left alone rather
  than reset to factory default.
- `<mac>.cfg`: `#!version:1.0.0.1` on line 1, then `key = value` lines. The text format has no
  escaping, so `build()` refuses any value with a line break and names the parameter.

The mapping from vendor-neutral parameters to keys is done here, in Python, as an ordered list of
sections of `(key, value)` pairs; the template only lays them out. That keeps one key per file
(raw keys replace the generated key of the same name instead of duplicating it) and lets
`build()` see exactly the values that will be written.

Conventions (documented for operators):

- Account slots of the model that have no line are cleared: `account.N.enable = 0` and the
  identity/credential keys set to `%NULL%` (the phone merges a cfg file into its state, and with
  `overwrite_mode = 0` an empty value would be ignored; `%NULL%` blanks it [I]).
- User-owned parameters (`RenderInput.user_owned`) are not written at all; with
  `overwrite_mode = 0` the phone keeps its own value for a key the file leaves out.
  `static.auto_provision.custom.protect` stays 0: 1 would keep *every* change made on the phone,
  accounts and codecs included (issue 15.11; `NOTES` shows it in `provctl vendors`).
- iLBC is written under current firmware's names, `ilbc_13_33kbps` / `ilbc_15_2kbps`.
- Codecs: per account, listed codecs get `enable = 1` and `priority` 1, 2, ... in the given
  order; every other codec Yealink knows from the neutral list is `enable = 0`.
- Keys (`line_keys`, `soft_keys`, `expansion_keys` → `linekey.K.*`, `programablekey.K.*`,
  `expansion_module.1.key.K.*`) are personal: written only when the phone has a line.
- `provisioning.resync` missing → nightly 02:00-04:00 plus on boot (the Resync defaults).
- `raw` values: booleans become 1/0, numbers their decimal text; emitted last, verbatim.
- Screensaver keys are not in the reference, so `screensaver` is not in `supported`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vendors import kit, timezones
from vendors.base import BootstrapInput, LineInput, ModelInfo, OutputFile, UserAgent
from vendors.common import get as _get
from vendors.common import mac12, user_agent_text

NULL = "%NULL%"  # blanks a value on the phone [I: wazo usage]
HEADER = "#!version:1.0.0.1"

# name: (accounts, firmware family = first field of the firmware version) [V wazo, reference]
_MODELS: dict[str, tuple[int, str]] = {
    "T27G": (6, "69"),
    "T31": (2, "124"),
    "T33": (4, "124"),
    "T41S": (6, "66"),
    "T42S": (12, "66"),
    "T46S": (16, "66"),
    "T48S": (16, "66"),
    "T41U": (6, "108"),
    "T42U": (12, "108"),
    "T43U": (12, "108"),
    "T44U": (12, "108"),
    "T44W": (12, "108"),
    "T46U": (16, "108"),
    "T48U": (16, "108"),
    "T53": (12, "96"),
    "T53W": (12, "96"),
    "T54W": (16, "96"),
    "T57W": (16, "96"),
    "T58W": (16, "150"),
    "CP920": (1, "78"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family=family)
    for name, (lines, family) in _MODELS.items()
}

# ISO 639-1 code -> lang.gui / lang.wui value [I: names as in the admin guide's examples]
LANGUAGES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "it": "Italian",
    "es": "Spanish",
    "nl": "Dutch",
    "pt": "Portuguese",
    "pl": "Polish",
    "tr": "Turkish",
    "ru": "Russian",
}

# neutral codec -> Yealink codec key name (account.N.codec.<name>.*); gsm has none. iLBC is
# ilbc_13_33kbps (the 13.33 kbit/s mode) on current firmware [V fusion yealink/t46u/{$mac}.cfg,
# tancredi data/templates/yealink.tmpl; wazo's templates still write codec.ilbc, the name of
# older firmware]; ilbc_15_2kbps is the 15.2 kbit/s mode, kept off.
CODECS = {
    "pcmu": "pcmu",
    "pcma": "pcma",
    "g722": "g722",
    "g729": "g729",
    "g726": "g726_32",  # [I]
    "ilbc": "ilbc_13_33kbps",
    "opus": "opus",
}
OFF_CODECS = ("ilbc_15_2kbps",)  # known to the phone, never offered

NOTES = {
    "user_owned": "kept by leaving the keys out (overwrite_mode 0); custom.protect stays 0, "
                  "as 1 would keep every change made on the phone, accounts included",
}

TRANSPORTS = {"udp": 0, "tcp": 1, "tls": 2}

# neutral key type -> DSS key type [V: 15 line, 16 BLF, 13 speed dial, 10 park, 0 N/A; I: 11 DTMF]
KEY_TYPES = {"none": 0, "park": 10, "dtmf": 11, "speed_dial": 13, "line": 15, "blf": 16}

# neutral key list -> key prefix
KEY_GROUPS = {
    "line_keys": ("Line keys", "linekey.{}"),
    "soft_keys": ("Programmable keys", "programablekey.{}"),
    "expansion_keys": ("Expansion module keys", "expansion_module.1.key.{}"),
}

RAW_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-\[\]]*$")
RAW_SECTION = "Raw keys (params.raw.yealink)"
VERSIONS = kit.VersionScheme("Yealink firmware version",
                             "<family>.<major>.<custom>.<minor>, e.g. 108.86.0.95",
                             re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$"))


class Builder(kit.Builder):
    label = "Yealink"
    carrier = "the Yealink text format"
    languages = LANGUAGES

    def steps(self) -> None:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.accounts()
        if self.device.lines:
            self.keys()

    def files(self) -> list[OutputFile]:
        sections: dict[str, list[dict[str, str]]] = {}
        for s in self.settings:
            sections.setdefault(s.section, []).append({"key": s.key, "value": s.value})
        device = self.device
        cfg = f"{device.mac}.cfg"
        return [
            OutputFile(cfg, "yealink/mac.cfg.j2", {
                "header": HEADER, "mac": device.mac, "model": device.model.name,
                "sections": [{"title": title, "settings": items}
                             for title, items in sections.items()],
            }),
            OutputFile(f"{device.mac}.boot", "yealink/mac.boot.j2", {
                "header": HEADER, "includes": [cfg], "overwrite_mode": 0,
            }),
        ]

    # --- common settings -----------------------------------------------------------------

    def provisioning(self) -> None:
        self.section("Provisioning")
        resync = _get(self.params, "provisioning", "resync") or {}
        start = resync.get("start") or "02:00"
        end = resync.get("end") or "04:00"
        on_boot = resync.get("on_boot")
        on_boot = True if on_boot is None else bool(on_boot)
        self.put("static.auto_provision.server.url", self.device.provisioning_url,
                 "provisioning url")
        self.put("static.auto_provision.power_on", on_boot, "provisioning.resync.on_boot")
        self.put("static.auto_provision.weekly.enable", "1", "provisioning.resync")
        self.put("static.auto_provision.weekly.dayofweek", "0123456", "provisioning.resync")
        self.put("static.auto_provision.weekly.begin_time", start, "provisioning.resync.start")
        self.put("static.auto_provision.weekly.end_time", end, "provisioning.resync.end")
        # custom.protect = 1 keeps *every* change made on the phone or its web UI (MAC-local
        # file), not only the user-owned parameters [V Yealink admin guide, "MAC-local CFG
        # File"]; there is no per-key flag. A user-owned key is left out of the file instead,
        # and overwrite_mode 0 (boot file) leaves a key the files omit as it is [V].
        self.put("static.auto_provision.custom.protect", "0", "user_owned")
        if self.device.firmware is not None:
            self.put("static.firmware.url", self.device.firmware.url, "firmware")
        password = self.params.get("admin_password")
        if password:
            self.section("Security")
            self.put("static.security.user_password", f"admin:{password}", "admin_password")

    def time_and_language(self) -> None:
        self.section("Time and language")
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put("local_time.ntp_server1", ntp["server"], "ntp.server")
        if ntp.get("server2"):
            self.put("local_time.ntp_server2", ntp["server2"], "ntp.server2")
        self.timezone()
        name = self.language()
        if name is not None:
            self.put("lang.gui", name, "language")
            self.put("lang.wui", name, "language")

    def put_timezone(self, name: str) -> None:
        zone = timezones.yealink(name)
        self.put("local_time.time_zone", zone.time_zone, "timezone")
        if zone.time_zone_name is not None:
            self.put("local_time.time_zone_name", zone.time_zone_name, "timezone")
        self.put("local_time.summer_time", zone.summer_time, "timezone")

    def network_and_features(self) -> None:
        self.section("Network and features")
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            self.put("static.network.vlan.internet_port_enable", "1", "vlan.id")
            self.put("static.network.vlan.internet_port_vid", vlan["id"], "vlan.id")
            if vlan.get("priority") is not None:
                self.put("static.network.vlan.internet_port_priority", vlan["priority"],
                         "vlan.priority")
        if vlan.get("pc_id"):
            self.put("static.network.vlan.pc_port_enable", "1", "vlan.pc_id")
            self.put("static.network.vlan.pc_port_vid", vlan["pc_id"], "vlan.pc_id")
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            self.put("call_waiting.enable", bool(waiting), "call_waiting")

    # --- accounts --------------------------------------------------------------------------

    def accounts(self) -> None:
        by_port = self.ports("accounts")
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.cleared(n)
            else:
                self.account(n, assigned)

    def cleared(self, n: int) -> None:
        self.section(f"Account {n}: no line assigned, cleared")
        self.put(f"account.{n}.enable", "0", f"port {n}")
        for field in ("label", "display_name", "user_name", "auth_name", "password",
                      "sip_server.1.address"):
            self.put(f"account.{n}.{field}", NULL, f"port {n}")

    def account(self, n: int, line: LineInput) -> None:
        self.section(f"Account {n}: {line.account}")
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}  # resolved for this line: every layer down to the line
        p = f"account.{n}."

        def put(key: str, value: Any, param: str) -> None:
            self.put(p + key, value if value != "" else NULL, f"{param} {where}")

        put("enable", "1", "account")
        put("label", line.label, "label")
        put("display_name", line.display_name, "display_name")
        put("user_name", line.extension, "extension")
        put("auth_name", line.auth_user, "auth_user")
        put("password", line.password, "password")
        put("sip_server.1.address", sip.get("server") or "", "sip.server")
        if sip.get("port"):
            put("sip_server.1.port", sip["port"], "sip.port")
        if sip.get("transport"):
            put("sip_server.1.transport_type", TRANSPORTS[sip["transport"]], "sip.transport")
        if sip.get("expires"):
            put("sip_server.1.expires", sip["expires"], "sip.expires")  # [I]
        if sip.get("outbound_proxy"):
            put("outbound_proxy_enable", "1", "sip.outbound_proxy")
            put("outbound_proxy.1.address", sip["outbound_proxy"], "sip.outbound_proxy")
            port = sip.get("outbound_proxy_port") or sip.get("port")
            if port:
                put("outbound_proxy.1.port", port, "sip.outbound_proxy_port")
        else:
            put("outbound_proxy_enable", "0", "sip.outbound_proxy")
        codecs = self.line_codecs(line)
        if codecs is not None:
            self.codecs(n, codecs, where)

    def codecs(self, n: int, codecs: list[str], where: str) -> None:
        enabled = self.codec_choice(codecs, CODECS, f" {where}", "Yealink phones")
        for priority, name in enumerate(enabled, start=1):
            self.put(f"account.{n}.codec.{name}.enable", "1", f"codecs {where}")
            self.put(f"account.{n}.codec.{name}.priority", priority, f"codecs {where}")
        for name in (*CODECS.values(), *OFF_CODECS):
            if name not in enabled:
                self.put(f"account.{n}.codec.{name}.enable", "0", f"codecs {where}")

    # --- keys and raw ------------------------------------------------------------------------

    def keys(self) -> None:
        for group, (title, prefix) in KEY_GROUPS.items():
            keys = self.params.get(group)
            if not keys or group in self.owned:
                continue
            self.section(title)
            for k, key in enumerate(keys, start=1):
                base = prefix.format(k) + "."
                param = f"{group}[{k}]"
                kind = key.get("type") or "none"
                if kind not in KEY_TYPES:
                    self.problem(f"{param}: key type {kind!r} is not supported")
                    continue
                self.put(base + "type", KEY_TYPES[kind], param)
                self.put(base + "value", key.get("value") or NULL, param)
                self.put(base + "label", key.get("label") or NULL, param)
                if kind != "none":
                    self.put(base + "line", key.get("line") or 1, param)

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        if not RAW_KEY.match(key):
            self.problem(f"raw.yealink: {key!r} is not a Yealink key (letters, digits and "
                         "_ . - [ ] only)")
            return None
        return kit.Setting(key, self.text(value), f"raw.yealink.{key}", RAW_SECTION)


class Yealink(kit.VendorBase):
    name = "yealink"
    redirect_kinds = ("yealink-rps", "yealink-ymcs")
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = False
    supported = kit.DESK_PHONE | {"soft_keys", "expansion_keys"}
    notes = NOTES
    builder = Builder
    versions = VERSIONS

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """For a network that hands out the bootstrap URL by DHCP instead of RPS: `<mac>.boot`
        in the bootstrap directory, which the phone asks for first [V reference §1], includes
        the bootstrap `<mac>.cfg` next to it and then the phone's own `<mac>.cfg` by its URL
        (a boot file may name a cfg file by URL, fetched in the same run, top to bottom [V
        Yealink T5 admin guide, "Boot File Attributes"]). The bootstrap cfg, also what firmware
        without boot files asks for, sets the provisioning server to the phone's own directory
        and turns off the DHCP option, which the phone prefers over the server it stored [V
        Yealink Auto Provision Manual §2.1: custom option, 66, 43, then the phone flash]
        (`static.auto_provision.dhcp_option.enable` [V key: fusion t46u/y000000000108.cfg];
        that 0 turns it off is I); a factory reset restores it. NTP when set."""
        cfg = f"{phone.mac}.cfg"
        settings = [{"key": "static.auto_provision.server.url", "value": phone.provisioning_url},
                    {"key": "static.auto_provision.dhcp_option.enable", "value": "0"}]
        if phone.ntp_server:
            settings.append({"key": "local_time.ntp_server1", "value": phone.ntp_server})
        return (
            OutputFile(f"{phone.mac}.boot", "yealink/mac.boot.j2", {
                "header": HEADER, "includes": [cfg, phone.provisioning_url + cfg],
                "overwrite_mode": 0}),
            OutputFile(cfg, "yealink/mac.cfg.j2", {
                "header": HEADER, "mac": phone.mac, "model": f"{phone.model.name}, bootstrap",
                "sections": [{"title": "Provisioning: onboarding", "settings": settings}]}),
        )

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        family = self.firmware_version(version)[0]
        if model.family and str(family) != model.family:
            return (f"firmware {version} is for Yealink family {family}, but {model.name} "
                    f"runs family {model.family} firmware ({model.family}.x.x.x)")
        return None


VENDOR = Yealink()


# --- User-Agent -------------------------------------------------------------------------------
# "Yealink SIP-T46U 108.86.0.95 00:15:65:aa:bb:cc" and the T5x spelling without colons
# "Yealink SIP-T56A  58.80.0.25 001565f429a4" (two blanks happen) [V wazo
# plugins/wazo_yealink/v86/common.py _UA_REGEX_LIST; fusion app/provision/index.php]; DECT and
# older names without "SIP-": "Yealink W60B 25.80.0.15 …", "Yealink SIP VP-T49G …" [V wazo].
# "Yealink-T46G 28.71.0.81 28.1.0.128.0.0.0" (old firmware: hardware version, no MAC) [V wazo].
_UA = re.compile(
    r"^[yY]ealink\s+(?:SIP(?:\s+VP)?-)?(?P<model>[A-Za-z0-9_]+)\s+(?P<firmware>\d+(?:\.\d+){3})"
    r"\s+(?P<mac>[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{12})$")
_UA_OLD = re.compile(r"^[yY]ealink-(?P<model>[A-Za-z0-9_]+)\s+(?P<firmware>\d+(?:\.\d+){3})\s+"
                     r"[\d.]+$")


def parse_user_agent(text: str) -> UserAgent | None:
    """A Yealink phone's model, firmware and MAC from its User-Agent; None if not Yealink."""
    ua = user_agent_text(text)
    if ua is None or not ua[:7].lower() == "yealink":
        return None
    match = _UA.match(ua) or _UA_OLD.match(ua)
    if match is None:
        return None
    groups = match.groupdict()
    return UserAgent("yealink", match["model"], match["firmware"], mac12(groups.get("mac")))
