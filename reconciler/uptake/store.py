"""What provctl has observed of the phones, kept in the state directory (`uptake.sqlite3`, the
only user of sqlite3): the cursor of each access log, the last fetch and the last failed request
of every published path, the fetch events of each phone (one per content it received), the
clients that asked for unknown paths, and the publish timeline read from the receipts.

A log's cursor is saved in the same transaction as what was read up to it, so a run that dies
half way neither loses nor counts a request twice. Several processes may use the file at once
(the daemon observes while an operator runs `status --devices`): SQLite's own locking, with a
busy timeout.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.uptake.reader import Cursor

FILE = "uptake.sqlite3"
SCHEMA = 1
SAMPLES = 50  # distinct unknown paths remembered per client

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cursor (
    target TEXT, log TEXT, fingerprint TEXT, length INTEGER, offset INTEGER,
    requests INTEGER DEFAULT 0, unparsed INTEGER DEFAULT 0, newest REAL, updated REAL,
    PRIMARY KEY (target, log));
CREATE TABLE IF NOT EXISTS last (
    target TEXT, path TEXT, mac TEXT,
    ok_at REAL, ok_status INTEGER, ok_sha TEXT, ok_rev TEXT, ok_ip TEXT, ok_agent TEXT,
    ok_published REAL, ok_seq INTEGER, err_at REAL, err_status INTEGER, err_ip TEXT, err_agent TEXT,
    PRIMARY KEY (target, path));
CREATE INDEX IF NOT EXISTS last_mac ON last (mac);
CREATE TABLE IF NOT EXISTS event (
    mac TEXT, at REAL, target TEXT, path TEXT, status INTEGER, sha TEXT, rev TEXT, ip TEXT,
    agent TEXT, published REAL);
CREATE INDEX IF NOT EXISTS event_mac ON event (mac, at);
CREATE TABLE IF NOT EXISTS unknown (
    target TEXT, ip TEXT, count INTEGER, first REAL, last REAL, paths TEXT,
    PRIMARY KEY (target, ip));
CREATE TABLE IF NOT EXISTS published (
    receipt TEXT, target TEXT, path TEXT, started REAL, ended REAL, action TEXT, sha TEXT,
    size INTEGER, rev TEXT, seq INTEGER, PRIMARY KEY (receipt, target, path));
CREATE INDEX IF NOT EXISTS published_path ON published (target, path, started, seq);
CREATE TABLE IF NOT EXISTS seen (
    mac TEXT, ip TEXT, first REAL, last REAL, count INTEGER, PRIMARY KEY (mac, ip));
"""


class Concurrent(Exception):
    """Another process saved the same log's cursor first."""


@dataclass(frozen=True)
class Version:
    """One publish (or delete) of a path, from a receipt."""

    started: float
    ended: float
    action: str  # put | delete
    sha: str | None  # None: a receipt older than the sha256 field
    size: int | None
    rev: str
    seq: int = 0  # the receipt's place in receipts.jsonl: orders publishes of the same second


@dataclass(frozen=True)
class Last:
    """The latest successful fetch and the latest failed request of one path."""

    target: str
    path: str
    mac: str | None
    ok_at: float | None = None
    ok_status: int | None = None
    ok_sha: str | None = None
    ok_rev: str | None = None
    ok_ip: str | None = None
    ok_agent: str | None = None
    ok_published: float | None = None  # when the content it got was published
    ok_seq: int | None = None  # and that publish's place in the receipts (orders same-second)
    err_at: float | None = None
    err_status: int | None = None
    err_ip: str | None = None
    err_agent: str | None = None


@dataclass(frozen=True)
class Event:
    """A phone received a content it did not have before (or its first one)."""

    mac: str
    at: float
    target: str
    path: str
    status: int
    sha: str | None
    rev: str | None
    ip: str
    agent: str
    published: float | None  # when that content was published (for publish-to-fetch time)


@dataclass(frozen=True)
class Unknown:
    """A client that asked for paths shaped like a phone's but not provctl's."""

    target: str
    ip: str
    count: int
    first: float
    last: float
    paths: tuple[str, ...]  # up to SAMPLES distinct ones


@dataclass(frozen=True)
class LogState:
    target: str
    log: str
    cursor: Cursor
    requests: int
    unparsed: int
    newest: float | None  # time of the newest request read
    updated: float


@dataclass
class Batch:
    """What was read from one log since the last save, merged before writing."""

    last: list[tuple[Any, ...]] = field(default_factory=list)  # merged rows: Last's fields
    events: list[Event] = field(default_factory=list)
    unknown: dict[str, Unknown] = field(default_factory=dict)  # ip -> merged
    # (mac, ip) -> [first, last, count]: an onboarding phone's own files fetched from ip
    seen: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    requests: int = 0
    unparsed: int = 0
    newest: float | None = None


