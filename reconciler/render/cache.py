"""Incremental rendering: remember what each phone's files rendered to.

Keyed by the phone's key (render/keys.py: a MAC, keyed with the fleet secret, of everything the
phone's files are made from, and of `code_version`: every file under vendors/, templates/ and
reconciler/render/, and the versions of Python, jinja2 and markupsafe), an entry holds each
file's name, sha256 and size and the firmware image the phone pins. A hit gives the digests
without resolving or rendering the phone; its bytes are rendered again only when a file must be
uploaded. The cache is an optimisation only: losing it, or a corrupt file, costs time, never
correctness.

On disk: a JSON snapshot plus an append-only log of the entries added since. A run that renders
a few phones appends a few lines; the snapshot is rewritten only when the log, or the entries
no longer in use, grow past a quarter of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.files import atomic_write

# [files, firmware, sip, directory]: files "sha256/size/name" lines (one string: a few objects
# per phone, not a dozen, in a cache of 100,000 phones); firmware [version, file, sha256, source]
# or None; sip [[extension, domain, port], ...] of its lines (renderer.sip_problems); the
# phone's token directory (absent in entries of earlier versions: computed then)
Entry = list[Any]
FORMAT = 4


def pack_files(files: list[tuple[str, str, int]]) -> str:
    """(name, sha256, size) of a phone's files, as an entry keeps them."""
    return "\n".join(f"{sha}/{size}/{name}" for name, sha, size in files)


def unpack_files(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    for line in text.split("\n") if text else ():
        sha, size, name = line.split("/", 2)
        out.append((name, sha, int(size)))
    return out


COMPACT_MIN = 1000  # log lines (or unused entries) tolerated before the snapshot is rewritten


def code_dirs() -> tuple[Path, ...]:
    """Everything rendering runs: no hand-kept list, so no edit can reuse stale digests."""
    return (Path(vendors.__file__).resolve().parent, vendors.TEMPLATES,
            Path(__file__).resolve().parent)


@cache
def code_version(vendor: str = "") -> str:
    """Digest of all rendering code and templates (one for every vendor: vendors share
    modules such as vendors/common.py, so an edit anywhere invalidates every entry)."""
    import sys
    from importlib.metadata import version

    runtime = f"{sys.version_info[:3]} {version('jinja2')} {version('markupsafe')}"
    return tree_digest(code_dirs(), runtime)


def tree_digest(dirs: tuple[Path, ...], salt: str = "") -> str:
    """sha256 over every file's path and content under `dirs` (compiled files left out)."""
    h = hashlib.sha256(salt.encode())
    for base in dirs:
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(path.relative_to(base.parent).as_posix().encode() + b"\0")
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


class RenderCache:
    def __init__(self, path: Path | None):
        self.path = path
        self._entries: dict[str, Entry] = {}
        self._snapshot = 0  # entries in the snapshot file
        self._logged = 0  # lines in the log
        self._new: dict[str, Entry] = {}  # to append
        self._live: set[str] | None = None  # from retain()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            loaded = json.loads(path.read_bytes())
            if isinstance(loaded, dict) and loaded.get("version") == FORMAT:
                self._entries = loaded["entries"]
                self._snapshot = len(self._entries)
        except (OSError, ValueError, KeyError, TypeError):
            self._entries = {}
        try:
            with open(_log(path), "rb") as fh:
                for line in fh:
                    self._logged += 1
                    try:
                        key, entry = json.loads(line)
                    except (ValueError, TypeError):
                        continue  # a torn last line (a run killed while appending)
                    self._entries[key] = entry
        except OSError:
            pass

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def put(self, key: str, entry: Entry) -> None:
        if self._entries.get(key) != entry:
            self._entries[key] = entry
            self._new[key] = entry

    def retain(self, keys: set[str]) -> None:
        """The keys in use: the others are dropped when the snapshot is next rewritten."""
        self._live = keys

    def save(self) -> None:
        if self.path is None:
            return
        stale = 0 if self._live is None else len(self._entries) - len(self._live)
        limit = max(COMPACT_MIN, self._snapshot // 4)
        try:
            if self._logged + len(self._new) > limit or stale > limit:
                self._compact(self.path)
            elif self._new:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lines = b"".join(json.dumps([k, e], separators=(",", ":")).encode() + b"\n"
                                 for k, e in self._new.items())
                with open(_log(self.path), "ab") as fh:
                    fh.write(lines)  # one write: concurrent runs append whole lines
                self._logged += len(self._new)
        except OSError:
            pass  # an optimisation only
        self._new = {}

    def _compact(self, path: Path) -> None:
        if self._live is not None:
            self._entries = {k: v for k, v in self._entries.items() if k in self._live}
        atomic_write(path, json.dumps({"version": FORMAT, "entries": self._entries},
                                      separators=(",", ":")).encode())
        with open(_log(path), "wb"):
            pass  # everything is in the snapshot now
        self._snapshot, self._logged = len(self._entries), 0


def _log(path: Path) -> Path:
    return path.with_name(path.name + ".log")


def cache_path(state_dir: Path) -> Path:
    return state_dir / f"render-cache-{os.getuid() if hasattr(os, 'getuid') else 0}.json"
