"""The SFTP target: a provisioning host's document root, reached over SSH with paramiko.

This is the only module that imports paramiko. The host may give the account no shell, so
everything is plain SFTP (version 3, plus OpenSSH's `posix-rename` extension).

Connecting: key authentication (a key file, optionally with a passphrase, or the SSH agent when
no key file is configured) and *strict* host-key checking against the target's own known_hosts
file only: an unknown or a changed host key stops the target with the host, the port and the
SHA256 fingerprint the server presented. Nothing is ever auto-accepted.

Publishing many small files fast: `execute()` opens up to `sessions` SSH connections (one SFTP
channel each, so the server works on several CPUs) and drives each from one thread that keeps
many files in flight, packing the requests of all of them into few SSH packets. A file costs
three round trips, overlapped with the other files':

    [MKDIR missing parents]  OPEN tmp (create, exclusive, mode)      -> handle
    WRITE...  FSTAT  [FSETSTAT mode]  CLOSE                           -> size, mtime
    posix-rename tmp -> path   (servers without it: rename, or remove + rename)

`tmp` is `.provctl-tmp-<name>.<random>` in the destination directory, so a phone fetching the
file sees the old version or the new one, never half of it; the rename is sent only once the
server has confirmed every write. A dropped connection retries the files that were in flight on
a fresh connection, with backoff; anything else (permission denied, a path component that is a
file) is that file's error alone. `scan()` and `read_many()` use the same pipeline (OPENDIR /
READDIR, OPEN / READ); the lock uses paramiko's SFTPClient on the same connections.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import itertools
import logging
import posixpath
import secrets
import socket
import stat as statmod
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import paramiko

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

log = logging.getLogger(__name__)

CHUNK = 32768  # bytes per WRITE or READ request, as OpenSSH's sftp client
DEPTH = 64  # jobs (files, directories) in flight per session
READ_CREDIT = 1 << 20  # bytes of READ replies outstanding per session (< the 2 MB SSH window)
FLUSH = 1 << 15  # send buffered requests once this many bytes are waiting
RETRIES = 3  # extra attempts after a dropped connection
BATCH = 16  # ops a session takes from the shared queue at a time (keeps a directory together)
OPS_PER_SESSION = 128  # open another session only for this many ops
YOUNG_LOCK = 60.0  # an unparsable lock younger than this is being written: treat it as held

_T = TypeVar("_T")

# SFTP version 3 (draft-ietf-secsh-filexfer-02) and OpenSSH's extension
_OPEN, _CLOSE, _READ, _WRITE, _LSTAT, _FSTAT, _SETSTAT, _FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
_OPENDIR, _READDIR, _REMOVE, _MKDIR, _RMDIR, _RENAME, _EXTENDED = 11, 12, 13, 14, 15, 18, 200
_STATUS, _HANDLE, _DATA, _NAME, _ATTRS = 101, 102, 103, 104, 105
_FX_OK, _FX_EOF, _FX_NO_SUCH_FILE, _FX_PERMISSION_DENIED, _FX_FAILURE = 0, 1, 2, 3, 4
_FX_OP_UNSUPPORTED = 8
_FXF_READ, _FXF_WRITE, _FXF_CREAT, _FXF_TRUNC, _FXF_EXCL = 0x01, 0x02, 0x08, 0x10, 0x20
_ATTR_SIZE, _ATTR_UIDGID, _ATTR_PERMISSIONS, _ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
_ATTR_EXTENDED = 0x80000000
_POSIX_RENAME = b"posix-rename@openssh.com"
_FIRST_ID = 0x40000000  # the pipeline's request ids; paramiko's SFTPClient counts from 1


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as OpenSSH prints it (base64 of the key blob's sha256, no padding)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey, known_types: list[str]):
        self.key = key
        self.known_types = known_types  # key types known_hosts has for the host (not this one)


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Never accept a host key that is not in the target's known_hosts file."""

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        known = client.get_host_keys().lookup(hostname)
        raise _UnknownHostKey(key, sorted(known.keys()) if known else [])


