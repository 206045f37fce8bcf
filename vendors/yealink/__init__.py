"""Yealink (T2x/T3x/T4x/T5x/CP): what is true of the vendor, and its parameter mapping.

Files per phone (see ../shared/reference/vendor-formats.md, "1. Yealink"):

- `<mac>.boot` (12 lowercase hex digits): includes only `<mac>.cfg` and sets
  `overwrite_mode = 0`, so keys the cfg file leaves out (user-owned ones) are left alone rather
  than reset to factory default.
- `<mac>.cfg`: `#!version:1.0.0.1` on line 1, then `key = value` lines. The text format has no
  escaping, so `check()` refuses any value with a line break and names the parameter.

The mapping from vendor-neutral parameters to keys is done here, in Python, as an ordered list of
sections of `(key, value)` pairs; the template only lays them out. That keeps one key per file
(raw keys replace the generated key of the same name instead of duplicating it) and lets
`check()` see exactly the values that will be written.

Conventions (documented for operators):

- Account slots of the model that have no line are cleared: `account.N.enable = 0` and the
  identity/credential keys set to `%NULL%` (the phone merges a cfg file into its state, and with
  `overwrite_mode = 0` an empty value would be ignored; `%NULL%` blanks it [I]).
- User-owned parameters (`RenderInput.user_owned`) are not written at all, and
  `static.auto_provision.custom.protect` is 1 whenever anything is user-owned (the phone then
  keeps the user's UI changes in its MAC-local file), 0 otherwise.
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
from dataclasses import dataclass
from typing import Any

from vendors import timezones
from vendors.base import LineInput, ModelInfo, OutputFile, RenderInput, UserAgent
from vendors.common import get as _get
from vendors.common import language_code, mac12, user_agent_text
from vendors.common import text as _text

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

# neutral codec -> Yealink codec key name (account.N.codec.<name>.*); gsm has none
CODECS = {
    "pcmu": "pcmu",
    "pcma": "pcma",
    "g722": "g722",
    "g729": "g729",
    "g726": "g726_32",  # [I]
    "ilbc": "ilbc",
    "opus": "opus",
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
FIRMWARE_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Setting:
    key: str
    value: str
    param: str  # the vendor-neutral parameter it comes from, for check() messages


@dataclass
class _Built:
    sections: list[tuple[str, list[Setting]]]
    problems: list[str]

    def settings(self) -> list[Setting]:
        return [s for _, items in self.sections for s in items]


class _Builder:
    def __init__(self, device: RenderInput):
        self.device = device
        self.params = device.params
        self.owned = device.user_owned
        self.sections: list[tuple[str, list[Setting]]] = []
        self.problems: list[str] = []

    def section(self, title: str) -> list[Setting]:
        items: list[Setting] = []
        self.sections.append((title, items))
        return items

    def build(self) -> _Built:
        self.provisioning()
        self.time_and_language()
        self.network_and_features()
        self.accounts()
        if self.device.lines:
            self.keys()
        self.raw()
        return _Built([(t, items) for t, items in self.sections if items], self.problems)

    # --- common settings -----------------------------------------------------------------

    def provisioning(self) -> None:
        out = self.section("Provisioning")
        resync = _get(self.params, "provisioning", "resync") or {}
        start = resync.get("start") or "02:00"
        end = resync.get("end") or "04:00"
        on_boot = resync.get("on_boot")
        on_boot = True if on_boot is None else bool(on_boot)
        out += [
            Setting("static.auto_provision.server.url", self.device.provisioning_url,
                    "provisioning url"),
            Setting("static.auto_provision.power_on", _text(on_boot),
                    "provisioning.resync.on_boot"),
            Setting("static.auto_provision.weekly.enable", "1", "provisioning.resync"),
            Setting("static.auto_provision.weekly.dayofweek", "0123456", "provisioning.resync"),
            Setting("static.auto_provision.weekly.begin_time", start,
                    "provisioning.resync.start"),
            Setting("static.auto_provision.weekly.end_time", end, "provisioning.resync.end"),
            Setting("static.auto_provision.custom.protect", _text(bool(self.owned)),
                    "user_owned"),
        ]
        if self.device.firmware is not None:
            out.append(Setting("static.firmware.url", self.device.firmware.url, "firmware"))
        password = self.params.get("admin_password")
        if password:
            self.section("Security").append(
                Setting("static.security.user_password", f"admin:{password}", "admin_password"))

    def time_and_language(self) -> None:
        out = self.section("Time and language")
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            out.append(Setting("local_time.ntp_server1", str(ntp["server"]), "ntp.server"))
        if ntp.get("server2"):
            out.append(Setting("local_time.ntp_server2", str(ntp["server2"]), "ntp.server2"))
        tz = self.params.get("timezone")
        if tz:
            try:
                zone = timezones.yealink(str(tz))
            except ValueError as exc:
                self.problems.append(f"timezone: {exc}")
            else:
                out.append(Setting("local_time.time_zone", zone.time_zone, "timezone"))
                if zone.time_zone_name is not None:
                    out.append(Setting("local_time.time_zone_name", zone.time_zone_name,
                                       "timezone"))
                out.append(Setting("local_time.summer_time", str(zone.summer_time), "timezone"))
        language = self.params.get("language")
        if language and "language" not in self.owned:
            name = LANGUAGES.get(language_code(str(language)))
            if name is None:
                self.problems.append(
                    f"language: {language!r} has no Yealink equivalent (known: "
                    f"{', '.join(sorted(LANGUAGES))})")
            else:
                out.append(Setting("lang.gui", name, "language"))
                out.append(Setting("lang.wui", name, "language"))

    def network_and_features(self) -> None:
        out = self.section("Network and features")
        vlan = self.params.get("vlan") or {}
        if vlan.get("id"):
            out.append(Setting("static.network.vlan.internet_port_enable", "1", "vlan.id"))
            out.append(Setting("static.network.vlan.internet_port_vid", str(vlan["id"]),
                               "vlan.id"))
            if vlan.get("priority") is not None:
                out.append(Setting("static.network.vlan.internet_port_priority",
                                   str(vlan["priority"]), "vlan.priority"))
        if vlan.get("pc_id"):
            out.append(Setting("static.network.vlan.pc_port_enable", "1", "vlan.pc_id"))
            out.append(Setting("static.network.vlan.pc_port_vid", str(vlan["pc_id"]),
                               "vlan.pc_id"))
        waiting = self.params.get("call_waiting")
        if waiting is not None and "call_waiting" not in self.owned:
            out.append(Setting("call_waiting.enable", _text(bool(waiting)), "call_waiting"))

    # --- accounts --------------------------------------------------------------------------

    def accounts(self) -> None:
        model = self.device.model
        by_port: dict[int, LineInput] = {}
        for line in self.device.lines:
            if not 1 <= line.port <= model.lines:
                self.problems.append(
                    f"port {line.port} ({line.account}): {model.name} has accounts 1 to "
                    f"{model.lines}")
                continue
            by_port[line.port] = line
        for n in range(1, model.lines + 1):
            assigned = by_port.get(n)
            if assigned is None:
                self.cleared(n)
            else:
                self.account(n, assigned)

    def cleared(self, n: int) -> None:
        out = self.section(f"Account {n}: no line assigned, cleared")
        out.append(Setting(f"account.{n}.enable", "0", f"port {n}"))
        for field in ("label", "display_name", "user_name", "auth_name", "password",
                      "sip_server.1.address"):
            out.append(Setting(f"account.{n}.{field}", NULL, f"port {n}"))

    def account(self, n: int, line: LineInput) -> None:
        out = self.section(f"Account {n}: {line.account}")
        where = f"of {line.account} on port {line.port}"
        sip = line.sip or {}  # resolved for this line: every layer down to the line
        p = f"account.{n}."

        def put(key: str, value: Any, param: str) -> None:
            out.append(Setting(p + key, _text(value) if value != "" else NULL,
                               f"{param} {where}"))

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
        codecs = (line.params or {}).get("codecs")
        if codecs is None:
            codecs = self.params.get("codecs")
        if codecs is not None:
            self.codecs(n, list(codecs), out, where)

    def codecs(self, n: int, codecs: list[str], out: list[Setting], where: str) -> None:
        enabled: list[str] = []
        for codec in codecs:
            if codec not in CODECS:
                self.problems.append(f"codecs {where}: {codec} is not supported by Yealink "
                                     f"phones (supported: {', '.join(sorted(CODECS))})")
            elif CODECS[codec] not in enabled:
                enabled.append(CODECS[codec])
        for priority, name in enumerate(enabled, start=1):
            out.append(Setting(f"account.{n}.codec.{name}.enable", "1", f"codecs {where}"))
            out.append(Setting(f"account.{n}.codec.{name}.priority", str(priority),
                               f"codecs {where}"))
        for name in CODECS.values():
            if name not in enabled:
                out.append(Setting(f"account.{n}.codec.{name}.enable", "0", f"codecs {where}"))

    # --- keys and raw ------------------------------------------------------------------------

    def keys(self) -> None:
        for group, (title, prefix) in KEY_GROUPS.items():
            keys = self.params.get(group)
            if not keys or group in self.owned:
                continue
            out = self.section(title)
            for k, key in enumerate(keys, start=1):
                base = prefix.format(k) + "."
                param = f"{group}[{k}]"
                kind = key.get("type") or "none"
                if kind not in KEY_TYPES:
                    self.problems.append(f"{param}: key type {kind!r} is not supported")
                    continue
                out.append(Setting(base + "type", str(KEY_TYPES[kind]), param))
                out.append(Setting(base + "value", str(key.get("value") or NULL), param))
                out.append(Setting(base + "label", str(key.get("label") or NULL), param))
                if kind != "none":
                    out.append(Setting(base + "line", str(key.get("line") or 1), param))

    def raw(self) -> None:
        raw = self.device.raw or {}
        if not raw:
            return
        keys = set()
        out: list[Setting] = []
        for key, value in raw.items():
            key = str(key)
            if not RAW_KEY.match(key):
                self.problems.append(f"raw.yealink: {key!r} is not a Yealink key (letters, "
                                     "digits and _ . - [ ] only)")
                continue
            keys.add(key)
            out.append(Setting(key, _text(value), f"raw.yealink.{key}"))
        for _, items in self.sections:
            items[:] = [s for s in items if s.key not in keys]
        self.sections.append(("Raw keys (params.raw.yealink)", out))


def _build(device: RenderInput) -> _Built:
    return _Builder(device).build()


class Yealink:
    name = "yealink"
    redirect_kinds = ("yealink-rps",)
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = False
    supported = frozenset({
        "sip", "codecs", "ntp", "timezone", "language", "admin_password", "call_waiting",
        "vlan", "line_keys", "soft_keys", "expansion_keys", "provisioning", "raw",
    })

    def files(self, device: RenderInput) -> list[OutputFile]:
        built = _build(device)
        sections = [
            {"title": title, "settings": [{"key": s.key, "value": s.value} for s in items]}
            for title, items in built.sections
        ]
        cfg = f"{device.mac}.cfg"
        return [
            OutputFile(cfg, "yealink/mac.cfg.j2", {
                "header": HEADER, "mac": device.mac, "model": device.model.name,
                "sections": sections,
            }),
            OutputFile(f"{device.mac}.boot", "yealink/mac.boot.j2", {
                "header": HEADER, "includes": [cfg], "overwrite_mode": 0,
            }),
        ]

    def check(self, device: RenderInput) -> list[str]:
        built = _build(device)
        problems = list(built.problems)
        for s in built.settings():
            if "\n" in s.value or "\r" in s.value:
                problems.append(f"{s.param}: contains a line break, which the Yealink text "
                                f"format cannot carry ({s.key})")
        return problems

    def firmware_version(self, version: str) -> tuple[int, ...]:
        match = FIRMWARE_VERSION.match(version.strip())
        if not match:
            raise ValueError(f"Yealink firmware version {version!r} is not "
                             "<family>.<major>.<custom>.<minor>, e.g. 108.86.0.95")
        return tuple(int(part) for part in match.groups())

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
