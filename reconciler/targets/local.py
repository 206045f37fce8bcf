"""A target that is a directory on this machine (the embedded default, and tests)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets.base import (
    LOCK,
    MANIFEST,
    STATE_DIR,
    TMP_PREFIX,
    Delete,
    FileOp,
    FileStat,
    LockInfo,
    Manifest,
    OpResult,
    Put,
)


class LocalTarget:
    def __init__(self, name: str, root: Path, file_mode: int = 0o644):
        self.name = name
        self.root = root
        self.file_mode = file_mode

    def _path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise TargetError(self.name, f"path escapes the root: {rel}")
        return path

    def read_manifest(self) -> Manifest:
        try:
            return Manifest.from_bytes(self._path(MANIFEST).read_bytes())
        except FileNotFoundError:
            return Manifest()
        except (OSError, ValueError) as exc:
            raise TargetError(self.name, f"cannot read manifest {MANIFEST}: {exc}") from exc

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        for rel in sorted(set(directories)):
            base = self.root / rel if rel else self.root
            try:
                entries = list(os.scandir(base))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise TargetError(self.name, f"cannot list {base}: {exc}") from exc
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith(TMP_PREFIX):
                    st = entry.stat(follow_symlinks=False)
                    found[f"{rel}/{entry.name}" if rel else entry.name] = FileStat(
                        st.st_size, st.st_mtime
                    )
        return found

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        results = []
        for op in ops:
            try:
                if isinstance(op, Put):
                    stat = self._put(op.path, op.data)
                    results.append(OpResult(op, stat=stat))
                else:
                    self._delete(op)
                    results.append(OpResult(op))
            except OSError as exc:
                results.append(OpResult(op, error=f"{exc.strerror or exc}: {op.path}"))
        return results

    def _put(self, rel: str, data: bytes) -> FileStat:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, self.file_mode)
            os.replace(tmp, path)  # atomic: a phone sees the old file or the new one
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        st = path.stat()
        return FileStat(st.st_size, st.st_mtime)

    def _delete(self, op: Delete) -> None:
        path = self._path(op.path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        # Remove directories emptied by the delete (a phone's token directory), not the root.
        parent = path.parent
        while parent != self.root.resolve() and parent != parent.parent:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def write_manifest(self, manifest: Manifest) -> None:
        try:
            self._put(MANIFEST, manifest.to_bytes())
        except OSError as exc:
            raise TargetError(self.name, f"cannot write manifest: {exc}") from exc

    def acquire_lock(self, owner: str, ttl: float) -> LockInfo:
        path = self._path(LOCK)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TargetError(self.name, f"cannot create {STATE_DIR}: {exc}") from exc
        lock = LockInfo.new(owner, ttl)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                held = self._held()
                if held is not None and held.expires > time.time():
                    raise LockHeld(f"target {self.name}: {held.describe()}") from None
                # Expired (or unreadable) lock: take it over.
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            with os.fdopen(fd, "wb") as fh:
                fh.write(lock.to_bytes())
            return lock
        raise LockHeld(f"target {self.name}: lock {path} keeps reappearing")

    def _held(self) -> LockInfo | None:
        try:
            return LockInfo.from_bytes(self._path(LOCK).read_bytes())
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None

    def release_lock(self, lock: LockInfo) -> None:
        held = self._held()
        if held is not None and held.id == lock.id:
            with contextlib.suppress(FileNotFoundError):
                self._path(LOCK).unlink()

    def break_lock(self, lock_id: str) -> LockInfo:
        held = self._held()
        if held is None:
            raise TargetError(self.name, "no lock is held")
        if held.id != lock_id:
            raise LockHeld(f"target {self.name}: {held.describe()}, not {lock_id}")
        self._path(LOCK).unlink()
        return held

    # --- files outside the root, read-only (access logs)

    def stat_file(self, path: str) -> FileStat | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(self.name, f"cannot stat {path}: {exc.strerror or exc}") from exc
        return FileStat(st.st_size, st.st_mtime)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        except OSError as exc:
            raise TargetError(self.name, f"cannot read {path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        pass
