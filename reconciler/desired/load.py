"""Load: read the desired-state files from a directory or from a git revision (no checkout),
and parse YAML keeping the line of every key so that every error can name file:line.

gitpython is used here (reading trees) and in gitops/repo.py (notes, commits, following a
branch) only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.errors import ConfigError, Problem
from reconciler.core.layout import LAYOUT, in_layout

try:  # libyaml is ten times faster on big inventories
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]


Key = str | int | float | None  # a mapping key (YAML allows any scalar) or a list index
Path_ = tuple[Key, ...]


@dataclass(frozen=True)
class Doc:
    """One parsed YAML file: plain data plus the line (1-based) of every key and item."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict, compare=False, repr=False)

    def line(self, path: Path_ = ()) -> int:
        """Line of the deepest known prefix of `path` (a pydantic `loc` works as is)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return 1


@dataclass(frozen=True)
class Source:
    """Where the desired state was read from."""

    root: Path  # directory holding provisioning.yaml (relative paths resolve against it)
    revision: str  # commit sha, or "worktree" / "<sha>+dirty" for a directory
    files: dict[str, bytes]


def find_repo(path: str | None) -> Path:
    """--repo default: the current directory if it holds provisioning.yaml, else desired-state/."""
    if path:
        return Path(path)
    here = Path.cwd()
    if (here / "provisioning.yaml").exists():
        return here
    return here / "desired-state"


def read_source(repo: Path, rev: str | None = None) -> Source:
    if not (repo / "provisioning.yaml").exists() and rev is None:
        raise ConfigError([Problem(str(repo), 0, "",
                                   "no provisioning.yaml here (is --repo right?)")])
    if rev is None:
        files = {rel: (repo / rel).read_bytes() for rel in _walk_dir(repo)}
        return Source(repo, _worktree_revision(repo), files)
    return _read_git(repo, rev)


def _walk_dir(repo: Path) -> Iterator[str]:
    for pattern in LAYOUT:
        for path in sorted(repo.glob(pattern)):
            if path.is_file():
                yield path.relative_to(repo).as_posix()


def git_repo(repo: Path):  # -> git.Repo
    import git

    try:
        return git.Repo(repo, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _worktree_revision(repo: Path) -> str:
    grepo = git_repo(repo)
    if grepo is None:
        return "worktree"
    try:
        sha = grepo.head.commit.hexsha
    except ValueError:  # no commits yet
        return "worktree"
    prefix = repo.resolve().relative_to(Path(grepo.working_tree_dir).resolve()).as_posix()
    dirty = grepo.is_dirty(untracked_files=True, path=None if prefix == "." else prefix)
    return f"{sha}+dirty" if dirty else sha


def _read_git(repo: Path, rev: str) -> Source:
    import git

    grepo = git_repo(repo)
    if grepo is None:
        raise ConfigError([Problem(str(repo), 0, "--rev", "not inside a git repository")])
    try:
        commit = grepo.commit(rev)
    except (git.BadName, ValueError) as exc:
        raise ConfigError([Problem(str(repo), 0, "--rev", f"unknown revision {rev!r}")]) from exc
    prefix = repo.resolve().relative_to(Path(grepo.working_tree_dir).resolve()).as_posix()
    tree = commit.tree if prefix == "." else _subtree(commit.tree, prefix)
    if tree is None:
        raise ConfigError([Problem(prefix, 0, "--rev", f"{prefix}/ does not exist at {rev}")])
    files: dict[str, bytes] = {}
    for item in tree.traverse():
        if item.type == "blob":
            rel = item.path[len(prefix) + 1:] if prefix != "." else item.path
            if in_layout(rel):
                files[rel] = item.data_stream.read()
    if "provisioning.yaml" not in files:
        raise ConfigError([Problem(f"{prefix}/provisioning.yaml", 0, "--rev",
                                   f"missing at {rev}")])
    return Source(repo, commit.hexsha, dict(sorted(files.items())))


def _subtree(tree, prefix: str):
    try:
        return tree / prefix
    except KeyError:
        return None


# --- YAML with lines ------------------------------------------------------------------------


def parse_yaml(file: str, data: bytes) -> Doc:
    """Parse one file; raise ConfigError naming file:line on a YAML error or duplicate key."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(file, 1, "", f"not UTF-8: {exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {exc.problem}")]) from exc
    if node is None:
        return Doc(file, None, {(): 1})
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []
    try:
        value = _construct(node, (), lines, file, problems)
    finally:
        # construct_object remembers every node it built (for aliases); a module-wide
        # constructor would keep every file's nodes alive: 40 MB per 10,000 phones.
        _constructor.constructed_objects.clear()
    if problems:
        raise ConfigError(problems)
    return Doc(file, value, lines)


_constructor = yaml.constructor.SafeConstructor()


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int], file: str,
               problems: list[Problem]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                problems.append(Problem(file, key_node.start_mark.line + 1, "",
                                        "YAML merge keys (<<) are not supported"))
                continue
            key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | bool | float) and key is not None:
                problems.append(Problem(file, key_node.start_mark.line + 1, "",
                                        "mapping keys must be plain values"))
                continue
            if key in out:
                problems.append(Problem(file, key_node.start_mark.line + 1, str(key),
                                        "duplicate key"))
                continue
            child = (*path, key)
            out[key] = _construct(value_node, child, lines, file, problems)
            lines[child] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, file, problems)
                for i, item in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)
