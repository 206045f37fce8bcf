"""Observe the phones: read each target's access log from where the last run stopped, match the
requests to published files and record what each phone fetched.

    receipts -> timeline;  log --read--> lines --parse--> requests --match--> store

Reading goes through the target (`stat_file`, `read_range`: from disk, or over the SFTP
connection). A log that cannot be read is a warning on its target, never an error: observing
the phones must not stop a plan or an apply. Unparsable lines are counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.errors import ProvctlError
from reconciler.render.addressing import show_path
from reconciler.uptake.accesslog import Format, Request, parse
from reconciler.uptake.match import FETCHED, PROBED, Index, PathInfo, Timeline
from reconciler.uptake.reader import LogHost, LogReader
from reconciler.uptake.store import SAMPLES, Batch, Event, Last, Store, Unknown

log = logging.getLogger(__name__)

COMMIT_BYTES = 64 << 20  # save (cursor + what was read) at least this often
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


class _Accumulator:
    """Merges requests of one log into a Batch; reads the store only for paths it meets."""

    def __init__(self, target: str, index: Index, store: Store, obs: LogObservation):
        self.target = target
        self.index = index
        self.store = store
        self.obs = obs
        self.batch = Batch()
        self.rows: dict[str, list] = {}  # path -> mutable Last fields, merged so far
        self.timelines: dict[str, Timeline] = {}
        self.unknown: dict[str, list] = {}  # ip -> [count, first, last, paths]

    def _row(self, path: str, info: PathInfo) -> list:
        row = self.rows.get(path)
        if row is None:
            row = self.store.last_row(self.target, path) or [
                self.target, path, None, None, None, None, None, None, None, None, None, None,
                None, None, None]
            row[2] = info.device if info.own else None
            self.rows[path] = row
        return row

    def _timeline(self, path: str) -> Timeline:
        timeline = self.timelines.get(path)
        if timeline is None:
            timeline = Timeline(self.store.versions(self.target, show_path(path)))
            self.timelines[path] = timeline
        return timeline

    def add(self, requests: list[Request], unparsed: int) -> None:
        files = self.index.files
        obs = self.obs
        obs.requests += len(requests)
        obs.unparsed += unparsed
        batch = self.batch
        batch.requests += len(requests)
        batch.unparsed += unparsed
        statuses = obs.statuses
        newest = batch.newest or 0.0
        for r in requests:
            statuses[r.status] += 1
            if r.at > newest:
                newest = r.at
            info = files.get(r.path)
            if info is None:
                if r.status in PROBED and self.index.probe(r.path):
                    self._unknown(r)
                continue
            row = self._row(r.path, info)
            if r.status in FETCHED and r.method == "GET":
                if row[3] is not None and r.at < row[3]:
                    continue  # older than the fetch already known
                version = self._timeline(r.path).at(r.at, r.size, r.status)
                sha = version.sha if version else None
                rev = version.rev if version else None
                published = version.ended if version else None
                if row[2] is not None and (row[3] is None or (sha, rev) != (row[5], row[6])):
                    batch.events.append(Event(row[2], r.at, self.target, r.path, r.status,
                                              sha, rev, r.ip, r.agent, published))
                    obs.events += 1
                    if published is not None:
                        obs.latencies.append(max(0.0, r.at - published))
                row[3:11] = [r.at, r.status, sha, rev, r.ip, r.agent, published,
                             version.seq if version else None]
            elif r.status >= 400 and (row[11] is None or r.at >= row[11]):
                row[11:15] = [r.at, r.status, r.ip, r.agent]
        batch.newest = newest or None

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
        batch.last = {path: Last(*row) for path, row in self.rows.items()}
        batch.unknown = {ip: Unknown(self.target, ip, e[0], e[1], e[2], tuple(e[3]))
                         for ip, e in self.unknown.items()}
        self.batch = Batch()
        # rows and unknown stay: they are merged further and written again (idempotent)
        return batch


def observe_log(host: LogHost, spec: LogSpec, index: Index, store: Store,
                now: Callable[[], float]) -> LogObservation:
    """Read one log from its cursor to its end (bounded), record it, return what was seen."""
    obs = LogObservation(spec.target, spec.path)
    state = store.log_state(spec.target, spec.path)
    reader = LogReader(host, spec.path, state.cursor if state else None)
    acc = _Accumulator(spec.target, index, store, obs)
    pending = 0
    cursor = state.cursor if state else None
    try:
        for data, cursor in reader.segments():
            if data:
                requests, bad = parse(data, spec.format)
                acc.add(requests, bad)
                pending += len(data)
            if pending >= COMMIT_BYTES:
                store.save(spec.target, spec.path, cursor, acc.take(), now())
                pending = 0
    except ProvctlError as exc:
        obs.warnings.append(f"access log {spec.path} cannot be read: {exc}")
    store.save(spec.target, spec.path, cursor, acc.take(), now())
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
            index = indexes[name]
            index = Index(index.files, index.tokens, frozenset(store.known_paths(name)))
            out.append(observe_log(host, spec, index, store, now))
    return out


def scanners(store: Store, thresholds: Mapping[str, int]) -> list[Unknown]:
    """Clients that asked for at least the target's threshold of distinct unknown paths."""
    return [u for u in store.unknowns()
            if len(u.paths) >= thresholds.get(u.target, SCAN_THRESHOLD)]
