"""Bootstrap files: what a factory-fresh phone finds under its customer's bootstrap URL while its
onboarding window is open (docs/zero-touch.md).

Per target that serves the customer, in `<bootstrap-token>/` (render/addressing.py):

- the phone's own bootstrap files (`VENDOR.bootstrap_phone_files`), named after its MAC: they
  send it to its own directory on the same target;
- the vendor's per-model files (`VENDOR.bootstrap_files`: Cisco `$PSN.xml`, Panasonic
  `{MODEL}.cfg`), shared by every onboarding phone of that model of the customer, published
  while any of them is onboarding.

A vendor module gets a `BootstrapInput`, which has no field for a credential; the NTP server is
the only parameter it carries, and only when it is a plain host name or address. Pure: a
function of the desired state and the MACs whose windows are open.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import vendors
from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.resolve import ResolvedDevice
from reconciler.desired.schema import SECRET_REF
from reconciler.render.addressing import serves
from reconciler.render.renderer import Artifact, Renderer
from reconciler.render.templating import TemplateError, render
from vendors.base import BootstrapInput, OutputFile
from vendors.zerotouch import can_onboard

HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[?[0-9A-Fa-f:.]+\]?)$")


@dataclass(frozen=True)
class BootstrapFile:
    """One file in a bootstrap directory and the onboarding phones that keep it published."""

    artifact: Artifact
    phones: frozenset[str]
    customer: str


def ntp_server(device: ResolvedDevice) -> str | None:
    """The phone's NTP server as a bootstrap file may carry it: a plain host, never a reference
    (a secret would be resolved into a file anyone on the network can read)."""
    server = (device.params.get("ntp") or {}).get("server")
    if not isinstance(server, str) or SECRET_REF.match(server) or not HOST.match(server):
        return None
    return server


def onboarding_problems(renderer: Renderer, macs: Iterable[str]) -> list[Problem]:
    """Phones asked to onboard that cannot be: no bootstrap files for the vendor, no customer
    (so no bootstrap URL), or no target serving the customer."""
    problems = []
    for mac in sorted(macs):
        device = renderer.device(mac)  # only the phones asked about are resolved
        located = device.located
        where = (located.file, located.line("onboard"), "onboard")
        if not can_onboard(device.vendor):
            problems.append(Problem(*where, f"{device.device.model} ({mac}): provctl has no "
                                    f"bootstrap files for {device.vendor} phones; use its "
                                    "redirect service (redirect: true) instead"))
        elif device.customer is None:
            problems.append(Problem(*where, f"{mac} is in the provider's pool: a bootstrap URL "
                                    "belongs to a customer, so allocate or assign it first"))
        elif renderer.addressing.primary_target(device.customer) is None:
            problems.append(Problem(*where, f"no target serves customer {device.customer!r}, "
                                    f"so {mac} has no bootstrap URL"))
    return problems


def bootstrap_url(renderer: Renderer, customer: str, target: str) -> str:
    base = renderer.state.provisioning.value.targets[target].base_url
    base = base if base.endswith("/") else base + "/"
    directory = renderer.addressing.bootstrap_directory(customer, rotation(renderer, customer))
    return f"{base}{directory}/"


def rotation(renderer: Renderer, customer: str) -> int:
    located = renderer.state.customers.get(customer)
    return located.value.bootstrap.rotation if located is not None else 0


def bootstrap_directories(renderer: Renderer) -> frozenset[str]:
    """Every bootstrap directory of the fleet's customers, this rotation and the earlier ones:
    files provctl published in one are bootstrap files (withdrawn, never pruned)."""
    out = set()
    for customer, located in renderer.state.customers.items():
        for n in range(located.value.bootstrap.rotation + 1):
            out.add(renderer.addressing.bootstrap_directory(customer, n))
    return frozenset(out)


def render_bootstrap(renderer: Renderer, target: str, macs: Iterable[str]
                     ) -> dict[str, BootstrapFile]:
    """The bootstrap files of one target for the phones whose windows are open: path -> file.
    Raises ConfigError (every problem at once) for a phone that cannot onboard."""
    wanted = sorted(set(macs))
    problems = onboarding_problems(renderer, wanted)
    if problems:
        raise ConfigError(problems)
    spec = renderer.state.provisioning.value.targets[target]
    out: dict[str, BootstrapFile] = {}
    shared: dict[tuple[str, str], set[str]] = {}  # (customer, path) -> phones
    for mac in wanted:
        device = renderer.device(mac)
        customer = device.customer
        assert customer is not None
        if not serves(spec, customer):
            continue
        vendor = vendors.get(device.vendor)
        directory = renderer.addressing.bootstrap_directory(customer, rotation(renderer, customer))
        url = bootstrap_url(renderer, customer, target)
        phone = BootstrapInput(mac, device.vendor, device.model,
                               renderer.provisioning_url(device, target), url, ntp_server(device))
        for file in vendor.bootstrap_phone_files(phone):
            path = f"{directory}/{file.name}"
            out[path] = BootstrapFile(_artifact(device, path, file, mac), frozenset({mac}),
                                      customer)
        for file in vendor.bootstrap_files(device.model, url):
            path = f"{directory}/{file.name}"
            phones = shared.setdefault((customer, path), set())
            phones.add(mac)
            if path not in out:
                out[path] = BootstrapFile(_artifact(device, path, file, None), frozenset(),
                                          customer)
    for (customer, path), phones in shared.items():
        out[path] = BootstrapFile(out[path].artifact, frozenset(phones), customer)
    return dict(sorted(out.items()))


def _artifact(device: ResolvedDevice, path: str, file: OutputFile, mac: str | None) -> Artifact:
    vendor = vendors.get(device.vendor)
    try:
        text = render(file.template, file.context, autoescape=vendor.autoescape,
                      line_ending=file.line_ending)
    except TemplateError as exc:
        located = device.located
        raise ConfigError([Problem(located.file, located.line("mac"), device.mac,
                                   f"cannot render bootstrap file {file.name}: {exc}")]) from exc
    data = text.encode("utf-8")
    return Artifact(path, hashlib.sha256(data).hexdigest(), len(data), data, device=mac)
