"""Apply: the only stage that writes. It executes a plan's changes on one locked target.

Order on a target: puts first (a phone must find its file before a redirect points at it), then
deletes. The manifest records exactly what was done, so a run that is
interrupted at any point converges on the next one: every file is either old or new, and
files it may have written are known from the journal.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core.errors import ConfigError, ProvctlError
from reconciler.pipeline.outcome import Failure
from reconciler.pipeline.plan import FileChange
from reconciler.render.addressing import show_path
from reconciler.render.renderer import Artifact
from reconciler.targets import manifest as records
from reconciler.targets.base import Delete, FileOp, Put, Target
from reconciler.targets.manifest import JOURNAL, Manifest, ManifestEntry

log = logging.getLogger(__name__)

BATCH = 200  # files per batch; SIGTERM is honoured between batches
MANIFEST_EVERY = 10.0  # seconds between manifest rewrites during a long apply


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
            clock: Callable[[], float] = time.monotonic,
            progress: Callable[[int, int], None] | None = None) -> tuple[TargetResult, Manifest]:
    """Run the changes for one target (already locked); return results and the new manifest.

    Before each batch the paths it will write go to the journal; the manifest is rewritten
    every MANIFEST_EVERY seconds and at the end, when the journal is cleared. `stop()` is
    checked between batches (SIGTERM in the daemon): what was done is recorded, nothing more
    is started. `progress(done, total)` is called after each batch.
    """
    result = TargetResult(target.name)
    files: dict[str, ManifestEntry] = dict(manifest.files)
    journal = set(pending)
    ordered = [c for c in changes if c.action == "put"] + [c for c in changes
                                                           if c.action == "delete"]
    by_path = {c.path: c for c in ordered}
    last_write = clock()
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
        new_paths = {op.path for op in ops if isinstance(op, Put)} - journal
        if new_paths:
            journal |= new_paths
            error = records.write_journal(target, journal)
            if error:
                result.error = Failure(f"cannot write {JOURNAL}: {error}")
                break
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
                continue
            log.info("%s: %s %s (%s)", target.name, change.action, show_path(change.path),
                     change.reason)
            if change.action == "put":
                art = artifacts[change.path]
                files[change.path] = ManifestEntry(
                    art.sha256, art.size, outcome.stat.mtime if outcome.stat else 0.0,
                    art.firmware)
            else:
                files.pop(change.path, None)
        if progress is not None:
            progress(min(start + BATCH, len(ordered)), len(ordered))
        if clock() - last_write >= MANIFEST_EVERY:
            try:
                records.write(target, Manifest(files, manifest.revision))
            except ProvctlError as exc:
                result.error = Failure(str(exc))
                break
            last_write = clock()
    complete = result.ok
    final = Manifest(files, revision if complete else manifest.revision)
    try:
        records.write(target, final)
        if journal:
            # Only what is confirmed leaves the journal; a failed or unknown put stays: ours,
            # content unknown, written again by the next run.
            leftover = journal - {i.path for i in result.done}
            if leftover:
                records.write_journal(target, leftover)
            else:
                records.clear_journal(target)
    except ProvctlError as exc:
        result.error = result.error or Failure(str(exc))
    return result, final


def _verify_upload(target: Target, art: Artifact) -> str | None:
    """Firmware is checked against the catalog before upload (Artifact.content) and after."""
    data = target.read(art.path)
    if data is None or hashlib.sha256(data).hexdigest() != art.sha256:
        return "firmware on the target does not match the catalog's sha256 after upload"
    return None
