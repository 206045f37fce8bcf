"""Incremental rendering: remember the digests of what a phone's input rendered to.

The key is an HMAC (keyed with the fleet secret, so the cache reveals nothing about the secrets
inside the input) of the phone's complete RenderInput plus a version of the code that turns it
into bytes: every file under vendors/, templates/ and reconciler/render/, and the versions of
Python, jinja2 and markupsafe. A hit gives the file names and digests without running the
templates; the bytes are rendered again only when a file must be uploaded. The cache is an
optimisation only: losing it, or a corrupt file, costs time, never correctness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.files import atomic_write

Entry = list[list[Any]]  # [[name, sha256, size], ...]


def _default(value: Any) -> Any:
    """JSON for what json does not know; dataclasses shallowly (json recurses, in C)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


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
    def __init__(self, path: Path | None, key: str):
        self.path = path
        self._key = key.encode()
        self._entries: dict[str, Entry] = {}
        self._dirty = False
        if path is not None:
            try:
                loaded = json.loads(path.read_text())
                if isinstance(loaded, dict) and loaded.get("version") == 1:
                    self._entries = loaded["entries"]
            except (OSError, ValueError, KeyError):
                self._entries = {}

    def key(self, render_input: Any) -> str:
        body = json.dumps(render_input, sort_keys=True, default=_default)
        mac = hmac.new(self._key, code_version(render_input.vendor).encode(), hashlib.sha256)
        mac.update(body.encode())
        return mac.hexdigest()[:40]

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def put(self, key: str, entry: Entry) -> None:
        if self._entries.get(key) != entry:
            self._entries[key] = entry
            self._dirty = True

    def retain(self, keys: set[str]) -> None:
        """Forget entries of inputs no longer desired, so the file does not grow forever."""
        stale = set(self._entries) - keys
        for k in stale:
            del self._entries[k]
        self._dirty = self._dirty or bool(stale)

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        try:
            atomic_write(self.path, json.dumps({"version": 1, "entries": self._entries},
                                                separators=(",", ":")).encode())
        except OSError:
            pass  # an optimisation only
        self._dirty = False


def cache_path(state_dir: Path) -> Path:
    return state_dir / f"render-cache-{os.getuid() if hasattr(os, 'getuid') else 0}.json"
