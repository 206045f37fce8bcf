"""A target that is a dict: for scenario tests and dry runs.

It keeps the same promises as the local and SFTP targets (the contract tests run against all
three): the manifest and the lock live under `.provctl/` as the same bytes, a file cannot be put
where a directory is (or under a file), deleting a file that is not there is not an error, a
lock is exclusive until it expires. Tests can make single paths fail (`fail`), make the whole
target unreachable (`unreachable`), and read back what was executed (`executed`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets.base import (
    LOCK,
    MANIFEST,
    FileOp,
    FileStat,
    LockInfo,
    Manifest,
    OpResult,
    Put,
)


class MemoryTarget:
    def __init__(
        self,
        name: str = "memory",
        files: Mapping[str, bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.name = name
        self.clock = clock
        self.files: dict[str, tuple[bytes, float]] = {}
        self.fail: dict[str, str] = {}  # path -> error message its ops get
        self.unreachable: str | None = None  # set: every call raises a transient TargetError
        self.executed: list[FileOp] = []  # every op that succeeded, in order
        self.outside: dict[str, bytes] = {}  # absolute path -> bytes outside the root (logs)
        self._lock = threading.Lock()
        for path, data in (files or {}).items():
            self.files[self._check(path)] = (data, clock())

    def _check(self, path: str) -> str:
        parts = path.split("/")
        if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise TargetError(self.name, f"path escapes the root: {path}")
        return path

    def _reach(self) -> None:
        if self.unreachable is not None:
            raise TargetError(self.name, self.unreachable, transient=True)

    def read_manifest(self) -> Manifest:
        data = self.read(MANIFEST)
        if data is None:
            return Manifest()
        try:
            return Manifest.from_bytes(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(self.name, f"cannot read manifest {MANIFEST}: {exc}") from exc

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        self._reach()
        wanted = set(directories)
        with self._lock:
            return {
                path: FileStat(len(data), mtime)
                for path, (data, mtime) in self.files.items()
                if (path.rsplit("/", 1)[0] if "/" in path else "") in wanted
            }

    def read(self, path: str) -> bytes | None:
        self._reach()
        with self._lock:
            entry = self.files.get(self._check(path))
        return None if entry is None else entry[0]

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        self._reach()
        for op in ops:
            self._check(op.path)
        results = []
        with self._lock:
            for op in ops:
                error = self.fail.get(op.path) or (
                    self._conflict(op.path) if isinstance(op, Put) else None
                )
                if error:
                    results.append(OpResult(op, error=f"{error}: {op.path}"))
                    continue
                self.executed.append(op)
                if isinstance(op, Put):
                    mtime = self.clock()
                    self.files[op.path] = (op.data, mtime)
                    results.append(OpResult(op, stat=FileStat(len(op.data), mtime)))
                else:
                    self.files.pop(op.path, None)
                    results.append(OpResult(op))
        return results

    def _conflict(self, path: str) -> str | None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in self.files:
                return f"{'/'.join(parts[:i])} exists and is not a directory"
        prefix = path + "/"
        if any(other.startswith(prefix) for other in self.files):
            return "is a directory"
        return None

    def write_manifest(self, manifest: Manifest) -> None:
        [result] = self.execute([Put(MANIFEST, manifest.to_bytes())])
        if result.error:
            raise TargetError(self.name, f"cannot write manifest: {result.error}")

    def acquire_lock(self, owner: str, ttl: float) -> LockInfo:
        self._reach()
        with self._lock:
            held = self._held()
            if held is not None and held.expires > self.clock():
                raise LockHeld(f"target {self.name}: {held.describe()}")
            now = self.clock()
            lock = replace(LockInfo.new(owner, ttl), started=now, expires=now + ttl)
            self.files[LOCK] = (lock.to_bytes(), self.clock())
            return lock

    def _held(self) -> LockInfo | None:
        entry = self.files.get(LOCK)
        if entry is None:
            return None
        try:
            return LockInfo.from_bytes(entry[0])
        except (ValueError, TypeError):
            return None  # unreadable: taken over like an expired one

    def release_lock(self, lock: LockInfo) -> None:
        self._reach()
        with self._lock:
            held = self._held()
            if held is not None and held.id == lock.id:
                del self.files[LOCK]

    def break_lock(self, lock_id: str) -> LockInfo:
        self._reach()
        with self._lock:
            held = self._held()
            if held is None:
                raise TargetError(self.name, "no lock is held")
            if held.id != lock_id:
                raise LockHeld(f"target {self.name}: {held.describe()}, not {lock_id}")
            del self.files[LOCK]
            return held

    # --- files outside the root, read-only (access logs); `fail[path]` makes one unreadable

    def stat_file(self, path: str) -> FileStat | None:
        self._reach()
        if path in self.fail:
            raise TargetError(self.name, f"{self.fail[path]}: {path}")
        data = self.outside.get(path)
        return None if data is None else FileStat(len(data), self.clock())

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        self._reach()
        data = self.outside.get(path)
        if data is None or path in self.fail:
            raise TargetError(self.name, f"{self.fail.get(path, 'no such file')}: {path}")
        return data[offset:offset + length]

    def close(self) -> None:
        pass
