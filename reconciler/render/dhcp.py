"""DHCP configurations for zero-touch: the options that send a customer's factory-fresh phones to
the customer's bootstrap URL, for ISC dhcpd, Kea and dnsmasq.

Pure: a function of the desired state (the customer's phones, their vendors and MACs) and the
bootstrap URL. Phones are matched by the MAC prefixes (OUIs) of the customer's own inventory, so
the configuration hands the URL only to phone makes the customer has, with the option numbers
and value forms each vendor's factory firmware reads (vendors/zerotouch.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from vendors import zerotouch

FORMATS = ("isc", "kea", "dnsmasq")


@dataclass(frozen=True)
class VendorGroup:
    vendor: str
    prefixes: tuple[str, ...]  # OUIs, 6 lowercase hex digits
    options: tuple[tuple[int, str], ...]  # (code, value), the firmware's preferred first
    phones: int


@dataclass(frozen=True)
class DhcpPlan:
    customer: str
    url: str  # the bootstrap URL
    groups: tuple[VendorGroup, ...]
    unsupported: tuple[str, ...] = ()  # vendors with no known DHCP facts


def plan_dhcp(customer: str, url: str, vendor_of: Mapping[str, str]) -> DhcpPlan:
    """`vendor_of`: MAC (12 lowercase hex) -> vendor, for the customer's phones."""
    by_vendor: dict[str, set[str]] = {}
    count: dict[str, int] = {}
    for mac, vendor in vendor_of.items():
        by_vendor.setdefault(vendor, set()).add(mac[:6])
        count[vendor] = count.get(vendor, 0) + 1
    groups, unsupported = [], []
    for vendor in sorted(by_vendor):
        facts = zerotouch.facts(vendor)
        if facts is None:
            unsupported.append(vendor)
            continue
        options = tuple((o.code, o.value.replace("{url}", url).replace("{{mac}}", "{mac}"))
                        for o in facts.options)
        groups.append(VendorGroup(vendor, tuple(sorted(by_vendor[vendor])), options,
                                  count[vendor]))
    return DhcpPlan(customer, url, tuple(groups), tuple(unsupported))


def _name(plan: DhcpPlan, group: VendorGroup) -> str:
    return f"provctl-{plan.customer}-{group.vendor}"


def _colons(prefix: str) -> str:
    return ":".join(prefix[i:i + 2] for i in range(0, 6, 2))


_SAFE = re.compile(r'^[^"\\\x00-\x1f\x7f]*$')


def _check(value: str) -> str:
    """A value placed inside a quoted string of a DHCP server's configuration."""
    if not _SAFE.match(value):
        raise ValueError(f"a DHCP option value may not contain quotes, backslashes or control "
                         f"characters: {value!r}")
    return value


def _header(plan: DhcpPlan, comment: str) -> list[str]:
    lines = [f"{comment} provctl dhcp --customer {plan.customer}: zero-touch for its phones.",
             f"{comment} Bootstrap URL: {plan.url} (changes with the customer's",
             f"{comment} bootstrap.rotation; published files there carry no credentials)."]
    for vendor in plan.unsupported:
        lines.append(f"{comment} {vendor}: no known DHCP option; provision by redirect or by hand.")
    return lines


def isc(plan: DhcpPlan) -> str:
    """dhcpd.conf statements: option definitions, then one class per vendor (global scope)."""
    out = _header(plan, "#")
    out.append("# Include at the global scope of dhcpd.conf. Options are sent to clients that ask")
    out.append("# for them (the phones' parameter request list).")
    codes = sorted({code for g in plan.groups for code, _ in g.options if code != 66})
    for code in codes:
        out.append(f"option provctl-option-{code} code {code} = text;")
    for group in plan.groups:
        match = " or ".join(f"substring(hardware, 1, 3) = {_colons(p)}" for p in group.prefixes)
        out.append(f'class "{_name(plan, group)}" {{  # {group.phones} phone(s)')
        out.append(f"  match if {match};")
        for code, value in group.options:
            name = "tftp-server-name" if code == 66 else f"provctl-option-{code}"
            out.append(f'  option {name} "{_check(value)}";')
        out.append("}")
    return "\n".join(out) + "\n"


def kea(plan: DhcpPlan) -> str:
    """A Kea `Dhcp4` fragment: one client class per vendor, its options sent always.

    Values go as hex bytes (`csv-format: false`): Kea refuses to redefine standard codes (159 is
    RFC 7618's port parameters there), and the phones want the plain string bytes.
    """
    classes = []
    for group in plan.groups:
        test = " or ".join(f"substring(pkt4.mac, 0, 3) == 0x{p}" for p in group.prefixes)
        options = [{"code": code, "csv-format": False, "always-send": True,
                    "data": _check(value).encode().hex(), "comment": value}
                    for code, value in group.options]
        classes.append({"name": _name(plan, group), "test": test, "option-data": options,
                        "comment": f"{group.phones} {group.vendor} phone(s)"})
    doc = {"Dhcp4": {"client-classes": classes, "subnet4": []}}
    head = "\n".join(_header(plan, "//"))
    return head + "\n// Merge client-classes into your Kea Dhcp4 configuration.\n" + \
        json.dumps(doc, indent=2) + "\n"


def dnsmasq(plan: DhcpPlan) -> str:
    """dnsmasq lines: a tag per vendor by MAC prefix, its options forced (sent unasked)."""
    out = _header(plan, "#")
    for group in plan.groups:
        tag = _name(plan, group)
        for prefix in group.prefixes:
            out.append(f"dhcp-mac=set:{tag},{_colons(prefix)}:*:*:*")
        for code, value in group.options:
            out.append(f'dhcp-option-force=tag:{tag},{code},"{_check(value)}"')
    return "\n".join(out) + "\n"


def render(plan: DhcpPlan, fmt: str) -> str:
    return {"isc": isc, "kea": kea, "dnsmasq": dnsmasq}[fmt](plan)
