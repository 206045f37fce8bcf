"""The manifest and the journal: one format, read and written once for every target.

The manifest (`<meta_root>/manifest.json`: path -> sha256, size, mtime) is the only record of
what provctl published on a target; the reconciler never touches a file that is not in it. The
journal (`<meta_root>/journal.json`) lists the paths an apply is about to write, recorded before
each batch, so that a run killed between a publish and the next manifest write still knows
those files are its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from reconciler.core.errors import TargetError
from reconciler.targets.base import Delete, Put, Target

MANIFEST = "manifest.json"
JOURNAL = "journal.json"


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
        """Parse; anything malformed is a ValueError (never a KeyError or TypeError)."""
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("version") != 1:
                raise ValueError("unknown manifest format")
            files = {
                str(path): ManifestEntry(
                    sha256=str(e["sha256"]),
                    size=int(e["size"]),
                    mtime=float(e.get("mtime", 0.0)),
                    firmware=e.get("firmware"),
                )
                for path, e in (body.get("files") or {}).items()
            }
            revision = body.get("revision")
        except KeyError as exc:
            raise ValueError(f"an entry has no {exc}") from None
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"malformed entry: {exc}") from None
        return cls(files=files, revision=None if revision is None else str(revision))


def _entry_dict(entry: ManifestEntry) -> dict[str, object]:
    d = asdict(entry)
    if d["firmware"] is None:
        del d["firmware"]
    return d


def read(target: Target) -> Manifest:
    """The manifest, or an empty one when the target was never published to."""
    data = target.meta.read(MANIFEST)
    if data is None:
        return Manifest()
    try:
        return Manifest.from_bytes(data)
    except ValueError as exc:
        raise TargetError(
            target.name, f"cannot read manifest {target.meta.location}/{MANIFEST}: {exc}"
        ) from exc


def write(target: Target, manifest: Manifest) -> None:
    """Replace the manifest atomically."""
    [result] = target.meta.execute([Put(MANIFEST, manifest.to_bytes())])
    if result.error:
        raise TargetError(
            target.name, f"cannot write manifest: {result.error}", transient=result.transient
        )


def read_journal(target: Target) -> frozenset[str]:
    """Paths an interrupted apply may have written (ours, content unknown)."""
    data = target.meta.read(JOURNAL)
    try:
        return frozenset(str(p) for p in json.loads(data)["paths"]) if data else frozenset()
    except (ValueError, KeyError, TypeError):
        return frozenset()


def write_journal(target: Target, paths: Iterable[str]) -> str | None:
    """Record the paths; the error, or None."""
    body = json.dumps({"paths": sorted(paths)}).encode()
    return target.meta.execute([Put(JOURNAL, body)])[0].error


def clear_journal(target: Target) -> str | None:
    return target.meta.execute([Delete(JOURNAL)])[0].error
