"""Load: read the desired-state files from a directory or from a git revision (no checkout),
and parse YAML keeping the line of every key so that every error can name file:line.

Every YAML file is parsed under `Limits` (policy.load_limits): its size, the nodes it may
construct, how far its aliases may expand and how deep it may nest. A file over a limit is an
error naming the file, so an "alias bomb" committed to a followed branch costs nothing.

Other files of the repository (secret files, the age file, firmware binaries) are read through
`Source.repo_file`: from the revision's tree when a revision was asked for, else from the
directory; never from outside the repository.

gitpython is used here (reading trees) and in gitops/repo.py (notes, commits, following a
branch) only.
"""

from __future__ import annotations

import copy
import stat as stat_mod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from reconciler.core.errors import ConfigError, Interrupted, Problem
from reconciler.core.layout import LAYOUT, PROVISIONING, in_layout

try:  # libyaml is ten times faster on big inventories
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment, unused-ignore]


Key = str | int | float | None  # a mapping key (YAML allows any scalar) or a list index
Path_ = tuple[Key, ...]
Cancelled = Callable[[], bool]  # true once the load should stop (the daemon's SIGTERM)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one YAML file may cost; `policy.load_limits` in provisioning.yaml overrides them.

    The defaults hold an inventory of some 80 000 phones in one file and stop a "billion
    laughs" after a few thousand nodes.
    """

    file_bytes: int = 8 * 1024 * 1024
    nodes: int = 1_000_000  # values constructed from one file, aliases expanded
    alias_nodes: int = 10_000  # of those, values reached through an alias (*name)
    depth: int = 64  # nesting of maps and lists

    def describe(self, name: str) -> str:
        return f"policy.load_limits.{name} is {getattr(self, name)}"


DEFAULT_LIMITS = Limits()


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


class RepoFileError(Exception):
    """A repository file that cannot be read: outside the repository, a symlink, missing."""

    def __init__(self, rel: str, reason: str, *, missing: bool = False):
        self.rel = rel
        self.missing = missing
        super().__init__(f"{rel}: {reason}")


@dataclass(frozen=True)
class RepoFile:
    """A file of the repository at the source's revision (tree blob or directory entry)."""

    rel: str
    size: int
    stamp: str  # identifies the content for caches: the blob id, or size and mtime on disk
    _open: Callable[[], Any] = field(repr=False, compare=False)

    def chunks(self) -> Iterator[bytes]:
        stream = self._open()
        try:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def read(self) -> bytes:
        return b"".join(self.chunks())


@dataclass(frozen=True)
class Source:
    """Where the desired state was read from."""

    root: Path  # directory holding provisioning.yaml (relative paths resolve against it)
    revision: str  # commit sha, or "worktree" / "<sha>+dirty" for a directory
    files: dict[str, bytes]
    limits: Limits = DEFAULT_LIMITS
    oversize: dict[str, int] = field(default_factory=dict)  # files not read: rel -> size
    tree: Any = field(default=None, compare=False, repr=False)  # the revision's git tree

    def repo_file(self, rel: str) -> RepoFile:
        """A file of the repository by its path relative to `root`: from the revision's tree
        when one was asked for, else from the directory. Raises RepoFileError for a path that
        leaves the repository (absolute, `..`, a symbolic link) or does not exist."""
        parts = relative_parts(rel)
        if parts is None:
            raise RepoFileError(rel, "must be a path inside the repository (relative, no '..')")
        clean = "/".join(parts)
        if self.tree is not None:
            return _tree_file(self.tree, clean, self.revision)
        return _disk_file(self.root, clean)


def relative_parts(rel: str) -> list[str] | None:
    """The components of a relative path that stays inside its base, else None."""
    if not rel or rel.startswith(("/", "~", "\\")) or "\\" in rel or "\0" in rel:
        return None
    parts = [p for p in PurePosixPath(rel).parts if p != "."]
    if not parts or any(p == ".." for p in parts):
        return None
    return parts