_TCP_QUICKACK: int = getattr(socket, "TCP_QUICKACK", 0)  # 0: not on this system


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once (Linux).

    sshd sends SFTP replies without TCP_NODELAY (OpenSSH sets it only for interactive
    sessions): when it sends two small packets in a row, Nagle holds the second until the first
    is acknowledged, and a delayed ACK takes 40 ms. Opening an SFTP session took 45 ms instead
    of 2 on loopback.
    """

    def recv(self, n: int, *flags: int) -> bytes:
        data = super().recv(n, *flags)
        with contextlib.suppress(OSError):
            self.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return data


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not _TCP_QUICKACK:
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
        self.channel = sftp.get_channel()

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active() and not self.channel.closed

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.close()
        with contextlib.suppress(Exception):
            self.client.close()


def _is_lost(exc: BaseException) -> bool:
    return isinstance(exc, (_Lost, EOFError, socket.timeout, TimeoutError, paramiko.SSHException,
                            ConnectionError))


# --- the wire format ------------------------------------------------------------------------


class _U64(int):
    """An argument sent as uint64 (offsets); a plain int is a uint32."""


@dataclass(frozen=True)
class _Attrs:
    """The few file attributes provctl sets or reads."""

    size: int | None = None
    mode: int | None = None
    mtime: int | None = None

    def pack(self) -> bytes:
        if self.mode is None:
            return b"\0\0\0\0"
        return struct.pack(">II", _ATTR_PERMISSIONS, self.mode)

    @property
    def is_dir(self) -> bool:
        return self.mode is not None and statmod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return self.mode is not None and statmod.S_ISREG(self.mode)


_u32 = struct.Struct(">I").pack
_u64 = struct.Struct(">Q").pack
_head = struct.Struct(">IBI").pack


def _pack(cmd: int, rid: int, args: tuple[object, ...]) -> bytes:
    """One request: uint32 length, byte type, uint32 id, then the arguments."""
    parts: list[bytes] = []
    for arg in args:
        kind = type(arg)
        if kind is str:
            data = arg.encode()  # type: ignore[attr-defined]
            parts += (_u32(len(data)), data)
        elif kind is bytes:
            parts += (_u32(len(arg)), arg)  # type: ignore[arg-type]
        elif kind is int:
            parts.append(_u32(arg))
        elif kind is _U64:
            parts.append(_u64(arg))
        else:
            parts.append(arg.pack())  # type: ignore[attr-defined]
    body = b"".join(parts)
    return _head(len(body) + 5, cmd, rid) + body


class _Reply:
    """Reads the fields of one response, after its type and request id."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def u32(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return value

    def u64(self) -> int:
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return value

    def string(self) -> bytes:
        n = self.u32()
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def attrs(self) -> _Attrs:
        flags = self.u32()
        size = self.u64() if flags & _ATTR_SIZE else None
        if flags & _ATTR_UIDGID:
            self.pos += 8
        mode = self.u32() if flags & _ATTR_PERMISSIONS else None
        mtime = None
        if flags & _ATTR_ACMODTIME:
            self.pos += 4
            mtime = self.u32()
        if flags & _ATTR_EXTENDED:
            for _ in range(self.u32()):
                self.string()
                self.string()
        return _Attrs(size, mode, mtime)

    def status(self) -> tuple[int, str]:
        code = self.u32()
        try:
            text = self.string().decode(errors="replace")
        except struct.error:  # a server may omit the message
            text = ""
        return code, text


def _describe(code: int, text: str, path: str) -> str:
    if code == _FX_PERMISSION_DENIED:
        return f"permission denied: {path}"
    if code == _FX_NO_SUCH_FILE:
        return f"no such file or directory: {path}"
    return f"{text or f'SFTP error {code}'}: {path}"


# --- the pipeline ---------------------------------------------------------------------------

_OnReply = Callable[[int, _Reply], None]


