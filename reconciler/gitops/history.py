"""History: the commits that changed what one phone gets, and when each reached a target.

A commit counts when the phone's rendered files differ from the previous commit's — so a change
to a profile, a customer or the defaults that reached the phone through the layers counts, and
a change elsewhere does not. Files are rendered with secrets redacted (URL tokens real and
shortened when the fleet secret is available, else labelled placeholders, as in compare.py);
"when applied" comes from the git notes the reconciler writes (refs/notes/provctl) on the
applied commit or a later one. `history_json` gives the same as structured data.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.load import git_repo, read_source
from reconciler.desired.validate import load_state
from reconciler.gitops.compare import show_tokens
from reconciler.gitops.repo import read_notes
from reconciler.render.addressing import shorten_tokens
from reconciler.render.renderer import Renderer


@dataclass
class Change:
    commit: str
    author: str
    date: str
    message: str
    what: str  # "added", "changed", "removed", "invalid"
    diff: list[str] = field(default_factory=list)  # redacted, a summary of changed lines
    applied: list[str] = field(default_factory=list)  # note lines saying where and when
    files: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # name -> (op, line)


@dataclass
class Fetch:
    """The phone received a content new to it, as seen in a target's access log."""

    date: str  # ISO 8601 UTC
    revision: str | None  # None: published before receipts carried digests
    sha256: str | None
    target: str
    path: str  # token shortened
    status: int
    ip: str
    phone: str  # what its User-Agent says: "Yealink T46U 108.86.0.95"
    what: str = "fetched"


def _phone_files(repo: Path, rev: str, mac: str) -> dict[str, str] | None:
    """name -> redacted content of the phone's files at a revision; None when absent."""
    state = load_state(read_source(repo, rev), redacting=True)
    if mac not in state.devices:
        return None
    renderer = Renderer(state)
    show_tokens(renderer)
    device = renderer.resolved()[mac]
    target = renderer.primary_target(device)
    if target is None:
        return {}
    return {art.path.rpartition("/")[2]: art.content().decode("utf-8", "replace")
            for art in renderer.render_device(device, target) if art.source is None}


def _changed_lines(before: dict[str, str],
                   after: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """name -> the lines removed ("-") and added ("+"), tokens shortened."""
    out = {}
    for name in sorted(set(before) | set(after)):
        a = before.get(name, "").splitlines()
        b = after.get(name, "").splitlines()
        lines = [(line[0], shorten_tokens(line[1:]))
                 for line in difflib.unified_diff(a, b, lineterm="", n=0)
                 if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        if lines:
            out[name] = lines
    return out


def _summary(files: dict[str, list[tuple[str, str]]], limit: int = 12) -> list[str]:
    out = []
    for name, lines in files.items():
        out.append(f"{name}:")
        out += [f"  {op}{line}" for op, line in lines[:limit]]
        if len(lines) > limit:
            out.append(f"  … {len(lines) - limit} more line(s)")
    return out


def history(repo: Path, mac: str, max_count: int = 100) -> list[Change]:
    grepo = git_repo(repo)
    if grepo is None:
        raise ConfigError([Problem(str(repo), 0, "", "history needs a git repository")])
    prefix = repo.resolve().relative_to(Path(grepo.working_tree_dir).resolve()).as_posix()
    paths = None if prefix == "." else prefix
    commits = list(grepo.iter_commits("HEAD", paths=paths, max_count=max_count))[::-1]
    notes = read_notes(repo)
    order = {c.hexsha: i for i, c in enumerate(commits)}
    changes: list[Change] = []
    previous: dict[str, str] | None = None
    for commit in commits:
        meta = dict(commit=commit.hexsha, author=f"{commit.author.name} <{commit.author.email}>",
                    date=commit.committed_datetime.isoformat(),
                    message=commit.message.strip().splitlines()[0] if commit.message else "")
        try:
            files = _phone_files(repo, commit.hexsha, mac)
        except ConfigError:
            changes.append(Change(**meta, what="invalid"))
            continue
        if files == previous:
            continue
        what = ("added" if previous is None and files is not None else
                "removed" if files is None else "changed")
        changed = _changed_lines(previous or {}, files or {})
        changes.append(Change(**meta, what=what, diff=_summary(changed), files=changed))
        previous = files
    # When applied: the note on the commit itself, or on the first later commit that has one.
    for change in changes:
        if change.what == "invalid":
            continue
        start = order[change.commit]
        for later in commits[start:]:
            if later.hexsha in notes:
                suffix = "" if later.hexsha == change.commit else f" (with {later.hexsha[:10]})"
                change.applied = [f"{line}{suffix}" for line in notes[later.hexsha]]
                break
    return changes


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def history_text(mac: str, changes: list[Change], fetches: Sequence[Fetch] = ()) -> str:
    """Commits (with where and when they were applied) and fetches, in time order."""
    if not changes and not fetches:
        return f"no commit changed what {mac} gets\n"
    out = []
    events: list[Change | Fetch] = sorted([*changes, *fetches], key=lambda e: _when(e.date))
    for c in events:
        if isinstance(c, Fetch):
            sha = f" (sha {c.sha256[:12]}…)" if c.sha256 else ""
            out.append(f"fetched rev {(c.revision or '?')[:10]}{sha} at {c.date} from {c.ip}, "
                       f"{c.phone}  ({c.target}: {c.path}, {c.status})")
            continue
        out.append(f"{c.commit[:10]}  {c.date}  {c.author}")
        out.append(f"    {c.message}")
        if c.what == "invalid":
            out.append("    (this revision did not validate; nothing of it was applied)")
            continue
        out.append(f"    {c.what}:")
        out += [f"      {line}" for line in c.diff]
        if c.applied:
            out += [f"    {line}" for line in c.applied]
        else:
            out.append("    not applied yet")
    return "\n".join(out) + "\n"


_NOTE = re.compile(r"^applied to (?P<target>\S+) at (?P<at>\S+) by (?P<by>\S+) \(receipt "
                   r"(?P<receipt>\w+), (?P<changes>\d+) change\(s\), plan (?P<plan>\w+)\)"
                   r"(?: \(with (?P<with>\w+)\))?$")


def parse_note(line: str) -> dict[str, Any]:
    """One deployment note line as data; unknown shapes keep their text only."""
    m = _NOTE.match(line)
    if m is None:
        return {"text": line}
    out: dict[str, Any] = {k: v for k, v in m.groupdict().items() if v is not None}
    out["changes"] = int(out["changes"])
    out["text"] = line
    return out


def history_json(mac: str, changes: list[Change], fetches: Sequence[Fetch] = ()
                 ) -> dict[str, Any]:
    """`history --format json`: per commit, the changed lines per file and the applies; the
    phone's fetches, as last observed in the access logs."""
    return {
        "format": "provctl-history/1",
        "mac": mac,
        "commits": [{
            "commit": c.commit, "author": c.author, "date": c.date, "message": c.message,
            "what": c.what,
            "files": [{"name": name, "lines": [{"op": op, "line": line} for op, line in lines]}
                      for name, lines in c.files.items()],
            "applied": [parse_note(line) for line in c.applied],
        } for c in changes],
        "fetches": [asdict(f) for f in fetches],
    }
