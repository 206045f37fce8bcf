"""What each vendor's factory firmware reads from DHCP to find its provisioning server.

A factory-fresh phone knows no URL token. Behind DHCP it learns one URL for the whole network:
provctl hands out the customer's *bootstrap URL* (docs/zero-touch.md). This table says, per
vendor, which DHCP options the firmware asks for (most preferred first) and what form the value
must take. `{url}` is the bootstrap URL (scheme, host, token directory, trailing slash).

Sources are named per row; [V] verified against the source, [I] inferred. docs/zero-touch.md
repeats the table with the sources in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import vendors
from vendors.base import BootstrapInput


@dataclass(frozen=True)
class DhcpOption:
    code: int
    value: str  # a template: {url} is the bootstrap URL, ending in "/"


@dataclass(frozen=True)
class DhcpFacts:
    vendor: str
    options: tuple[DhcpOption, ...]  # every option to hand out, the firmware's preferred first
    first_request: str  # what the factory firmware fetches first under the URL (for docs)
    sources: str


FACTS: dict[str, DhcpFacts] = {
    # [V] Yealink T5 admin guide, "DHCP Option 66, Option 43 and Custom Option": custom option >
    # option 66 > option 43. The phone then fetches <mac>.boot / y0000000000NN.cfg and <mac>.cfg
    # under the URL [V shared/reference/vendor-formats.md §1].
    "yealink": DhcpFacts("yealink", (DhcpOption(66, "{url}"),),
                         "<mac>.boot, then y0000000000NN.cfg and <mac>.cfg",
                         "Yealink T5 Series Administrator Guide, DHCP Option 66/43/custom"),
    # [V] setting_server comes from DHCP 66/67 and "{mac}" in it is replaced by the MAC (Snom
    # mass-deployment FAQ, via vendor-formats.md §2). [I] that option 66 may carry the full URL
    # with the file name (Snom documents URLs such as https://my.pbx.com/{mac}).
    "snom": DhcpFacts("snom", (DhcpOption(66, "{url}{{mac}}.xml"),),
                      "<MAC>.xml (the URL with {mac} replaced)",
                      "Snom mass-deployment FAQ; vendor-formats.md §2"),
    # [V] Polycom SIP 3.1 admin guide: boot server "Custom + Option 66": the custom option first,
    # 66 if absent. [I] 160 is the custom option's default in UC Software 4.x and later.
    "poly": DhcpFacts("poly", (DhcpOption(160, "{url}"), DhcpOption(66, "{url}")),
                      "<mac>.cfg, then 000000000000.cfg",
                      "Polycom SoundPoint IP SIP 3.1 Administrator's Guide, Boot Server"),
    # [V] Grandstream SIP Device Provisioning Guide: the device requests cfg<mac>, cfg<mac>.xml,
    # cfg<model>.xml, then cfg.xml from the config server path. [I] that option 66 may carry a
    # URL with scheme and path (P237 itself is host/path without scheme).
    "grandstream": DhcpFacts("grandstream", (DhcpOption(66, "{url}"),),
                             "cfg<mac>, cfg<mac>.xml, cfg<model>.xml, cfg.xml",
                             "Grandstream SIP Device Provisioning Guide (2023)"),
    # [V] the MPP default Profile_Rule is /$PSN.xml, relative to the server DHCP names
    # (vendor-formats.md §5). [I] the MPP "DHCP Option To Use" default order 66,160,159,150:
    # 160 carries a whole profile rule, 66 a server the default rule is read against.
    "cisco": DhcpFacts("cisco", (DhcpOption(160, "{url}$PSN.xml"), DhcpOption(66, "{url}")),
                       "$PSN.xml (e.g. 8841-3PCC.xml), whose Profile_Rule names $MA.xml",
                       "Cisco MPP admin guide (Profile_Rule default); vendor-formats.md §5"),
    # [V] Fanvil VoIP Auto Provision Standard (2012) §3.1: DHCP option 66, option 43 and a
    # custom option (128-254); the phone then fetches <mac>.cfg (vendor-formats.md §6).
    "fanvil": DhcpFacts("fanvil", (DhcpOption(66, "{url}"),),
                        "<mac>.cfg",
                        "Fanvil VoIP Auto Provision Standard 1.1, §3.1"),
    # [V] Panasonic KX-HDV130 admin guide (2017-07) §2.1.5: options 160 (priority 1), 159 (2),
    # 66 (3). [V] KX-HDV430 guide p. 28: a URL ending in "/" makes the phone fetch {MODEL}.cfg.
    "panasonic": DhcpFacts("panasonic", (DhcpOption(160, "{url}"), DhcpOption(159, "{url}"),
                                         DhcpOption(66, "{url}")),
                           "{MODEL}.cfg (e.g. KX-HDV230NE.cfg, KX-TGP600CE.cfg)",
                           "Panasonic KX-HDV130/KX-HDV430 Administrator Guides, §2.1.5"),
    # [V] Nx70: the provisioning server comes from DHCP option 114 or 66 (vendor-formats.md §7,
    # wazo plugins/wazo_gigaset). [I] that 114 is preferred when both are present.
    "gigaset": DhcpFacts("gigaset", (DhcpOption(114, "{url}"), DhcpOption(66, "{url}")),
                         "<mac>.xml",
                         "wazo plugins/wazo_gigaset/Nx70_83_v2_65_0/common.py; Gigaset wiki"),
}


def facts(vendor: str) -> DhcpFacts | None:
    return FACTS.get(vendor)


@cache
def can_onboard(vendor: str) -> bool:
    """Whether provctl has bootstrap files for the vendor's phones (an onboarding window can
    be opened for them): its module writes some for a sample phone."""
    module = vendors.get(vendor)
    probe = BootstrapInput("000000000000", vendor, next(iter(module.models.values())),
                           "https://host/token/", "https://host/bootstrap/")
    return bool(module.bootstrap_phone_files(probe))