def _tree_file(tree: Any, rel: str, revision: str) -> RepoFile:
    try:
        item = tree / rel
    except KeyError:
        raise RepoFileError(rel, f"not in revision {revision[:12]} (a file read by a revision "
                            "comes from its tree: commit it)", missing=True) from None
    if item.type != "blob":
        raise RepoFileError(rel, f"is not a file in revision {revision[:12]}")
    if stat_mod.S_ISLNK(item.mode):
        raise RepoFileError(rel, "is a symbolic link; name the file itself")
    return RepoFile(rel, item.size, f"blob:{item.hexsha}", lambda: item.data_stream)


def _disk_file(root: Path, rel: str) -> RepoFile:
    path = root / rel
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise RepoFileError(rel, "no such file", missing=True) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise RepoFileError(rel, f"cannot be read: {exc}") from None
    if not real.is_relative_to(root.resolve()):
        raise RepoFileError(rel, "is a symbolic link that leaves the repository")
    try:
        info = real.stat()
    except OSError as exc:
        raise RepoFileError(rel, f"cannot be read: {exc.strerror}") from None
    if not stat_mod.S_ISREG(info.st_mode):
        raise RepoFileError(rel, "is not a regular file")
    return RepoFile(rel, info.st_size, f"disk:{real}:{info.st_size}:{info.st_mtime_ns}",
                    lambda: open(real, "rb"))  # noqa: SIM115 - closed by chunks()


def find_repo(path: str | None) -> Path:
    """--repo default: the current directory if it holds provisioning.yaml, else desired-state/."""
    if path:
        return Path(path)
    here = Path.cwd()
    if (here / "provisioning.yaml").exists():
        return here
    return here / "desired-state"


def read_source(repo: Path, rev: str | None = None,
                cancelled: Cancelled | None = None) -> Source:
    if not (repo / "provisioning.yaml").exists() and rev is None:
        raise ConfigError([Problem(str(repo), 0, "",
                                   "no provisioning.yaml here (is --repo right?)")])
    if rev is None:
        return _read_dir(repo, cancelled)
    return _read_git(repo, rev, cancelled)


def _read_dir(repo: Path, cancelled: Cancelled | None) -> Source:
    sizes = {rel: (repo / rel).stat().st_size for rel in _walk_dir(repo)}
    limits = _limits_from((repo / PROVISIONING).read_bytes()
                          if sizes.get(PROVISIONING, 0) <= DEFAULT_LIMITS.file_bytes else b"")
    files: dict[str, bytes] = {}
    oversize: dict[str, int] = {}
    for rel, size in sizes.items():
        check_cancelled(cancelled)
        cap = DEFAULT_LIMITS.file_bytes if rel == PROVISIONING else limits.file_bytes
        if size > cap:
            oversize[rel] = size
        else:
            files[rel] = (repo / rel).read_bytes()
    return Source(repo, _worktree_revision(repo), files, limits, oversize)


def _walk_dir(repo: Path) -> Iterator[str]:
    for pattern in LAYOUT:
        for path in sorted(repo.glob(pattern)):
            if path.is_file():
                yield path.relative_to(repo).as_posix()


def git_repo(repo: Path) -> Any:  # git.Repo, or None outside a repository
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


def _read_git(repo: Path, rev: str, cancelled: Cancelled | None) -> Source:
    import git
    from gitdb.exc import BadName, BadObject

    grepo = git_repo(repo)
    if grepo is None:
        raise ConfigError([Problem(str(repo), 0, "--rev", "not inside a git repository")])
    try:
        commit = grepo.commit(rev)
        if not isinstance(commit, git.Commit):
            raise ValueError(rev)
    # gitpython answers a malformed revision (HEAD:../x, a tree path) with many types
    except (BadName, BadObject, ValueError, KeyError, IndexError, TypeError,
            git.GitCommandError) as exc:
        raise ConfigError([Problem(str(repo), 0, "--rev",
                                   f"unknown revision {rev!r} (expected a commit: a branch, "
                                   "tag or sha)")]) from exc
    prefix = repo.resolve().relative_to(Path(grepo.working_tree_dir).resolve()).as_posix()
    tree = commit.tree if prefix == "." else _subtree(commit.tree, prefix)
    if tree is None:
        raise ConfigError([Problem(prefix, 0, "--rev", f"{prefix}/ does not exist at {rev}")])
    blobs: dict[str, Any] = {}
    item: Any
    for item in tree.traverse():
        if item.type == "blob":
            rel = item.path[len(prefix) + 1:] if prefix != "." else item.path
            if in_layout(rel) and not stat_mod.S_ISLNK(item.mode):
                blobs[rel] = item
    if PROVISIONING not in blobs:
        raise ConfigError([Problem(f"{prefix}/provisioning.yaml", 0, "--rev",
                                   f"missing at {rev}")])
    prov = blobs[PROVISIONING]
    limits = _limits_from(prov.data_stream.read()
                          if prov.size <= DEFAULT_LIMITS.file_bytes else b"")
    files: dict[str, bytes] = {}
    oversize: dict[str, int] = {}
    for rel, item in sorted(blobs.items()):
        check_cancelled(cancelled)
        cap = DEFAULT_LIMITS.file_bytes if rel == PROVISIONING else limits.file_bytes
        if item.size > cap:
            oversize[rel] = item.size
        else:
            files[rel] = item.data_stream.read()
    return Source(repo, commit.hexsha, files, limits, oversize, tree)


