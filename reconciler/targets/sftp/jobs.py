"""The jobs of the pipeline: each one file or directory, a few requests and their replies.

Publishing a file costs three round trips, overlapped with the other files':

    [MKDIR missing parents]  OPEN tmp (create, exclusive, mode)      -> handle
    WRITE...  FSTAT  [FSETSTAT mode]  CLOSE                           -> size, mtime
    posix-rename tmp -> path   (servers without it: rename, or remove + rename)

`tmp` is `.provctl-tmp-<name>.<random>` in the destination directory, so a phone fetching the
file sees the old version or the new one, never half of it; the rename is sent only once the
server has confirmed every write. Listing (OPENDIR / READDIR), reading (OPEN / READ), stat,
exclusive creation and making a tree's directory are jobs too.
"""

from __future__ import annotations

import logging
import posixpath
import stat as statmod
from functools import partial
from typing import TYPE_CHECKING

from reconciler.targets.base import TMP_PREFIX, Delete, FileStat, OpResult, Put
from reconciler.targets.sftp.engine import Engine, Job, OnReply
from reconciler.targets.sftp.wire import (
    ATTRS,
    CLOSE,
    DATA,
    EXTENDED,
    FSETSTAT,
    FSTAT,
    FX_EOF,
    FX_FAILURE,
    FX_NO_SUCH_FILE,
    FX_OK,
    FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED,
    FXF_CREAT,
    FXF_EXCL,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    HANDLE,
    LSTAT,
    MKDIR,
    NAME,
    OPEN,
    OPENDIR,
    POSIX_RENAME,
    READ,
    READDIR,
    REMOVE,
    RENAME,
    RMDIR,
    SETSTAT,
    STAT,
    U64,
    WRITE,
    Attrs,
    Reply,
    describe,
)

if TYPE_CHECKING:
    from reconciler.targets.sftp.target import SftpTree

log = logging.getLogger("reconciler.targets.sftp")

CHUNK = 32768  # bytes per WRITE or READ request, as OpenSSH's sftp client


class TreeJob(Job):
    """A job on one tree of a target (the root, or meta_root)."""

    def __init__(self, engine: Engine, tree: SftpTree):
        super().__init__(engine)
        self.tree = tree
        self.host = tree.shared


