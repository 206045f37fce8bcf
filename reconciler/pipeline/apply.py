"""Apply: the only stage that writes. It executes a plan's changes on one locked target.

Order on a target: puts first (a phone must find its file before a redirect points at it), then
deletes. Every file is either old or new at any moment (targets publish atomically), and a run
interrupted at any point converges on the next one, with costs that grow with what the run
does, not with the size of the target:

- **The journal is append-only**: before each batch of puts one small record names the paths
  it is about to write (so they stay ours, content unknown, if the run dies) and confirms what
  the batch before it did (path, sha256, size, mtime). Records are files under JOURNAL_DIR
  written with the target's own atomic put: no record is ever rewritten, and each costs the
  same however long the run.
- **The manifest is written at most once**, at the end, and only when the records have grown
  (MAX_RECORDS, or a twentieth of its entries): until then the records are its delta, and an
  apply that changes a few files writes a few small records, not 25 MB. Observing folds the
  records into the manifest (`read_journal`), those a crashed run left behind included, so what
  was confirmed is known and only the unconfirmed paths are written again.
- Records carry a generation (one more than the manifest's, or than any leftover record's);
  the manifest written at the end names the newest generation it holds, so leftover records
  of that generation or older (their deletion failed) are never applied twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core.errors import ConfigError, ProvctlError
from reconciler.pipeline.plan import FileChange
from reconciler.render.addressing import show_path
from reconciler.render.renderer import Artifact
from reconciler.targets.base import JOURNAL, Delete, FileOp, Manifest, ManifestEntry, Put, Target

log = logging.getLogger(__name__)

BATCH = 200  # files per batch (and per journal record); SIGTERM is honoured between batches
MAX_RECORDS = 64  # journal records kept as the manifest's delta before it is rewritten
COMPACT_BELOW = 2000  # entries: a manifest this small is always rewritten (it costs nothing)


@dataclass(frozen=True)
class ItemResult:
    target: str
    path: str
    action: str
    reason: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class TargetResult:
    target: str
    items: list[ItemResult] = field(default_factory=list)
    error: str | None = None  # the target as a whole failed (unreachable, lock, manifest)

    @property
    def failed(self) -> list[ItemResult]:
        return [i for i in self.items if not i.ok]

    @property
    def done(self) -> list[ItemResult]:
        return [i for i in self.items if i.ok]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


JOURNAL_DIR = posixpath.join(posixpath.dirname(JOURNAL), "journal")
RECORD = "provctl-journal/2"


@dataclass(frozen=True)
class JournalState:
    """What the journal records on a target say, folded onto its manifest."""

    manifest: Manifest  # the manifest with every confirmed put and delete applied
    pending: frozenset[str] = frozenset()  # announced, never confirmed: ours, content unknown
    records: tuple[str, ...] = ()  # the record files read (removed once a manifest holds them)
    generation: int = 0  # the newest generation among them


def _generation(path: str) -> int:
    try:
        return int(posixpath.basename(path).split("-", 1)[0])
    except ValueError:
        return 0


def read_journal(target: Target, manifest: Manifest) -> JournalState:
    """Fold the journal records found on the target onto its manifest (read-only)."""
    pending: set[str] = set()
    legacy = target.read(JOURNAL)  # provctl-journal/1: one file of paths, rewritten per batch
    if legacy:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            pending |= set(json.loads(legacy)["paths"])
    names = sorted(p for p in target.scan([JOURNAL_DIR]) if p.endswith(".json"))
    if not names:
        return JournalState(manifest, frozenset(pending), (JOURNAL,) if legacy else ())
    read_many = getattr(target, "read_many", None)  # SFTP pipelines the reads
    bodies = read_many(names) if read_many else {n: target.read(n) for n in names}
    files = dict(manifest.files)
    revision = manifest.revision
    for name in names:
        if _generation(name) <= manifest.journal:
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
    generation = max((_generation(n) for n in names), default=0)
    records = (*names, JOURNAL) if legacy else tuple(names)
    return JournalState(Manifest(files, revision, manifest.journal),
                        frozenset(pending), records, generation)


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
        generation = max((_generation(r) for r in records), default=0)
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
        outcome = self.target.execute([Put(name, body)])[0]
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
            self.target.execute([Delete(path) for path in old])  # harmless if it fails
        return error


def execute(target: Target, changes: Sequence[FileChange], artifacts: Mapping[str, Artifact],
            manifest: Manifest, revision: str, *, pending: frozenset[str] = frozenset(),
            stop: Callable[[], bool] = lambda: False, journal: Journal | None = None,
            finish: bool = True, complete: bool = True) -> tuple[TargetResult, Manifest]:
    """Run the changes for one target (already locked); return results and the new manifest.

    Before each batch of puts a journal record names its paths (and confirms the batch
    before). With `finish`, the manifest is written once at the end, then the records are
    removed; without it (puts, before the redirect stage and the deletes) a last record
    confirms the last batch and the manifest is left to the call that finishes. `complete`:
    whether the earlier phases of this apply succeeded (the revision is recorded only then).
    `stop()` is checked between batches (SIGTERM in the daemon): what was done is recorded,
    nothing more is started.
    """
    result = TargetResult(target.name)
    journal = journal or Journal(target, JournalState(manifest))
    journal.announced |= pending
    files: dict[str, ManifestEntry] = dict(manifest.files)
    ordered = [c for c in changes if c.action == "put"] + [c for c in changes
                                                           if c.action == "delete"]
    by_path = {c.path: c for c in ordered}
    for start in range(0, len(ordered), BATCH):
        if stop():
            result.error = "stopped before finishing (SIGTERM); the next run completes it"
            break
        batch = ordered[start:start + BATCH]
        ops: list[FileOp] = []
        for change in batch:
            if change.action == "put":
                try:
                    ops.append(Put(change.path, artifacts[change.path].content()))
                except (ConfigError, OSError) as exc:
                    result.items.append(ItemResult(target.name, change.path, change.action,
                                                   change.reason, str(exc)))
            else:
                ops.append(Delete(change.path))
        intent = [op.path for op in ops
                  if isinstance(op, Put) and op.path not in journal.announced]
        if intent:
            error = journal.write(intent)
            if error:
                result.error = f"cannot write the journal {JOURNAL_DIR}: {error}"
                break
            journal.announced.update(intent)
        try:
            outcomes = target.execute(ops)
        except ProvctlError as exc:
            result.error = str(exc)
            break
        for outcome in outcomes:
            change = by_path[outcome.op.path]
            error = outcome.error
            if error is None and change.action == "put" and artifacts[change.path].source:
                error = _verify_upload(target, artifacts[change.path])
            result.items.append(ItemResult(target.name, change.path, change.action,
                                           change.reason, error))
            if error is not None:
                log.warning("%s: %s %s failed: %s", target.name, change.action,
                            show_path(change.path), error)
                continue  # a failed put stays announced: ours, written again next run
            log.info("%s: %s %s (%s)", target.name, change.action, show_path(change.path),
                     change.reason)
            if change.action == "put":
                art = artifacts[change.path]
                mtime = outcome.stat.mtime if outcome.stat else 0.0
                files[change.path] = ManifestEntry(art.sha256, art.size, mtime, art.firmware)
                journal.done.append([change.path, art.sha256, art.size, mtime, art.firmware])
            else:
                files.pop(change.path, None)
                journal.deleted.append(change.path)
            journal.confirmed.add(change.path)
    ok = complete and result.ok
    final = Manifest(files, revision if ok else manifest.revision, journal.generation)
    try:
        if finish and journal.worth_compacting(len(files)):
            target.write_manifest(final)
            error = journal.finish()
            if error:
                result.error = result.error or f"cannot write the journal: {error}"
        elif finish:  # the records stay, as the manifest's delta: folded in by read_journal
            error = journal.write((), revision if ok and revision != manifest.revision else None)
            if error:
                result.error = result.error or f"cannot write the journal: {error}"
            final = Manifest(files, final.revision, manifest.journal)
        else:
            error = journal.write(())  # confirm the last batch: the checkpoint until finish
            if error:
                result.error = result.error or f"cannot write the journal: {error}"
    except ProvctlError as exc:
        result.error = result.error or str(exc)
    return result, final


def _verify_upload(target: Target, art: Artifact) -> str | None:
    """Firmware is checked against the catalog before upload (Artifact.content) and after."""
    data = target.read(art.path)
    if data is None or hashlib.sha256(data).hexdigest() != art.sha256:
        return "firmware on the target does not match the catalog's sha256 after upload"
    return None
