"""Apply: the only stage that writes. It executes a plan's changes on one locked target.

Order on a target: puts first (a phone must find its file before a redirect points at it), then
deletes. The manifest is rewritten after every batch to exactly what was done, so a run that is
interrupted at any point converges on the next one: every file is either old or new.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .errors import ConfigError, ProvctlError
from .plan import FileChange, show_path
from .render import Artifact
from .targets.base import Delete, FileOp, Manifest, ManifestEntry, Put, Target

log = logging.getLogger(__name__)

BATCH = 500


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


def execute(target: Target, changes: Sequence[FileChange], artifacts: Mapping[str, Artifact],
            manifest: Manifest, revision: str) -> tuple[TargetResult, Manifest]:
    """Run the changes for one target (already locked); return results and the new manifest."""
    result = TargetResult(target.name)
    files: dict[str, ManifestEntry] = dict(manifest.files)
    ordered = [c for c in changes if c.action == "put"] + [c for c in changes
                                                           if c.action == "delete"]
    by_path = {c.path: c for c in ordered}
    for start in range(0, len(ordered), BATCH):
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
        try:
            outcomes = target.execute(ops)
        except ProvctlError as exc:
            result.error = str(exc)
            break
        for outcome in outcomes:
            change = by_path[outcome.op.path]
            result.items.append(ItemResult(target.name, change.path, change.action,
                                           change.reason, outcome.error))
            if outcome.error is not None:
                log.warning("%s: %s %s failed: %s", target.name, change.action,
                            show_path(change.path), outcome.error)
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
        try:
            target.write_manifest(Manifest(files, manifest.revision))
        except ProvctlError as exc:
            result.error = str(exc)
            break
    complete = result.ok
    final = Manifest(files, revision if complete else manifest.revision)
    if complete:
        try:
            target.write_manifest(final)
        except ProvctlError as exc:
            result.error = str(exc)
    return result, final
