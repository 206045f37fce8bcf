"""Incremental load: each file's parse and per-file validation, cached by content.

`validate.validate_file` is a pure function of a file's path, its bytes and the load limits, so
its result is kept in the state directory under the git blob id of the bytes (computed here
from the content, so a working tree and a git revision share entries), the limits and a
digest of the code that produced it. A
100,000-phone inventory whose files did not change is then read back in about a second instead
of parsed and validated again.

- **Hot and cold parts.** The validated models, their digests and the per-file problems come
  back at once; a file's YAML data and line marks (`Doc`) are decoded only when something asks
  for them: an error to locate, `explain`, the layers of a phone that is rendered again.
- **Authenticated.** Entries are pickles, so each carries an HMAC keyed with the fleet secret
  and is ignored unless it verifies: a file dropped into the state directory (say, committed
  under `.provctl/` by someone else) is never unpickled.
- **An optimisation only.** A missing, stale, corrupt or foreign entry costs time, never
  correctness; entries hold what the repository holds (secret references, never values).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import pickle
import sys
import time
import zlib
from functools import cache
from pathlib import Path
from typing import Any, cast

import pydantic
import yaml
from pydantic import BaseModel

from reconciler.core import layout
from reconciler.desired.load import DEFAULT_LIMITS, Cancelled, Doc, Limits, Source
from reconciler.desired.schema import Provisioning
from reconciler.desired.secrets import MissingSecret
from reconciler.desired.validate import FileResult, secrets_for, validate_file

FORMAT = b"provctl-file-cache/1"
MAC_SIZE = 32
KEEP_UNUSED = 24 * 3600.0  # seconds an entry no run asked for is kept (another branch, revert)
TOUCH_AFTER = 3600.0  # refresh the mtime of entries in use at most this often


def blob_id(data: bytes) -> str:
    """The id git gives these bytes as a blob (sha1 of "blob <size>\\0" + data)."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


