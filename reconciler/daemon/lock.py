"""One daemon per state directory: an fcntl lock on `<state>/daemon.lock` holding our pid."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from reconciler.core.errors import Refused

LOCK_FILE = "daemon.lock"


class DaemonLockHeld(Refused):
    pass


@contextlib.contextmanager
def daemon_lock(state_dir: Path) -> Iterator[Path]:
    """Hold an fcntl lock on `<state>/daemon.lock` (with our pid in it) while running."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise DaemonLockHeld(f"another provctl daemon (pid {holder}) holds {path}; "
                                 "one daemon per state directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