class PutJob(TreeJob):
    """Publish one file: write a temporary name, then rename it over the old one."""

    def __init__(
        self, engine: Engine, tree: SftpTree, index: int, op: Put, results: list[OpResult | None]
    ):
        super().__init__(engine, tree)
        self.index, self.op, self.results = index, op, results
        self.path = self.tree.abs(op.path)
        self.dir, base = posixpath.split(self.path)
        self.tmp = f"{self.dir}/{TMP_PREFIX}{base}.{self.host.tmp_suffix()}"
        self.handle = b""
        self.error: str | None = None
        self.attrs: Attrs | None = None
        self.pending = 0
        self.made_parents = False
        self.removed_old = False

    def start(self) -> None:
        if self.dir not in self.host.dirs:
            self._mkdirs(self.tree.missing_dirs(self.dir))
        self._open()

    # [MKDIR...] OPEN: the server handles a channel's requests in order
    def _mkdirs(self, dirs: list[str]) -> None:
        for d in dirs:
            self.send(partial(self._made, d), MKDIR, d, Attrs(mode=self.tree.dir_mode))
            self.host.dirs.add(d)

    def _made(self, d: str, t: int, reply: Reply) -> None:
        if reply.status()[0] == FX_OK and self.tree.dir_chmod_needed:
            # A new directory gets dir_mode minus the server's umask: look, and fix it if needed.
            self.send(partial(self._dir_mode, d), LSTAT, d)

    def _dir_mode(self, d: str, t: int, reply: Reply) -> None:
        mode = reply.attrs().mode if t == ATTRS else None
        if mode is not None and statmod.S_IMODE(mode) == self.tree.dir_mode:
            self.tree.dir_chmod_needed = False
        else:
            self.send(self.ignore, SETSTAT, d, Attrs(mode=self.tree.dir_mode))

    def _open(self) -> None:
        self.host.temporaries.add(self.tmp)
        flags = FXF_WRITE | FXF_CREAT | FXF_TRUNC | FXF_EXCL
        self.send(self._opened, OPEN, self.tmp, flags, Attrs(mode=self.tree.file_mode))

    def _opened(self, t: int, reply: Reply) -> None:
        if t == HANDLE:
            self.handle = reply.string()
            self._write()
            return
        self.host.temporaries.discard(self.tmp)
        code, text = reply.status()
        if code == FX_NO_SUCH_FILE and not self.made_parents:
            # A parent is missing (or another session just removed it): make every level
            # below the root and try once more.
            self.made_parents = True
            self._mkdirs(self.tree.all_dirs(self.dir))
            self._open()
        elif code == FX_NO_SUCH_FILE:
            self._diagnose()
        else:
            self._fail(describe(code, text, self.op.path), cleanup=False)

    # WRITE... FSTAT [FSETSTAT] CLOSE, sent together
    def _write(self) -> None:
        data = self.op.data
        for offset in range(0, len(data), CHUNK):
            self._expect(
                self._status, WRITE, self.handle, U64(offset), data[offset : offset + CHUNK]
            )
        self._expect(self._fstat, FSTAT, self.handle)
        if self.tree.chmod_needed:
            self._expect(self._status, FSETSTAT, self.handle, Attrs(mode=self.tree.file_mode))
        self._expect(self._status, CLOSE, self.handle)

    def _expect(self, on_reply: OnReply, cmd: int, *args: object) -> None:
        self.pending += 1
        self.send(on_reply, cmd, *args)

    def _status(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code != FX_OK and self.error is None:
            self.error = describe(code, text, self.op.path)
        self._step()

    def _fstat(self, t: int, reply: Reply) -> None:
        if t != ATTRS:
            self._status(t, reply)
            return
        self.attrs = attrs = reply.attrs()
        if attrs.mode is not None and statmod.S_IMODE(attrs.mode) == self.tree.file_mode:
            # OPEN made it with file_mode: the server's umask keeps it, FSETSTAT is not needed.
            self.tree.chmod_needed = False
        self._step()

    def _step(self) -> None:
        self.pending -= 1
        if self.pending:
            return
        if self.error is None and (self.attrs is None or self.attrs.size != len(self.op.data)):
            size = "?" if self.attrs is None else self.attrs.size
            self.error = f"short write ({size} of {len(self.op.data)} bytes): {self.op.path}"
        if self.error is not None:
            self._fail(self.error)
        else:
            self._rename()

    # posix-rename over the old file (servers without it: plain rename)
    def _rename(self) -> None:
        if self.host.posix_rename:
            self.send(self._renamed, EXTENDED, POSIX_RENAME, self.tmp, self.path)
        else:
            self.send(self._renamed_plain, RENAME, self.tmp, self.path)

    def _renamed(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code == FX_OK:
            self._done()
        elif code == FX_OP_UNSUPPORTED:
            self.host.posix_rename = False
            self._rename()
        else:
            self._fail(describe(code, text, self.op.path))

    def _renamed_plain(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code == FX_OK:
            self._done()
        elif code == FX_FAILURE and not self.removed_old:
            # Plain SFTP rename does not replace an existing file: remove it first. Not atomic;
            # only servers without posix-rename get here.
            self.removed_old = True
            self.send(self.ignore, REMOVE, self.path)
            self.send(self._renamed_plain, RENAME, self.tmp, self.path)
        else:
            self._fail(describe(code, text, self.op.path))

    def _done(self) -> None:
        self.host.temporaries.discard(self.tmp)
        assert self.attrs is not None
        stat = FileStat(self.attrs.size or 0, float(self.attrs.mtime or 0))
        self.results[self.index] = OpResult(self.op, stat=stat)
        log.info("target %s: published %s (%d bytes)", self.tree.name, self.op.path, stat.size)
        self.finish()

    def _fail(self, error: str, cleanup: bool = True) -> None:
        log.warning("target %s: %s", self.tree.name, error)
        self.results[self.index] = OpResult(self.op, error=error)
        if cleanup:  # remove the temporary file, then finish
            self.send(self._cleaned, REMOVE, self.tmp)
        else:
            self.finish()

    def _cleaned(self, t: int, reply: Reply) -> None:
        self.host.temporaries.discard(self.tmp)
        self.finish()

    def _diagnose(self) -> None:
        """The temporary file cannot be created even after MKDIR: say which level is wrong."""
        t = self.tree
        levels = [t.base, *t.all_dirs(self.dir)]
        found: dict[str, Attrs | None] = {}

        def seen(level: str, kind: int, reply: Reply) -> None:
            found[level] = reply.attrs() if kind == ATTRS else None
            if len(found) < len(levels):
                return
            reason = f"cannot create a file in {t.rel(self.dir)}"
            for level in levels:
                attrs = found[level]
                name = f"{t.label} {t.base}" if level == t.base else t.rel(level)
                if attrs is None:
                    reason = (
                        f"{name} does not exist"
                        if level == t.base
                        else f"directory {name} cannot be created"
                    )
                    break
                if not attrs.is_dir:
                    reason = f"{name} exists and is not a directory"
                    break
            self._fail(f"{reason}: {self.op.path}", cleanup=False)

        for level in levels:
            self.send(partial(seen, level), LSTAT, level)


class DeleteJob(TreeJob):
    """REMOVE the file, then RMDIR each parent below the root (fails harmlessly if not empty)."""

    def __init__(
        self, engine: Engine, tree: SftpTree, index: int, op: Delete, results: list[OpResult | None]
    ):
        super().__init__(engine, tree)
        self.index, self.op, self.results = index, op, results
        self.path = self.tree.abs(op.path)

    def start(self) -> None:
        parents = self.tree.all_dirs(posixpath.dirname(self.path))[::-1]
        self.send(self._removed if parents else self._removed_last, REMOVE, self.path)
        for n, d in enumerate(parents, 1):
            self.host.dirs.discard(d)
            self.send(self.ignore if n < len(parents) else self._last, RMDIR, d)

    def _removed(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code in (FX_OK, FX_NO_SUCH_FILE):
            self.results[self.index] = OpResult(self.op)
            if code == FX_OK:
                log.info("target %s: deleted %s", self.tree.name, self.op.path)
        else:
            error = describe(code, text, self.op.path)
            log.warning("target %s: %s", self.tree.name, error)
            self.results[self.index] = OpResult(self.op, error=error)

    def _removed_last(self, t: int, reply: Reply) -> None:
        self._removed(t, reply)
        self.finish()

    def _last(self, t: int, reply: Reply) -> None:
        self.finish()


class RemoveJob(TreeJob):
    """Best-effort removal of a temporary file an interrupted upload left behind."""

    def __init__(self, engine: Engine, tree: SftpTree, path: str):
        super().__init__(engine, tree)
        self.path = path

    def start(self) -> None:
        self.send(self._removed, REMOVE, self.path)

    def _removed(self, t: int, reply: Reply) -> None:
        self.host.temporaries.discard(self.path)
        self.finish()


class ListJob(TreeJob):
    """OPENDIR, READDIR until EOF, CLOSE: size and mtime of the regular files in a directory."""

    def __init__(
        self,
        engine: Engine,
        tree: SftpTree,
        rel: str,
        found: dict[str, FileStat],
        errors: list[str],
    ):
        super().__init__(engine, tree)
        self.rel, self.found, self.errors = rel, found, errors
        self.path = self.tree.abs(rel)
        self.handle = b""

    def start(self) -> None:
        self.send(self._opened, OPENDIR, self.path)

    def _opened(self, t: int, reply: Reply) -> None:
        if t == HANDLE:
            self.handle = reply.string()
            self.host.dirs.add(self.path)
            self.send(self._names, READDIR, self.handle)
            return
        code, text = reply.status()
        if code != FX_NO_SUCH_FILE:
            self.errors.append(f"cannot list {describe(code, text, self.rel or '.')}")
        self.finish()

    def _names(self, t: int, reply: Reply) -> None:
        if t != NAME:
            code, text = reply.status()
            if code != FX_EOF:
                self.errors.append(f"cannot list {describe(code, text, self.rel or '.')}")
            self.send(self._closed, CLOSE, self.handle)
            return
        for _ in range(reply.u32()):
            name = reply.string().decode(errors="surrogateescape")
            reply.string()  # the `ls -l` line
            attrs = reply.attrs()
            if attrs.is_dir and name not in (".", ".."):
                self.host.dirs.add(f"{self.path}/{name}")
            elif not attrs.is_file:
                continue
            elif name.startswith(TMP_PREFIX):
                self.host.temporaries.add(f"{self.path}/{name}")
            else:
                path = f"{self.rel}/{name}" if self.rel else name
                self.found[path] = FileStat(attrs.size or 0, float(attrs.mtime or 0))
        self.send(self._names, READDIR, self.handle)

    def _closed(self, t: int, reply: Reply) -> None:
        self.finish()


class ReadJob(TreeJob):
    """OPEN; FSTAT with the first READ; the other READs pipelined; CLOSE."""

    def __init__(
        self,
        engine: Engine,
        tree: SftpTree,
        rel: str,
        out: dict[str, bytes | None],
        errors: list[str],
    ):
        super().__init__(engine, tree)
        self.rel, self.out, self.errors = rel, out, errors
        self.path = self.tree.abs(rel)
        self.handle = b""
        self.chunks: dict[int, bytes] = {}
        self.todo: list[tuple[int, int]] = []  # (offset, length) still to ask for, last first
        self.pending = 0
        self.size: int | None = None
        self.failed = False

    def start(self) -> None:
        self.send(self._opened, OPEN, self.path, FXF_READ, Attrs())

    def _opened(self, t: int, reply: Reply) -> None:
        if t != HANDLE:
            code, text = reply.status()
            if code == FX_NO_SUCH_FILE:
                self.out[self.rel] = None
            else:
                self._error(code, text)
            self.finish()
            return
        self.handle = reply.string()
        self.pending += 1
        self.send(self._sized, FSTAT, self.handle)
        self.todo.append((0, CHUNK))
        self.resume()

    def _sized(self, t: int, reply: Reply) -> None:
        self.pending -= 1
        if t == ATTRS:
            self.size = size = reply.attrs().size or 0
            rest = [(o, min(CHUNK, size - o)) for o in range(CHUNK, size, CHUNK)]
            self.todo[:0] = rest[::-1]
        else:
            self._error(*reply.status())
        self.resume()

    def resume(self) -> None:
        while self.todo and not self.failed:
            offset, length = self.todo[-1]
            if not self.engine.take_credit(self, length):
                return
            self.todo.pop()
            self.pending += 1
            self.send(partial(self._data, offset, length), READ, self.handle, U64(offset), length)
        if not self.pending:
            self._close()

    def _data(self, offset: int, length: int, t: int, reply: Reply) -> None:
        self.pending -= 1
        if t == DATA:
            data = reply.string()
            self.chunks[offset] = data
            end = offset + len(data)
            if 0 < len(data) < length and (self.size is None or end < self.size):
                self.todo.append((end, length - len(data)))  # a short read: ask for the rest
        else:
            code, text = reply.status()
            if code != FX_EOF:
                self._error(code, text)
        self.engine.give_credit(length)
        self.resume()

    def _error(self, code: int, text: str) -> None:
        if not self.failed:
            self.failed = True
            self.errors.append(f"cannot read {describe(code, text, self.rel)}")

    def _close(self) -> None:
        if not self.failed:
            data, end = [], 0
            for offset in sorted(self.chunks):
                if offset != end:
                    break  # the file shrank while it was read: keep what is contiguous
                data.append(self.chunks[offset])
                end += len(self.chunks[offset])
            self.out[self.rel] = b"".join(data)
        self.send(self._closed, CLOSE, self.handle)

    def _closed(self, t: int, reply: Reply) -> None:
        self.finish()


class StatJob(TreeJob):
    """STAT (or LSTAT) one path: its attributes, or None when it does not exist."""

    def __init__(
        self,
        engine: Engine,
        tree: SftpTree,
        path: str,
        out: dict[str, Attrs | None],
        errors: list[str],
        follow: bool = True,
    ):
        super().__init__(engine, tree)
        self.path, self.out, self.errors, self.follow = path, out, errors, follow

    def start(self) -> None:
        self.send(self._stat, STAT if self.follow else LSTAT, self.path)

    def _stat(self, t: int, reply: Reply) -> None:
        if t == ATTRS:
            self.out[self.path] = reply.attrs()
        else:
            code, text = reply.status()
            if code == FX_NO_SUCH_FILE:
                self.out[self.path] = None
            else:
                self.errors.append(f"cannot stat {describe(code, text, self.tree.rel(self.path))}")
        self.finish()


class CreateJob(TreeJob):
    """OPEN (create, exclusive), WRITE..., CLOSE; `out[rel]` False when the file existed."""

    def __init__(
        self,
        engine: Engine,
        tree: SftpTree,
        rel: str,
        data: bytes,
        out: dict[str, bool],
        errors: list[str],
    ):
        super().__init__(engine, tree)
        self.rel, self.data, self.out, self.errors = rel, data, out, errors
        self.path = tree.abs(rel)
        self.pending = 0
        self.error: str | None = None
        self.attempts = 0

    def start(self) -> None:
        flags = FXF_WRITE | FXF_CREAT | FXF_EXCL
        self.send(self._opened, OPEN, self.path, flags, Attrs(mode=self.tree.file_mode))

    def _opened(self, t: int, reply: Reply) -> None:
        if t == HANDLE:
            handle = reply.string()
            for offset in range(0, len(self.data), CHUNK):
                self.pending += 1
                self.send(
                    self._status, WRITE, handle, U64(offset), self.data[offset : offset + CHUNK]
                )
            self.pending += 1
            self.send(self._status, CLOSE, handle)
            return
        code, text = reply.status()
        if code == FX_FAILURE:  # SFTP v3 has no "it exists": look
            self.send(partial(self._exists, text), LSTAT, self.path)
            return
        self.errors.append(f"cannot create {describe(code, text, self.rel)}")
        self.finish()

    def _exists(self, text: str, t: int, reply: Reply) -> None:
        if t == ATTRS:
            self.out[self.rel] = False
        elif reply.status()[0] == FX_NO_SUCH_FILE and self.attempts < 3:
            self.attempts += 1  # it existed, and was removed meanwhile (a lock released)
            self.start()
            return
        else:
            self.errors.append(f"cannot create {describe(FX_FAILURE, text, self.rel)}")
        self.finish()

    def _status(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code != FX_OK and self.error is None:
            self.error = describe(code, text, self.rel)
        self.pending -= 1
        if self.pending:
            return
        if self.error is not None:
            self.errors.append(f"cannot write {self.error}")
        else:
            self.out[self.rel] = True
        self.finish()


class EnsureJob(TreeJob):
    """STAT the tree's directory; MKDIR it (when `create`) and SETSTAT its mode if need be.

    `out` gets "denied: ..." or "error: ..." or nothing.
    """

    def __init__(self, engine: Engine, tree: SftpTree, create: bool, out: list[str]):
        super().__init__(engine, tree)
        self.create, self.out = create, out
        self.made = False

    def start(self) -> None:
        self.send(self._stat, STAT, self.tree.base)

    def _stat(self, t: int, reply: Reply) -> None:
        base, mode = self.tree.base, self.tree.dir_mode
        if t == ATTRS:
            attrs = reply.attrs()
            if not attrs.is_dir:
                self.out.append(f"error: {base} exists and is not a directory")
            elif attrs.mode is not None and statmod.S_IMODE(attrs.mode) != mode:
                self.send(self._set, SETSTAT, base, Attrs(mode=mode))
                return
            else:
                self.host.dirs.add(base)
            self.finish()
            return
        code, text = reply.status()
        if code == FX_NO_SUCH_FILE and self.create and not self.made:
            self.made = True
            self.send(self._made, MKDIR, base, Attrs(mode=mode))
            return
        if code != FX_NO_SUCH_FILE:
            self.out.append(f"error: cannot stat {describe(code, text, base)}")
        elif self.create:
            self.out.append(f"error: cannot make {base}: its parent does not exist")
        self.finish()

    def _made(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code == FX_PERMISSION_DENIED:
            self.out.append(f"denied: cannot make {self.tree.base}: permission denied")
            self.finish()
        elif code == FX_NO_SUCH_FILE:
            self.out.append(f"error: cannot make {self.tree.base}: its parent does not exist")
            self.finish()
        else:  # made, or made by someone else meanwhile: look at it (and its mode) again
            self.send(self._stat, STAT, self.tree.base)

    def _set(self, t: int, reply: Reply) -> None:
        code, text = reply.status()
        if code == FX_PERMISSION_DENIED:
            self.out.append(
                f"denied: cannot set mode {self.tree.dir_mode:o} on "
                f"{self.tree.base}: permission denied"
            )
        elif code != FX_OK:
            self.out.append(f"error: cannot set the mode of {describe(code, text, self.tree.base)}")
        else:
            self.host.dirs.add(self.tree.base)
        self.finish()
