"""Targets: open the right implementation for a target in provisioning.yaml."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from reconciler.desired.schema import LocalTarget as LocalSpec
from reconciler.desired.schema import SftpTarget as SftpSpec
from reconciler.targets.base import Target
from reconciler.targets.local import LocalTarget


def _path(base: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base / path


def open_target(
    name: str,
    spec: LocalSpec | SftpSpec,
    base: Path,
    resolve_secret: Callable[[str], str] | None = None,
) -> Target:
    """Build the target object; connecting (for SFTP) happens on first use."""
    if isinstance(spec, LocalSpec):
        return LocalTarget(
            name,
            _path(base, spec.root),
            spec.file_mode,
            spec.dir_mode,
            None if spec.meta_root is None else _path(base, spec.meta_root),
        )
    from reconciler.targets.sftp import (
        SftpTarget,  # paramiko is imported only when an SFTP target is used
    )

    passphrase = None
    if spec.key_passphrase and resolve_secret is not None:
        passphrase = resolve_secret(spec.key_passphrase)
    return SftpTarget(
        name,
        spec.host,
        spec.port,
        spec.user,
        spec.root,
        known_hosts=_path(base, spec.known_hosts),
        key_file=_path(base, spec.key) if spec.key else None,
        key_passphrase=passphrase,
        sessions=spec.sessions,
        file_mode=spec.file_mode,
        dir_mode=spec.dir_mode,
        timeout=spec.timeout,
        meta_root=spec.meta_root,
    )
