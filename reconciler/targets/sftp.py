"""The SFTP target: a provisioning host's document root, reached over SSH with paramiko.

This is the only module that imports paramiko. The host may give the account no shell, so
everything is plain SFTP (v3 plus the OpenSSH `posix-rename` extension).

Connecting: key authentication (a key file, optionally with a passphrase, or the SSH agent when
no key file is configured) and *strict* host-key checking against the target's own known_hosts
file: an unknown or a changed host key stops the target with the host, the port and the SHA256
fingerprint the server presented. Nothing is ever auto-accepted, no system host keys are read.

Publishing many small files fast: `execute()` runs up to `sessions` SFTP sessions (one SSH
connection each: the server then works on several CPUs), each driven by one thread that keeps
many files in flight at once (requests pipelined; responses dispatched as they arrive). A file
costs three round trips, all overlapped with other files:

    [MKDIR missing parents]  OPEN tmp (create, exclusive)         -> handle
    WRITE...  [FSETSTAT mode]  FSTAT  CLOSE                        -> size, mtime
    posix-rename tmp -> path   (fallback: rename, or remove + rename)

`tmp` is `.provctl-tmp-<name>.<random>` in the destination directory, so a phone fetching the
file sees the old version or the new one, never half of it. A dropped connection retries the
files that were in flight on a fresh connection, with backoff; anything else (permission denied,
a path component that is a file) is that file's error only.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import logging
import posixpath
import secrets
import socket
import stat as statmod
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_FSETSTAT,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_REMOVE,
    CMD_RENAME,
    CMD_RMDIR,
    CMD_SETSTAT,
    CMD_WRITE,
    SFTP_EOF,
    SFTP_FAILURE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTP_PERMISSION_DENIED,
    int64,
)

from ..errors import LockHeld, TargetError
from .base import (
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

log = logging.getLogger(__name__)

CHUNK = 32768  # bytes per WRITE/READ request, as OpenSSH's sftp client
DEPTH = 48  # jobs (files, directories) in flight per session
RETRIES = 3  # extra attempts after a dropped connection
BATCH = 16  # ops a session takes from the shared queue at a time (keeps a directory together)
OPS_PER_SESSION = 64  # open another session only for this many ops
YOUNG_LOCK = 60.0  # an unreadable lock younger than this is being written: treat it as held

_POSIX_RENAME = "posix-rename@openssh.com"
_T = TypeVar("_T")


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as OpenSSH prints it (base64 of the key blob's sha256, no padding)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey):
        self.key = key


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Never accept a host key that is not in the target's known_hosts file."""

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        raise _UnknownHostKey(key)


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once.

    The server sends small SFTP replies without TCP_NODELAY (OpenSSH sets it only for
    interactive sessions); with Linux's delayed ACKs that stalls every exchange where the server
    sends two small packets in a row for 40 ms (Nagle waits for the ACK of the first). Opening
    an SFTP session took 45 ms instead of 2 on loopback.
    """

    def recv(self, n: int, *flags: int) -> bytes:
        data = super().recv(n, *flags)
        with contextlib.suppress(OSError):
            self.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return data


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if _TCP_QUICKACK is None:
        return raw
    sock = _QuickAckSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
    sock.settimeout(timeout)
    return sock


class _Lost(Exception):
    """The connection under a session went away (transient: retry on a fresh one)."""


class _Session:
    """One SSH connection with one SFTP channel; used by one thread at a time."""

    def __init__(self, client: paramiko.SSHClient, sftp: paramiko.SFTPClient):
        self.client = client
        self.sftp = sftp

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active() and not self.sftp.sock.closed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.close()
        with contextlib.suppress(Exception):
            self.client.close()


def _status(msg: paramiko.Message) -> tuple[int, str]:
    code = msg.get_int()
    try:
        text = msg.get_text()
    except Exception:  # a server may omit the message
        text = ""
    return code, text


def _describe(code: int, text: str, path: str) -> str:
    if code == SFTP_PERMISSION_DENIED:
        return f"permission denied: {path}"
    if code == SFTP_NO_SUCH_FILE:
        return f"no such file or directory: {path}"
    return f"{text or f'SFTP error {code}'}: {path}"


def _is_lost(exc: BaseException) -> bool:
    return isinstance(exc, (_Lost, EOFError, socket.timeout, TimeoutError, paramiko.SSHException,
                            ConnectionError))


# --- the pipeline ---------------------------------------------------------------------------


class _Job:
    """One unit of work in a pipeline: sends requests, answers their responses.

    paramiko's SFTPClient sends a request with `_async_request(obj, ...)` and, when the response
    arrives (`_read_response()`), hands it to `obj._async_response`; that is how its own
    pipelined writes and prefetching work, and how these jobs work.
    """

    def __init__(self, engine: _Engine):
        self.engine = engine
        self.target = engine.target
        self.waiting: dict[int, Callable[[int, paramiko.Message], None]] = {}

    def send(self, on_reply: Callable[[int, paramiko.Message], None], cmd: int, *args) -> None:
        num = self.engine.sftp._async_request(self, cmd, *args)
        self.waiting[num] = on_reply

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.waiting.pop(num)(t, msg)

    def ignore(self, t: int, msg: paramiko.Message) -> None:
        pass

    def finish(self) -> None:
        self.engine.finished(self)

    def start(self) -> None:
        raise NotImplementedError


class _Engine:
    """Drives jobs over one SFTP session from one thread, up to DEPTH of them in flight."""

    def __init__(self, target: SftpTarget, session: _Session, on_finish: Callable[[_Job], None]):
        self.target = target
        self.session = session
        self.sftp = session.sftp
        self.on_finish = on_finish
        self.active: set[_Job] = set()

    def run(self, next_job: Callable[[_Engine], _Job | None]) -> None:
        """Until `next_job` returns None and every job has finished.

        Raises _Lost, with `active` still holding the interrupted jobs, when the connection
        goes away.
        """
        more = True
        try:
            while True:
                while more and len(self.active) < DEPTH:
                    job = next_job(self)
                    if job is None:
                        more = False
                        break
                    self.active.add(job)
                    job.start()
                if not self.active:
                    return
                self.sftp._read_response()  # one response, dispatched to its job
        except Exception as exc:
            if _is_lost(exc) or (isinstance(exc, OSError) and not self.session.alive):
                raise _Lost(str(exc) or type(exc).__name__) from exc
            raise

    def finished(self, job: _Job) -> None:
        self.active.discard(job)
        self.on_finish(job)


class _PutJob(_Job):
    """Publish one file: temporary name, then rename over the old one."""

    def __init__(self, engine: _Engine, index: int, op: Put, results: list[OpResult | None]):
        super().__init__(engine)
        self.index, self.op, self.results = index, op, results
        self.path = self.target._abs(op.path)
        self.dir, base = posixpath.split(self.path)
        self.tmp = f"{self.dir}/{TMP_PREFIX}{base}.{secrets.token_hex(4)}"
        self.handle = b""
        self.error: str | None = None
        self.attrs: paramiko.SFTPAttributes | None = None
        self.pending = 0
        self.made_parents = False
        self.removed_old = False

    def start(self) -> None:
        if self.dir not in self.target._dirs:
            self._mkdirs(self.target._missing_dirs(self.dir))
        self._open()

    # [MKDIR...] OPEN: the server handles requests in order, so OPEN follows the MKDIRs
    def _mkdirs(self, dirs: list[str]) -> None:
        attrs = paramiko.SFTPAttributes()
        attrs.st_mode = self.target.dir_mode
        for d in dirs:
            self.send(lambda t, msg, d=d: self._made(d, t, msg), CMD_MKDIR, d, attrs)
            self.target._dirs.add(d)

    def _made(self, d: str, t: int, msg: paramiko.Message) -> None:
        if _status(msg)[0] == SFTP_OK:
            # Ours: give it dir_mode exactly (MKDIR's mode is subject to the server's umask).
            attrs = paramiko.SFTPAttributes()
            attrs.st_mode = self.target.dir_mode
            self.send(self.ignore, CMD_SETSTAT, d, attrs)

    def _open(self) -> None:
        attrs = paramiko.SFTPAttributes()
        attrs.st_mode = self.target.file_mode
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC | SFTP_FLAG_EXCL
        self.target._temporaries.add(self.tmp)
        self.send(self._opened, CMD_OPEN, self.tmp, flags, attrs)

    def _opened(self, t: int, msg: paramiko.Message) -> None:
        if t == CMD_HANDLE:
            self.handle = msg.get_binary()
            self._write()
            return
        self.target._temporaries.discard(self.tmp)
        code, text = _status(msg)
        if code == SFTP_NO_SUCH_FILE and not self.made_parents:
            # A parent is missing (or another session just removed it): make every level
            # below the root and try once more.
            self.made_parents = True
            self._mkdirs(self.target._all_dirs(self.dir))
            self._open()
        elif code == SFTP_NO_SUCH_FILE:
            self._diagnose()
        else:
            self._fail(_describe(code, text, self.op.path), cleanup=False)

    # WRITE... FSTAT [FSETSTAT] CLOSE, sent at once
    def _write(self) -> None:
        data = self.op.data
        for offset in range(0, len(data), CHUNK):
            self._expect(self._status, CMD_WRITE, self.handle, int64(offset),
                         data[offset:offset + CHUNK])
        self._expect(self._fstat, CMD_FSTAT, self.handle)
        if self.target._chmod_needed:
            attrs = paramiko.SFTPAttributes()
            attrs.st_mode = self.target.file_mode
            self._expect(self._status, CMD_FSETSTAT, self.handle, attrs)
        self._expect(self._status, CMD_CLOSE, self.handle)

    def _expect(self, on_reply: Callable[[int, paramiko.Message], None], cmd: int,
                *args) -> None:
        self.pending += 1
        self.send(on_reply, cmd, *args)

    def _status(self, t: int, msg: paramiko.Message) -> None:
        code, text = _status(msg)
        if code != SFTP_OK and self.error is None:
            self.error = _describe(code, text, self.op.path)
        self._step()

    def _fstat(self, t: int, msg: paramiko.Message) -> None:
        if t != CMD_ATTRS:
            self._status(t, msg)
            return
        self.attrs = paramiko.SFTPAttributes._from_msg(msg)
        if statmod.S_IMODE(self.attrs.st_mode or 0) == self.target.file_mode:
            # OPEN created it with file_mode: the server's umask keeps it, no FSETSTAT needed.
            self.target._chmod_needed = False
        self._step()

    def _step(self) -> None:
        self.pending -= 1
        if self.pending:
            return
        if self.error is None and (self.attrs is None or self.attrs.st_size != len(self.op.data)):
            size = "?" if self.attrs is None else self.attrs.st_size
            self.error = f"short write ({size} of {len(self.op.data)} bytes): {self.op.path}"
        if self.error is not None:
            self._fail(self.error)
        else:
            self._rename()

    # posix-rename over the old file (plain rename on servers without the extension)
    def _rename(self) -> None:
        if self.target._posix_rename:
            self.send(self._renamed, CMD_EXTENDED, _POSIX_RENAME, self.tmp, self.path)
        else:
            self.send(self._renamed_plain, CMD_RENAME, self.tmp, self.path)

    def _renamed(self, t: int, msg: paramiko.Message) -> None:
        code, text = _status(msg)
        if code == SFTP_OK:
            self._done()
        elif code == SFTP_OP_UNSUPPORTED:
            self.target._posix_rename = False
            self._rename()
        else:
            self._fail(_describe(code, text, self.op.path))

    def _renamed_plain(self, t: int, msg: paramiko.Message) -> None:
        code, text = _status(msg)
        if code == SFTP_OK:
            self._done()
        elif code == SFTP_FAILURE and not self.removed_old:
            # Plain SFTP rename does not replace an existing file: remove it first. Not atomic;
            # only servers without posix-rename get here.
            self.removed_old = True
            self.send(self.ignore, CMD_REMOVE, self.path)
            self.send(self._renamed_plain, CMD_RENAME, self.tmp, self.path)
        else:
            self._fail(_describe(code, text, self.op.path))

    def _done(self) -> None:
        self.target._temporaries.discard(self.tmp)
        assert self.attrs is not None
        stat = FileStat(int(self.attrs.st_size or 0), float(self.attrs.st_mtime or 0))
        self.results[self.index] = OpResult(self.op, stat=stat)
        log.info("target %s: published %s (%d bytes)", self.target.name, self.op.path, stat.size)
        self.finish()

    def _fail(self, error: str, cleanup: bool = True) -> None:
        log.warning("target %s: %s", self.target.name, error)
        self.results[self.index] = OpResult(self.op, error=error)
        if cleanup:  # remove the temporary file, then finish
            self.send(self._cleaned, CMD_REMOVE, self.tmp)
        else:
            self.finish()

    def _cleaned(self, t: int, msg: paramiko.Message) -> None:
        self.target._temporaries.discard(self.tmp)
        self.finish()

    def _diagnose(self) -> None:
        """The temporary file cannot be created even after MKDIR: say which level is wrong."""
        levels = [self.target.root, *self.target._all_dirs(self.dir)]
        found: dict[str, paramiko.SFTPAttributes | None] = {}

        def seen(d: str, t: int, msg: paramiko.Message) -> None:
            found[d] = paramiko.SFTPAttributes._from_msg(msg) if t == CMD_ATTRS else None
            if len(found) < len(levels):
                return
            reason = f"cannot create a file in {self.target._rel(self.dir)}"
            for level in levels:
                attrs = found[level]
                name = (f"document root {self.target.root}" if level == self.target.root
                        else self.target._rel(level))
                if attrs is None:
                    reason = (f"{name} does not exist" if level == self.target.root
                              else f"directory {name} cannot be created")
                    break
                if not statmod.S_ISDIR(attrs.st_mode or 0):
                    reason = f"{name} exists and is not a directory"
                    break
            self._fail(f"{reason}: {self.op.path}", cleanup=False)

        for d in levels:
            self.send(lambda t, msg, d=d: seen(d, t, msg), CMD_LSTAT, d)


class _DeleteJob(_Job):
    """REMOVE the file, then RMDIR each parent below the root (fails harmlessly if not empty)."""

    def __init__(self, engine: _Engine, index: int, op: Delete, results: list[OpResult | None]):
        super().__init__(engine)
        self.index, self.op, self.results = index, op, results
        self.path = self.target._abs(op.path)

    def start(self) -> None:
        parents = self.target._all_dirs(posixpath.dirname(self.path))[::-1]
        self.send(self._removed if parents else self._removed_last, CMD_REMOVE, self.path)
        for n, d in enumerate(parents, 1):
            self.target._dirs.discard(d)
            self.send(self.ignore if n < len(parents) else self._last, CMD_RMDIR, d)

    def _removed(self, t: int, msg: paramiko.Message) -> None:
        code, text = _status(msg)
        if code in (SFTP_OK, SFTP_NO_SUCH_FILE):
            self.results[self.index] = OpResult(self.op)
            if code == SFTP_OK:
                log.info("target %s: deleted %s", self.target.name, self.op.path)
        else:
            error = _describe(code, text, self.op.path)
            log.warning("target %s: %s", self.target.name, error)
            self.results[self.index] = OpResult(self.op, error=error)

    def _removed_last(self, t: int, msg: paramiko.Message) -> None:
        self._removed(t, msg)
        self.finish()

    def _last(self, t: int, msg: paramiko.Message) -> None:
        self.finish()


class _RemoveJob(_Job):
    """Best-effort removal of a temporary file an interrupted upload left behind."""

    def __init__(self, engine: _Engine, path: str):
        super().__init__(engine)
        self.path = path

    def start(self) -> None:
        self.send(self._removed, CMD_REMOVE, self.path)

    def _removed(self, t: int, msg: paramiko.Message) -> None:
        self.target._temporaries.discard(self.path)
        self.finish()


class _ListJob(_Job):
    """OPENDIR, READDIR until EOF, CLOSE: size and mtime of the regular files in a directory."""

    def __init__(self, engine: _Engine, rel: str, found: dict[str, FileStat], errors: list[str]):
        super().__init__(engine)
        self.rel, self.found, self.errors = rel, found, errors
        self.path = self.target._abs(rel)
        self.handle = b""

    def start(self) -> None:
        self.send(self._opened, CMD_OPENDIR, self.path)

    def _opened(self, t: int, msg: paramiko.Message) -> None:
        if t == CMD_HANDLE:
            self.handle = msg.get_binary()
            self.target._dirs.add(self.path)
            self.send(self._names, CMD_READDIR, self.handle)
            return
        code, text = _status(msg)
        if code != SFTP_NO_SUCH_FILE:
            self.errors.append(f"cannot list {_describe(code, text, self.rel or '.')}")
        self.finish()

    def _names(self, t: int, msg: paramiko.Message) -> None:
        if t != CMD_NAME:
            code, text = _status(msg)
            if code != SFTP_EOF:
                self.errors.append(f"cannot list {_describe(code, text, self.rel or '.')}")
            self.send(self._closed, CMD_CLOSE, self.handle)
            return
        for _ in range(msg.get_int()):
            name = msg.get_text()
            msg.get_text()  # the `ls -l` line
            attrs = paramiko.SFTPAttributes._from_msg(msg)
            mode = attrs.st_mode or 0
            if statmod.S_ISDIR(mode) and name not in (".", ".."):
                self.target._dirs.add(f"{self.path}/{name}")
            elif not statmod.S_ISREG(mode):
                continue
            elif name.startswith(TMP_PREFIX):
                self.target._temporaries.add(f"{self.path}/{name}")
            else:
                path = f"{self.rel}/{name}" if self.rel else name
                self.found[path] = FileStat(int(attrs.st_size or 0), float(attrs.st_mtime or 0))
        self.send(self._names, CMD_READDIR, self.handle)

    def _closed(self, t: int, msg: paramiko.Message) -> None:
        self.finish()


class _ReadJob(_Job):
    """OPEN; FSTAT and the first READ together; the other READs pipelined; CLOSE."""

    AHEAD = 16  # READ requests in flight per file

    def __init__(self, engine: _Engine, rel: str, out: dict[str, bytes | None],
                 errors: list[str]):
        super().__init__(engine)
        self.rel, self.out, self.errors = rel, out, errors
        self.path = self.target._abs(rel)
        self.handle = b""
        self.chunks: dict[int, bytes] = {}
        self.todo: list[tuple[int, int]] = []  # (offset, length) still to request
        self.reading = 0
        self.size: int | None = None
        self.failed = False

    def start(self) -> None:
        self.send(self._opened, CMD_OPEN, self.path, SFTP_FLAG_READ, paramiko.SFTPAttributes())

    def _opened(self, t: int, msg: paramiko.Message) -> None:
        if t != CMD_HANDLE:
            code, text = _status(msg)
            if code == SFTP_NO_SUCH_FILE:
                self.out[self.rel] = None
            else:
                self.errors.append(f"cannot read {_describe(code, text, self.rel)}")
            self.finish()
            return
        self.handle = msg.get_binary()
        self.reading += 1
        self.send(self._sized, CMD_FSTAT, self.handle)
        self._read(0, CHUNK)

    def _sized(self, t: int, msg: paramiko.Message) -> None:
        self.reading -= 1
        if t == CMD_ATTRS:
            self.size = int(paramiko.SFTPAttributes._from_msg(msg).st_size or 0)
            self.todo = [(o, min(CHUNK, self.size - o)) for o in range(CHUNK, self.size, CHUNK)]
            self.todo.reverse()
        else:
            self._error(*_status(msg))
        self._next()

    def _read(self, offset: int, length: int) -> None:
        self.reading += 1
        self.send(lambda t, msg: self._data(offset, length, t, msg), CMD_READ, self.handle,
                  int64(offset), length)

    def _data(self, offset: int, length: int, t: int, msg: paramiko.Message) -> None:
        self.reading -= 1
        if t == CMD_DATA:
            data = msg.get_binary()
            self.chunks[offset] = data
            if 0 < len(data) < length and (self.size is None or offset + len(data) < self.size):
                self.todo.append((offset + len(data), length - len(data)))  # a short read
        else:
            code, text = _status(msg)
            if code != SFTP_EOF:
                self._error(code, text)
        self._next()

    def _error(self, code: int, text: str) -> None:
        if not self.failed:
            self.failed = True
            self.errors.append(f"cannot read {_describe(code, text, self.rel)}")

    def _next(self) -> None:
        while self.todo and not self.failed and self.reading < self.AHEAD:
            self._read(*self.todo.pop())
        if self.reading:
            return
        if not self.failed:
            data, end = [], 0
            for offset in sorted(self.chunks):
                if offset != end:
                    break  # the file shrank while it was read: keep what is contiguous
                data.append(self.chunks[offset])
                end += len(self.chunks[offset])
            self.out[self.rel] = b"".join(data)
        self.send(self._closed, CMD_CLOSE, self.handle)

    def _closed(self, t: int, msg: paramiko.Message) -> None:
        self.finish()


class _Run:
    """One batch of jobs spread over sessions (one thread each), with retries."""

    def __init__(self, target: SftpTarget, factories: Sequence[Callable[[_Engine], _Job]]):
        self.target = target
        self.factories = factories
        self.queue = collections.deque((i, 0) for i in range(len(factories)))
        self.lock = threading.Lock()
        self.done = [False] * len(factories)
        self.why: dict[int, str] = {}
        self.crashed: BaseException | None = None
        self.ids: dict[_Job, tuple[int, int]] = {}

    def worker(self, session: _Session | None) -> None:
        try:
            self._work(session)
        except BaseException as exc:  # a bug: report it in the calling thread
            self.crashed = exc

    def _work(self, session: _Session | None) -> None:
        t = self.target
        mine: collections.deque[tuple[int, int]] = collections.deque()

        def next_job(engine: _Engine) -> _Job | None:
            if not mine:
                with self.lock:
                    for _ in range(min(BATCH, len(self.queue))):
                        mine.append(self.queue.popleft())
            if not mine:
                return None
            index, attempt = mine.popleft()
            job = self.factories[index](engine)
            self.ids[job] = (index, attempt)
            return job

        def finished(job: _Job) -> None:
            self.done[self.ids.pop(job)[0]] = True

        losses = 0
        while True:
            if session is None:
                try:
                    session = t._checkout()
                except TargetError as exc:
                    losses += 1
                    if not exc.transient or losses > t.retries:
                        self._give_up(mine, str(exc))
                        return
                    time.sleep(t.backoff * 2 ** (losses - 1))
                    continue
            engine = _Engine(t, session, finished)
            try:
                engine.run(next_job)
            except _Lost as exc:
                session.close()
                session = None
                losses += 1
                reason = f"connection to {t.address} lost: {exc}"
                log.warning("target %s: %s (%d in flight)", t.name, reason, len(engine.active))
                for job in engine.active:
                    index, attempt = self.ids.pop(job)
                    self.why[index] = reason
                    if attempt < t.retries:
                        mine.appendleft((index, attempt + 1))
                if losses > t.retries:
                    self._give_up(mine, reason)
                    return
                time.sleep(t.backoff * 2 ** (losses - 1))
                continue
            t._checkin(session)
            return

    def _give_up(self, mine: collections.deque[tuple[int, int]], reason: str) -> None:
        """Hand this worker's jobs back to the others; whatever nobody takes keeps `reason`."""
        with self.lock:
            self.queue.extendleft(reversed(mine))
            for index, _ in self.queue:
                self.why.setdefault(index, reason)


