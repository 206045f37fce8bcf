"""The manifest and the journal: one format, read and written once for every target.

The manifest (`<meta_root>/manifest.json`: path -> sha256, size, mtime) is the only record of
what provctl published on a target; the reconciler never touches a file that is not in it.

The journal is append-only (`<meta_root>/journal/<generation>-<seq>.json`, one record per batch
of an apply, written with the meta store's atomic put and never rewritten): before each batch a
record names the paths it is about to write (so they stay ours, content unknown, if the run
dies) and confirms what the batch before did (path, sha256, size, mtime); the last record of a
complete apply carries its revision. The records are the manifest's delta: `read_state` folds
them onto it, those of a run that crashed included. The manifest is rewritten only when the
records have grown (`Journal.worth_compacting`), so an apply that changes a few files on a
100,000-file target writes a few small records, not 25 MB. A manifest names the newest record
generation it holds, so records whose removal failed are never applied twice.

`<meta_root>/journal.json` is the journal of earlier versions (a list of paths, rewritten per
batch): its paths are read as pending, and it is removed with the next manifest written.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core.errors import TargetError
from reconciler.targets.base import Delete, Put, Target, read_many

MANIFEST = "manifest.json"
JOURNAL = "journal.json"  # the journal of earlier versions: paths only
JOURNAL_DIR = "journal"  # the records, in the meta store
RECORD = "provctl-journal/2"
MAX_RECORDS = 64  # records kept as the manifest's delta before it is rewritten
COMPACT_BELOW = 2000  # entries: a manifest this small is always rewritten (it costs nothing)


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    size: int
    mtime: float = 0.0  # as the target reported it right after publishing
    firmware: str | None = None  # firmware version this file pinned, for downgrade checks


@dataclass(frozen=True)
class Manifest:
    files: Mapping[str, ManifestEntry] = field(default_factory=dict)
    revision: str | None = None  # desired-state revision last applied completely
    # The newest generation of journal records (pipeline/apply.py) folded into these files:
    # records of that generation or older that a crash left behind are not applied again.
    journal: int = 0

    def to_bytes(self) -> bytes:
        body: dict[str, object] = {
            "version": 1,
            "revision": self.revision,
            "files": {path: _entry_dict(e) for path, e in sorted(self.files.items())},
        }
        if self.journal:
            body["journal"] = self.journal
        # Compact: with indent, json falls back to its slow pure-Python encoder (100k files).
        return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse; anything malformed is a ValueError (never a KeyError or TypeError)."""
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("version") != 1:
                raise ValueError("unknown manifest format")
            files = {
                str(path): _entry(str(e["sha256"]), int(e["size"]), float(e.get("mtime", 0.0)),
                                  e.get("firmware"))
                for path, e in (body.get("files") or {}).items()
            }
            revision = body.get("revision")
            journal = int(body.get("journal", 0))
        except KeyError as exc:
            raise ValueError(f"an entry has no {exc}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"malformed entry: {exc}") from None
        return cls(files=files, revision=None if revision is None else str(revision),
                   journal=journal)


_new = object.__new__
_set = object.__setattr__


def _entry(sha256: str, size: int, mtime: float, firmware: str | None) -> ManifestEntry:
    """ManifestEntry(sha256, size, mtime, firmware) without the frozen __init__'s
    object.__setattr__ per field: 150,000 of them on every run."""
    entry = _new(ManifestEntry)
    _set(entry, "__dict__", {"sha256": sha256, "size": size, "mtime": mtime,
                             "firmware": firmware})
    return entry


def _entry_dict(entry: ManifestEntry) -> dict[str, object]:
    # Not dataclasses.asdict: it recurses and deep-copies (7 s for 150,000 entries).
    d: dict[str, object] = {"sha256": entry.sha256, "size": entry.size, "mtime": entry.mtime}
    if entry.firmware is not None:
        d["firmware"] = entry.firmware
    return d


def read(target: Target) -> Manifest:
    """The manifest, or an empty one when the target was never published to."""
    data = target.meta.read(MANIFEST)
    if data is None:
        return Manifest()
    try:
        return Manifest.from_bytes(data)
    except ValueError as exc:
        raise TargetError(
            target.name, f"cannot read manifest {target.meta.location}/{MANIFEST}: {exc}"
        ) from exc


def write(target: Target, manifest: Manifest) -> None:
    """Replace the manifest atomically."""
    [result] = target.meta.execute([Put(MANIFEST, manifest.to_bytes())])
    if result.error:
        raise TargetError(
            target.name, f"cannot write manifest: {result.error}", transient=result.transient
        )


def read_journal(target: Target) -> frozenset[str]:
    """Paths an interrupted apply of an earlier version may have written (journal.json)."""
    return _legacy_paths(target.meta.read(JOURNAL))


def _legacy_paths(data: bytes | None) -> frozenset[str]:
    try:
        return frozenset(str(p) for p in json.loads(data)["paths"]) if data else frozenset()
    except (ValueError, KeyError, TypeError):
        return frozenset()


@dataclass(frozen=True)
class JournalState:
    """What the journal on a target says, folded onto its manifest."""

    manifest: Manifest  # the manifest with every confirmed put and delete applied
    pending: frozenset[str] = frozenset()  # announced, never confirmed: ours, content unknown
    records: tuple[str, ...] = ()  # the record files read (removed once a manifest holds them)
    generation: int = 0  # the newest generation among them


def generation_of(path: str) -> int:
    try:
        return int(posixpath.basename(path).split("-", 1)[0])
    except ValueError:
        return 0


def read_state(target: Target, manifest: Manifest | None = None) -> JournalState:
    """The manifest with the journal folded onto it (read-only): what provctl published."""
    manifest = read(target) if manifest is None else manifest
    data = target.meta.read(JOURNAL)
    pending = set(_legacy_paths(data))
    legacy = (JOURNAL,) if data is not None else ()
    names = sorted(p for p in target.meta.scan([JOURNAL_DIR]) if p.endswith(".json"))
    if not names:
        return JournalState(manifest, frozenset(pending), legacy)
    bodies = read_many(target.meta, names)
    files = dict(manifest.files)
    revision = manifest.revision
    for name in names:
        if generation_of(name) <= manifest.journal:
            continue  # already in the manifest: its run finished but could not remove it
        try:
            record = json.loads(bodies.get(name) or b"")
            if record.get("format") != RECORD:
                continue
            for path, sha, size, mtime, firmware in record["done"]:
                files[path] = ManifestEntry(sha, int(size), float(mtime), firmware)
                pending.discard(path)
            for path in record["deleted"]:
                files.pop(path, None)
                pending.discard(path)
            pending |= set(record["intent"])
            revision = record.get("revision") or revision
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a torn record (written with a temporary name + rename: unlikely)
    generation = max(generation_of(n) for n in names)
    return JournalState(Manifest(files, revision, manifest.journal), frozenset(pending),
                        (*names, *legacy), generation)


class Journal:
    """The records of one apply on one target: one file per batch, never rewritten."""

    def __init__(self, target: Target, state: JournalState):
        self.target = target
        self.records = list(state.records)  # to remove once the manifest holds them
        self.generation = max(state.generation, state.manifest.journal) + 1
        self.seq = 0
        self.done: list[list[object]] = []  # confirmed since the last record
        self.deleted: list[str] = []
        self.announced: set[str] = set(state.pending)  # ours, maybe written
        self.entries = 0  # manifest entries confirmed in the records this apply wrote
        self.confirmed: set[str] = set()  # put or deleted by this apply

    @classmethod
    def resume(cls, target: Target, manifest: Manifest, pending: frozenset[str],
               records: Sequence[str]) -> Journal:
        """The journal of an apply that starts from an observation (manifest already folded)."""
        generation = max((generation_of(r) for r in records), default=0)
        return cls(target, JournalState(manifest, pending, tuple(records), generation))

    def write(self, intent: Sequence[str], revision: str | None = None) -> str | None:
        """One record: what is confirmed since the last one, what is about to be written, and
        (at the end of a complete apply) the revision. Returns the target's error, if any."""
        if not intent and not self.done and not self.deleted and revision is None:
            return None
        name = f"{JOURNAL_DIR}/{self.generation:012d}-{self.seq:06d}.json"
        record: dict[str, object] = {"format": RECORD, "intent": list(intent),
                                     "done": self.done, "deleted": self.deleted}
        if revision is not None:
            record["revision"] = revision
        body = json.dumps(record, separators=(",", ":")).encode()
        outcome = self.target.meta.execute([Put(name, body)])[0]
        if outcome.error is None:
            self.records.append(name)
            self.seq += 1
            self.entries += len(self.done) + len(self.deleted)
            self.done, self.deleted = [], []
        return outcome.error

    @property
    def idle(self) -> bool:
        """Nothing to record: no path announced, no record written by this apply, no legacy
        journal to remove (records kept as the manifest's delta may stay as they are)."""
        return not self.announced and self.seq == 0 and JOURNAL not in self.records

    def worth_compacting(self, files: int) -> bool:
        """Rewrite the manifest now? When it is small, when the records grow past MAX_RECORDS
        or hold more than a twentieth of its entries; until then a small apply on a large
        target writes only its records."""
        delta = self.entries + len(self.done) + len(self.deleted)
        return (files < COMPACT_BELOW or JOURNAL in self.records
                or len(self.records) + 1 > MAX_RECORDS or delta * 20 > files)

    def finish(self) -> str | None:
        """After the manifest was written: remove the records it holds, keeping in a new one
        the paths announced but never confirmed (a failed put: ours, content unknown)."""
        old, self.records = self.records, []
        leftover = sorted(self.announced - self.confirmed)
        error = None
        if leftover:
            self.generation += 1  # newer than the manifest: read again by the next run
            self.seq = 0
            self.done, self.deleted = [], []
            error = self.write(leftover)
        if old:
            with contextlib.suppress(TargetError):  # harmless: the fence skips them
                self.target.meta.execute([Delete(path) for path in old])
        return error
