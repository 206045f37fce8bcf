"""The SFTP wire format (version 3, draft-ietf-secsh-filexfer-02, plus OpenSSH's posix-rename):
packing requests and reading the fields of replies. Pure: no I/O."""

from __future__ import annotations

import stat as statmod
import struct
from dataclasses import dataclass

OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, STAT, RENAME, EXTENDED = 11, 12, 13, 14, 15, 17, 18, 200
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
FX_OK, FX_EOF, FX_NO_SUCH_FILE, FX_PERMISSION_DENIED, FX_FAILURE = 0, 1, 2, 3, 4
FX_OP_UNSUPPORTED = 8
FXF_READ, FXF_WRITE, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 0x01, 0x02, 0x08, 0x10, 0x20
ATTR_SIZE, ATTR_UIDGID, ATTR_PERMISSIONS, ATTR_ACMODTIME = 0x1, 0x2, 0x4, 0x8
ATTR_EXTENDED = 0x80000000
POSIX_RENAME = b"posix-rename@openssh.com"


class U64(int):
    """An argument sent as uint64 (offsets); a plain int is a uint32."""


@dataclass(frozen=True)
class Attrs:
    """The few file attributes provctl sets or reads."""

    size: int | None = None
    mode: int | None = None
    mtime: int | None = None

    def pack(self) -> bytes:
        if self.mode is None:
            return b"\0\0\0\0"
        return struct.pack(">II", ATTR_PERMISSIONS, self.mode)

    @property
    def is_dir(self) -> bool:
        return self.mode is not None and statmod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return self.mode is not None and statmod.S_ISREG(self.mode)


_u32 = struct.Struct(">I").pack
_u64 = struct.Struct(">Q").pack
_head = struct.Struct(">IBI").pack


def pack(cmd: int, rid: int, args: tuple[object, ...]) -> bytes:
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
        elif kind is U64:
            parts.append(_u64(arg))
        else:
            parts.append(arg.pack())  # type: ignore[attr-defined]
    body = b"".join(parts)
    return _head(len(body) + 5, cmd, rid) + body


class Reply:
    """Reads the fields of one response, after its type and request id."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def u32(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> bytes:
        n = self.u32()
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def attrs(self) -> Attrs:
        flags = self.u32()
        size = self.u64() if flags & ATTR_SIZE else None
        if flags & ATTR_UIDGID:
            self.pos += 8
        mode = self.u32() if flags & ATTR_PERMISSIONS else None
        mtime = None
        if flags & ATTR_ACMODTIME:
            self.pos += 4
            mtime = self.u32()
        if flags & ATTR_EXTENDED:
            for _ in range(self.u32()):
                self.string()
                self.string()
        return Attrs(size, mode, mtime)

    def status(self) -> tuple[int, str]:
        code = self.u32()
        try:
            text = self.string().decode(errors="replace")
        except struct.error:  # a server may omit the message
            text = ""
        return code, text


def describe(code: int, text: str, path: str) -> str:
    if code == FX_PERMISSION_DENIED:
        return f"permission denied: {path}"
    if code == FX_NO_SUCH_FILE:
        return f"no such file or directory: {path}"
    return f"{text or f'SFTP error {code}'}: {path}"