def _subtree(tree: Any, prefix: str) -> Any:
    try:
        return tree / prefix
    except KeyError:
        return None


def _limits_from(provisioning: bytes) -> Limits:
    """policy.load_limits of provisioning.yaml when it reads well, else the defaults (the
    schema reports a bad value)."""
    try:
        data: Any = (yaml.load(provisioning.decode("utf-8"), Loader=_Loader)
                     if provisioning else None)
        given = data["policy"]["load_limits"]
        values = {k: given[k] for k in ("file_bytes", "nodes", "alias_nodes", "depth")
                  if k in given}
        if all(type(v) is int and v > 0 for v in values.values()):
            return Limits(**values)
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        pass
    return DEFAULT_LIMITS


def check_cancelled(cancelled: Cancelled | None) -> None:
    if cancelled is not None and cancelled():
        raise Interrupted("stopped while loading the desired state")


# --- YAML with lines ------------------------------------------------------------------------
#
# The file is read as a stream of parser events and built directly into plain data (no node
# graph): each value's line is kept, every limit is counted as the file is read, the stop flag
# is polled, and an alias costs what it expands to.


def oversize_problem(file: str, size: int, limits: Limits) -> Problem:
    if file == PROVISIONING:  # read before the limits it sets: always the default
        cap, why = DEFAULT_LIMITS.file_bytes, "the fixed limit of provisioning.yaml"
    else:
        cap, why = limits.file_bytes, limits.describe("file_bytes")
    return Problem(file, 0, "", f"file is {size} bytes; at most {cap} are read ({why}); "
                   "split it (devices/ and assignments/ may hold many files)")


def parse_yaml(file: str, data: bytes, limits: Limits = DEFAULT_LIMITS,
               cancelled: Cancelled | None = None) -> Doc:
    """Parse one file; raise ConfigError naming file:line on a YAML error, a duplicate key or
    a file over one of `limits`."""
    if len(data) > limits.file_bytes:
        raise ConfigError([oversize_problem(file, len(data), limits)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(file, 1, "", f"not UTF-8: {exc}")]) from exc
    builder = _Builder(file, text, limits, cancelled)
    try:
        value = builder.document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, "", f"invalid YAML: {exc}")]) from exc
    finally:
        builder.close()
    if builder.problems:
        raise ConfigError(builder.problems)
    return Doc(file, value, builder.lines or {(): 1})


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


class _Limit(Exception):
    pass


