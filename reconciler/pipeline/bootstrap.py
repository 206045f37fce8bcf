"""The onboarding stage (docs/zero-touch.md): whose onboarding windows are open now, and the
bootstrap files that are published for them.

    onboard settings + memory (state directory) + observed fetches + clock
        -> windows (pipeline/onboarding.py, pure) -> bootstrap files (render/bootstrap.py)

Observing is read-only: `observe()` computes the windows and the memory to keep; only apply
saves it (`save()`), after it ran. A window closes at the phone's first fetch of its own file
(the access logs, reconciler/uptake) or when it runs out; its bootstrap files are then no
longer desired, and the plan withdraws them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

import vendors
from reconciler.core.files import atomic_write
from reconciler.pipeline.onboarding import (
    Arrival,
    FleetMemory,
    Setting,
    Window,
    fleet_windows,
    memory_from_json,
    memory_to_json,
    suspicious_ips,
)
from reconciler.pipeline.plan import FileChange
from reconciler.pipeline.receipt import iso
from reconciler.render.bootstrap import BootstrapFile, bootstrap_directories, render_bootstrap
from reconciler.render.renderer import Renderer
from reconciler.uptake.match import bootstrap_mac

log = logging.getLogger(__name__)

MEMORY = "onboarding.json"


@dataclass(frozen=True)
class BootstrapProbe:
    """A client that asked a bootstrap directory for MAC-named files that were not there."""

    target: str
    ip: str
    macs: tuple[str, ...]  # the MACs the paths name
    paths: tuple[str, ...]
    last: float


class Fetches(Protocol):
    """What the access logs say of the phones' own files (reconciler/uptake; a fake in tests)."""

    def first_fetch(self, mac: str, since: float) -> Arrival | None:
        """The phone's first fetch of one of its own files at or after `since`."""
        ...

    def fetch_ips(self, mac: str, since: float, until: float) -> set[str]:
        """The client addresses that fetched one of its own files in [since, until]."""
        ...

    def bootstrap_requests(self, directories: frozenset[str]) -> list[BootstrapProbe]:
        """Clients that asked for MAC-named files missing from a bootstrap directory."""
        ...


class NoFetches:
    """No access log is read: no phone is seen arriving."""

    def first_fetch(self, mac: str, since: float) -> Arrival | None:
        return None

    def fetch_ips(self, mac: str, since: float, until: float) -> set[str]:
        return set()

    def bootstrap_requests(self, directories: frozenset[str]) -> list[BootstrapProbe]:
        return []


@dataclass
class Onboarding:
    """The windows of one run and what they publish."""

    windows: dict[str, Window] = field(default_factory=dict)  # phones with a window, any state
    files: dict[str, dict[str, BootstrapFile]] = field(default_factory=dict)  # target -> path
    directories: frozenset[str] = frozenset()  # every bootstrap directory of the fleet
    memory: FleetMemory = field(default_factory=FleetMemory)  # to save after apply
    suspicious: dict[str, list[str]] = field(default_factory=dict)  # mac -> client addresses
    # bootstrap paths asked for MACs that are not onboarding (scanning)
    probes: list[BootstrapProbe] = field(default_factory=list)
    loaded: FleetMemory | None = None  # the memory as this run found it

    def open(self) -> list[str]:
        return sorted(mac for mac, w in self.windows.items() if w.open)

    def is_bootstrap(self, path: str) -> bool:
        """Whether a path lies in a bootstrap directory (withdrawn there, never pruned)."""
        return path.partition("/")[0] in self.directories

    def named(self, change: FileChange) -> FileChange:
        """A withdrawal with the phone it was for, when its name spells one of the fleet's."""
        mac = bootstrap_mac(change.path.rpartition("/")[2])
        if mac is not None and mac in (self.memory.known or ()):
            return replace(change, device=mac)
        return change


def memory_path(state_dir: Path) -> Path:
    return state_dir / MEMORY


def load_memory(state_dir: Path) -> FleetMemory:
    """The memory as the last apply saved it; none yet (or unreadable: said, and taken as the
    first run) is the first run."""
    path = memory_path(state_dir)
    try:
        return memory_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return FleetMemory()
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("%s cannot be read (%s): onboarding windows start afresh", path, exc)
        return FleetMemory()