# --- the target -----------------------------------------------------------------------------


class SftpTarget:
    """A document root on a host reached over SFTP; see the module docstring."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        user: str,
        root: str,
        known_hosts: Path,
        key_file: Path | None,
        key_passphrase: str | None,
        sessions: int = 8,
        file_mode: int = 0o644,
        dir_mode: int = 0o755,
        timeout: float = 15.0,
    ):
        self.name = name
        self.host = host
        self.port = port
        self.user = user
        self.root = posixpath.normpath(str(root)) if str(root) else "."
        self.known_hosts = Path(known_hosts)
        self.key_file = None if key_file is None else Path(key_file)
        self._passphrase = key_passphrase
        self.sessions = max(1, sessions)
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.timeout = timeout
        self.retries = RETRIES
        self.backoff = 0.2  # seconds before the first retry; doubled each time
        self._pkey: paramiko.PKey | None = None
        self._idle: list[_Session] = []
        self._pool_lock = threading.Lock()
        self._dirs: set[str] = {self.root}  # directories known to exist
        self._temporaries: set[str] = set()  # temporary files that may be left on the host
        self._posix_rename = True
        self._chmod_needed = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"SftpTarget({self.name!r}, {self.user}@{self.address}:{self.root})"

    # --- paths

    def _abs(self, rel: str) -> str:
        norm = posixpath.normpath(rel) if rel else "."
        if norm.startswith("/") or norm == ".." or norm.startswith("../"):
            raise TargetError(self.name, f"path escapes the root: {rel}")
        return self.root if norm == "." else f"{self.root}/{norm}"

    def _rel(self, path: str) -> str:
        return "." if path == self.root else path[len(self.root) + 1:]

    def _all_dirs(self, directory: str) -> list[str]:
        """Every directory from just below the root down to `directory`, shallowest first."""
        if directory == self.root:
            return []
        parts = self._rel(directory).split("/")
        return [f"{self.root}/{'/'.join(parts[:i])}" for i in range(1, len(parts) + 1)]

    def _missing_dirs(self, directory: str) -> list[str]:
        levels = self._all_dirs(directory)
        for i in range(len(levels) - 1, -1, -1):
            if levels[i] in self._dirs:
                return levels[i + 1:]
        return levels

    # --- connections

    def _key(self) -> paramiko.PKey | None:
        if self.key_file is None or self._pkey is not None:
            return self._pkey
        try:
            self._pkey = paramiko.PKey.from_path(self.key_file, self._passphrase)
        except FileNotFoundError:
            raise TargetError(self.name, f"key file {self.key_file} not found") from None
        except paramiko.PasswordRequiredException:
            raise TargetError(
                self.name, f"key file {self.key_file} is encrypted: set key_passphrase"
            ) from None
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise TargetError(self.name, f"cannot load key file {self.key_file}: {exc}") from None
        return self._pkey

    def _connect(self) -> _Session:
        pkey = self._key()
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
        except FileNotFoundError:
            raise TargetError(self.name, f"known_hosts file {self.known_hosts} not found") from None
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise TargetError(
                self.name, f"cannot read known_hosts file {self.known_hosts}: {exc}"
            ) from None
        client.set_missing_host_key_policy(_RefuseUnknown())
        try:
            sock = _open_socket(self.host, self.port, self.timeout)
            client.connect(
                self.host, self.port, self.user, pkey=pkey, allow_agent=pkey is None, sock=sock,
                look_for_keys=False, timeout=self.timeout, banner_timeout=self.timeout,
                auth_timeout=self.timeout, channel_timeout=self.timeout,
            )
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
        except BaseException as exc:
            client.close()
            raise self._connect_error(exc) from None
        return _Session(client, sftp)

    def _connect_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, _UnknownHostKey):
            return TargetError(
                self.name,
                f"host key of {self.address} is UNKNOWN: the server presented "
                f"{exc.key.get_name()} {fingerprint(exc.key)}, which is not in "
                f"{self.known_hosts}; verify it out of band and add it there",
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return TargetError(
                self.name,
                f"host key of {self.address} has CHANGED: the server presented "
                f"{exc.key.get_name()} {fingerprint(exc.key)} but {self.known_hosts} has "
                f"{fingerprint(exc.expected_key)}; refusing to connect (a man in the middle, "
                f"or a reinstalled host: verify before updating known_hosts)",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            how = f"key {self.key_file}" if self.key_file else "the SSH agent's keys"
            return TargetError(
                self.name, f"authentication as {self.user} at {self.address} with {how} "
                f"failed: {exc}",
            )
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return TargetError(self.name, f"timed out connecting to {self.address}",
                               transient=True)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            reasons = "; ".join(sorted({e.strerror or str(e) for e in exc.errors.values()}))
            return TargetError(self.name, f"cannot connect to {self.address}: {reasons}",
                               transient=True)
        if isinstance(exc, paramiko.SSHException):
            if "No authentication methods available" in str(exc):
                return TargetError(
                    self.name, f"no key file configured and no SSH agent key for {self.address}"
                )
            return TargetError(self.name, f"SSH to {self.address} failed: {exc}", transient=True)
        if isinstance(exc, OSError):
            return TargetError(
                self.name, f"cannot connect to {self.address}: {exc.strerror or exc}",
                transient=True,
            )
        return exc

    def _checkout(self) -> _Session:
        with self._pool_lock:
            while self._idle:
                session = self._idle.pop()
                if session.alive:
                    return session
                session.close()
        return self._connect()

    def _checkin(self, session: _Session) -> None:
        if not session.alive:
            session.close()
            return
        with self._pool_lock:
            self._idle.append(session)

    @contextlib.contextmanager
    def _session(self) -> Iterator[_Session]:
        """A session for one simple operation; a dropped connection is a transient error."""
        session = self._checkout()
        try:
            yield session
        except Exception as exc:
            if isinstance(exc, TargetError | LockHeld) and session.alive:
                self._checkin(session)
                raise
            session.close()
            if _is_lost(exc) or isinstance(exc, OSError) and not session.alive:
                raise TargetError(
                    self.name, f"connection to {self.address} lost: {exc}", transient=True
                ) from exc
            raise
        self._checkin(session)

    def _retrying(self, what: Callable[[], _T]) -> _T:
        """Run `what`; retry transient TargetErrors with backoff, `retries` times."""
        for attempt in range(self.retries):
            try:
                return what()
            except TargetError as exc:
                if not exc.transient:
                    raise
                log.warning("target %s: %s; retrying", self.name, exc)
                time.sleep(self.backoff * 2**attempt)
        return what()

    def _run(self, factories: Sequence[Callable[[_Engine], _Job]]) -> list[str | None]:
        """Run jobs over a pool of sessions; for each job None (it completed) or why not.

        A job is made again by its factory to retry it on a fresh session after the
        connection dropped. The first session is opened before any job starts, so an
        unreachable host or a refused key raises TargetError instead.
        """
        if not factories:
            return []
        first = self._retrying(self._checkout)
        run = _Run(self, factories)
        width = max(1, min(self.sessions, -(-len(factories) // OPS_PER_SESSION)))
        threads = [
            threading.Thread(target=run.worker, args=(first if i == 0 else None,),
                             name=f"provctl-sftp-{self.name}-{i}", daemon=True)
            for i in range(width)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if run.crashed is not None:
            raise run.crashed
        return [None if ok else run.why.get(i, f"connection to {self.address} lost")
                for i, ok in enumerate(run.done)]

    # --- the Target protocol

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        for op in ops:
            self._abs(op.path)  # refuse a path outside the root before writing anything
        results: list[OpResult | None] = [None] * len(ops)
        # Sorted by path, so that the files of one directory go to the same session.
        order = sorted(range(len(ops)), key=lambda i: ops[i].path)
        factories: list[Callable[[_Engine], _Job]] = []
        for i in order:
            op = ops[i]
            if isinstance(op, Put):
                factories.append(lambda e, i=i, op=op: _PutJob(e, i, op, results))
            else:
                factories.append(lambda e, i=i, op=op: _DeleteJob(e, i, op, results))
        # Temporary files left by an interrupted run (seen by scan, or ours): remove them.
        factories.extend(lambda e, p=p: _RemoveJob(e, p) for p in sorted(self._temporaries))
        failures = self._run(factories)
        position = {i: k for k, i in enumerate(order)}
        out = []
        for i, op in enumerate(ops):
            result = results[i]
            if result is None:
                why = failures[position[i]] or "not completed"
                result = OpResult(op, error=f"{why}: {op.path}")
            out.append(result)
        return out

    def read_manifest(self) -> Manifest:
        data = self.read(MANIFEST)
        if data is None:
            return Manifest()
        try:
            return Manifest.from_bytes(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(self.name, f"cannot read manifest {MANIFEST}: {exc}") from exc

    def write_manifest(self, manifest: Manifest) -> None:
        [result] = self.execute([Put(MANIFEST, manifest.to_bytes())])
        if result.error:
            raise TargetError(self.name, f"cannot write manifest: {result.error}",
                              transient=result.error.startswith("connection"))

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        errors: list[str] = []
        rels = sorted(set(directories))
        self._batch([lambda e, r=r: _ListJob(e, r, found, errors) for r in rels], errors, found)
        return found

    def read(self, path: str) -> bytes | None:
        return self.read_many([path])[path]

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        """Several files at once (pipelined), e.g. for --verify; None for a missing file."""
        out: dict[str, bytes | None] = {}
        errors: list[str] = []
        rels = sorted(set(paths))
        self._batch([lambda e, r=r: _ReadJob(e, r, out, errors) for r in rels], errors, out)
        return out

    def _batch(self, factories: list[Callable[[_Engine], _Job]], errors: list[str],
               out: dict) -> None:
        """Run read-only jobs; all of them again on a dropped connection; errors raise."""

        def attempt() -> None:
            out.clear()
            errors.clear()
            lost = next((why for why in self._run(factories) if why), None)
            if lost:
                raise TargetError(self.name, lost, transient=True)

        self._retrying(attempt)
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise TargetError(self.name, "; ".join(errors[:3]) + more)

    # --- the lock: <root>/.provctl/lock.json, created exclusively

    def acquire_lock(self, owner: str, ttl: float) -> LockInfo:
        lock = LockInfo.new(owner, ttl)
        return self._retrying(lambda: self._acquire(lock))

    def _acquire(self, lock: LockInfo) -> LockInfo:
        path = self._abs(LOCK)
        with self._session() as session:
            sftp = session.sftp
            state = self._abs(STATE_DIR)
            if state not in self._dirs:
                with contextlib.suppress(OSError):
                    sftp.mkdir(state, self.dir_mode)
                self._dirs.add(state)
            for _ in range(3):
                try:
                    with sftp.open(path, "wx") as fh:
                        fh.write(lock.to_bytes())
                    return lock
                except PermissionError:
                    raise TargetError(self.name, f"permission denied: {LOCK}") from None
                except FileNotFoundError as exc:
                    raise TargetError(self.name, f"cannot create {LOCK}: {exc}") from None
                except OSError:
                    if not session.alive:
                        raise
                held, age = self._held(sftp)
                if held is not None and held.id == lock.id:
                    return lock  # ours: created before a dropped connection, then retried
                if held is None and age is not None and age < YOUNG_LOCK:
                    raise LockHeld(f"target {self.name}: lock {LOCK} is being written by "
                                   f"another run (or is unreadable, {age:.0f}s old)")
                if held is not None and held.expires > time.time():
                    raise LockHeld(f"target {self.name}: {held.describe()}")
                if held is not None or age is not None:
                    log.warning("target %s: taking over expired %s", self.name,
                                held.describe() if held else "unreadable lock")
                    with contextlib.suppress(FileNotFoundError):
                        sftp.remove(path)
        raise TargetError(self.name, f"cannot create {LOCK}: it keeps reappearing")

    def _held(self, sftp: paramiko.SFTPClient) -> tuple[LockInfo | None, float | None]:
        """The lock on the host; when it cannot be parsed, its age (both None: no lock)."""
        try:
            with sftp.open(self._abs(LOCK), "r") as fh:
                mtime = fh.stat().st_mtime or 0
                data = fh.read()
        except FileNotFoundError:
            return None, None
        try:
            return LockInfo.from_bytes(data), None
        except (ValueError, TypeError):
            return None, max(0.0, time.time() - mtime)

    def release_lock(self, lock: LockInfo) -> None:
        def release() -> None:
            with self._session() as session:
                held, _ = self._held(session.sftp)
                if held is not None and held.id == lock.id:
                    with contextlib.suppress(FileNotFoundError):
                        session.sftp.remove(self._abs(LOCK))

        self._retrying(release)

    def break_lock(self, lock_id: str) -> LockInfo:
        def unlock() -> LockInfo:
            with self._session() as session:
                held, _ = self._held(session.sftp)
                if held is None:
                    raise TargetError(self.name, "no lock is held")
                if held.id != lock_id:
                    raise LockHeld(f"target {self.name}: {held.describe()}, not {lock_id}")
                session.sftp.remove(self._abs(LOCK))
                log.info("target %s: removed %s", self.name, held.describe())
                return held

        return self._retrying(unlock)

    def close(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()
