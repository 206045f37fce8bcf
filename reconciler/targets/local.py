"""A target that is a directory on this machine (the embedded default, and tests)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable, Iterable, Sequence
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


def _syncfs() -> Callable[[int], int] | None:
    """syncfs(2) where the C library has it (Linux): one call makes a whole batch durable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_SYNCFS = _syncfs()


class LocalTarget:
    def __init__(self, name: str, root: Path, file_mode: int = 0o644):
        self.name = name
        self.root = root
        self.file_mode = file_mode
        self._resolved_root: Path | None = None

    def _path(self, rel: str) -> Path:
        if self._resolved_root is None:
            self._resolved_root = self.root.resolve()
        path = (self.root / rel).resolve()
        if self._resolved_root not in path.parents:
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
        """Each put to a temporary name + rename; the batch is made durable once, at the end
        (syncfs, else an fsync per file and directory), before any result says "done"."""
        results = []
        written: list[Path] = []
        for op in ops:
            try:
                if isinstance(op, Put):
                    stat = self._put(op.path, op.data, written)
                    results.append(OpResult(op, stat=stat))
                else:
                    self._delete(op)
                    results.append(OpResult(op))
            except OSError as exc:
                results.append(OpResult(op, error=f"{exc.strerror or exc}: {op.path}"))
        try:
            self._sync(written)
        except OSError as exc:  # written, but not known to be on disk: not done
            why = f"cannot sync: {exc.strerror or exc}"
            results = [OpResult(r.op, error=r.error or why) if isinstance(r.op, Put) else r
                       for r in results]
        return results

    def _sync(self, written: list[Path]) -> None:
        if not written:
            return
        if _SYNCFS is not None:
            fd = os.open(written[0].parent, os.O_RDONLY)
            try:
                if _SYNCFS(fd) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            return
        for path in [*written, *dict.fromkeys(p.parent for p in written)]:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _put(self, rel: str, data: bytes, written: list[Path]) -> FileStat:
        path = self._path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, self.file_mode)
            os.replace(tmp, path)  # atomic: a phone sees the old file or the new one
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        written.append(path)
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
            written: list[Path] = []
            self._put(MANIFEST, manifest.to_bytes(), written)
            self._sync(written)
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

    def close(self) -> None:
        pass
