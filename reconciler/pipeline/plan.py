"""Diff and plan: (rendered artifacts, observed snapshot) -> Plan. Pure: no I/O, no clock.

A plan is a small closed set of frozen changes in a stable order — put file, delete file (and
the redirect changes of redirect/plan.py) — with a checksum over them, so `apply --plan FILE`
can refuse a plan that no longer matches a fresh one. Safety rules are evaluated here and
recorded as refusals; the executor will not apply a plan that has any unless forced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

from reconciler.render.addressing import show_path
from reconciler.targets.base import FileStat
from reconciler.targets.manifest import Manifest

FORMAT = "provctl-plan/1"


class DesiredFile(Protocol):
    """What the planner reads of a desired file: Desired, or the renderer's Artifact as is."""

    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def device(self) -> str | None: ...
    @property
    def firmware(self) -> str | None: ...


@dataclass(frozen=True)
class Desired:
    """What the planner needs of an artifact: its digest, not its bytes."""

    sha256: str
    size: int
    device: str | None = None
    firmware: str | None = None


@dataclass(frozen=True)
class Observed:
    """One target as observed: its manifest and, when scanned, what is really there."""

    target: str
    manifest: Manifest = field(default_factory=Manifest)
    present: Mapping[str, FileStat] | None = None  # scan of managed directories
    verified: Mapping[str, str | None] | None = None  # --verify: path -> sha256 read back
    error: str | None = None  # the target could not be observed
    pending: frozenset[str] = frozenset()  # journal of an interrupted apply: ours, content unknown
    # False: `present` covers only where files are to be created (the manifest is trusted for
    # the rest, policy.drift_scan_every); drift is judged on full scans only.
    scanned: bool = True
    journal: tuple[str, ...] = ()  # journal records folded into `manifest` (apply.py)


@dataclass(frozen=True, order=True)
class FileChange:
    target: str
    path: str
    action: Literal["put", "delete"]
    # withdraw: a bootstrap file whose phones' onboarding windows closed (docs/zero-touch.md)
    reason: Literal["create", "update", "heal", "prune", "withdraw"]
    sha256: str
    size: int
    device: str | None = None


_CHANGE_FIELDS = tuple(f.name for f in fields(FileChange))


@dataclass(frozen=True, order=True)
class Drift:
    target: str
    path: str
    kind: Literal["missing", "modified", "replaced"]
    detail: str


@dataclass(frozen=True, order=True)
class Orphan:
    """A file provctl published that is no longer desired, kept because pruning is off."""

    target: str
    path: str
    size: int


@dataclass(frozen=True)
class TargetSummary:
    target: str
    managed: int  # files in the manifest before the run
    unchanged: int
    error: str | None = None


@dataclass(frozen=True)
class Plan:
    revision: str
    changes: tuple[FileChange, ...] = ()
    redirects: tuple[Any, ...] = ()  # redirect.plan.RedirectChange
    drift: tuple[Drift, ...] = ()
    targets: tuple[TargetSummary, ...] = ()
    refusals: tuple[str, ...] = ()  # safety rules that stop apply unless --force
    orphans: tuple[Orphan, ...] = ()  # not desired, not deleted (prune off): shown, not changed
    held: tuple[FileChange, ...] = ()  # left out: a rollout holds them back (waves.py)
    rollouts: tuple[Any, ...] = ()  # waves.Report: each rollout, its wave and its gate

    @property
    def empty(self) -> bool:
        return not self.changes and not self.actionable_redirects

    @property
    def actionable_redirects(self) -> tuple[Any, ...]:
        return tuple(r for r in self.redirects if r.action != "conflict")

    def checksum(self) -> str:
        body = {
            # the fields of each change, as asdict gives them (it deep-copies: 150,000 changes)
            "changes": [{f: getattr(c, f) for f in _CHANGE_FIELDS} for c in self.changes],
            "redirects": [asdict(r) for r in self.actionable_redirects],
        }
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(data).hexdigest()

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "heal": 0, "prune": 0, "withdraw": 0}
        for change in self.changes:
            out[change.reason] += 1
        for r in self.redirects:
            out[r.action] = out.get(r.action, 0) + 1
        out["drift"] = len(self.drift)
        if self.orphans:
            out["orphan"] = len(self.orphans)
        if self.held:
            out["held"] = len(self.held)
        out["unchanged"] = sum(t.unchanged for t in self.targets)
        return out