def save(state_dir: Path, onboarding: Onboarding) -> None:
    """Keep the memory for the next run (not rewritten when this run changed nothing)."""
    if onboarding.loaded is not None and onboarding.memory == onboarding.loaded:
        return
    atomic_write(memory_path(state_dir),
                 (json.dumps(memory_to_json(onboarding.memory), sort_keys=True) + "\n").encode())


def settings(renderer: Renderer) -> dict[str, Setting]:
    out = {}
    # per model, not per phone (100,000 of them): whether its vendor has a redirect client,
    # and the one Setting (frozen) of its phones without `onboard`
    absent: dict[str, Setting] = {}
    for mac, located in renderer.state.devices.items():
        device = located.value
        shared = absent.get(device.model)
        if shared is None:
            has = bool(vendors.get(device.vendor).redirect_kinds)
            shared = absent[device.model] = Setting(None, has)
        out[mac] = shared if device.onboard is None else Setting(device.onboard_value,
                                                                 shared.has_redirect)
    return out


def observe(renderer: Renderer, targets: list[str], state_dir: Path, fetches: Fetches,
            now: datetime) -> Onboarding:
    """The windows now and the bootstrap files of the open ones, per target. Read-only."""
    policy = renderer.state.provisioning.value.policy
    moment = now.timestamp()
    loaded = load_memory(state_dir)
    windows, memory = fleet_windows(settings(renderer), loaded, fetches.first_fetch,
                                    policy.onboarding_window_days, moment)
    result = Onboarding(windows, {}, bootstrap_directories(renderer), memory, loaded=loaded)
    open_macs = result.open()
    for target in targets:
        result.files[target] = render_bootstrap(renderer, target, open_macs)
    seen = {mac: fetches.fetch_ips(mac, w.opened, min(moment, w.until))
            for mac, w in windows.items() if w.opened is not None and w.until is not None}
    result.suspicious = suspicious_ips(seen, windows)
    for probe in fetches.bootstrap_requests(result.directories):
        strangers = tuple(m for m in probe.macs if m not in windows)
        if strangers:
            result.probes.append(replace(probe, macs=strangers))
    return result


def window_text(w: Window) -> str:
    """One line for people: the state and its times."""
    if w.state == "arrived" and w.arrival is not None:
        return f"arrived {iso(w.arrival.at)} from {w.arrival.ip}"
    if w.state == "expired" and w.until is not None:
        return f"expired {iso(w.until)}"
    if w.until is not None:
        return f"waiting until {iso(w.until)}"
    return w.state


def by_mac(files: Mapping[str, BootstrapFile]) -> dict[str, list[str]]:
    """mac -> the bootstrap paths that are published for it (its own and the shared ones)."""
    out: dict[str, list[str]] = {}
    for path, file in files.items():
        for mac in file.phones:
            out.setdefault(mac, []).append(path)
    return out


def watched(renderer: Renderer, state_dir: Path) -> frozenset[str]:
    """The phones whose fetch addresses the next observation keeps: those with a window in the
    memory, and those the desired state asks to onboard."""
    explicit = {mac for mac, located in renderer.state.devices.items()
                if located.value.onboard not in (None, False)}
    return frozenset(load_memory(state_dir).windows) | explicit


def warnings(onboarding: Onboarding) -> list[str]:
    """Hijack and scanning warnings, one line each (status, the daemon's log)."""
    out = [f"POSSIBLE HIJACK of {mac}: its own file was fetched from {', '.join(ips)} during its "
           "onboarding window (someone may have used its bootstrap file first)"
           for mac, ips in sorted(onboarding.suspicious.items())]
    for p in onboarding.probes:
        shown = ", ".join(p.macs[:5]) + (" …" if len(p.macs) > 5 else "")
        out.append(f"BOOTSTRAP SCANNING on {p.target}: {p.ip} asked the bootstrap URL for "
                   f"{len(p.macs)} MAC(s) that are not onboarding ({shown}), last at "
                   f"{iso(p.last)}")
    return out
