"""The target seam: where published files live (a local directory, an SFTP host, memory).

A target is small: read its manifest, scan what is there, read one file, execute file
operations (atomically per file, errors isolated per file), write the manifest, and lock.
Everything the reconciler knows about a target's contents comes from the manifest it keeps under
`<root>/.provctl/manifest.json` (path -> sha256, size, mtime), so observing needs no shell.

The formats of the manifest and the lock are defined here once, as pure functions, so every
target writes the same bytes.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

STATE_DIR = ".provctl"
MANIFEST = f"{STATE_DIR}/manifest.json"
LOCK = f"{STATE_DIR}/lock.json"
RECEIPTS = f"{STATE_DIR}/receipts"
# Paths an apply is about to write, recorded before each batch so that a run killed between
# a publish and the next manifest write still knows those files are its own.
JOURNAL = f"{STATE_DIR}/journal.json"
TMP_PREFIX = ".provctl-tmp-"  # temporary upload names; never listed as content


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float


@dataclass(frozen=True)
class ManifestEntry:
    sha256: str
    size: int
    mtime: float = 0.0  # as the target reported it right after publishing
    firmware: str | None = None  # firmware version this file pinned, for downgrade checks


@dataclass(frozen=True)
class Manifest:
    files: Mapping[str, ManifestEntry] = field(default_factory=dict)
    revision: str | None = None  # desired-state revision last applied completely

    def to_bytes(self) -> bytes:
        body = {
            "version": 1,
            "revision": self.revision,
            "files": {path: _entry_dict(e) for path, e in sorted(self.files.items())},
        }
        # Compact: with indent, json falls back to its slow pure-Python encoder (100k files).
        return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("version") != 1:
            raise ValueError("unknown manifest format")
        files = {
            path: ManifestEntry(
                sha256=e["sha256"], size=int(e["size"]), mtime=float(e.get("mtime", 0.0)),
                firmware=e.get("firmware"),
            )
            for path, e in body.get("files", {}).items()
        }
        return cls(files=files, revision=body.get("revision"))


def _entry_dict(entry: ManifestEntry) -> dict[str, object]:
    d = asdict(entry)
    if d["firmware"] is None:
        del d["firmware"]
    return d


@dataclass(frozen=True)
class LockInfo:
    id: str
    owner: str
    pid: int
    host: str
    started: float
    expires: float

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockInfo:
        return cls(**json.loads(data))

    @classmethod
    def new(cls, owner: str, ttl: float) -> LockInfo:
        now = time.time()
        return cls(id=uuid.uuid4().hex[:12], owner=owner, pid=os.getpid(),
                   host=socket.gethostname(), started=now, expires=now + ttl)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires))
        return (f"lock {self.id} held by {self.owner} (pid {self.pid} on {self.host}, "
                f"since {started}, expires {expires})")


@dataclass(frozen=True)
class Put:
    path: str  # relative to the target root, "/"-separated
    data: bytes


@dataclass(frozen=True)
class Delete:
    path: str


FileOp = Put | Delete


@dataclass(frozen=True)
class OpResult:
    op: FileOp
    error: str | None = None  # None = done
    stat: FileStat | None = None  # of the new file, for Put


class Target(Protocol):
    name: str

    def read_manifest(self) -> Manifest:
        """The manifest, or an empty one when the target was never published to."""
        ...

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        """Size and mtime of every file in these directories (relative), no hashing."""
        ...

    def read(self, path: str) -> bytes | None:
        """One file's bytes, or None when it does not exist (used by --verify)."""
        ...

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        """Publish (temporary name + rename) and delete; one result per op, errors isolated."""
        ...

    def write_manifest(self, manifest: Manifest) -> None:
        """Replace the manifest atomically."""
        ...

    def acquire_lock(self, owner: str, ttl: float) -> LockInfo:
        """Take the lock, taking over an expired one; raise LockHeld naming the holder."""
        ...

    def release_lock(self, lock: LockInfo) -> None:
        ...

    def break_lock(self, lock_id: str) -> LockInfo:
        """Remove a stale lock by id (`provctl unlock`); raise LockHeld when the id differs."""
        ...

    def stat_file(self, path: str) -> FileStat | None:
        """Size and mtime of a file by absolute path on the host, outside the root too (an
        access log); None when it does not exist. Read-only."""
        ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes of that file from `offset` (fewer at its end). Read-only."""
        ...

    def close(self) -> None:
        ...