def diff_target(
    desired: Mapping[str, DesiredFile],
    observed: Observed,
    *,
    prune: bool,
    heal: bool,
    max_delete_percent: float,
    force: bool,
    downgrade: Callable[[str, str, str], str | None] = lambda device, old, new: None,
    bootstrap: Callable[[str], bool] = lambda path: False,
) -> tuple[list[FileChange], list[Drift], TargetSummary, list[str]]:
    """Changes for one target: put what differs from the manifest, delete what the manifest
    lists but is no longer desired. Files the reconciler did not publish are never touched.

    A bootstrap file (`bootstrap(path)`) no longer desired is withdrawn, pruning on or off:
    its phones' onboarding windows closed, and it must not stay where anyone on the customer's
    network can fetch it. Withdrawals are not counted against max_delete_percent (they are
    not phones' files going away), nor in the files it counts them against."""
    name = observed.target
    manifest = observed.manifest.files
    changes: list[FileChange] = []
    drift: list[Drift] = []
    refusals: list[str] = []
    unchanged = 0
    pending = observed.pending
    # drift is seen only by a scan or a read-back: without one, a file equal to the manifest
    # is unchanged (150,000 of them on a run that trusts the manifest)
    drift_seen = observed.verified is not None or (observed.present is not None
                                                    and observed.scanned)
    for path, want in desired.items():
        have = manifest.get(path)
        if path in pending:
            # An interrupted apply may or may not have written it: write it again.
            changes.append(FileChange(name, path, "put", "update" if have else "create",
                                      want.sha256, want.size, want.device))
            continue
        if have is None:
            if observed.present is not None and path in observed.present:
                # Someone else's file sits where ours goes: never overwrite it silently.
                refusals.append(f"target {name}: {_show(path)} exists but was not published "
                                "by provctl; remove it or use --force to replace it")
            changes.append(FileChange(name, path, "put", "create", want.sha256, want.size,
                                      want.device))
            continue
        if have.sha256 != want.sha256:
            if have.firmware and want.firmware and want.device:
                why = downgrade(want.device, have.firmware, want.firmware)
                if why:
                    refusals.append(f"target {name}: {why}")
            changes.append(FileChange(name, path, "put", "update", want.sha256, want.size,
                                      want.device))
            continue
        found = _drift(name, path, have.size, have.mtime, have.sha256, observed) \
            if drift_seen else None
        if found is None:
            unchanged += 1
            continue
        drift.append(found)
        if heal:
            changes.append(FileChange(name, path, "put", "heal", want.sha256, want.size,
                                      want.device))
        else:
            unchanged += 1
    gone = [(path, entry) for path, entry in manifest.items() if path not in desired]
    changes += [FileChange(name, path, "delete", "withdraw", entry.sha256, entry.size)
                for path, entry in gone if bootstrap(path)]
    changes += [FileChange(name, path, "delete", "withdraw", "", 0) for path in sorted(pending)
                if path not in desired and path not in manifest and bootstrap(path)]
    if prune:
        deletes = [FileChange(name, path, "delete", "prune", entry.sha256, entry.size)
                   for path, entry in gone if not bootstrap(path)]
        deletes += [FileChange(name, path, "delete", "prune", "", 0) for path in sorted(pending)
                    if path not in desired and path not in manifest and not bootstrap(path)]
        if deletes and not force:  # counted only when there are deletes: 150,000 paths
            managed = len({p for p in set(manifest) | pending if not bootstrap(p)})
            percent = 100.0 * len(deletes) / max(managed, 1)
            if percent > max_delete_percent:
                refusals.append(
                    f"target {name}: would delete {len(deletes)} of {managed} managed "
                    f"files ({percent:.1f}%), above policy.max_delete_percent "
                    f"({max_delete_percent:g}%); use --force to allow it")
        changes += deletes
    summary = TargetSummary(name, len(manifest), unchanged)
    return sorted(changes), sorted(drift), summary, refusals


def orphans(desired: Mapping[str, DesiredFile], observed: Observed,
            bootstrap: Callable[[str], bool] = lambda path: False) -> list[Orphan]:
    """What pruning would delete on this target: files of the manifest (or the journal of an
    interrupted run) that are no longer desired. With pruning off they stay, and are shown.
    Bootstrap files are withdrawn either way (diff_target), so they are no orphans."""
    manifest = observed.manifest.files
    found = [Orphan(observed.target, path, entry.size) for path, entry in manifest.items()
             if path not in desired and not bootstrap(path)]
    found += [Orphan(observed.target, path, 0) for path in observed.pending
              if path not in desired and path not in manifest and not bootstrap(path)]
    return sorted(found)


def published(desired: Mapping[str, DesiredFile], observed: Observed,
              changes: Iterable[FileChange], drift: Iterable[Drift],
              done: Collection[str]) -> set[str]:
    """The desired paths of one target that phones can fetch as desired, after the put phase:
    put by this run (`done`), or already in the manifest with the desired digest while no change
    was planned for them, nothing of an interrupted run is pending on them, and they were not
    seen missing or modified. Nothing, when the target could not be observed."""
    if observed.error is not None:
        return set()
    planned = {c.path for c in changes if c.target == observed.target and c.action == "put"}
    drifted = {d.path for d in drift if d.target == observed.target and d.kind != "replaced"}
    unsure = planned | drifted | observed.pending
    manifest = observed.manifest.files
    ok = {path for path, want in desired.items() if path not in unsure
          and (have := manifest.get(path)) is not None and have.sha256 == want.sha256}
    return ok | (set(done) & set(desired))


def _drift(target: str, path: str, size: int, mtime: float, sha256: str,
           observed: Observed) -> Drift | None:
    if observed.verified is not None and path in observed.verified:
        got = observed.verified[path]
        if got is None:
            return Drift(target, path, "missing", "file is gone from the host")
        if got != sha256:
            return Drift(target, path, "modified", f"content differs (sha256 {got[:12]}…)")
        return None
    if observed.present is None or not observed.scanned:
        return None
    stat = observed.present.get(path)
    if stat is None:
        return Drift(target, path, "missing", "file is gone from the host")
    if stat.size != size:
        return Drift(target, path, "modified", f"size {stat.size}, published {size}")
    if mtime and abs(stat.mtime - mtime) > 1.0:
        return Drift(target, path, "replaced", "modification time differs from the publish")
    return None


def _show(path: str) -> str:
    return show_path(path)