@cache
def code_version() -> str:
    """What validate_file's output depends on besides the file: this code and its libraries."""
    h = hashlib.sha256(FORMAT)
    here = Path(__file__).resolve().parent
    for base in (here, here.parent / "core"):
        for path in sorted(base.glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    for version in (sys.version, yaml.__version__, pydantic.VERSION,
                    getattr(pydantic, "__version__", "")):
        h.update(version.encode())
    return h.hexdigest()


_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__  # the slots' descriptors
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def _model(cls: type[BaseModel], values: dict[str, Any], fields_set: set[str]) -> BaseModel:
    """Rebuild a validated model without validating again (it was valid when it was stored):
    what pydantic's __setstate__ does, 250,000 times at 100,000 phones."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    _set_fields(obj, fields_set)
    _set_extra(obj, None)
    _set_private(obj, None)
    return obj


class _Pickler(pickle.Pickler):
    """Models as (class, fields): half the time of pydantic's own __setstate__ on load."""

    def reducer_override(self, obj: Any) -> Any:
        if (isinstance(obj, BaseModel) and obj.__pydantic_extra__ is None
                and not obj.__pydantic_private__):
            return _model, (type(obj), obj.__dict__, obj.__pydantic_fields_set__)
        return NotImplemented


def _share(result: FileResult) -> None:
    """Make equal strings, and equal sets of fields set, in a file's models one object (in
    place; equal values): pickle then stores each once, and 50,000 phones of one model,
    profile or customer share its name when loaded instead of holding 50,000 copies. A shared
    fields-set is never changed: the models are frozen (pydantic copies it for model_copy)."""
    seen: dict[str, str] = {}
    sets: dict[frozenset[str], set[str]] = {}

    def share(value: Any) -> Any:
        if type(value) is str:
            return seen.setdefault(value, value)
        if isinstance(value, BaseModel):
            fields = value.__dict__
            for key, item in fields.items():
                fields[key] = share(item)
            given = value.__pydantic_fields_set__
            _set_fields(value, sets.setdefault(frozenset(given), given))
            return value
        if type(value) is list:
            value[:] = [share(item) for item in value]
            return value
        if type(value) is dict:
            shared = {share(k): share(v) for k, v in value.items()}
            value.clear()
            value.update(shared)
            return value
        return value

    for located in result.objects:
        share(located.value)


def _dumps(value: Any) -> bytes:
    import io

    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


class LazyDoc:
    """A cached file's Doc: `file` at once, everything else decoded on first use."""

    __slots__ = ("file", "_packed", "_doc")

    def __init__(self, file: str, packed: bytes):
        self.file = file
        self._packed = packed
        self._doc: Doc | None = None

    def _real(self) -> Doc:
        if self._doc is None:
            self._doc = cast(Doc, pickle.loads(zlib.decompress(self._packed)))
            self._packed = b""
        return self._doc

    def __getattr__(self, name: str) -> Any:  # data, lines, and whatever Doc grows
        if name.startswith("__"):  # pickle and copy probe dunders: never decode for them
            raise AttributeError(name)
        return getattr(self._real(), name)

    def __reduce__(self) -> tuple[Any, ...]:
        packed = self._packed or zlib.compress(pickle.dumps(self._doc), 1)
        return (LazyDoc, (self.file, packed))

    def line(self, path: Any = ()) -> int:
        return self._real().line(path)

    def __eq__(self, other: object) -> bool:
        mine = self._real()
        return mine == (other._real() if isinstance(other, LazyDoc) else other)

    __hash__ = None  # type: ignore[assignment]


class FileCache:
    """`validate_file`, remembered: call it like validate_file(rel, data, limits, cancelled)."""

    def __init__(self, directory: Path, secret: str):
        self.directory = directory
        self._key = hmac.new(secret.encode(), b"provctl-file-cache", hashlib.sha256).digest()
        self.used: set[str] = set()
        self.hits = 0
        self.misses = 0

    def _name(self, rel: str, data: bytes, limits: Limits) -> str:
        h = hashlib.sha256(code_version().encode())
        h.update(f"{rel}\0{limits}\0".encode())
        h.update(blob_id(data).encode())
        return h.hexdigest()[:40]

    def __call__(self, rel: str, data: bytes, limits: Limits = DEFAULT_LIMITS,
                 cancelled: Cancelled | None = None) -> FileResult:
        name = self._name(rel, data, limits)
        self.used.add(name)
        found = self._load(self.directory / name, rel)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        result = validate_file(rel, data, limits, cancelled)
        packed = self._store(self.directory / name, result)
        if packed is None:
            return result
        # as from the cache: the parsed data and line marks are kept compressed (about a
        # tenth), decoded only if asked for
        return result.with_doc(cast(Doc, LazyDoc(rel, packed)))

    def _load(self, path: Path, rel: str) -> FileResult | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        mac, body = raw[:MAC_SIZE], raw[MAC_SIZE:]
        if not hmac.compare_digest(mac, hmac.new(self._key, body, hashlib.sha256).digest()):
            return None  # not written by us with this fleet secret: never unpickled
        try:
            result = pickle.loads(body)
        except Exception:  # noqa: BLE001 - a stale or corrupt entry is only a miss
            return None
        if not isinstance(result, FileResult):
            return None
        if time.time() - _mtime(path) > TOUCH_AFTER:
            with contextlib.suppress(OSError):
                os.utime(path)
        return result

    def _store(self, path: Path, result: FileResult) -> bytes | None:
        """Write the entry; return the Doc, packed (None when the file is not YAML).

        The entry is the FileResult with a LazyDoc: its Located objects come back through
        pickle's C path (no __init__ per object) sharing one LazyDoc per file."""
        packed = None if result.doc is None else zlib.compress(pickle.dumps(result.doc), 1)
        _share(result)
        stored = result if packed is None else result.with_doc(
            cast(Doc, LazyDoc(result.doc.file if result.doc else "", packed)))
        body = _dumps(stored)
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(mac + body)
            os.replace(tmp, path)  # no fsync: a torn entry fails its HMAC and is a miss
        except OSError:
            pass
        return packed

    def prune(self) -> None:
        """Forget entries no run has used for a day (call after a load of a whole state)."""
        now = time.time()
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if entry.name in self.used:
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > KEEP_UNUSED:
                    os.unlink(entry.path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def cache_dir(state_dir: Path) -> Path:
    return state_dir / f"file-cache-{os.getuid() if hasattr(os, 'getuid') else 0}"


def open_cache(source: Source, environ: dict[str, str] | None,
               state_dir: Path) -> FileCache | None:
    """The cache for this desired state, keyed with its fleet secret; None while that secret
    cannot be had (load_state then validates every file and reports why)."""
    data = source.files.get(layout.PROVISIONING)
    if data is None:
        return None
    objects = validate_file(layout.PROVISIONING, data, DEFAULT_LIMITS).objects
    if not objects or not isinstance(objects[0].value, Provisioning):
        return None
    provisioning = objects[0].value
    try:
        secret = secrets_for(source, provisioning, environ).resolve(provisioning.fleet.secret)
    except MissingSecret:
        return None
    return FileCache(cache_dir(state_dir), secret)
