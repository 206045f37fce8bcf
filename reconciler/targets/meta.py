"""Where a target keeps its own records, written once for every target.

The manifest, the journal, the lock and the receipts copies never live in the served tree: one
GET of a manifest inside the document root would list every URL token. They live in
`meta_root`:

- configured: exactly there (`meta_root:` on the target);
- by default: `<parent of root>/.provctl-<name of root>`, mode 0700. A sibling, so it is outside
  the served tree; a dot-name, so that even a web server that serves the parent directory and
  denies dot-paths (as `provctl serve-config` does) does not serve it;
- when the account may not create that sibling (a chrooted SFTP account that can write only
  inside its root): `<root>/.provctl`, made mode 0700. The web server must deny dot-paths there.

Records an older provctl kept in `<root>/.provctl/` are read where they are until an apply
moves them (`prepare`, under the lock). `Meta` is the store for all of this; each target builds
it from stores of its own kind with `places()`.
"""

from __future__ import annotations

import logging
import posixpath
import time
from collections.abc import Iterable, Sequence

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets import lock as target_lock
from reconciler.targets.base import Delete, Denied, FileOp, FileStat, OpResult, Put, Store, Target
from reconciler.targets.manifest import JOURNAL, MANIFEST

log = logging.getLogger(__name__)

LEGACY = ".provctl"  # inside the root: where provctl kept its records before meta_root
RECEIPTS = "receipts"  # <meta_root>/receipts/<started>-<id>.json
META_MODE = 0o700
RECORD_MODE = 0o600


def places(root: str, meta_root: str | None) -> tuple[list[str], str]:
    """Where the records may live, preferred first, and the legacy place (POSIX paths).

    The last place is the legacy `<root>/.provctl` itself unless meta_root is configured.
    """
    legacy = posixpath.join(root, LEGACY)
    if meta_root:
        return [posixpath.normpath(meta_root)], legacy
    norm = posixpath.normpath(root)
    parent, name = posixpath.split(norm)
    if name in ("", ".", ".."):  # the root is "/" or ".": it has no sibling of its own
        return [legacy], legacy
    return [posixpath.normpath(posixpath.join(parent or ".", f".provctl-{name}")), legacy], legacy


class Meta:
    """The store of a target's records: the first of `choices` that exists or can be made.

    Reads fall through to every place that exists (the legacy one included), so records that
    were not moved yet, or were half moved by a run that was killed, are still found.
    """

    capabilities: frozenset[str] = frozenset()

    def __init__(self, name: str, choices: Sequence[Store], legacy: Store):
        self.name = name
        self.choices = list(choices)
        self.legacy = legacy
        self._writer: Store | None = None
        self._existing: list[Store] | None = None

    @property
    def location(self) -> str:
        readers = self._readers()
        return readers[0].location if readers else self.choices[0].location

    @property
    def moved(self) -> bool:
        """Whether the records are written elsewhere than the legacy place."""
        return self.writer().location != self.legacy.location

    def _readers(self) -> list[Store]:
        """The places that exist, the writer first (once chosen)."""
        if self._existing is None:
            seen = [self._writer] if self._writer is not None else []
            for store in [*self.choices, self.legacy]:
                if all(s.location != store.location for s in seen) and store.exists():
                    seen.append(store)
            self._existing = seen
        return self._existing

    def writer(self) -> Store:
        """The place records are written to: made (mode 0700) on first use."""
        if self._writer is not None:
            return self._writer
        for i, store in enumerate(self.choices):
            try:
                store.ensure()
            except Denied as exc:
                if i == len(self.choices) - 1:
                    raise
                log.warning(
                    "target %s: %s; keeping the records in %s (mode 0700) instead: the "
                    "web server must deny dot-paths there (provctl serve-config does), "
                    "or set meta_root",
                    self.name,
                    exc,
                    self.choices[-1].location,
                )
                continue
            self._writer = store
            self._existing = None
            return store
        raise TargetError(self.name, "no place for the target's records")  # (no choices)

    def forget(self) -> None:
        """Look again which places exist (after records were moved)."""
        self._existing = None

    # --- the Store primitives

    def read(self, path: str) -> bytes | None:
        for store in self._readers():
            data = store.read(path)
            if data is not None:
                return data
        return None

    def stat(self, path: str) -> FileStat | None:
        for store in self._readers():
            st = store.stat(path)
            if st is not None:
                return st
        return None

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        readers = self._readers()
        return readers[0].scan(directories) if readers else {}

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        return self.writer().execute(ops)

    def create(self, path: str, data: bytes) -> bool:
        return self.writer().create(path, data)

    def exists(self) -> bool:
        return bool(self._readers())

    def ensure(self, create: bool = True) -> None:
        self.writer()


def prepare(target: Target) -> None:
    """Once the lock is held: move records out of `<root>/.provctl/`, remove the temporary
    files a killed run left among the records, and give the root its mode (0711 by default,
    so that the token directories cannot be listed)."""
    meta = target.meta
    if isinstance(meta, Meta) and meta.moved and meta.legacy.exists():
        _migrate(target, meta)
    meta.scan([""])  # finds the temporary files a killed run left; execute removes them
    meta.execute([])
    try:
        target.ensure(create=False)
    except Denied as exc:
        log.warning(
            "target %s: %s; make sure the web server cannot list %s",
            target.name,
            exc,
            target.location,
        )


def _migrate(target: Target, meta: Meta) -> None:
    """Copy every record the new place lacks, then remove `<root>/.provctl/`."""
    legacy, writer = meta.legacy, meta.writer()
    seen = target_lock.look(legacy)
    if (
        seen is not None
        and target_lock.stale(seen, time.time(), target_lock.this_host(), target_lock.pid_alive)
        is None
    ):
        raise LockHeld(
            target_lock.refusal(target.name, seen, target_lock.this_host())
            + f" (in {legacy.location}, where an older provctl keeps it)"
        )
    # Listing through the root store also finds temporary files there (removed below).
    found = target.scan([LEGACY, f"{LEGACY}/{RECEIPTS}"])
    records = sorted(
        (p.removeprefix(f"{LEGACY}/") for p in found),
        key=lambda p: (p != MANIFEST, p != JOURNAL, p),
    )  # the manifest first
    records = [p for p in records if p not in (target_lock.LOCK, target_lock.TAKEOVER)]
    for rel in records:
        if writer.stat(rel) is not None:
            continue  # moved by a run that was killed before it removed the old copy
        data = legacy.read(rel)
        if data is None:
            continue
        [result] = writer.execute([Put(rel, data)])
        if result.error:
            raise TargetError(
                target.name,
                f"cannot move {legacy.location}/{rel} to {writer.location}: {result.error}",
                transient=result.transient,
            )
    gone = [Delete(f"{LEGACY}/{rel}") for rel in records]
    # The lock last: deleting it removes the emptied <root>/.provctl directory.
    for batch in (
        gone,
        [Delete(f"{LEGACY}/{target_lock.TAKEOVER}"), Delete(f"{LEGACY}/{target_lock.LOCK}")],
    ):
        failed = [r for r in target.execute(batch) if r.error]
        if failed:
            raise TargetError(
                target.name,
                f"moved the records to {writer.location} but cannot "
                f"remove {failed[0].op.path}: {failed[0].error}",
            )
    log.warning(
        "target %s: moved the records from %s to %s, outside the served tree",
        target.name,
        legacy.location,
        writer.location,
    )
    meta.forget()
