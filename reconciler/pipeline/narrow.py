"""Narrow a run to some phones (`plan/apply --device MAC --customer ID`). Pure.

The planner still sees every target whole: the selected phones' files are diffed as usual, and
every other managed file is presented as desired exactly as published, so it is neither
changed nor pruned, and the deletion limit still counts against every managed file. Desired
files of other phones that are not published yet are left for a full run.

A file belongs to the selection when the renderer made it for a selected phone, when it is a
firmware binary a selected phone's pin needs, or — for files no longer desired (a phone
removed from the desired state) — when it lies in a selected phone's (or customer's) token
directory or its name spells a selected MAC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.core.errors import NotFound
from reconciler.core.macs import normalize_mac
from reconciler.core.names import did_you_mean
from reconciler.pipeline.plan import Desired, DesiredFile, Observed
from reconciler.render.addressing import url_token
from reconciler.render.renderer import Artifact, Renderer


@dataclass(frozen=True)
class Selection:
    macs: frozenset[str]
    paths: frozenset[tuple[str, str]]  # (target, path) the renderer made for selected phones
    directories: frozenset[str]  # token directories that belong to the selection only
    tokens: Mapping[str, str] = field(default_factory=dict)  # per-device: MAC -> its directory

    def owns(self, target: str, path: str) -> bool:
        if (target, path) in self.paths:
            return True
        directory, _, name = path.rpartition("/")
        if directory and directory in self.directories:
            return True
        flat = name.lower().replace(":", "").replace("-", "")
        return any(mac in flat for mac in self.macs)

    def narrow(self, target: str, want: Mapping[str, DesiredFile],
               observed: Observed) -> dict[str, DesiredFile]:
        """What the planner should take as desired on this target for a narrowed run."""
        out: dict[str, DesiredFile] = {p: d for p, d in want.items() if self.owns(target, p)}
        for path, entry in observed.manifest.files.items():
            if path not in out and not self.owns(target, path):
                out[path] = Desired(entry.sha256, entry.size, None, entry.firmware)
        return out


def select(renderer: Renderer, artifacts: Mapping[str, Mapping[str, Artifact]],
           devices: Iterable[str] = (), customers: Iterable[str] = ()) -> Selection:
    """The selection of `--device` MACs and `--customer` IDs, checked against the state.

    A MAC not in the desired state is accepted (its files may wait to be pruned) when it is
    spelled right; an unknown customer is an error, with the closest known one.
    """
    state = renderer.state
    resolved = renderer.resolved()
    macs: set[str] = set()
    for text in devices:
        try:
            macs.add(normalize_mac(text))
        except ValueError as exc:
            raise NotFound(f"--device {text!r} is not a MAC address") from exc
    known_customers = set(state.customers)
    directories: set[str] = set()
    mode = state.provisioning.value.url_tokens
    for customer in customers:
        if customer not in known_customers:
            raise NotFound(f"unknown customer {customer!r}"
                           f"{did_you_mean(customer, known_customers)}")
        macs |= {mac for mac, d in resolved.items() if d.customer == customer}
        if mode == "per-customer":
            directories.add(url_token(renderer.fleet_secret, f"customer:{customer}"))
    tokens = {}
    if mode == "per-device":
        tokens = {mac: url_token(renderer.fleet_secret, mac) for mac in macs}
        directories |= set(tokens.values())
    firmware = set()
    for mac in macs & set(resolved):
        image = resolved[mac].firmware
        if image is not None:
            firmware.add(image.file)
    paths = set()
    for target, files in artifacts.items():
        for path, art in files.items():
            if art.device in macs or (art.device is None and art.source is not None
                                      and path.rpartition("/")[2] in firmware):
                paths.add((target, path))
    return Selection(frozenset(macs), frozenset(paths), frozenset(directories), tokens)


def unknown_macs(selection: Selection, known: Iterable[str],
                 observed: Mapping[str, Observed]) -> list[str]:
    """Selected MACs neither in the desired state nor owning any managed file: typos."""
    missing = sorted(selection.macs - set(known))
    if not missing:
        return []
    managed = [(name, path) for name, obs in observed.items() for path in obs.manifest.files]
    out = []
    for mac in missing:
        alone = Selection(frozenset({mac}), frozenset(), frozenset(
            d for m, d in selection.tokens.items() if m == mac))
        if not any(alone.owns(name, path) for name, path in managed):
            out.append(mac)
    return out
