"""A target that is a dict: for scenario tests and dry runs.

It keeps the promises of targets/base.py as the local and SFTP targets do (the contract tests run
against all three), on a small file system in memory (`MemoryHost`: absolute POSIX paths -> bytes
and mtime, and a set of directories): a file cannot be put where a directory is (or under a
file), deleting a file that is not there is not an error, emptied directories go. Its root is
`/www` unless told otherwise, so its records live in `/.provctl-www`.

Tests can make single paths fail (`fail`), the whole target unreachable (`unreachable`), a
directory read-only for the account (`host.read_only`), and read back what was executed
(`executed`).
"""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from reconciler.core.errors import TargetError
from reconciler.targets.base import TMP_PREFIX, Denied, FileOp, FileStat, OpResult, Put, Store
from reconciler.targets.meta import META_MODE, RECORD_MODE, Meta, places


class MemoryHost:
    """The file system the trees of a memory target share."""

    def __init__(self, clock: Callable[[], float]):
        self.clock = clock
        self.files: dict[str, tuple[bytes, float]] = {}
        self.dirs: dict[str, int] = {"/": 0o755}  # directory -> mode
        self.read_only: set[str] = set()  # directories the account may not create entries in
        self.fail: dict[str, str] = {}  # path (relative to the root) -> error its ops get
        self.unreachable: str | None = None  # set: every call raises a transient TargetError
        self.executed: list[FileOp] = []  # every op that succeeded, in order
        self.temporaries: set[str] = set()  # found by scan, removed by the next execute
        self.lock = threading.RLock()

    def makedirs(self, path: str, mode: int) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.dirs.setdefault("/" + "/".join(parts[:i]), mode)


class MemoryTree:
    capabilities: frozenset[str] = frozenset()

    def __init__(self, name: str, host: MemoryHost, base: str, file_mode: int, dir_mode: int):
        self.name = name
        self.host = host
        self.base = base
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    @property
    def location(self) -> str:
        return self.base

    def _abs(self, path: str) -> str:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise TargetError(self.name, f"path escapes the root: {path}")
        return f"{self.base.rstrip('/')}/{path}"

    def _reach(self) -> None:
        if self.host.unreachable is not None:
            raise TargetError(self.name, self.host.unreachable, transient=True)

    def read(self, path: str) -> bytes | None:
        self._reach()
        with self.host.lock:
            entry = self.host.files.get(self._abs(path))
        return None if entry is None else entry[0]

    def stat(self, path: str) -> FileStat | None:
        self._reach()
        with self.host.lock:
            entry = self.host.files.get(self._abs(path))
        return None if entry is None else FileStat(len(entry[0]), entry[1])

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        self._reach()
        wanted = {self.base if not d else self._abs(d) for d in directories}
        found: dict[str, FileStat] = {}
        with self.host.lock:
            for path, (data, mtime) in self.host.files.items():
                directory, name = posixpath.split(path)
                if directory not in wanted:
                    continue
                if name.startswith(TMP_PREFIX):
                    self.host.temporaries.add(path)
                else:
                    found[path[len(self.base.rstrip("/")) + 1 :]] = FileStat(len(data), mtime)
        return found

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        self._reach()
        for op in ops:
            self._abs(op.path)
        results = []
        with self.host.lock:
            while self.host.temporaries:
                self.host.files.pop(self.host.temporaries.pop(), None)
            for op in ops:
                path = self._abs(op.path)
                error = self.host.fail.get(op.path) or (
                    self._conflict(path) if isinstance(op, Put) else None
                )
                if error:
                    results.append(OpResult(op, error=f"{error}: {op.path}"))
                    continue
                self.host.executed.append(op)
                if isinstance(op, Put):
                    self.host.makedirs(posixpath.dirname(path), self.dir_mode)
                    mtime = self.host.clock()
                    self.host.files[path] = (op.data, mtime)
                    results.append(OpResult(op, stat=FileStat(len(op.data), mtime)))
                else:
                    self.host.files.pop(path, None)
                    self._prune(posixpath.dirname(path))
                    results.append(OpResult(op))
        return results

    def _conflict(self, path: str) -> str | None:
        if path in self.host.dirs:
            return "is a directory"
        parent = posixpath.dirname(path)
        while parent not in self.host.dirs:  # "/" always is
            if parent in self.host.files:
                return f"{parent[len(self.base.rstrip('/')) + 1 :]} exists and is not a directory"
            parent = posixpath.dirname(parent)
        return "permission denied" if parent in self.host.read_only else None

    def _prune(self, directory: str) -> None:
        """Remove directories the delete emptied, below the tree's own."""
        while directory != self.base and directory.startswith(self.base.rstrip("/") + "/"):
            prefix = directory + "/"
            if any(p.startswith(prefix) for p in self.host.files) or any(
                d.startswith(prefix) for d in self.host.dirs
            ):
                return
            self.host.dirs.pop(directory, None)
            directory = posixpath.dirname(directory)

    def create(self, path: str, data: bytes) -> bool:
        with self.host.lock:
            if self.read(path) is not None:
                return False
            [result] = self.execute([Put(path, data)])
        if result.error:
            raise TargetError(self.name, f"cannot create {self.base}/{path}: {result.error}")
        return True

    def exists(self) -> bool:
        self._reach()
        return self.base in self.host.dirs

    def ensure(self, create: bool = True) -> None:
        self._reach()
        with self.host.lock:
            if self.base not in self.host.dirs:
                if not create:
                    return
                parent = posixpath.dirname(self.base)
                if parent in self.host.read_only:
                    raise Denied(self.name, f"cannot make {self.base}: permission denied")
                if parent not in self.host.dirs:
                    raise TargetError(
                        self.name, f"cannot make {self.base}: {parent} does not exist"
                    )
            elif self.base in self.host.read_only:
                raise Denied(self.name, f"cannot change the mode of {self.base}: permission denied")
            self.host.dirs[self.base] = self.dir_mode


