"""Apply: the only stage that writes. It executes a plan's changes on one locked target.

Order on a target: puts first (a phone must find its file before a redirect points at it), then
deletes. Every file is either old or new at any moment (targets publish atomically), and a run
interrupted at any point converges on the next one, at a cost that follows what the run does,
not the size of the target: before each batch of puts one small journal record names its paths
and confirms the batch before (targets/manifest.py), the puts leave their records as the
checkpoint, and the delete phase writes the manifest at most once, at the end (or leaves the
records as its delta when they are few).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core.errors import ConfigError, ProvctlError
from reconciler.pipeline.outcome import Failure
from reconciler.pipeline.plan import FileChange
from reconciler.render.addressing import show_path
from reconciler.render.renderer import Artifact
from reconciler.targets import manifest as records
from reconciler.targets.base import Delete, FileOp, Put, Target
from reconciler.targets.manifest import JOURNAL_DIR, Journal, JournalState, Manifest, ManifestEntry

log = logging.getLogger(__name__)

BATCH = 200  # files per batch (and per journal record); SIGTERM is honoured between batches


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
    error: Failure | None = None  # the target as a whole failed or was refused (outcome.py)

    @property
    def failed(self) -> list[ItemResult]:
        return [i for i in self.items if not i.ok]

    @property
    def done(self) -> list[ItemResult]:
        return [i for i in self.items if i.ok]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


def execute(target: Target, changes: Sequence[FileChange], artifacts: Mapping[str, Artifact],
            manifest: Manifest, revision: str | None, *, pending: frozenset[str] = frozenset(),
            stop: Callable[[], bool] = lambda: False,
            progress: Callable[[int, int], None] | None = None,
            journal: Journal | None = None, finish: bool = True,
            complete: bool = True) -> tuple[TargetResult, Manifest]:
    """Run the changes for one target (already locked); return results and the new manifest.

    Before each batch of puts a journal record names its paths (and confirms the batch
    before). With `finish`, the manifest is written once at the end (or, when the records are
    few, they stay as its delta) and the records it holds are removed; without it (puts,
    before the redirect stage and the deletes) a last record confirms the last batch and the
    manifest is left to the call that finishes. `complete`: whether the earlier phases of
    this apply succeeded (the revision is recorded only then). `stop()` is checked between
    batches (SIGTERM in the daemon): what was done is recorded, nothing more is started.
    `progress(done, total)` is called after each batch.
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
            result.error = Failure("stopped before finishing (SIGTERM); the next run completes it")
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
                result.error = Failure(f"cannot write the journal {JOURNAL_DIR}/: {error}")
                break
            journal.announced.update(intent)
        try:
            outcomes = target.execute(ops)
        except ProvctlError as exc:
            result.error = Failure(str(exc))
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
        if progress is not None:
            progress(min(start + BATCH, len(ordered)), len(ordered))
    ok = complete and result.ok
    final = Manifest(files, revision if ok else manifest.revision, journal.generation)
    try:
        if finish and journal.worth_compacting(len(files)):
            records.write(target, final)
            error = journal.finish()
            if error:
                result.error = result.error or Failure(f"cannot write the journal: {error}")
        elif finish:  # the records stay, as the manifest's delta: folded in by read_state
            new = revision if ok and revision != manifest.revision else None
            error = journal.write((), new)
            if error:
                result.error = result.error or Failure(f"cannot write the journal: {error}")
            final = Manifest(files, final.revision, manifest.journal)
        else:
            error = journal.write(())  # confirm the last batch: the checkpoint until finish
            if error:
                result.error = result.error or Failure(f"cannot write the journal: {error}")
    except ProvctlError as exc:
        result.error = result.error or Failure(str(exc))
    return result, final


def _verify_upload(target: Target, art: Artifact) -> str | None:
    """Firmware is checked against the catalog before upload (Artifact.content) and after."""
    data = target.read(art.path)
    if data is None or hashlib.sha256(data).hexdigest() != art.sha256:
        return "firmware on the target does not match the catalog's sha256 after upload"
    return None
