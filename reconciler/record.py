"""Record: what a run did, for operators and auditors. Nothing secret is ever written here.

- `<state>/receipts.jsonl`: one JSON line per apply (revision, trigger, plan checksum, per-item
  results, start and end), and a copy on each target under `.provctl/receipts/`.
- `<state>/status.json`: per target, the last attempted and the last applied revision.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .files import atomic_write
from .targets.base import RECEIPTS, Put, Target


def default_state_dir(repo: Path) -> Path:
    env = os.environ.get("PROVCTL_STATE_DIR")
    return Path(env) if env else repo / ".provctl"


def trigger() -> str:
    """Who or what started the run."""
    who = os.environ.get("PROVCTL_TRIGGER") or os.environ.get("USER") or "unknown"
    return f"{who}@{socket.gethostname()}"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def write_receipt(state_dir: Path, receipt: dict[str, Any], targets: dict[str, Target]) -> None:
    line = json.dumps(receipt, sort_keys=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "receipts.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    name = f"{RECEIPTS}/{receipt['started'].replace(':', '')}-{receipt['id']}.json"
    for target in targets.values():
        # A receipt that cannot be copied to a target must not fail the run that produced it.
        target.execute([Put(name, (line + "\n").encode())])


def read_status(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / "status.json").read_text())
    except FileNotFoundError:
        return {}


def update_status(state_dir: Path, target: str, revision: str, applied: bool,
                  now: float, error: str | None = None) -> None:
    status = read_status(state_dir)
    entry = status.setdefault(target, {})
    entry["last_attempted"] = {"revision": revision, "at": iso(now), "error": error}
    if applied:
        entry["last_applied"] = {"revision": revision, "at": iso(now)}
    atomic_write(state_dir / "status.json", (json.dumps(status, indent=1, sort_keys=True)
                                              + "\n").encode())




# --- git notes: deployment next to intent ---------------------------------------------------

NOTES_REF = "provctl"  # refs/notes/provctl


def _is_commit(revision: str) -> bool:
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def note_applied(repo: Path, revision: str, line: str) -> bool:
    """Append one line to the applied commit's note under refs/notes/provctl.

    Only a clean commit gets a note (a dirty working tree was never a commit). Returns whether
    a note was written; a repository we cannot write to never fails the apply that succeeded.
    """
    import git

    if not _is_commit(revision):
        return False
    try:
        grepo = git.Repo(repo, search_parent_directories=True)
        grepo.git.notes("--ref", NOTES_REF, "append", "-m", line, revision)
        return True
    except (git.GitCommandError, git.InvalidGitRepositoryError, git.NoSuchPathError):
        return False


def push_notes(repo: Path, remote: str = "origin") -> bool:
    import git

    try:
        grepo = git.Repo(repo, search_parent_directories=True)
        grepo.git.push(remote, f"refs/notes/{NOTES_REF}")
        return True
    except git.GitCommandError:
        return False


def read_notes(repo: Path) -> dict[str, list[str]]:
    """commit sha -> note lines, for `history`."""
    import git

    try:
        grepo = git.Repo(repo, search_parent_directories=True)
        listing = grepo.git.notes("--ref", NOTES_REF, "list")
    except (git.GitCommandError, git.InvalidGitRepositoryError, git.NoSuchPathError):
        return {}
    notes: dict[str, list[str]] = {}
    for row in listing.splitlines():
        blob, _, commit = row.partition(" ")
        notes[commit] = grepo.git.cat_file("-p", blob).splitlines()
    return notes


# --- commits of desired-state edits (provctl import / device ... --commit) -------------------


def _edit_repo(repo: Path):  # -> (git.Repo, worktree root)
    import git

    from .errors import Refused

    try:
        grepo = git.Repo(repo, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise Refused(f"{repo} is not inside a git repository: cannot --commit") from exc
    if grepo.working_tree_dir is None:
        raise Refused(f"{repo} is inside a bare git repository: cannot --commit")
    return grepo, Path(grepo.working_tree_dir).resolve()


def check_commit(repo: Path, paths: list[Path], branch: str) -> None:
    """Before writing an edit that will be committed: refuse (Refused) unless the repository
    has a commit, `branch` is a new valid branch name and none of `paths` has uncommitted
    changes (they would end up in the commit)."""
    import git

    from .errors import Refused

    grepo, root = _edit_repo(repo)
    try:
        _ = grepo.head.commit
    except ValueError as exc:
        raise Refused("the git repository has no commit yet: cannot branch from it") from exc
    try:
        grepo.git.check_ref_format("--branch", branch)
    except git.GitCommandError as exc:
        raise Refused(f"{branch!r} is not a valid branch name") from exc
    if branch in {head.name for head in grepo.heads}:
        raise Refused(f"branch {branch!r} already exists")
    rels = [p.resolve().relative_to(root).as_posix() for p in paths]
    dirty = grepo.git.status("--porcelain", "--untracked-files=all", "--", *rels)
    if dirty.strip():
        names = ", ".join(line[3:] for line in dirty.splitlines())
        raise Refused(f"uncommitted changes in {names}: commit or stash them first")


def commit_files(repo: Path, paths: list[Path], message: str, branch: str) -> str:
    """Create `branch` at HEAD, switch to it and commit exactly `paths`; the commit's sha."""
    import git

    from .errors import OperationError

    grepo, root = _edit_repo(repo)
    rels = [p.resolve().relative_to(root).as_posix() for p in paths]
    try:
        grepo.git.checkout("-b", branch)
        grepo.git.add("--", *rels)
        grepo.git.commit("-m", message, "--", *rels)
    except git.GitCommandError as exc:
        detail = (exc.stderr or str(exc)).strip().splitlines()
        raise OperationError(f"git commit failed: {detail[-1] if detail else exc}") from exc
    return grepo.head.commit.hexsha
