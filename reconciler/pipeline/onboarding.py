"""Onboarding windows: while a phone may fetch its bootstrap file from the customer's bootstrap
URL (docs/zero-touch.md).

Pure: no I/O, no clock (`now` is passed in). A window opens when a phone's `onboard` value is
first seen (remembered, like a redirect window, with the revision that first carried it), and
closes when the phone's first fetch of its own per-device file is observed after it opened
(`arrived`), or when it runs out (`expired`). Only phones whose window is open get bootstrap
files; a closed window withdraws them.

`onboard` in devices/*.yaml: `true`, `false`, `{until: DATE}`, or absent. Absent means: open a
window for a phone newly added to the inventory when its vendor has no redirect client (it has
no other way to find its directory), and none otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time

DAY = 86400.0


@dataclass(frozen=True)
class Arrival:
    """The first observed fetch of a phone's per-device file."""

    at: float
    ip: str


@dataclass(frozen=True)
class Window:
    state: str  # waiting | arrived | expired | off
    opened: float | None = None
    until: float | None = None
    arrival: Arrival | None = None

    @property
    def open(self) -> bool:
        return self.state == "waiting"


def _until(value: object) -> float | None:
    if isinstance(value, Mapping) and value.get("until"):
        day = value["until"]
        if isinstance(day, str):
            day = date.fromisoformat(day)
        assert isinstance(day, date)
        return datetime.combine(day, time.max, UTC).timestamp()
    return None


def value_key(onboard: object, is_new: bool, has_redirect: bool) -> str | None:
    """What opens a window: a stable text for the device's onboard setting, or None (no window).

    Changing the value (e.g. `provctl onboard` writing a new `until`) opens a new window.
    """
    if onboard is False:
        return None
    if onboard is None:
        return "new" if is_new and not has_redirect else None
    return json.dumps(onboard, sort_keys=True, default=str)


@dataclass(frozen=True)
class Memory:
    """Per MAC: the onboard value's key and when provctl first saw it (the window's opening);
    once seen, the phone's first fetch of its own file after that (kept, so the arrival shown
    stays the first one)."""

    key: str
    opened: float
    arrival: Arrival | None = None

    def window_id(self) -> str:
        return hashlib.sha256(f"{self.key}@{self.opened}".encode()).hexdigest()[:16]


def remember(previous: Memory | None, key: str | None, now: float) -> Memory | None:
    if key is None:
        return None
    if previous is not None and previous.key == key:
        return previous
    return Memory(key, now)


def window(memory: Memory | None, onboard: object, window_days: int,
           arrival: Arrival | None, now: float) -> Window:
    """The phone's onboarding state now. `arrival`: its first per-device fetch observed (any
    time; only one after the window opened counts)."""
    if memory is None:
        return Window("off")
    until = _until(onboard)
    if until is None:
        until = memory.opened + window_days * DAY
    if arrival is not None and arrival.at >= memory.opened:
        return Window("arrived", memory.opened, until, arrival)
    if now > until:
        return Window("expired", memory.opened, until)
    return Window("waiting", memory.opened, until)


def suspicious_ips(fetches: Mapping[str, set[str]], windows: Mapping[str, Window]
                   ) -> dict[str, list[str]]:
    """Phones whose per-device file was fetched from more than one client IP during their window
    (a possible hijack: someone else used the bootstrap file first). `fetches`: MAC -> the client
    IPs that fetched its per-device file between the window's opening and its arrival or end."""
    out: dict[str, list[str]] = {}
    for mac, ips in fetches.items():
        w = windows.get(mac)
        if w is not None and w.state in ("waiting", "arrived") and len(ips) > 1:
            out[mac] = sorted(ips)
    return out


# --- the fleet ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What the desired state says of one phone's onboarding."""

    onboard: object  # Device.onboard_value: True, False, {"until": "YYYY-MM-DD"} or None
    has_redirect: bool  # its vendor has a redirect client in provctl


@dataclass(frozen=True)
class FleetMemory:
    """What provctl remembers between runs (the state directory's onboarding.json).

    `known` is the inventory as last seen, to tell a newly added phone; None before the first
    run, which takes the whole fleet as known: upgrading provctl opens no window by itself."""

    known: frozenset[str] | None = None
    windows: Mapping[str, Memory] = field(default_factory=dict)


FirstFetch = Callable[[str, float], Arrival | None]  # (mac, since) -> its first own fetch


def fleet_windows(settings: Mapping[str, Setting], memory: FleetMemory, first_fetch: FirstFetch,
                  window_days: int, now: float) -> tuple[dict[str, Window], FleetMemory]:
    """Every phone's window now, and the memory to keep. Phones without a window are left out.

    A phone is new when the last run did not know it; a window opened for a new phone by the
    default rule stays its window (key "new") as long as its `onboard` stays absent."""
    first_run = memory.known is None
    known = memory.known or frozenset()
    windows: dict[str, Window] = {}
    kept: dict[str, Memory] = {}
    remembered = memory.windows
    for mac, setting in settings.items():
        previous = remembered.get(mac)
        if setting.onboard is None and previous is None and (first_run or mac in known):
            continue  # no window, none remembered, not new: the 100,000 phones of a no-op
        is_new = (not first_run and mac not in known) or (
            previous is not None and previous.key == "new")
        mem = remember(previous, value_key(setting.onboard, is_new, setting.has_redirect), now)
        if mem is None:
            continue
        if mem.arrival is None:
            found = first_fetch(mac, mem.opened)
            if found is not None and found.at >= mem.opened:
                mem = replace(mem, arrival=found)
        kept[mac] = mem
        windows[mac] = window(mem, setting.onboard, window_days, mem.arrival, now)
    return windows, FleetMemory(frozenset(settings), kept)


def memory_to_json(memory: FleetMemory) -> dict[str, object]:
    return {
        "version": 1,
        "known": sorted(memory.known or ()),
        "windows": {mac: {"key": m.key, "opened": m.opened,
                          "arrival": None if m.arrival is None else [m.arrival.at, m.arrival.ip]}
                    for mac, m in sorted(memory.windows.items())},
    }


def memory_from_json(body: object) -> FleetMemory:
    """The memory as saved; ValueError when it is not provctl's."""
    if not isinstance(body, dict) or body.get("version") != 1:
        raise ValueError("not an onboarding memory (version 1)")
    windows = {}
    for mac, entry in (body.get("windows") or {}).items():
        arrival = entry.get("arrival")
        windows[str(mac)] = Memory(str(entry["key"]), float(entry["opened"]),
                                   Arrival(float(arrival[0]), str(arrival[1]))
                                   if arrival else None)
    return FleetMemory(frozenset(map(str, body.get("known") or ())), windows)
