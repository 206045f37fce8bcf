"""The repository the daemon follows: a local work tree (watched with watchdog, the only module
importing it) or a remote cloned into the state directory and fetched every cycle. Both give the
daemon the same small protocol: refresh, tip, commit_time, prepare, after_apply, watch, close.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.core.errors import ConfigError, Problem
from reconciler.gitops import repo as gitrepo

if TYPE_CHECKING:
    from reconciler.daemon.loop import Config

log = logging.getLogger("provctl.daemon")

CLONE_DIR = "repo"

_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")


def is_url(repo: str) -> bool:
    """A URL (scheme://… or user@host:path) is cloned; anything else is a local path."""
    return "://" in repo or bool(_SCP_LIKE.match(repo))


def _local_desired(cfg: Config) -> Path:
    path = Path(cfg.repo)
    return path / cfg.subdir if cfg.subdir else path


def _problem(field: str, message: str) -> Problem:
    return Problem("daemon", 0, field, message)


class LocalRepo:
    """A git work tree on this machine: its branch tip, watched with watchdog."""

    def __init__(self, cfg: Config):
        self.ref = f"refs/heads/{cfg.branch}"
        self.desired = _local_desired(cfg)
        git_dir = gitrepo.refs_dir(self.desired) if self.desired.exists() else None
        if git_dir is None:
            raise ConfigError([_problem("--repo", f"{self.desired} is not a directory inside "
                                        "a git repository")])
        self.git_dir = git_dir
        self._observer: Any = None

    def refresh(self) -> None:
        """Nothing to fetch: the refs are watched (and polled)."""

    def tip(self) -> str | None:
        return gitrepo.branch_tip(self.desired, self.ref)

    def commit_time(self, rev: str) -> float | None:
        return gitrepo.commit_time(self.desired, rev)

    def prepare(self, rev: str) -> None:
        """The desired state is read from the commit; the operator's work tree is not touched."""

    def after_apply(self) -> None:
        """The apply wrote its notes into this repository; nothing to push."""

    def watch(self, wake: threading.Event) -> None:
        """Set `wake` when a ref may have moved (refs/, packed-refs, HEAD)."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                # Reads (opened / closed_no_write) must not wake us: we read refs ourselves.
                if event.event_type in ("created", "modified", "moved", "deleted"):
                    wake.set()

        observer = Observer()
        handler = Handler()
        observer.schedule(handler, str(self.git_dir), recursive=False)
        refs = self.git_dir / "refs"
        if refs.is_dir():
            observer.schedule(handler, str(refs), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None


class RemoteRepo:
    """A remote repository cloned once into the state directory and fetched every cycle."""

    def __init__(self, cfg: Config, state_dir: Path):
        self.url = cfg.repo
        self.branch = cfg.branch
        self.ref = f"refs/remotes/origin/{cfg.branch}"
        self.dir = state_dir / CLONE_DIR
        self.desired = self.dir / cfg.subdir if cfg.subdir else self.dir

    def refresh(self) -> None:
        """Fetch the branch (cloning first if needed); OperationError if the remote fails."""
        gitrepo.sync_clone(self.url, self.dir, self.branch)

    def tip(self) -> str | None:
        return gitrepo.branch_tip(self.dir, self.ref) if (self.dir / ".git").exists() else None

    def commit_time(self, rev: str) -> float | None:
        return gitrepo.commit_time(self.dir, rev)

    def prepare(self, rev: str) -> None:
        """Check the revision out, so files read from disk (firmware images) match it."""
        gitrepo.checkout(self.dir, rev)

    def after_apply(self) -> None:
        """Push the deployment notes the apply wrote (refs/notes/provctl) to the remote."""
        if not gitrepo.push_notes(self.dir):
            log.warning("cannot push the deployment notes to %s (kept in the clone; pushed "
                        "with the next apply)", self.url, extra={"repo": self.url})

    def watch(self, wake: threading.Event) -> None:
        """A remote is fetched every interval; nothing to watch."""

    def close(self) -> None:
        """Nothing held open."""
