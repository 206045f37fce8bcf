"""Gigaset N610 / N670 / N770 / N870 IP PRO (Nx70 DECT): what is true of the vendor, its mapping.

A DECT base carries one SIP account per handset: port N of the device is handset N (accounts
and handsets `00001`, `00002`, ...).

Files per base (sources for every mapping, and what is still [I]: docs/vendors/gigaset.md):

- `<mac>.xml` (12 lowercase hex digits) [V wazo Nx70]: `<provisioning version="1.1"
  productID="e2">` with an optional `<firmware><file version= url=/></firmware>` and `<nvm>`
  holding `<param name= value=/>` and `<oper>` operations. Values are *attributes*: rendered
  with autoescape (`& < > "`), and a line break or control character is refused by `build()`,
  naming the parameter. No common file exists for this family.

Conventions (documented for operators):

- Handset N: `<oper name="add_hs" value="0000N">` (marks the handset to be registered) with
  `hs.0000N.DECT_AC` = the last four digits of the extension, zero-padded [V wazo], and
  `SipAccount.0000N.*` (display name, user, auth name, password, provider id).
- SIP servers: one `SipProvider.<i>` per distinct (server, port, transport, outbound proxy,
  expiry) among the lines, numbered from 0 in port order [V wazo groups the same way].
- Handset accounts of the model without a line are cleared (user, auth name, password, display
  name empty): parameters in the NVM stay as set until changed [I]. Handset registrations are
  not deleted (`DeleteNotProvisionedHS` is not used): unregistering a handset someone paired on
  site is not provctl's call (conservative). The registration window itself is opened by hand:
  wazo's `update_dm` needs the render time, and provctl renders from git alone (issue 15.12).
- Time zone: `DmGlobal.0.TimeZone` takes an IANA name from a fixed list; a zone not in it gets
  the first listed zone with the same clock (vendors/timezones.py `gigaset`).
- Provisioning: `Provisioning.global.ProvisioningServer` = the base's directory URL without the
  trailing '/' (as wazo writes it: the base appends `/<mac>.xml`) [I]. That is also the URL the
  Gigaset redirect service (GRAPE, setting `ProvisioningServer`) is given (`redirect_url`).
- Firmware, only when pinned: `<firmware><file version="2.65.0" url=.../></firmware>`.
- User-owned parameters: the N-series XML has no permission flags (the reference found none;
  Gigaset's Snom-derived desk phones have `perm`, these bases do not), and none of the
  user-ownable parameters apply to a DECT base: nothing to do.
- Not expressible (the core warns): `codecs`, `language`, `call_waiting`, `vlan`, keys,
  `screensaver`, and `provisioning.resync` (no schedule keys in the reference). `ntp.server2`
  is not written (one NTP server; NOTES).
- `raw` keys are NVM parameter names, written as `<param>` last; a raw key equal to a
  generated parameter replaces it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vendors import kit, timezones
from vendors.base import ModelInfo, OutputFile, RenderInput, UserAgent
from vendors.common import mac12, match_user_agent

# name: handsets = SIP accounts [V wazo plugin-info]
_MODELS: dict[str, int] = {"N610": 8, "N670": 20, "N770": 100, "N870": 250, "N870E": 250}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, lines=lines, family="nx70") for name, lines in _MODELS.items()
}

TRANSPORTS = {"udp": 1, "tcp": 2, "tls": 3}
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

NOTES = {
    "ntp.server2": "one NTP server only",
    # issue 15.12: wazo also sends <oper name="update_dm"> with RegStart = the time the file is
    # rendered and RegDuration 900 [V wazo Nx70_83_v2_65_0/templates/base.tpl], which opens the
    # base's registration window. provctl renders from git alone (no clock: the same commit
    # gives the same bytes), so the window is opened by hand (docs/vendors/gigaset.md).
    "sip": "handsets pair by hand: open the registration window in the base's web UI, then "
           "enter the access code (the extension's last four digits) on the handset",
}

PARAM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
# 83.V2.65.0 (product.Vmajor.minor.patch) or 2.65.0
VERSIONS = kit.VersionScheme(
    "Gigaset Nx70 firmware version",
    "[<product>.V]<major>.<minor>.<patch>, e.g. 83.V2.65.0 or 2.65.0",
    re.compile(r"^(?:(\d+)\.V)?(\d+)\.(\d+)\.(\d+)$"),
    lambda match: tuple(int(part) for part in match.groups()[1:]))


@dataclass(frozen=True)
class Handset:
    number: str  # "00001"
    access_code: str
    param: str


def handset(n: int) -> str:
    return f"{n:05d}"


def access_code(extension: str) -> str:
    digits = "".join(c for c in extension if c.isdigit())
    return digits[-4:].zfill(4)


def firmware_file_version(version: str) -> str:
    """"83.V2.65.0" or "2.65.0" -> "2.65.0" (the `<file version=...>` attribute)."""
    match = VERSIONS.pattern.match(version.strip())
    if not match:
        raise ValueError(version)
    return ".".join(match.groups()[1:])


class Builder(kit.Builder):
    label = "Gigaset"
    carrier = "a Gigaset parameter (an XML attribute)"
    xml = True

    def __init__(self, device: RenderInput):
        super().__init__(device)
        self.handsets: list[Handset] = []

    def steps(self) -> None:
        self.common()
        self.accounts()

    def files(self) -> list[OutputFile]:
        device = self.device
        firmware = None
        if device.firmware is not None:
            firmware = {"version": firmware_file_version(device.firmware.version),
                        "url": device.firmware.url}
        return [OutputFile(f"{device.mac}.xml", "gigaset/mac.xml.j2", {
            "mac": device.mac, "model": device.model.name, "firmware": firmware,
            "handsets": [{"number": h.number, "access_code": h.access_code}
                         for h in self.handsets],
            "params": [{"name": s.key, "value": s.value} for s in self.settings],
        })]

    def values(self) -> list[tuple[str, str, str]]:
        values = [(s.param, s.key, s.value) for s in self.settings]
        if self.device.firmware is not None:
            values.append(("firmware", "firmware url", self.device.firmware.url))
        return values

    def common(self) -> None:
        # [I] no trailing '/': wazo writes the bare base URL and the base appends /<mac>.xml
        self.put("Provisioning.global.ProvisioningServer",
                 self.device.provisioning_url.rstrip("/"), "provisioning url")
        password = self.params.get("admin_password")
        if password:
            self.put("WebUIAccounts.1.Password", password, "admin_password")
        ntp = self.params.get("ntp") or {}
        if ntp.get("server"):
            self.put("DmGlobal.0.NtpServer", ntp["server"], "ntp.server")
        self.timezone()

    def put_timezone(self, name: str) -> None:
        self.put("DmGlobal.0.TimeZone", timezones.gigaset(name), "timezone")

    def accounts(self) -> None:
        by_port = self.ports("handsets")
        providers: dict[tuple[Any, ...], int] = {}
        for n in range(1, self.device.model.lines + 1):
            assigned = by_port.get(n)
            hs = handset(n)
            if assigned is None:
                for field in ("DisplayName", "UserName", "AuthName", "AuthPassword"):
                    self.put(f"SipAccount.{hs}.{field}", "", f"port {n}")
                continue
            where = f"of {assigned.account} on port {assigned.port}"
            sip = assigned.sip or {}
            key = (sip.get("server"), sip.get("port"), sip.get("transport"),
                   sip.get("outbound_proxy"), sip.get("outbound_proxy_port"),
                   sip.get("expires"))
            if key not in providers:
                providers[key] = len(providers)
                self.provider(providers[key], sip, where)
            # DECT registration PIN: the extension's last four digits [V wazo]
            self.handsets.append(Handset(hs, access_code(assigned.extension),
                                         f"extension {where}"))
            self.put(f"SipAccount.{hs}.ProviderId", providers[key], f"sip.server {where}")
            self.put(f"SipAccount.{hs}.DisplayName", assigned.display_name,
                     f"display_name {where}")
            self.put(f"SipAccount.{hs}.UserName", assigned.extension, f"extension {where}")
            self.put(f"SipAccount.{hs}.AuthName", assigned.auth_user, f"auth_user {where}")
            self.put(f"SipAccount.{hs}.AuthPassword", assigned.password, f"password {where}")

    def provider(self, i: int, sip: Mapping[str, Any], where: str) -> None:
        p = f"SipProvider.{i}."
        server = str(sip.get("server") or "")
        transport = sip.get("transport") or "udp"
        port = sip.get("port") or DEFAULT_PORTS[transport]
        self.put(p + "Name", f"provctl-{i}", f"sip.server {where}")
        self.put(p + "Domain", server, f"sip.server {where}")
        self.put(p + "ProxyServerAddress", server, f"sip.server {where}")
        self.put(p + "ProxyServerPort", port, f"sip.port {where}")
        self.put(p + "RegServerAddress", server, f"sip.server {where}")
        self.put(p + "RegServerPort", port, f"sip.port {where}")
        self.put(p + "TransportProtocol", TRANSPORTS[transport], f"sip.transport {where}")
        if sip.get("expires"):
            self.put(p + "RegServerRefreshTimer", sip["expires"], f"sip.expires {where}")
        proxy = sip.get("outbound_proxy")
        if proxy:
            self.put(p + "OutboundProxyMode", 0, f"sip.outbound_proxy {where}")  # always
            self.put(p + "OutboundProxyAddress", proxy, f"sip.outbound_proxy {where}")
            self.put(p + "OutboundProxyPort", sip.get("outbound_proxy_port") or port,
                     f"sip.outbound_proxy_port {where}")
        else:
            self.put(p + "OutboundProxyMode", 2, f"sip.outbound_proxy {where}")  # never

    def raw_setting(self, key: str, value: Any) -> kit.Setting | None:
        if not PARAM_NAME.match(key):
            self.problem(f"raw.gigaset: {key!r} is not an NVM parameter name (letters, digits "
                         "and _ . - only)")
            return None
        return kit.Setting(key, self.text(value), f"raw.gigaset.{key}")


class Gigaset(kit.VendorBase):
    name = "gigaset"
    models: Mapping[str, ModelInfo] = MODELS
    autoescape = True
    supported = frozenset({"sip", "ntp", "timezone", "admin_password", "raw"})
    notes = NOTES
    # Redirect service: Gigaset GRAPE (SRAPS platform, setting ProvisioningServer), or the
    # legacy XML-RPC redirect (reference rps-apis.md §5.1).
    redirect_kinds = ("gigaset-grape",)
    without_account = (
        "common settings only (provisioning, time, NTP, admin password); every handset account "
        "is emptied and no SIP provider is written, so no handset can call until a line is "
        "assigned to its port and the base resyncs")
    builder = Builder
    versions = VERSIONS

    def redirect_url(self, provisioning_url: str, mac: str) -> str:
        """The URL to register at the redirect service: the base's ProvisioningServer."""
        return provisioning_url.rstrip("/")

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        product = self.versions.match(version).group(1)
        if product and product != "83":
            return f"firmware {version} is for Gigaset product {product}, not the Nx70 (83)"
        return None


