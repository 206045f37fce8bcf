"""The git repository beside reading trees: notes on applied commits, commits of inventory
edits, and following a branch (the daemon). gitpython's other home (desired/load.py reads trees).
"""

from __future__ import annotations

from pathlib import Path

from reconciler.desired.load import git_repo

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

    from reconciler.core.errors import Refused

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

    from reconciler.core.errors import Refused

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

    from reconciler.core.errors import OperationError

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


# --- following a branch (the daemon) --------------------------------------------------------


def branch_tip(repo: Path, ref: str) -> str | None:
    """The commit `ref` (e.g. refs/heads/main) points at, read fresh; None if it does not."""
    import git

    grepo = git_repo(repo)
    if grepo is None:
        return None
    try:
        return grepo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}") or None
    except git.GitCommandError:
        return None
    finally:
        grepo.close()


def commit_time(repo: Path, rev: str) -> float | None:
    """Unix time of the commit (committer date), None if unknown."""
    grepo = git_repo(repo)
    if grepo is None:
        return None
    try:
        return float(grepo.commit(rev).committed_date)
    except (ValueError, LookupError):
        return None
    finally:
        grepo.close()


def refs_dir(repo: Path) -> Path | None:
    """The git directory holding the refs of the repository around `repo` (to watch it)."""
    grepo = git_repo(repo)
    return None if grepo is None else Path(grepo.common_dir)


def sync_clone(url: str, directory: Path, branch: str) -> None:
    """Clone `url` into `directory` once (init + origin), then fetch `branch` into
    refs/remotes/origin/<branch>. Raises OperationError when the remote cannot be fetched."""
    import git

    from reconciler.core.errors import OperationError

    try:
        if (directory / ".git").exists():
            grepo = git.Repo(directory)
        else:
            grepo = git.Repo.init(directory)
            grepo.create_remote("origin", url)
        with grepo:
            if grepo.remotes.origin.url != url:
                grepo.remotes.origin.set_url(url)
            with grepo.config_writer() as cw:  # git notes are commits: they need an identity
                cw.set_value("user", "name", "provctl")
                cw.set_value("user", "email", "provctl@localhost")
            grepo.git.fetch("--quiet", "--no-tags", "origin",
                            f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
    except (git.GitCommandError, git.InvalidGitRepositoryError, OSError, ValueError) as exc:
        raise OperationError(f"cannot fetch {branch} from {url}: {_git_message(exc)}") from exc


def checkout(directory: Path, rev: str) -> None:
    """Check `rev` out (detached) in a clone provctl owns, so files read from disk match it."""
    import git

    from reconciler.core.errors import OperationError

    try:
        with git.Repo(directory) as grepo:
            grepo.git.checkout("--quiet", "--force", "--detach", rev)
    except (git.GitCommandError, git.InvalidGitRepositoryError, OSError) as exc:
        raise OperationError(f"cannot check out {rev[:12]} in {directory}: "
                             f"{_git_message(exc)}") from exc


def _git_message(exc: Exception) -> str:
    text = str(getattr(exc, "stderr", "") or exc).strip()
    lines = [ln.strip(" '") for ln in text.splitlines() if ln.strip(" '")]
    return lines[-1] if lines else type(exc).__name__
