"""Reading an access log incrementally, through the target seam (`stat_file`, `read_range`), so
a log on an SFTP host is read over the target's own connection and a local one from disk.

A cursor says how far a log was read: the sha256 of its first bytes (up to FINGERPRINT of them:
the same file keeps them, a new one after rotation does not) and the offset of the end of the last
complete line read. Next time:

- the log starts with the same bytes and is at least as long: read on from the offset;
- otherwise it was rotated (or truncated by copytruncate): first finish the predecessor, `.1` or
  `.1.gz`, whichever starts with the cursor's bytes, from the offset; then the new log from 0.
  When neither does, say so: those lines are lost, never guessed.

Reading is in chunks of CHUNK bytes and at most `max_bytes` per run (the rest waits for the next
run); a partial last line of the live log is left for the next run.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.targets.base import FileStat

FINGERPRINT = 1024
CHUNK = 4 << 20
MAX_LINE = 1 << 16  # a "line" longer than this is garbage: dropped, counted


class LogHost(Protocol):
    """The two read-only primitives of the target seam the reader needs."""

    def stat_file(self, path: str) -> FileStat | None: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Cursor:
    fingerprint: str  # sha256 of the log's first `length` bytes
    length: int
    offset: int  # bytes consumed, always just after a newline

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "length": self.length, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cursor:
        return cls(str(data["fingerprint"]), int(data["length"]), int(data["offset"]))

    def starts(self, head: bytes) -> bool:
        return len(head) >= self.length and _digest(head[:self.length]) == self.fingerprint


@dataclass
class LogReader:
    """`segments()` yields (complete lines, the cursor to save once they are processed)."""

    host: LogHost
    path: str
    cursor: Cursor | None
    max_bytes: int = 1 << 30
    notes: list[str] = field(default_factory=list)  # what the operator should know
    dropped: int = 0  # over-long lines dropped
    read: int = 0  # bytes read in this run
    missing: bool = False  # the log does not exist and never did

    def segments(self) -> Iterator[tuple[bytes, Cursor | None]]:
        cur = self.cursor
        st = self.host.stat_file(self.path)
        head = b""
        if st is not None:
            head = self.host.read_range(self.path, 0, min(FINGERPRINT, st.size))
        if cur is not None and (st is None or not (cur.starts(head) and st.size >= cur.offset)):
            last: Cursor | None = cur
            for data, last in self._predecessor(cur):
                yield data, last
            if not self._budget():  # the predecessor is not finished: go on there next time
                yield b"", last
                return
            cur = None
        if st is None:
            self.missing = cur is None and self.cursor is None  # never created (yet)
            yield b"", None
            return
        fingerprint, length = _digest(head), len(head)
        start = cur.offset if cur is not None else 0
        last = Cursor(fingerprint, length, start)
        for data, offset in self._plain(self.path, start, st.size, live=True):
            last = Cursor(fingerprint, length, offset)
            yield data, last
        yield b"", last

    def _predecessor(self, cur: Cursor) -> Iterator[tuple[bytes, Cursor]]:
        """Finish the rotated log that `cur` points into, when it can be found."""
        plain = f"{self.path}.1"
        st = self.host.stat_file(plain)
        if st is not None and st.size >= cur.offset and cur.starts(
                self.host.read_range(plain, 0, cur.length)):
            for data, offset in self._plain(plain, cur.offset, st.size, live=False):
                yield data, Cursor(cur.fingerprint, cur.length, offset)
            return
        packed = f"{plain}.gz"
        st = self.host.stat_file(packed)
        if st is not None and self._gzip_starts(packed, st.size, cur):
            for data, offset in self._gzip(packed, st.size, cur.offset):
                yield data, Cursor(cur.fingerprint, cur.length, offset)
            return
        self.notes.append(
            f"access log {self.path} was rotated or truncated and neither {plain} nor {packed} "
            f"continues it: requests after byte {cur.offset} of the previous log were not seen")

    def _lines(self, carry: bytes, data: bytes) -> tuple[bytes, bytes]:
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n") + 1
        lines, rest = buf[:cut], buf[cut:]
        if len(rest) > MAX_LINE:
            self.dropped += 1
            rest = b""
        return lines, rest

    def _budget(self) -> int:
        return max(0, self.max_bytes - self.read)

    def _plain(self, path: str, start: int, end: int, live: bool) -> Iterator[tuple[bytes, int]]:
        """(complete lines, offset after them) from start to end; a finished file's last line
        counts even without its newline."""
        pos, carry = start, b""
        while pos < end and self._budget():
            data = self.host.read_range(path, pos, min(CHUNK, end - pos, self._budget()))
            if not data:
                break
            pos += len(data)
            self.read += len(data)
            lines, carry = self._lines(carry, data)
            if lines:
                yield lines, pos - len(carry)
        if carry and not live and pos >= end:
            yield carry + b"\n", pos

    def _gzip_starts(self, path: str, size: int, cur: Cursor) -> bool:
        inflate = zlib.decompressobj(wbits=31)
        head, pos = b"", 0
        try:
            while len(head) < cur.length and pos < size:
                data = self.host.read_range(path, pos, min(CHUNK, size - pos))
                if not data:
                    break
                pos += len(data)
                head += inflate.decompress(data)
        except zlib.error as exc:
            self.notes.append(f"{path}: cannot decompress: {exc}")
            return False
        return cur.starts(head)

    def _gzip(self, path: str, size: int, start: int) -> Iterator[tuple[bytes, int]]:
        """The same from a compressed predecessor: decompressed from its start, skipping the
        `start` bytes already read."""
        inflate = zlib.decompressobj(wbits=31)
        pos = out = 0  # compressed bytes read; decompressed bytes passed
        carry = b""
        try:
            while pos < size and self._budget():
                data = self.host.read_range(path, pos, min(CHUNK, size - pos))
                if not data:
                    break
                pos += len(data)
                plain = inflate.decompress(data)
                skip = max(0, min(len(plain), start - out))
                out += len(plain)
                plain = plain[skip:]
                self.read += len(plain)
                lines, carry = self._lines(carry, plain)
                if lines:
                    yield lines, out - len(carry)
        except zlib.error as exc:
            self.notes.append(f"{path}: cannot decompress: {exc}")
            return
        if carry and pos >= size:
            yield carry + b"\n", out
