"""Compare two revisions of the desired state: what each phone would get differently.

`provctl plan --base REV --head REV` — made for pull requests: no target is contacted, secrets
are rendered redacted (so CI needs none, and none can leak into a PR comment), and the head's
validation errors are part of the result rather than a crash. With the fleet secret available
the URL token directories are the real ones (shown shortened); without it they are labelled
placeholders (`{token:MAC}`), never made-up tokens that look real.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.load import read_source
from reconciler.desired.secrets import MissingSecret, Redaction, Secrets
from reconciler.desired.validate import DesiredState, load_state
from reconciler.render.addressing import (
    Addressing,
    PlaceholderAddressing,
    shorten_tokens,
    show_path,
)
from reconciler.render.renderer import Artifact, Renderer


@dataclass(frozen=True, order=True)
class FileDiff:
    customer: str  # "(pool)" for phones not allocated to a customer
    device: str
    target: str
    path: str
    status: Literal["added", "changed", "removed"]
    diff: str = ""  # unified diff of the redacted content, "" for binaries


@dataclass(frozen=True, order=True)
class RedirectDiff:
    mac: str
    before: str
    after: str


@dataclass
class Comparison:
    base: str
    head: str
    files: list[FileDiff] = field(default_factory=list)
    redirects: list[RedirectDiff] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # head does not validate
    base_problems: list[Problem] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # what apply would refuse (safety limits)
    real_tokens: bool = False  # token directories are real (the fleet secret was available)

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 1
        return 2 if self.files or self.redirects else 0


@dataclass
class _Rendered:
    state: DesiredState
    files: dict[tuple[str, str], tuple[Artifact, str, str]]  # (target, path) -> art, mac, customer
    real_tokens: bool = False


def fleet_secret(state: DesiredState) -> str | None:
    """The real fleet secret when it resolves here (CI with the secret), else None."""
    prov = state.provisioning.value
    secrets = Secrets(state.root, prov.secrets.file, fleet_secret=prov.fleet.secret,
                      age_file=prov.secrets.age_file)
    try:
        return secrets.resolve(prov.fleet.secret)
    except MissingSecret:
        return None


def show_tokens(renderer: Renderer) -> bool:
    """Address with the real fleet secret if there is one, else with labelled placeholders;
    True when the tokens are real. Everything else stays redacted."""
    prov = renderer.state.provisioning.value
    secret = fleet_secret(renderer.state)
    renderer.addressing = (Addressing(prov, secret) if secret is not None
                           else PlaceholderAddressing(prov, ""))
    return secret is not None


def _render(repo: Path, rev: str | None, redaction: Redaction,
            allow_unserved: bool = False) -> _Rendered:
    state = load_state(read_source(repo, rev), redacting=True, redaction=redaction,
                       allow_unserved=allow_unserved)
    renderer = Renderer(state)
    real = show_tokens(renderer)
    files: dict[tuple[str, str], tuple[Artifact, str, str]] = {}
    problems: list[Problem] = []
    for target in state.provisioning.value.targets:
        try:
            rendered = renderer.render_target(target)
        except ConfigError as exc:
            problems += exc.problems
            continue
        for path, art in rendered.items():
            mac = art.device or ""
            customer = "(pool)"
            if mac:
                customer = renderer.resolved()[mac].customer or "(pool)"
            files[(target, path)] = (art, mac, customer)
    if problems:
        raise ConfigError(problems)
    return _Rendered(state, files, real)


def _text(art: Artifact) -> list[str] | None:
    if art.source is not None:
        return None
    try:
        return art.content().decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _redirects(state: DesiredState) -> dict[str, str]:
    out = {}
    for mac, located in state.devices.items():
        r = located.value.redirect
        if r is True:
            out[mac] = "register"
        elif r is not False:
            out[mac] = f"register until {r.until}" if r.until else "register"
            if r.steal:
                out[mac] += " (steal)"
    return out


def compare(repo: Path, base: str, head: str | None, *,
            allow_unserved: bool = False) -> Comparison:
    # Both revisions must exist: an unknown base (a shallow CI clone) is an error, never an
    # empty fleet that would show every phone as added.
    read_source(repo, base)
    if head is not None:
        read_source(repo, head)
    result = Comparison(base, head or "worktree")
    # One redaction for both sides, the base first: without the fleet secret a secret whose
    # value differs shows as `<secret:NAME changed>` on the head's side.
    redaction = Redaction()
    try:
        before = _render(repo, base, redaction, allow_unserved)
        old_files = before.files
        old_redirects = _redirects(before.state)
    except ConfigError as exc:
        result.base_problems = exc.problems
        old_files, old_redirects = {}, {}
    try:
        after = _render(repo, head, redaction, allow_unserved)
    except ConfigError as exc:
        result.problems = exc.problems
        result.base_problems = []
        return result
    result.real_tokens = after.real_tokens
    new_files = after.files
    for key in sorted(set(old_files) | set(new_files)):
        target, path = key
        old, new = old_files.get(key), new_files.get(key)
        if old is not None and new is not None and old[0].sha256 == new[0].sha256:
            continue
        art, mac, customer = new if new is not None else old  # type: ignore[misc]
        status: Literal["added", "changed", "removed"] = (
            "added" if old is None else "removed" if new is None else "changed")
        a = _text(old[0]) if old is not None else []
        b = _text(new[0]) if new is not None else []
        diff = ""
        if a is not None and b is not None:
            shown = show_path(path)
            diff = shorten_tokens("".join(difflib.unified_diff(a, b, f"a/{shown}", f"b/{shown}",
                                                              n=2)))
        result.files.append(FileDiff(customer, mac, target, path, status, diff))
    new_redirects = _redirects(after.state)
    for mac in sorted(set(old_redirects) | set(new_redirects)):
        was, now = old_redirects.get(mac, "none"), new_redirects.get(mac, "none")
        if was != now:
            result.redirects.append(RedirectDiff(mac, was, now))
    result.files.sort()
    result.refusals = _refusals(after.state, old_files, result.files)
    return result


def _refusals(head: DesiredState, old_files: Mapping[tuple[str, str], object],
              files: list[FileDiff]) -> list[str]:
    """What `apply` of the head would refuse: more deletions than policy.max_delete_percent."""
    policy = head.provisioning.value.policy
    if not policy.prune:
        return []
    out = []
    for target in sorted({t for t, _ in old_files}):
        managed = sum(1 for t, _ in old_files if t == target)
        removed = sum(1 for f in files if f.target == target and f.status == "removed")
        percent = 100.0 * removed / max(managed, 1)
        if removed and percent > policy.max_delete_percent:
            out.append(f"target {target}: would delete {removed} of {managed} files "
                       f"({percent:.1f}%), above policy.max_delete_percent "
                       f"({policy.max_delete_percent:g}%): apply needs --force")
    return out
