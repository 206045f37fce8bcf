"""The target seam: primitives only.

A target is a directory tree that phones are served from (its root), and a second tree that
holds the target's own records (`meta`: manifest, journal, lock, receipts), outside the served
tree. Both are a `Store`, which has only primitives:

    read      one file's bytes, or None
    stat      one file's size and mtime, or None
    scan      list: size and mtime of the files in some directories (no hashing)
    execute   put atomically (temporary name + rename) and delete, many at once, errors per file
    create    create a file exclusively (False when it exists)
    exists    whether the tree's directory exists
    ensure    make the tree's directory (and give it the tree's mode)

and a `Target` adds `meta` and `close`. Everything with a policy is written once, on top of
these, for every target: the lock (targets/lock.py), the manifest and the journal
(targets/manifest.py), where the records live and the move out of `<root>/.provctl/`
(targets/meta.py).

A target declares what else it can do in `capabilities` rather than being probed for it:
PIPELINED_READS means it has `read_many`, which reads many files in about one round trip (see
`read_many()` below, which uses it when it is there).

Every implementation keeps the same promises (tests/test_target_contract.py runs on each): paths
are relative and "/"-separated and may not leave the tree; a put never shows half a file;
deleting a missing file is not an error, and directories a delete empties go (never the tree's
own directory); a temporary file (TMP_PREFIX) is never listed as content, and one that an
interrupted put left in a directory that `scan` listed is removed by the next `execute`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from reconciler.core.errors import TargetError

TMP_PREFIX = ".provctl-tmp-"  # temporary upload names; never listed as content

PIPELINED_READS = "pipelined-reads"  # the store has read_many()


class Denied(TargetError):
    """The account may not create or change a directory (permission denied)."""


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float


@dataclass(frozen=True)
class Put:
    path: str  # relative to the tree, "/"-separated
    data: bytes


@dataclass(frozen=True)
class Delete:
    path: str


FileOp = Put | Delete


@dataclass(frozen=True)
class OpResult:
    op: FileOp
    error: str | None = None  # None = done
    stat: FileStat | None = None  # of the new file, for Put
    transient: bool = False  # the error was a lost connection: worth retrying later


class Store(Protocol):
    """One directory tree on a target; see the module docstring."""

    name: str  # the target's name, for messages
    capabilities: frozenset[str]

    @property
    def location(self) -> str:
        """Where the tree is on its host, for messages."""
        ...

    def read(self, path: str) -> bytes | None:
        """One file's bytes, or None when it does not exist."""
        ...

    def stat(self, path: str) -> FileStat | None:
        """One file's size and mtime, or None when it does not exist."""
        ...

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        """Size and mtime of every file in these directories ("" is the tree's own)."""
        ...

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        """Publish (temporary name + rename) and delete; one result per op, errors isolated."""
        ...

    def create(self, path: str, data: bytes) -> bool:
        """Create a file that must not exist yet; False when it does."""
        ...

    def exists(self) -> bool:
        """Whether the tree's directory exists."""
        ...

    def ensure(self, create: bool = True) -> None:
        """Give the tree's directory its mode, making it first when `create` (its parent must
        exist); raise Denied when the account may not."""
        ...


class Target(Store, Protocol):
    """The served tree, with the target's records in `meta` (see targets/meta.py); and two
    read-only primitives for files elsewhere on the host, by absolute path (access logs)."""

    meta: Store

    def stat_file(self, path: str) -> FileStat | None:
        """Size and mtime of a file on the host; None when it does not exist."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes of that file from `offset` (fewer at its end)."""
        ...

    def close(self) -> None: ...


class PipelinedReads(Protocol):
    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]: ...


def read_many(store: Store, paths: Iterable[str]) -> dict[str, bytes | None]:
    """Several files' bytes (None when missing): pipelined where the store can."""
    if PIPELINED_READS in store.capabilities:
        return cast(PipelinedReads, store).read_many(paths)
    return {path: store.read(path) for path in paths}