class _Engine:
    """Drives jobs over one SFTP channel from one thread, up to DEPTH of them in flight.

    Requests are buffered and sent together just before waiting for replies, so the requests of
    many files share SSH packets; replies are read in large pieces and handed, by request id, to
    the job that asked. The channel's paramiko SFTPClient must be idle meanwhile.
    """

    def __init__(self, target: SftpTarget, session: _Session, on_finish: Callable[[_Job], None]):
        self.target = target
        self.session = session
        self.channel = session.channel
        self.on_finish = on_finish
        self.active: set[_Job] = set()
        self.waiting: dict[int, tuple[_Job, _OnReply]] = {}
        self.out: list[bytes] = []
        self.out_size = 0
        self.next_id = _FIRST_ID
        self.credit = READ_CREDIT
        self.starved: collections.deque[_ReadJob] = collections.deque()

    def send(self, job: _Job, on_reply: _OnReply, cmd: int, *args: object) -> None:
        rid = self.next_id
        self.next_id = _FIRST_ID if rid == 0xFFFFFFFF else rid + 1
        self.waiting[rid] = (job, on_reply)
        packet = _pack(cmd, rid, args)
        self.out.append(packet)
        self.out_size += len(packet)
        if self.out_size >= FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.out_size = 0
            self.channel.sendall(data)

    def run(self, next_job: Callable[[_Engine], _Job | None]) -> None:
        """Until `next_job` returns None and every job has finished.

        Raises _Lost, with `active` still holding the interrupted jobs, when the connection
        goes away.
        """
        more = True
        buf = b""
        try:
            while True:
                while more and len(self.active) < DEPTH:
                    job = next_job(self)
                    if job is None:
                        more = False
                        break
                    self.active.add(job)
                    job.start()
                if not self.active and not self.waiting:
                    return
                self.flush()
                data = self.channel.recv(1 << 18)
                if not data:
                    raise _Lost("the server closed the channel")
                buf = buf + data if buf else data
                pos = 0
                while len(buf) - pos >= 4:
                    (size,) = struct.unpack_from(">I", buf, pos)
                    if len(buf) - pos - 4 < size:
                        break
                    t, rid = struct.unpack_from(">BI", buf, pos + 4)
                    reply = _Reply(buf, pos + 9)
                    pos += 4 + size
                    if rid not in self.waiting:
                        raise _Lost(f"the server answered request {rid}, which was not asked")
                    job, on_reply = self.waiting.pop(rid)
                    on_reply(t, reply)
                buf = buf[pos:]
        except _Lost:
            raise
        except struct.error as exc:
            raise _Lost(f"malformed reply from the server: {exc}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if _is_lost(exc) or not self.session.alive:
                raise _Lost(str(exc) or type(exc).__name__) from exc
            raise

    def finished(self, job: _Job) -> None:
        self.active.discard(job)
        self.on_finish(job)

    # READ replies are bounded so that they always fit the SSH window (no deadlock).
    def take_credit(self, job: _ReadJob, length: int) -> bool:
        if self.credit >= length or self.credit == READ_CREDIT:
            self.credit -= length
            return True
        if job not in self.starved:
            self.starved.append(job)
        return False

    def give_credit(self, length: int) -> None:
        self.credit += length
        for _ in range(len(self.starved)):  # each waiting job once; it queues again if need be
            if self.credit <= 0:
                break
            self.starved.popleft().resume()


class _Job:
    """One unit of work in a pipeline: sends requests and answers their replies."""

    def __init__(self, engine: _Engine):
        self.engine = engine
        self.target = engine.target

    def send(self, on_reply: _OnReply, cmd: int, *args: object) -> None:
        self.engine.send(self, on_reply, cmd, *args)

    def ignore(self, t: int, reply: _Reply) -> None:
        pass

    def finish(self) -> None:
        self.engine.finished(self)

    def start(self) -> None:
        raise NotImplementedError


class _PutJob(_Job):
    """Publish one file: write a temporary name, then rename it over the old one."""

    def __init__(self, engine: _Engine, index: int, op: Put, results: list[OpResult | None]):
        super().__init__(engine)
        self.index, self.op, self.results = index, op, results
        self.path = self.target._abs(op.path)
        self.dir, base = posixpath.split(self.path)
        self.tmp = f"{self.dir}/{TMP_PREFIX}{base}.{self.target._tmp_suffix()}"
        self.handle = b""
        self.error: str | None = None
        self.attrs: _Attrs | None = None
        self.pending = 0
        self.made_parents = False
        self.removed_old = False

    def start(self) -> None:
        if self.dir not in self.target._dirs:
            self._mkdirs(self.target._missing_dirs(self.dir))
        self._open()

    # [MKDIR...] OPEN: the server handles a channel's requests in order
    def _mkdirs(self, dirs: list[str]) -> None:
        for d in dirs:
            self.send(partial(self._made, d), _MKDIR, d,
                      _Attrs(mode=self.target.dir_mode))
            self.target._dirs.add(d)

    def _made(self, d: str, t: int, reply: _Reply) -> None:
        if reply.status()[0] == _FX_OK and self.target._dir_chmod_needed:
            # A new directory gets dir_mode minus the server's umask: look, and fix it if needed.
            self.send(partial(self._dir_mode, d), _LSTAT, d)

    def _dir_mode(self, d: str, t: int, reply: _Reply) -> None:
        mode = reply.attrs().mode if t == _ATTRS else None
        if mode is not None and statmod.S_IMODE(mode) == self.target.dir_mode:
            self.target._dir_chmod_needed = False
        else:
            self.send(self.ignore, _SETSTAT, d, _Attrs(mode=self.target.dir_mode))

    def _open(self) -> None:
        self.target._temporaries.add(self.tmp)
        flags = _FXF_WRITE | _FXF_CREAT | _FXF_TRUNC | _FXF_EXCL
        self.send(self._opened, _OPEN, self.tmp, flags, _Attrs(mode=self.target.file_mode))

    def _opened(self, t: int, reply: _Reply) -> None:
        if t == _HANDLE:
            self.handle = reply.string()
            self._write()
            return
        self.target._temporaries.discard(self.tmp)
        code, text = reply.status()
        if code == _FX_NO_SUCH_FILE and not self.made_parents:
            # A parent is missing (or another session just removed it): make every level
            # below the root and try once more.
            self.made_parents = True
            self._mkdirs(self.target._all_dirs(self.dir))
            self._open()
        elif code == _FX_NO_SUCH_FILE:
            self._diagnose()
        else:
            self._fail(_describe(code, text, self.op.path), cleanup=False)

    # WRITE... FSTAT [FSETSTAT] CLOSE, sent together
    def _write(self) -> None:
        data = self.op.data
        for offset in range(0, len(data), CHUNK):
            self._expect(self._status, _WRITE, self.handle, _U64(offset),
                         data[offset:offset + CHUNK])
        self._expect(self._fstat, _FSTAT, self.handle)
        if self.target._chmod_needed:
            self._expect(self._status, _FSETSTAT, self.handle, _Attrs(mode=self.target.file_mode))
        self._expect(self._status, _CLOSE, self.handle)

    def _expect(self, on_reply: _OnReply, cmd: int, *args: object) -> None:
        self.pending += 1
        self.send(on_reply, cmd, *args)

    def _status(self, t: int, reply: _Reply) -> None:
        code, text = reply.status()
        if code != _FX_OK and self.error is None:
            self.error = _describe(code, text, self.op.path)
        self._step()

    def _fstat(self, t: int, reply: _Reply) -> None:
        if t != _ATTRS:
            self._status(t, reply)
            return
        self.attrs = attrs = reply.attrs()
        if attrs.mode is not None and statmod.S_IMODE(attrs.mode) == self.target.file_mode:
            # OPEN made it with file_mode: the server's umask keeps it, FSETSTAT is not needed.
            self.target._chmod_needed = False
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
        if self.target._posix_rename:
            self.send(self._renamed, _EXTENDED, _POSIX_RENAME, self.tmp, self.path)
        else:
            self.send(self._renamed_plain, _RENAME, self.tmp, self.path)

    def _renamed(self, t: int, reply: _Reply) -> None:
        code, text = reply.status()
        if code == _FX_OK:
            self._done()
        elif code == _FX_OP_UNSUPPORTED:
            self.target._posix_rename = False
            self._rename()
        else:
            self._fail(_describe(code, text, self.op.path))

    def _renamed_plain(self, t: int, reply: _Reply) -> None:
        code, text = reply.status()
        if code == _FX_OK:
            self._done()
        elif code == _FX_FAILURE and not self.removed_old:
            # Plain SFTP rename does not replace an existing file: remove it first. Not atomic;
            # only servers without posix-rename get here.
            self.removed_old = True
            self.send(self.ignore, _REMOVE, self.path)
            self.send(self._renamed_plain, _RENAME, self.tmp, self.path)
        else:
            self._fail(_describe(code, text, self.op.path))

    def _done(self) -> None:
        self.target._temporaries.discard(self.tmp)
        assert self.attrs is not None
        stat = FileStat(self.attrs.size or 0, float(self.attrs.mtime or 0))
        self.results[self.index] = OpResult(self.op, stat=stat)
        log.info("target %s: published %s (%d bytes)", self.target.name, self.op.path, stat.size)
        self.finish()

    def _fail(self, error: str, cleanup: bool = True) -> None:
        log.warning("target %s: %s", self.target.name, error)
        self.results[self.index] = OpResult(self.op, error=error)
        if cleanup:  # remove the temporary file, then finish
            self.send(self._cleaned, _REMOVE, self.tmp)
        else:
            self.finish()

    def _cleaned(self, t: int, reply: _Reply) -> None:
        self.target._temporaries.discard(self.tmp)
        self.finish()

    def _diagnose(self) -> None:
        """The temporary file cannot be created even after MKDIR: say which level is wrong."""
        t = self.target
        levels = [t.root, *t._all_dirs(self.dir)]
        found: dict[str, _Attrs | None] = {}

        def seen(level: str, kind: int, reply: _Reply) -> None:
            found[level] = reply.attrs() if kind == _ATTRS else None
            if len(found) < len(levels):
                return
            reason = f"cannot create a file in {t._rel(self.dir)}"
            for level in levels:
                attrs = found[level]
                name = f"document root {t.root}" if level == t.root else t._rel(level)
                if attrs is None:
                    reason = (f"{name} does not exist" if level == t.root
                              else f"directory {name} cannot be created")
                    break
                if not attrs.is_dir:
                    reason = f"{name} exists and is not a directory"
                    break
            self._fail(f"{reason}: {self.op.path}", cleanup=False)

        for level in levels:
            self.send(partial(seen, level), _LSTAT, level)


class _DeleteJob(_Job):
    """REMOVE the file, then RMDIR each parent below the root (fails harmlessly if not empty)."""

    def __init__(self, engine: _Engine, index: int, op: Delete, results: list[OpResult | None]):
        super().__init__(engine)
        self.index, self.op, self.results = index, op, results
        self.path = self.target._abs(op.path)

    def start(self) -> None:
        parents = self.target._all_dirs(posixpath.dirname(self.path))[::-1]
        self.send(self._removed if parents else self._removed_last, _REMOVE, self.path)
        for n, d in enumerate(parents, 1):
            self.target._dirs.discard(d)
            self.send(self.ignore if n < len(parents) else self._last, _RMDIR, d)

    def _removed(self, t: int, reply: _Reply) -> None:
        code, text = reply.status()
        if code in (_FX_OK, _FX_NO_SUCH_FILE):
            self.results[self.index] = OpResult(self.op)
            if code == _FX_OK:
                log.info("target %s: deleted %s", self.target.name, self.op.path)
        else:
            error = _describe(code, text, self.op.path)
            log.warning("target %s: %s", self.target.name, error)
            self.results[self.index] = OpResult(self.op, error=error)

    def _removed_last(self, t: int, reply: _Reply) -> None:
        self._removed(t, reply)
        self.finish()

    def _last(self, t: int, reply: _Reply) -> None:
        self.finish()


class _RemoveJob(_Job):
    """Best-effort removal of a temporary file an interrupted upload left behind."""

    def __init__(self, engine: _Engine, path: str):
        super().__init__(engine)
        self.path = path

    def start(self) -> None:
        self.send(self._removed, _REMOVE, self.path)

    def _removed(self, t: int, reply: _Reply) -> None:
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
        self.send(self._opened, _OPENDIR, self.path)

    def _opened(self, t: int, reply: _Reply) -> None:
        if t == _HANDLE:
            self.handle = reply.string()
            self.target._dirs.add(self.path)
            self.send(self._names, _READDIR, self.handle)
            return
        code, text = reply.status()
        if code != _FX_NO_SUCH_FILE:
            self.errors.append(f"cannot list {_describe(code, text, self.rel or '.')}")
        self.finish()

    def _names(self, t: int, reply: _Reply) -> None:
        if t != _NAME:
            code, text = reply.status()
            if code != _FX_EOF:
                self.errors.append(f"cannot list {_describe(code, text, self.rel or '.')}")
            self.send(self._closed, _CLOSE, self.handle)
            return
        for _ in range(reply.u32()):
            name = reply.string().decode(errors="surrogateescape")
            reply.string()  # the `ls -l` line
            attrs = reply.attrs()
            if attrs.is_dir and name not in (".", ".."):
                self.target._dirs.add(f"{self.path}/{name}")
            elif not attrs.is_file:
                continue
            elif name.startswith(TMP_PREFIX):
                self.target._temporaries.add(f"{self.path}/{name}")
            else:
                path = f"{self.rel}/{name}" if self.rel else name
                self.found[path] = FileStat(attrs.size or 0, float(attrs.mtime or 0))
        self.send(self._names, _READDIR, self.handle)

    def _closed(self, t: int, reply: _Reply) -> None:
        self.finish()


class _ReadJob(_Job):
    """OPEN; FSTAT with the first READ; the other READs pipelined; CLOSE."""

    def __init__(self, engine: _Engine, rel: str, out: dict[str, bytes | None],
                 errors: list[str]):
        super().__init__(engine)
        self.rel, self.out, self.errors = rel, out, errors
        self.path = self.target._abs(rel)
        self.handle = b""
        self.chunks: dict[int, bytes] = {}
        self.todo: list[tuple[int, int]] = []  # (offset, length) still to ask for, last first
        self.pending = 0
        self.size: int | None = None
        self.failed = False

    def start(self) -> None:
        self.send(self._opened, _OPEN, self.path, _FXF_READ, _Attrs())

    def _opened(self, t: int, reply: _Reply) -> None:
        if t != _HANDLE:
            code, text = reply.status()
            if code == _FX_NO_SUCH_FILE:
                self.out[self.rel] = None
            else:
                self._error(code, text)
            self.finish()
            return
        self.handle = reply.string()
        self.pending += 1
        self.send(self._sized, _FSTAT, self.handle)
        self.todo.append((0, CHUNK))
        self.resume()

    def _sized(self, t: int, reply: _Reply) -> None:
        self.pending -= 1
        if t == _ATTRS:
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
            self.send(partial(self._data, offset, length),
                      _READ, self.handle, _U64(offset), length)
        if not self.pending:
            self._close()

    def _data(self, offset: int, length: int, t: int, reply: _Reply) -> None:
        self.pending -= 1
        if t == _DATA:
            data = reply.string()
            self.chunks[offset] = data
            end = offset + len(data)
            if 0 < len(data) < length and (self.size is None or end < self.size):
                self.todo.append((end, length - len(data)))  # a short read: ask for the rest
        else:
            code, text = reply.status()
            if code != _FX_EOF:
                self._error(code, text)
        self.engine.give_credit(length)
        self.resume()

    def _error(self, code: int, text: str) -> None:
        if not self.failed:
            self.failed = True
            self.errors.append(f"cannot read {_describe(code, text, self.rel)}")

    def _close(self) -> None:
        if not self.failed:
            data, end = [], 0
            for offset in sorted(self.chunks):
                if offset != end:
                    break  # the file shrank while it was read: keep what is contiguous
                data.append(self.chunks[offset])
                end += len(self.chunks[offset])
            self.out[self.rel] = b"".join(data)
        self.send(self._closed, _CLOSE, self.handle)

    def _closed(self, t: int, reply: _Reply) -> None:
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
                if not mine and not self.queue:
                    return  # nothing left to do: no need for a connection
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
        self._prefix = "" if self.root == "/" else self.root  # + "/" + a relative path
        self.known_hosts = Path(known_hosts).expanduser()
        self.key_file = None if key_file is None else Path(key_file).expanduser()
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
        self._chmod_needed = True  # until a new file shows the umask leaves file_mode alone
        self._dir_chmod_needed = True  # the same for directories and dir_mode
        self._tmp_prefix = secrets.token_hex(4)  # this run's temporary names: random + counter
        self._tmp_count = itertools.count()

    def _tmp_suffix(self) -> str:
        return f"{self._tmp_prefix}{next(self._tmp_count):x}"

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
        return self.root if norm == "." else f"{self._prefix}/{norm}"

    def _rel(self, path: str) -> str:
        return "." if path == self.root else path[len(self._prefix) + 1:]

    def _all_dirs(self, directory: str) -> list[str]:
        """Every directory from just below the root down to `directory`, shallowest first."""
        if directory == self.root:
            return []
        parts = self._rel(directory).split("/")
        return [f"{self._prefix}/{'/'.join(parts[:i])}" for i in range(1, len(parts) + 1)]

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
            passphrase = None if self._passphrase is None else self._passphrase.encode()
            self._pkey = paramiko.PKey.from_path(self.key_file, passphrase)
        except FileNotFoundError:
            raise TargetError(self.name, f"key file {self.key_file} not found") from None
        except (paramiko.PasswordRequiredException, TypeError):
            # (cryptography raises TypeError for an encrypted key without a passphrase)
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
            client.get_transport().set_keepalive(30)  # type: ignore[union-attr]
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
        except BaseException as exc:
            client.close()
            raise self._connect_error(exc) from None
        return _Session(client, sftp)

    def _connect_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, _UnknownHostKey) and exc.known_types:
            return TargetError(
                self.name,
                f"host key of {self.address} has CHANGED: the server presented "
                f"{exc.key.get_name()} {fingerprint(exc.key)} but {self.known_hosts} has only "
                f"{', '.join(exc.known_types)} keys for it; refusing to connect",
            )
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
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}; refusing to "
                f"connect (a man in the middle, or a reinstalled host: verify before updating "
                f"known_hosts)",
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
            if "No existing session" in str(exc) or "protocol banner" in str(exc):
                return TargetError(
                    self.name, f"{self.address} did not answer as an SSH server within "
                    f"{self.timeout:g}s", transient=True,
                )
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
        """A session for one simple operation (paramiko's SFTPClient).

        A dropped connection becomes a transient TargetError, an SFTP error status a permanent
        one; the session goes back to the pool unless the connection is gone.
        """
        session = self._checkout()
        try:
            yield session
        except Exception as exc:
            broken = not session.alive or _is_lost(exc)
            if broken:
                session.close()
            else:
                self._checkin(session)
            if isinstance(exc, TargetError | LockHeld):
                raise
            if broken:
                raise TargetError(
                    self.name, f"connection to {self.address} lost: {exc}", transient=True
                ) from exc
            if isinstance(exc, OSError):
                raise TargetError(self.name, exc.strerror or str(exc)) from exc
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

    def _run(self, factories: Sequence[Callable[[_Engine], _Job]], retry_connect: bool = True
             ) -> list[str | None]:
        """Run jobs over a pool of sessions; for each job None (it completed) or why not.

        A job is made again by its factory to retry it on a fresh session after the
        connection dropped. The first session is opened before any job starts, so an
        unreachable host or a refused key raises TargetError instead.
        """
        if not factories:
            return []
        first = self._retrying(self._checkout) if retry_connect else self._checkout()
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
        return self._execute(ops)[0]

    def _execute(self, ops: Sequence[FileOp]) -> tuple[list[OpResult], bool]:
        """The results, and whether any op failed because the connection was lost."""
        for op in ops:
            self._abs(op.path)  # refuse a path outside the root before writing anything
        results: list[OpResult | None] = [None] * len(ops)
        # Sorted by path, so that the files of one directory go to the same session.
        order = sorted(range(len(ops)), key=lambda i: ops[i].path)
        factories: list[Callable[[_Engine], _Job]] = []
        for i in order:
            op = ops[i]
            if isinstance(op, Put):
                factories.append(partial(_PutJob, index=i, op=op, results=results))
            else:
                factories.append(partial(_DeleteJob, index=i, op=op, results=results))
        # Temporary files an interrupted run left (ours, or seen by scan): remove them too.
        factories.extend(partial(_RemoveJob, path=p) for p in sorted(self._temporaries))
        failures = self._run(factories)
        if self._temporaries and not all(failures):
            # Uploads interrupted by a dropped connection (and retried) left these behind.
            with contextlib.suppress(TargetError):
                self._run([partial(_RemoveJob, path=p) for p in sorted(self._temporaries)],
                          retry_connect=False)
        lost = False
        out = []
        for k, i in enumerate(order):
            if results[i] is None:
                lost = True
                results[i] = OpResult(ops[i], error=f"{failures[k]}: {ops[i].path}")
        for result in results:
            assert result is not None
            out.append(result)
        return out, lost

    def read_manifest(self) -> Manifest:
        data = self.read(MANIFEST)
        if data is None:
            return Manifest()
        try:
            return Manifest.from_bytes(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(self.name, f"cannot read manifest {MANIFEST}: {exc}") from exc

    def write_manifest(self, manifest: Manifest) -> None:
        [result], lost = self._execute([Put(MANIFEST, manifest.to_bytes())])
        if result.error:
            raise TargetError(self.name, f"cannot write manifest: {result.error}", transient=lost)

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        errors: list[str] = []
        rels = sorted(set(directories))
        self._batch([partial(_ListJob, rel=r, found=found, errors=errors) for r in rels],
                    errors, found)
        return found

    def read(self, path: str) -> bytes | None:
        return self.read_many([path])[path]

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        """Several files at once (pipelined), e.g. for --verify; None for a missing file."""
        out: dict[str, bytes | None] = {}
        errors: list[str] = []
        rels = sorted(set(paths))
        self._batch([partial(_ReadJob, rel=r, out=out, errors=errors) for r in rels], errors, out)
        return out

    def _batch(self, factories: list[Callable[[_Engine], _Job]], errors: list[str],
               out: dict) -> None:
        """Run read-only jobs; all of them again on a dropped connection; errors raise."""

        def attempt() -> None:
            out.clear()
            errors.clear()
            lost = next((why for why in self._run(factories, retry_connect=False) if why), None)
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
                except OSError as exc:  # SFTP v3 says "failure" for "it exists", among others
                    if not session.alive:
                        raise
                    failure = exc
                held, age = self._held(sftp)
                if held is None and age is None:
                    raise TargetError(self.name, f"cannot create {LOCK}: {failure}")
                if held is not None and held.id == lock.id:
                    return lock  # ours: created before a dropped connection, then retried
                if held is None and age is not None and age < YOUNG_LOCK:
                    raise LockHeld(f"target {self.name}: lock {LOCK} is being written by "
                                   f"another run (or is unreadable, {age:.0f}s old)")
                if held is not None and held.expires > time.time():
                    raise LockHeld(f"target {self.name}: {held.describe()}")
                log.warning("target %s: taking over expired %s", self.name,
                            held.describe() if held else "unreadable lock")
                with contextlib.suppress(FileNotFoundError):
                    sftp.remove(path)
        raise LockHeld(f"target {self.name}: lock {LOCK} keeps reappearing")

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

    # --- files outside the root, read-only (access logs), by absolute path on the host

    def stat_file(self, path: str) -> FileStat | None:
        def stat() -> FileStat | None:
            with self._session() as session:
                try:
                    st = session.sftp.stat(path)
                except FileNotFoundError:
                    return None
                except OSError as exc:
                    if not session.alive:
                        raise
                    raise TargetError(self.name,
                                      f"cannot stat {path} on {self.address}: {exc}") from exc
                return FileStat(st.st_size or 0, float(st.st_mtime or 0))

        return self._retrying(stat)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        def read() -> bytes:
            with self._session() as session:
                try:
                    with session.sftp.open(path, "rb") as fh:
                        n = max(0, min(length, (fh.stat().st_size or 0) - offset))
                        # readv pipelines the READ requests (one round trip, not one per 32 KB)
                        return b"".join(fh.readv([(offset, n)])) if n else b""
                except OSError as exc:
                    if not session.alive:
                        raise
                    raise TargetError(self.name,
                                      f"cannot read {path} on {self.address}: {exc}") from exc

        return self._retrying(read)

    def close(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()