class _Builder:
    """Plain data and lines from one file's parser events, counting every limit."""

    CHECK_EVERY = 20_000

    def __init__(self, file: str, text: str, limits: Limits, cancelled: Cancelled | None):
        self.file = file
        self.limits = limits
        self.cancelled = cancelled
        self.loader = _Loader(text)
        self.constructor = yaml.constructor.SafeConstructor()
        self.lines: dict[Path_, int] = {}
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.events = 0
        self.nodes = 0
        self.alias_nodes = 0

    def close(self) -> None:
        self.loader.dispose()

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # document start
        try:
            value = self.node((), 0)[0]
        except _Limit:
            return None
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            extra = loader.get_event()
            self.problems.append(Problem(self.file, extra.start_mark.line + 1, "",
                                         "invalid YAML: expected a single document"))
        return value

    def next(self) -> Any:
        self.events += 1
        if self.events % self.CHECK_EVERY == 0:
            check_cancelled(self.cancelled)
        return self.loader.get_event()

    def fail(self, event: Any, message: str) -> None:
        self.problems.append(Problem(self.file, event.start_mark.line + 1, "", message))
        raise _Limit

    def count(self, event: Any, nodes: int, depth: int, alias: bool) -> None:
        limits = self.limits
        self.nodes += nodes
        if alias:
            self.alias_nodes += nodes
            if self.alias_nodes > limits.alias_nodes:
                self.fail(event, f"YAML aliases expand to more than {limits.alias_nodes} "
                          f"values ({limits.describe('alias_nodes')}); write the values out "
                          "or move shared ones into defaults.yaml or a profile")
        if self.nodes > limits.nodes:
            self.fail(event, f"more than {limits.nodes} values in one file "
                      f"({limits.describe('nodes')}); split the file")
        if depth > limits.depth:
            self.fail(event, f"nested deeper than {limits.depth} levels "
                      f"({limits.describe('depth')})")

    def node(self, path: Path_, depth: int) -> tuple[Any, int]:
        """The next value (and how many values it holds), with the lines under `path`."""
        event = self.next()
        self.lines[path] = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            found = self.anchors.get(event.anchor)
            if found is None:
                self.problems.append(Problem(self.file, event.start_mark.line + 1, "",
                                             f"invalid YAML: unknown alias *{event.anchor}"))
                return None, 1
            self.count(event, found[1], depth, alias=True)
            return copy.deepcopy(found[0]), found[1]  # its own copy, as if written out
        self.count(event, 1, depth, alias=False)
        size = 1
        value: Any
        if isinstance(event, yaml.ScalarEvent):
            value = self.scalar(event)
        elif isinstance(event, yaml.SequenceStartEvent):
            value = []
            while not self.loader.check_event(yaml.SequenceEndEvent):
                item, n = self.node((*path, len(value)), depth + 1)
                value.append(item)
                size += n
            self.next()
        else:  # a mapping
            value = {}
            while not self.loader.check_event(yaml.MappingEndEvent):
                size += self.entry(value, path, depth)
            self.next()
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, size)
        return value, size

    def entry(self, out: dict[Any, Any], path: Path_, depth: int) -> int:
        """One key and value of a mapping into `out`; returns the values it holds."""
        key_event = self.next()
        line = key_event.start_mark.line + 1
        key: Any = None
        problem = ""
        if not isinstance(key_event, yaml.ScalarEvent):
            self.skip(key_event)
            problem = "mapping keys must be plain values"
        elif self.tag(key_event) == _MERGE:
            problem = "YAML merge keys (<<) are not supported"
        else:
            key = self.scalar(key_event)
            if not isinstance(key, str | int | bool | float) and key is not None:
                problem = "mapping keys must be plain values"
            elif key in out:
                self.problems.append(Problem(self.file, line, str(key), "duplicate key"))
                self.skip(self.next())
                return 0
        if problem:
            self.problems.append(Problem(self.file, line, "", problem))
            self.skip(self.next())
            return 0
        child = (*path, key)
        out[key], size = self.node(child, depth + 1)
        self.lines[child] = line
        return size

    def skip(self, event: Any) -> None:
        """Consume the rest of a value whose start `event` was read (it is not kept)."""
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            level = 1
            while level:
                inner = self.next()
                if isinstance(inner, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                    level += 1
                elif isinstance(inner, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                    level -= 1

    def tag(self, event: Any) -> str:
        if event.tag is None or event.tag == "!":
            return str(self.loader.resolve(yaml.ScalarNode, event.value, event.implicit))
        return str(event.tag)

    def scalar(self, event: Any) -> Any:
        tag = self.tag(event)
        if tag == _STR:
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.constructor.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            self.problems.append(Problem(self.file, event.start_mark.line + 1, "",
                                         f"invalid YAML: {exc.problem}"))
            return None
        finally:
            self.constructor.constructed_objects.clear()
