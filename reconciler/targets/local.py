"""A target that is a directory on this machine (the embedded default, and tests)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import stat as statmod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from reconciler.core.errors import TargetError
from reconciler.targets.base import (
    TMP_PREFIX,
    Delete,
    Denied,
    FileOp,
    FileStat,
    OpResult,
    Put,
    Store,
)
from reconciler.targets.meta import META_MODE, RECORD_MODE, Meta, places


def _syncfs() -> Callable[[int], int] | None:
    """syncfs(2) where the C library has it (Linux): one call makes a whole batch durable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs: Callable[[int], int] = libc.syncfs
        return syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _syncfs()


class LocalTree:
    """One directory tree: the primitives of targets/base.py with os calls.

    A batch of puts (one `execute`) is written without an fsync per file and then made durable
    once, with syncfs (an fsync per file and directory where there is none), before any result
    says "done": a crash leaves every file old or new, and nothing reported published that is
    not on disk."""

    capabilities: frozenset[str] = frozenset()

    def __init__(
        self,
        name: str,
        base: Path,
        file_mode: int,
        dir_mode: int,
        temporaries: set[Path] | None = None,
    ):
        self.name = name
        self.base = base
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        # Temporary files an interrupted put left, found by scan; execute removes them.
        self._temporaries = set() if temporaries is None else temporaries
        self._resolved: Path | None = None

    def _base(self) -> Path:
        if self._resolved is None:
            self._resolved = self.base.resolve()
        return self._resolved

    @property
    def location(self) -> str:
        return str(self.base)

    def _path(self, rel: str) -> Path:
        path = (self.base / rel).resolve()
        if self._base() not in path.parents:
            raise TargetError(self.name, f"path escapes the root: {rel}")
        return path

    def _error(self, what: str, exc: OSError) -> TargetError:
        return TargetError(self.name, f"cannot {what}: {exc.strerror or exc}")

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(f"read {self.base / path}", exc) from exc

    def stat(self, path: str) -> FileStat | None:
        try:
            st = self._path(path).lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(f"stat {self.base / path}", exc) from exc
        return FileStat(st.st_size, st.st_mtime) if statmod.S_ISREG(st.st_mode) else None

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        for rel in sorted(set(directories)):
            base = self.base / rel if rel else self.base
            try:
                entries = list(os.scandir(base))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise self._error(f"list {base}", exc) from exc
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.startswith(TMP_PREFIX):
                    self._temporaries.add(Path(entry.path))
                    continue
                st = entry.stat(follow_symlinks=False)
                found[f"{rel}/{entry.name}" if rel else entry.name] = FileStat(
                    st.st_size, st.st_mtime
                )
        return found

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        for op in ops:
            self._path(op.path)  # refuse a path outside the tree before writing anything
        while self._temporaries:
            with contextlib.suppress(OSError):
                self._temporaries.pop().unlink()
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

    def _mkdirs(self, directory: Path) -> None:
        """Make `directory` and the missing levels above it, down from the tree's own."""
        if directory.is_dir():
            return
        if directory != self._base():
            self._mkdirs(directory.parent)
        else:
            directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(self.dir_mode)
            os.chmod(directory, self.dir_mode)  # mkdir's mode is cut by the umask

    def _write_temporary(self, path: Path, data: bytes, sync: bool = True) -> Path:
        self._mkdirs(path.parent)
        tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}-{secrets.token_hex(3)}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, self.file_mode)
        return tmp

    def _put(self, rel: str, data: bytes, written: list[Path]) -> FileStat:
        path = self._path(rel)
        tmp = self._write_temporary(path, data, sync=False)  # the batch syncs once (_sync)
        try:
            os.replace(tmp, path)  # atomic: a phone sees the old file or the new one
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        written.append(path)
        st = path.stat()
        return FileStat(st.st_size, st.st_mtime)

    def _delete(self, op: Delete) -> None:
        path = self._path(op.path)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
        # Remove directories emptied by the delete (a phone's token directory), not the base.
        parent = path.parent
        base = self._base()
        while parent != base and parent != parent.parent:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def create(self, path: str, data: bytes) -> bool:
        target = self._path(path)
        try:
            tmp = self._write_temporary(target, data)
        except OSError as exc:
            raise self._error(f"create {target}", exc) from exc
        try:
            # A hard link is exclusive and shows the whole file at once (no empty lock file
            # for another run to find).
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError:
            pass  # no hard links on this file system: create exclusively, then write
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._error(f"create {target}", exc) from exc
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True

    def exists(self) -> bool:
        return self.base.is_dir()

    def ensure(self, create: bool = True) -> None:
        try:
            if create:
                self.base.mkdir(self.dir_mode, parents=True, exist_ok=True)
            elif not self.base.is_dir():
                return
            if statmod.S_IMODE(self.base.stat().st_mode) != self.dir_mode:
                os.chmod(self.base, self.dir_mode)
        except PermissionError as exc:
            raise Denied(
                self.name, f"cannot make {self.base} (mode {self.dir_mode:o}): {exc.strerror}"
            ) from exc
        except OSError as exc:
            raise self._error(f"make {self.base}", exc) from exc


class LocalTarget(LocalTree):
    def __init__(
        self,
        name: str,
        root: Path,
        file_mode: int = 0o644,
        dir_mode: int = 0o711,
        meta_root: Path | None = None,
    ):
        temporaries: set[Path] = set()
        super().__init__(name, root, file_mode, dir_mode, temporaries)
        self.root = root
        choices, legacy = places(str(root), None if meta_root is None else str(meta_root))
        trees = [LocalTree(name, Path(p), RECORD_MODE, META_MODE, temporaries) for p in choices]
        old = next(
            (t for t in trees if t.location == legacy),
            LocalTree(name, Path(legacy), RECORD_MODE, META_MODE, temporaries),
        )
        self.meta: Store = Meta(name, trees, old)

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
