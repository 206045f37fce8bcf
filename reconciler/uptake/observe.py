"""Observe the phones: read each target's access log from where the last run stopped, match the
requests to published files and record what each phone fetched.

    receipts -> timeline;  log --read--> lines --parse--> requests --match--> store

Reading goes through the target (`stat_file`, `read_range`: from disk, or over the SFTP
connection). A log that cannot be read is a warning on its target, never an error: observing
the phones must not stop a plan or an apply. Unparsable lines are counted.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path

from reconciler.core.errors import ProvctlError
from reconciler.uptake.accesslog import Format, Request, parse
from reconciler.uptake.match import PROBED, Index, PathInfo, Timeline, shown
from reconciler.uptake.reader import LogHost, LogReader
from reconciler.uptake.store import (
    SAMPLES,
    Batch,
    Concurrent,
    Event,
    Store,
    Unknown,
    Version,
)

log = logging.getLogger(__name__)

COMMIT_BYTES = 256 << 20  # save (cursor + what was read) at least this often
PRELOAD = 5000  # requests in one chunk from which the target's rows are read at once
SCAN_THRESHOLD = 10  # distinct unknown paths from one client: scanning


@dataclass(frozen=True)
class LogSpec:
    target: str
    path: str  # absolute, on the target's host
    format: Format = "combined"
    scan_threshold: int = SCAN_THRESHOLD


@dataclass
class LogObservation:
    """What one run read from one log (for output and metrics)."""

    target: str
    log: str
    requests: int = 0
    unparsed: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unknown: int = 0  # unknown fetches in this run
    events: int = 0  # phones that received a content new to them
    latencies: list[float] = field(default_factory=list)  # publish -> first fetch, seconds
    warnings: list[str] = field(default_factory=list)


_UNSEEN = Version(0.0, 0.0, "put", None, None, "", -1)  # no fetch seen in this run yet


class _Slot:
    """One published path while a log is read: what is stored of it, its timeline, and the
    latest fetch and failure seen in this run (written back to `row` when saved)."""

    __slots__ = ("row", "mac", "timeline", "after", "newest", "version", "got", "ok", "ok_at",
                 "err", "dirty", "watched")

    def __init__(self, row: list, mac: str | None, versions: list[Version],
                 watched: bool = False):
        self.row = row  # the fields of store.Last
        self.mac = mac  # the phone whose own file it is (events are recorded for it)
        self.watched = watched  # its fetch addresses are kept (an onboarding phone)
        self.timeline = Timeline(versions)
        newest = versions[-1] if versions else None
        # every request from `after` on got `newest`: most requests, answered without a search
        self.newest = newest if newest is not None and newest.action == "put" else None
        self.after = newest.ended + 1.0 if newest is not None else float("inf")
        self.version: Version | None = _UNSEEN  # the version of `ok`
        self.got = (row[5], row[6])  # (sha, rev) of the latest fetch known
        self.ok: Request | None = None
        self.ok_at: float = row[3] if row[3] is not None else float("-inf")
        self.err: Request | None = None
        self.dirty = False

    def flush(self) -> tuple:
        row, ok, err = self.row, self.ok, self.err
        if ok is not None:
            v = self.version
            row[3:11] = (ok.at, ok.status, v.sha if v else None, v.rev if v else None, ok.ip,
                         ok.agent, v.ended if v else None, v.seq if v else None)
        if err is not None and (row[11] is None or err.at >= row[11]):
            row[11:15] = (err.at, err.status, err.ip, err.agent)
        self.dirty = False
        return tuple(row)


class _Accumulator:
    """Merges the requests of one log into a Batch; reads the store only for paths it meets
    (or, for a big read, the target's rows at once)."""

    def __init__(self, target: str, index: Index, store: Store, obs: LogObservation):
        self.target = target
        self.index = index
        self.store = store
        self.obs = obs
        self.batch = Batch()
        self.slots: dict[str, _Slot] = {}
        self.unknown: dict[str, list] = {}  # ip -> [count, first, last, paths]
        self.preloaded: dict[str, list] | None = None  # path -> stored row, when preloaded
        self.versions: dict[str, list[Version]] | None = None  # shown path -> its timeline
        self.dirty: list[_Slot] = []  # changed since the last save

    def _slot(self, path: str, info: PathInfo) -> _Slot:
        if self.preloaded is not None:
            row = self.preloaded.pop(path, None)
        else:
            row = self.store.last_row(self.target, path)
        mac = info.device if info.own else None
        if row is None:
            row = [self.target, path, mac, None, None, None, None, None, None, None, None, None,
                   None, None, None]
        row[2] = mac
        name = shown(path)
        versions = (self.versions.get(name, []) if self.versions is not None
                    else self.store.versions(self.target, name))
        slot = self.slots[path] = _Slot(row, mac, versions, mac in self.index.watch)
        return slot

    def _preload(self) -> None:
        """Many requests to match: read the target's rows and timeline at once, not per path."""
        self.preloaded = {row[1]: row for row in self.store.last_rows(self.target)}
        self.versions = self.store.all_versions(self.target)

    def add(self, requests: list[Request], unparsed: int) -> None:
        """The hot loop of observing (a million lines in a few seconds): keep it lean."""
        if self.preloaded is None and len(requests) >= PRELOAD:
            self._preload()
        files = self.index.files
        probe = self.index.probe
        slots = self.slots
        obs = self.obs
        obs.requests += len(requests)
        obs.unparsed += unparsed
        obs.statuses.update(map(itemgetter(4), requests))
        batch = self.batch
        batch.requests += len(requests)
        batch.unparsed += unparsed
        if requests:
            batch.newest = max(batch.newest or 0.0, max(map(itemgetter(0), requests)))
        dirty = self.dirty
        for r in requests:
            at, _, method, path, status, size, _, _ = r
            slot = slots.get(path)
            if slot is None:
                info = files.get(path)
                if info is None:
                    if status in PROBED and probe(path):
                        self._unknown(r)
                    continue
                slot = self._slot(path, info)
            if (status == 200 or status == 304) and method == "GET":  # a fetch (match.py)
                if at < slot.ok_at:
                    continue  # older than the fetch already known
                version = slot.newest if at >= slot.after else slot.timeline.at(at, size, status)
                if version is not slot.version:
                    got = (version.sha, version.rev) if version else (None, None)
                    if slot.mac is not None and (slot.ok_at == float("-inf") or got != slot.got):
                        self._event(slot, r, version)
                    slot.version, slot.got = version, got
                slot.ok, slot.ok_at = r, at
                if slot.watched:
                    self._seen(slot, r)
            elif status >= 400:
                if slot.err is None or at >= slot.err.at:
                    slot.err = r
            else:
                continue
            if not slot.dirty:
                slot.dirty = True
                dirty.append(slot)

    def _event(self, slot: _Slot, r: Request, version: Version | None) -> None:
        published = version.ended if version else None
        assert slot.mac is not None
        self.batch.events.append(Event(
            slot.mac, r.at, self.target, r.path, r.status, version.sha if version else None,
            version.rev if version else None, r.ip, r.agent, published))
        self.obs.events += 1
        if published is not None:
            self.obs.latencies.append(max(0.0, r.at - published))

    def _seen(self, slot: _Slot, r: Request) -> None:
        """An onboarding phone's own file fetched: from which address, when (hijack check)."""
        assert slot.mac is not None
        entry = self.batch.seen.get((slot.mac, r.ip))
        if entry is None:
            self.batch.seen[(slot.mac, r.ip)] = [r.at, r.at, 1]
        else:
            entry[0] = min(entry[0], r.at)
            entry[1] = max(entry[1], r.at)
            entry[2] += 1

    def _unknown(self, r: Request) -> None:
        self.obs.unknown += 1
        entry = self.unknown.get(r.ip)
        if entry is None:
            known = self.store.unknown(self.target, r.ip)
            entry = ([known.count, known.first, known.last, list(known.paths)] if known else
                     [0, r.at, r.at, []])
            self.unknown[r.ip] = entry
        entry[0] += 1
        entry[1] = min(entry[1], r.at)
        entry[2] = max(entry[2], r.at)
        if len(entry[3]) < SAMPLES and r.path not in entry[3]:
            entry[3].append(r.path)

    def take(self) -> Batch:
        batch = self.batch
        batch.last = [slot.flush() for slot in self.dirty]
        self.dirty.clear()
        batch.unknown = {ip: Unknown(self.target, ip, e[0], e[1], e[2], tuple(e[3]))
                         for ip, e in self.unknown.items()}
        self.batch = Batch()
        # slots and unknown stay: they are merged further (unknown written again, idempotent)
        return batch


def observe_log(host: LogHost, spec: LogSpec, index: Index, store: Store,
                now: Callable[[], float]) -> LogObservation:
    """Read one log from its cursor to its end (bounded), record it, return what was seen."""
    with _few_collections():
        return _observe_log(host, spec, index, store, now)


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Reading a log allocates a tuple per line and a few objects per path, none in a cycle:
    the collector's default (a pass every 700 allocations) cost a fifth of the time. Fewer
    passes while reading; the thresholds as they were afterwards."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _observe_log(host: LogHost, spec: LogSpec, index: Index, store: Store,
                 now: Callable[[], float]) -> LogObservation:
    obs = LogObservation(spec.target, spec.path)
    state = store.log_state(spec.target, spec.path)
    since = state.cursor if state else None
    reader = LogReader(host, spec.path, since)
    acc = _Accumulator(spec.target, index, store, obs)
    pending = 0
    cursor = since
    try:
        try:
            for data, cursor in reader.segments():
                if data:
                    requests, bad = parse(data, spec.format)
                    acc.add(requests, bad)
                    pending += len(data)
                if pending >= COMMIT_BYTES:
                    store.save(spec.target, spec.path, cursor, acc.take(), now(), since)
                    since, pending = cursor, 0
        except ProvctlError as exc:
            obs.warnings.append(f"access log {spec.path} cannot be read: {exc}")
        store.save(spec.target, spec.path, cursor, acc.take(), now(), since)
    except Concurrent as exc:
        log.info("%s; its requests are counted there", exc)
        return LogObservation(spec.target, spec.path)
    obs.warnings += [f"target {spec.target}: {note}" for note in reader.notes]
    if reader.missing:
        log.info("target %s: access log %s does not exist yet", spec.target, spec.path)
    if reader.dropped:
        obs.warnings.append(f"target {spec.target}: {reader.dropped} over-long line(s) dropped "
                            f"in {spec.path}")
    for warning in obs.warnings:
        log.warning("%s", warning)
    return obs


def observe(hosts: Mapping[str, LogHost], specs: Mapping[str, LogSpec],
            indexes: Mapping[str, Index], state_dir: Path, receipts: Path,
            now: Callable[[], float]) -> list[LogObservation]:
    """Every target's log that can be read; a target that cannot be reached is a warning."""
    out = []
    with Store(state_dir) as store:
        store.ingest_receipts(receipts)
        for name, spec in sorted(specs.items()):
            host = hosts.get(name)
            if host is None:
                continue
            index = replace(indexes[name], former=frozenset(store.known_paths(name)))
            out.append(observe_log(host, spec, index, store, now))
    return out


def scanners(store: Store, thresholds: Mapping[str, int]) -> list[Unknown]:
    """Clients that asked for at least the target's threshold of distinct unknown paths."""
    return [u for u in store.unknowns()
            if len(u.paths) >= thresholds.get(u.target, SCAN_THRESHOLD)]
