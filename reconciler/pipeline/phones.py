"""The loop with the phones, for the pipeline: from the rendered desired state and the opened
targets to what each phone fetched (reconciler/uptake does the work; this module only says
which files are whose and which logs to read).

Used by plan and apply (the redirect window ends at a phone's first fetch), by
`status --devices` and `history`, and by the daemon (metrics) through apply.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.desired.schema import LocalTarget
from reconciler.desired.validate import DesiredState
from reconciler.pipeline.bootstrap import BootstrapProbe
from reconciler.pipeline.onboarding import Arrival
from reconciler.render.addressing import show_path
from reconciler.targets.base import Target
from reconciler.targets.manifest import Manifest
from reconciler.uptake.devices import Phone, Uptake, arrived, device_uptake
from reconciler.uptake.match import Index, PathInfo, bootstrap_mac, own_file
from reconciler.uptake.observe import LogObservation, LogSpec, observe, scanners
from reconciler.uptake.store import FILE, Last, LogState, Store, Unknown

if TYPE_CHECKING:
    from reconciler.pipeline.run import RenderedState

RECEIPTS = "receipts.jsonl"  # pipeline/receipt.py writes it
STALE_AFTER = 36 * 3600.0  # phones resync nightly: no fetch for this long is stale


def log_specs(state: DesiredState, names: list[str] | None = None) -> dict[str, LogSpec]:
    """The targets that name an access log; a local target's relative path is the repo's."""
    out = {}
    for name, spec in state.provisioning.value.targets.items():
        if spec.access_log is None or (names is not None and name not in names):
            continue
        path = spec.access_log.path
        if isinstance(spec, LocalTarget):
            expanded = Path(os.path.expanduser(path))
            path = str(expanded if expanded.is_absolute() else (state.root / expanded).resolve())
        out[name] = LogSpec(name, path, spec.access_log.format, spec.access_log.scan_threshold)
    return out


def phones(desired: RenderedState) -> dict[str, Phone]:
    """Every phone with its own files on the rendered targets."""
    per_device = desired.state.provisioning.value.url_tokens == "per-device"
    files: dict[str, list[tuple[str, str]]] = {}
    for target, artifacts in desired.artifacts.items():
        for path, art in artifacts.items():
            if art.device and own_file(path.rpartition("/")[2], art.device, per_device):
                files.setdefault(art.device, []).append((target, path))
    out = {}
    for mac, device in desired.renderer.resolved().items():
        out[mac] = Phone(mac, device.vendor, device.model.name, device.device.name,
                         device.customer,
                         device.firmware.version if device.firmware is not None else None,
                         tuple(sorted(files.get(mac, ()))))
    return out


def indexes(desired: RenderedState, manifests: Mapping[str, Manifest],
            bootstrap: frozenset[str] = frozenset(), watch: frozenset[str] = frozenset()
            ) -> dict[str, Index]:
    """Per target: the paths provctl publishes (desired, and still in its manifest); the
    bootstrap directories and the onboarding phones (docs/zero-touch.md)."""
    per_device = desired.state.provisioning.value.url_tokens == "per-device"
    out = {}
    for target, artifacts in desired.artifacts.items():
        files = {path: PathInfo(art.device, bool(art.device) and own_file(
            path.rpartition("/")[2], art.device or "", per_device))
            for path, art in artifacts.items()}
        for path in manifests.get(target, Manifest()).files:
            files.setdefault(path, PathInfo(None, False))
        out[target] = Index.build(files, bootstrap=bootstrap, watch=watch)
    return out


@dataclass
class FleetUptake:
    """What is known of the phones after an observation."""

    logs: list[LogObservation] = field(default_factory=list)  # what this run read
    devices: dict[str, Uptake] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)  # mac -> latest own fetch
    scanners: list[Unknown] = field(default_factory=list)
    log_states: list[LogState] = field(default_factory=list)
    configured: bool = False  # some target names an access log
    revision: str | None = None  # the desired state's (phones `unapplied` have not got it)
    lasts: Mapping[tuple[str, str], Last] = field(default_factory=dict)  # for rollout gates

    @property
    def warnings(self) -> list[str]:
        return [w for obs in self.logs for w in obs.warnings]


def observe_phones(desired: RenderedState, targets: Mapping[str, Target], state_dir: Path,
                   manifests: Mapping[str, Manifest], *, read_logs: bool = True,
                   stale_after: float = STALE_AFTER,
                   now: Callable[[], float] = time.time,
                   bootstrap: frozenset[str] = frozenset(),
                   watch: frozenset[str] = frozenset()) -> FleetUptake:
    """Read the logs of the opened targets (when `read_logs`), then each phone's state.
    `bootstrap`: the bootstrap directories; `watch`: the onboarding phones, whose fetch
    addresses are kept (pipeline/bootstrap.py)."""
    specs = log_specs(desired.state, list(desired.artifacts))
    if not specs and not (state_dir / "uptake.sqlite3").exists():
        return FleetUptake()
    result = FleetUptake(configured=bool(specs), revision=desired.state.revision)
    if read_logs and specs:
        result.logs = observe(targets, specs, indexes(desired, manifests, bootstrap, watch),
                              state_dir, state_dir / RECEIPTS, now)
    with Store(state_dir) as store:
        if not read_logs:
            store.ingest_receipts(state_dir / RECEIPTS)
        lasts = result.lasts = store.lasts()
        newest = store.newest_versions()
        result.scanners = scanners(store, {n: s.scan_threshold for n, s in specs.items()})
        result.log_states = store.log_states()
    by_shown = {}
    published = {}
    for name, manifest in manifests.items():
        for path, entry in manifest.files.items():
            published[(name, path)] = entry.sha256
    moment = now()
    for mac, phone in phones(desired).items():
        for key in phone.files:
            version = newest.get((key[0], show_path(key[1])))
            if version is not None:
                by_shown[key] = version
        uptake = device_uptake(phone, lasts, by_shown, published, moment, stale_after)
        if any(key[0] in manifests and published.get(key) != desired.artifacts[key[0]][
                key[1]].sha256 for key in phone.files):
            uptake = replace(uptake, unapplied=True)
        result.devices[mac] = uptake
        came = arrived(phone, lasts)
        if came is not None:
            result.arrived[mac] = came
    return result


class StoreFetches:
    """What the observation store says of the phones' own files (pipeline/bootstrap.Fetches):
    the onboarding windows close on it. Opens the store on first use (none yet: nobody
    fetched anything); a context manager that closes it."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.store: Store | None = None
        self.missing = False

    def __enter__(self) -> StoreFetches:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _store(self) -> Store | None:
        if self.store is None and not self.missing:
            if (self.state_dir / FILE).exists():
                self.store = Store(self.state_dir)
            else:
                self.missing = True
        return self.store

    def first_fetch(self, mac: str, since: float) -> Arrival | None:
        store = self._store()
        found = store.first_own_fetch(mac, since) if store is not None else None
        return None if found is None else Arrival(*found)

    def fetch_ips(self, mac: str, since: float, until: float) -> set[str]:
        store = self._store()
        return store.fetch_ips(mac, since, until) if store is not None else set()

    def bootstrap_requests(self, directories: frozenset[str]) -> list[BootstrapProbe]:
        """Clients that asked for MAC-named files in a bootstrap directory that were not
        there (a 403, 404 or 429: uptake/match.py), with the MACs they named."""
        store = self._store()
        if store is None:
            return []
        unknowns = store.unknowns()
        out = []
        for u in unknowns:
            paths = [p for p in u.paths if p.partition("/")[0] in directories]
            macs = sorted({m for p in paths if (m := bootstrap_mac(p.partition("/")[2]))})
            if macs:
                out.append(BootstrapProbe(u.target, u.ip, tuple(macs), tuple(paths), u.last))
        return out


def fetches(state_dir: Path) -> StoreFetches:
    return StoreFetches(state_dir)
