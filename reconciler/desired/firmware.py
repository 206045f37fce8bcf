"""Firmware binaries: every catalog `source` is hashed at validate, before anything is published.

A binary whose sha256 differs from its catalog entry is a validation error: nothing of that
desired state is published (no config points at an image that is not the one catalogued).
Hashing a large image on every plan costs time, so the digests are kept in the state directory
(`firmware-digests.json`), keyed by what identifies the content without reading it: the git blob
id when read from a revision, else path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.errors import Problem
from reconciler.core.files import atomic_write
from reconciler.desired.load import RepoFileError

if TYPE_CHECKING:
    from reconciler.desired.validate import DesiredState

CACHE = "firmware-digests.json"
_MAX_ENTRIES = 1000


def check_firmware_sources(state: DesiredState, state_dir: Path | None) -> list[Problem]:
    """One problem per catalog entry whose source does not hash to its sha256.

    A source that is missing is left to the renderer, which reports it for the phones that
    need it (an unused catalog entry may name a binary kept elsewhere).
    """
    cache_file = state_dir / CACHE if state_dir is not None else None
    cache = _load(cache_file)
    used: dict[str, str] = {}
    problems: list[Problem] = []
    for located in state.catalog:
        image = located.value
        if image.source is None:
            continue
        try:
            found = state.source.repo_file(image.source)
        except RepoFileError as exc:
            if not exc.missing:
                problems.append(Problem(located.file, located.line("source"),
                                        _field(located.base, "source"),
                                        f"firmware source {exc}"))
            continue
        digest = cache.get(found.stamp)
        if digest is None:
            h = hashlib.sha256()
            for chunk in found.chunks():
                h.update(chunk)
            digest = h.hexdigest()
        used[found.stamp] = digest
        if digest != image.sha256:
            problems.append(Problem(
                located.file, located.line("sha256"), _field(located.base, "sha256"),
                f"firmware {image.file}: {image.source} has sha256 {digest[:16]}…, not the "
                f"catalog's {image.sha256[:16]}…; nothing is published until the binary or "
                "the catalog is fixed"))
    if cache_file is not None and used and any(cache.get(k) != v for k, v in used.items()):
        _save(cache_file, {k: v for k, v in cache.items() if k not in used} | used)
    return problems


def _field(base: tuple[object, ...], name: str) -> str:
    return ".".join(str(p) for p in (*base, name))


def _load(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}


def _save(path: Path, entries: dict[str, str]) -> None:
    keep = dict(list(entries.items())[-_MAX_ENTRIES:])  # the newest last
    try:
        atomic_write(path, (json.dumps(keep, indent=0) + "\n").encode())
    except OSError:
        pass  # an optimisation only