class MemoryTarget(MemoryTree):
    def __init__(
        self,
        name: str = "memory",
        files: Mapping[str, bytes] | None = None,
        clock: Callable[[], float] = time.time,
        root: str = "/www",
        meta_root: str | None = None,
        file_mode: int = 0o644,
        dir_mode: int = 0o711,
        host: MemoryHost | None = None,
    ):
        """`host`: share another target's file system (a second client of the same place)."""
        if host is None:
            host = MemoryHost(clock)
            host.makedirs(root, 0o755)
        super().__init__(name, host, root, file_mode, dir_mode)
        choices, legacy = places(root, meta_root)
        trees = [MemoryTree(name, host, p, RECORD_MODE, META_MODE) for p in choices]
        old = next(
            (t for t in trees if t.location == legacy),
            MemoryTree(name, host, legacy, RECORD_MODE, META_MODE),
        )
        self.meta: Store = Meta(name, trees, old)
        for path, data in (files or {}).items():
            self.execute([Put(path, data)])
        host.executed.clear()

    # --- files outside the trees, read-only (access logs): absolute paths in `host.files`;
    # `fail[path]` makes one unreadable

    def stat_file(self, path: str) -> FileStat | None:
        self._reach()
        if path in self.host.fail:
            raise TargetError(self.name, f"{self.host.fail[path]}: {path}")
        with self.host.lock:
            entry = self.host.files.get(path)
        return None if entry is None else FileStat(len(entry[0]), entry[1])

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self._reach()
        with self.host.lock:
            entry = self.host.files.get(path)
        if entry is None or path in self.host.fail:
            raise TargetError(self.name, f"{self.host.fail.get(path, 'no such file')}: {path}")
        return entry[0][offset:offset + length]

    @property
    def fail(self) -> dict[str, str]:
        return self.host.fail

    @property
    def executed(self) -> list[FileOp]:
        return self.host.executed

    @property
    def unreachable(self) -> str | None:
        return self.host.unreachable

    @unreachable.setter
    def unreachable(self, why: str | None) -> None:
        self.host.unreachable = why

    def close(self) -> None:
        pass