VENDOR = Gigaset()


# --- User-Agent -------------------------------------------------------------------------------
# "Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;7C2F80E0D605" [V wazo
# plugins/wazo_gigaset/Nx70_83_v2_65_0/common.py], older bases "N510 IP PRO/42.245.00.000.000;
# 7C2F804DF9A9" and "Gigaset N720 DM PRO/70.089.00.000.000" [V wazo plugins/wazo_gigaset/common/
# common.py], handsets may add ";Handset=N" [V wazo Nx70]. The model is reported as provctl names
# it ("N870 IP PRO" -> "N870"); the firmware drops "+build…" so it reads as a catalog version.
_UA = re.compile(r'^"?(?:Gigaset\s+)?(?P<model>N\d{3}[A-Z]?)(?:[ -][A-Za-z -]+?)?/'
                 r"(?P<firmware>[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)+)(?:\+\S*?)?"
                 r'(?:;(?P<mac>[0-9A-Fa-f]{12})?)?(?:;Handset=\d+)?"?$')


def parse_user_agent(text: str) -> UserAgent | None:
    """A Gigaset base's model, firmware and MAC from its User-Agent; None if not Gigaset."""
    match = match_user_agent(text, "", _UA)
    if match is None:
        return None
    return UserAgent("gigaset", match["model"], match["firmware"], mac12(match["mac"]))
