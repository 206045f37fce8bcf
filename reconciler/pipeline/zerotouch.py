"""Zero-touch behind DHCP: the DHCP configuration that sends a customer's factory-fresh phones to
its bootstrap URL (render/dhcp.py writes it; this module gathers what it needs)."""

from __future__ import annotations

import difflib

from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state
from reconciler.pipeline.run import Options
from reconciler.render.dhcp import plan_dhcp, render
from reconciler.render.renderer import Renderer


def dhcp_config(opts: Options, customer: str, fmt: str) -> str:
    """The DHCP configuration text for one customer's phones, in `fmt` (isc|kea|dnsmasq)."""
    state = load_state(read_source(opts.repo, opts.rev),
                       dict(opts.environ) if opts.environ is not None else None)
    customers = state.customers
    if customer not in customers:
        close = difflib.get_close_matches(customer, list(customers), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError([Problem("customers/", 0, "id",
                                   f"unknown customer {customer!r}{hint}")])
    located = customers[customer]
    renderer = Renderer(state)
    url = renderer.addressing.bootstrap_url(customer, located.value.bootstrap.rotation)
    if url is None:
        raise ConfigError([Problem(located.file, located.line("id"), "id",
                                   f"no target serves customer {customer!r}: it has no "
                                   "bootstrap URL")])
    vendor_of = {mac: d.vendor for mac, d in renderer.resolved().items()
                 if d.customer == customer}
    return render(plan_dhcp(customer, url, vendor_of), fmt)