class Store:
    def __init__(self, state_dir: Path):
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / FILE
        # It holds whole URL tokens (request paths): private, like the rest of the state
        # directory. SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_TABLES)
        self._check_schema()

    def _check_schema(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
        elif row[0] != str(SCHEMA):
            raise ValueError(f"{self.path}: schema {row[0]}, this provctl knows {SCHEMA}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- logs ---------------------------------------------------------------------------------

    def log_state(self, target: str, log: str) -> LogState | None:
        row = self.db.execute(
            "SELECT fingerprint, length, offset, requests, unparsed, newest, updated FROM cursor "
            "WHERE target=? AND log=?", (target, log)).fetchone()
        if row is None:
            return None
        return LogState(target, log, Cursor(row[0], row[1], row[2]), row[3], row[4], row[5],
                        row[6])

    def log_states(self) -> list[LogState]:
        rows = self.db.execute("SELECT target, log FROM cursor ORDER BY target, log").fetchall()
        return [s for t, log in rows if (s := self.log_state(t, log)) is not None]

    def last(self, target: str, path: str) -> Last | None:
        row = self.last_row(target, path)
        return None if row is None else Last(*row)

    def last_row(self, target: str, path: str) -> list[Any] | None:
        """The fields of `Last`, as a list the observer merges into."""
        row = self.db.execute("SELECT * FROM last WHERE target=? AND path=?",
                              (target, path)).fetchone()
        return None if row is None else list(row)

    def last_rows(self, target: str) -> list[list[Any]]:
        return [list(row) for row in self.db.execute("SELECT * FROM last WHERE target=?",
                                                      (target,))]

    def save(self, target: str, log: str, cursor: Cursor | None, batch: Batch, now: float,
             since: Cursor | None) -> None:
        """Write what was read and the cursor after it, in one transaction.

        `since` is the cursor the reading started from: when the stored one is another, some
        other process (the daemon, an operator's `status --devices`) read the same lines
        meanwhile, and this batch is dropped (raises Concurrent) rather than counted twice.
        """
        with self._transaction() as db:
            row = db.execute("SELECT fingerprint, length, offset FROM cursor WHERE target=? "
                             "AND log=?", (target, log)).fetchone()
            stored = None if row is None else Cursor(*row)
            if stored != since:
                raise Concurrent(f"access log {log} of target {target} was read by another "
                                 "process meanwhile")
            db.executemany(
                "INSERT OR REPLACE INTO last VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                batch.last)
            db.executemany(
                "INSERT INTO event VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(e.mac, e.at, e.target, e.path, e.status, e.sha, e.rev, e.ip, e.agent,
                  e.published) for e in batch.events])
            db.executemany(
                "INSERT INTO seen VALUES (?,?,?,?,?) ON CONFLICT (mac, ip) DO UPDATE SET "
                "first=min(first, excluded.first), last=max(last, excluded.last), "
                "count=count+excluded.count",
                [(mac, ip, *entry) for (mac, ip), entry in batch.seen.items()])
            db.executemany(
                "INSERT OR REPLACE INTO unknown VALUES (?,?,?,?,?,?)",
                [(u.target, u.ip, u.count, u.first, u.last, json.dumps(list(u.paths)))
                 for u in batch.unknown.values()])
            if cursor is None:
                db.execute("DELETE FROM cursor WHERE target=? AND log=?", (target, log))
                return
            db.execute(
                "INSERT INTO cursor VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (target, log) DO "
                "UPDATE SET fingerprint=excluded.fingerprint, length=excluded.length, "
                "offset=excluded.offset, requests=requests+excluded.requests, "
                "unparsed=unparsed+excluded.unparsed, "
                "newest=max(coalesce(newest, 0), coalesce(excluded.newest, 0)), "
                "updated=excluded.updated",
                (target, log, cursor.fingerprint, cursor.length, cursor.offset,
                 batch.requests, batch.unparsed, batch.newest, now))

    def unknown(self, target: str, ip: str) -> Unknown | None:
        row = self.db.execute("SELECT * FROM unknown WHERE target=? AND ip=?",
                              (target, ip)).fetchone()
        return None if row is None else _unknown(row)

    def unknowns(self) -> list[Unknown]:
        rows = self.db.execute("SELECT * FROM unknown ORDER BY target, count DESC, ip")
        return [_unknown(row) for row in rows]

    # --- what the phones got --------------------------------------------------------------------

    def lasts(self, target: str | None = None) -> dict[tuple[str, str], Last]:
        query = "SELECT * FROM last" + (" WHERE target=?" if target else "")
        rows = self.db.execute(query, (target,) if target else ())
        return {(row[0], row[1]): Last(*row) for row in rows}

    def events(self, mac: str) -> list[Event]:
        rows = self.db.execute("SELECT * FROM event WHERE mac=? ORDER BY at", (mac,))
        return [Event(*row) for row in rows]

    def first_own_fetch(self, mac: str, since: float) -> tuple[float, str] | None:
        """(time, client address) of the phone's first fetch of one of its own files at or
        after `since`, as far as the store knows it: the fetch events (a content new to the
        phone) and the latest fetch of each file."""
        rows = self.db.execute(
            "SELECT at, ip FROM event WHERE mac=? AND at>=? UNION ALL SELECT ok_at, ok_ip FROM "
            "last WHERE mac=? AND ok_at>=? ORDER BY 1 LIMIT 1", (mac, since, mac, since))
        row = rows.fetchone()
        return None if row is None else (float(row[0]), str(row[1]))

    def fetch_ips(self, mac: str, since: float, until: float) -> set[str]:
        """Client addresses that fetched the phone's own files between `since` and `until`
        (kept for the phones an observation watched; the rest from events and latest
        fetches). An address counts when its fetches span part of the interval."""
        rows = self.db.execute(
            "SELECT ip FROM seen WHERE mac=? AND last>=? AND first<=? UNION SELECT ip FROM "
            "event WHERE mac=? AND at BETWEEN ? AND ? UNION SELECT ok_ip FROM last WHERE mac=? "
            "AND ok_at BETWEEN ? AND ?", (mac, since, until, mac, since, until, mac, since,
                                          until))
        return {str(row[0]) for row in rows if row[0]}

    def fetched_since(self, macs: Iterable[str]) -> dict[str, float]:
        """mac -> the time of its latest successful fetch of one of its own files."""
        wanted = set(macs)
        rows = self.db.execute("SELECT mac, max(ok_at) FROM last WHERE ok_at IS NOT NULL "
                               "AND mac IS NOT NULL GROUP BY mac")
        return {mac: at for mac, at in rows if mac in wanted}

    # --- the publish timeline -----------------------------------------------------------------

    def ingest_receipts(self, path: Path) -> int:
        """Read new lines of receipts.jsonl (append-only) into the timeline; returns how many.

        Receipts name paths with the token shortened (show_path), so the timeline does too.
        """
        offset = int(self._meta("receipts_offset") or 0)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if size < offset:  # replaced or rotated by hand: read it all again (rows are unique)
            offset = 0
        if size == offset:
            return 0
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size - offset)
        cut = data.rfind(b"\n") + 1
        rows = []
        count = 0
        pos = offset  # the line's place in the file orders receipts of the same second
        for line in data[:cut].split(b"\n")[:-1]:
            try:
                receipt = json.loads(line)
                rows += [(*row, pos) for row in _timeline_rows(receipt)]
                count += 1
            except (ValueError, KeyError, TypeError, AttributeError):
                pass  # a damaged line: skipped, the others still count
            pos += len(line) + 1
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO published VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('receipts_offset', ?)",
                       (str(offset + cut),))
        return count

    def versions(self, target: str, shown_path: str) -> list[Version]:
        rows = self.db.execute(
            "SELECT started, ended, action, sha, size, rev, seq FROM published WHERE target=? AND "
            "path=? ORDER BY started, seq", (target, shown_path))
        return [Version(*row) for row in rows]

    def all_versions(self, target: str) -> dict[str, list[Version]]:
        """Every path's timeline on a target (token shortened), in publish order."""
        out: dict[str, list[Version]] = {}
        rows = self.db.execute(
            "SELECT path, started, ended, action, sha, size, rev, seq FROM published WHERE "
            "target=? ORDER BY path, started, seq", (target,))
        for row in rows:
            out.setdefault(row[0], []).append(Version(*row[1:]))
        return out

    def newest_versions(self) -> dict[tuple[str, str], Version]:
        """(target, path with the token shortened) -> its latest publish or delete."""
        rows = self.db.execute(
            "SELECT target, path, started, ended, action, sha, size, rev, seq FROM (SELECT *, "
            "row_number() OVER (PARTITION BY target, path ORDER BY started DESC, seq DESC) "
            "AS n FROM published) WHERE n = 1")
        return {(row[0], row[1]): Version(*row[2:]) for row in rows}

    def known_paths(self, target: str) -> set[str]:
        """Every path (token shortened) provctl ever published on the target."""
        rows = self.db.execute("SELECT DISTINCT path FROM published WHERE target=?", (target,))
        return {row[0] for row in rows}

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])


def _unknown(row: Any) -> Unknown:
    return Unknown(row[0], row[1], row[2], row[3], row[4], tuple(json.loads(row[5] or "[]")))


def _timeline_rows(receipt: Mapping[str, Any]) -> Iterator[tuple[Any, ...]]:
    from datetime import datetime

    def ts(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    started, ended = ts(receipt["started"]), ts(receipt["ended"])
    for target, body in receipt.get("targets", {}).items():
        for item in body.get("items", []):
            if item.get("error") is None and item.get("action") in ("put", "delete"):
                yield (receipt["id"], target, item["path"], started, ended, item["action"],
                       item.get("sha256"), item.get("size"), receipt["revision"])
