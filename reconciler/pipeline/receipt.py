"""Record: what a run did, for operators and auditors. Nothing secret is ever written here.

- `<state>/receipts.jsonl`: one JSON line per apply (revision, trigger, plan checksum, per-item
  results, start and end), and a copy in each target's meta_root under `receipts/`.
- `<state>/status.json`: per target, the last attempted and the last applied revision.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconciler.core.errors import ProvctlError
from reconciler.core.files import atomic_write
from reconciler.pipeline.apply import TargetResult
from reconciler.pipeline.plan import Plan
from reconciler.redirect.plan import RedirectChange
from reconciler.redirect.stage import RedirectResult, redact_url
from reconciler.render.addressing import show_path
from reconciler.targets.base import Put, Target
from reconciler.targets.meta import RECEIPTS


def default_state_dir(repo: Path) -> Path:
    env = os.environ.get("PROVCTL_STATE_DIR")
    return Path(env) if env else repo / ".provctl"


def trigger() -> str:
    """Who or what started the run."""
    who = os.environ.get("PROVCTL_TRIGGER") or os.environ.get("USER") or "unknown"
    return f"{who}@{socket.gethostname()}"


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# --- receipts: one per apply; the JSON is the external contract of docs/json.md -------------


def _summary(result: TargetResult, unchanged: int) -> dict[str, int]:
    out = {"put": 0, "delete": 0, "failed": 0, "unchanged": unchanged}
    for item in result.items:
        out["failed" if item.error else item.action] += 1
    return out


@dataclass(frozen=True)
class ItemLine:
    target: str
    path: str  # token shortened
    action: str
    reason: str
    error: str | None
    # what a put published: the timeline that says which content, and so which revision, a
    # phone fetched at a given moment (reconciler/uptake)
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class TargetLine:
    error: str | None
    items: tuple[ItemLine, ...]  # the changed paths only (done or failed), never unchanged ones
    lock_taken_over: str | None = None  # the stale lock this run took over, and why
    summary: Mapping[str, int] | None = None  # {put, delete, failed, unchanged}


@dataclass(frozen=True)
class RedirectLine:
    action: str
    mac: str
    service: str
    cause: str
    url: str | None  # tokens shortened
    error: str | None


@dataclass(frozen=True)
class Receipt:
    id: str
    revision: str
    trigger: str
    plan_checksum: str
    started: str
    ended: str
    targets: Mapping[str, TargetLine]
    redirects: tuple[RedirectLine, ...]
    rollouts: tuple[Mapping[str, Any], ...] = ()  # each rollout's wave and gate (waves.Report)
    # a narrowed run (--device/--customer): {"devices": [...], "customers": [...]}
    only: Mapping[str, list[str]] | None = None
    summary: Mapping[str, int] | None = None  # the plan's counts (its `summary`)

    @classmethod
    def of(cls, plan: Plan, results: Mapping[str, TargetResult], redirect: RedirectResult | None,
           *, started: float, ended: float, revision: str,
           takeovers: Mapping[str, str] | None = None) -> Receipt:
        def line(c: RedirectChange, error: str | None = None) -> RedirectLine:
            return RedirectLine(c.action, c.mac, c.service, c.cause, redact_url(c.url), error)

        content = {(c.target, c.path): (c.sha256, c.size)
                   for c in plan.changes if c.action == "put"}
        unchanged = {t.target: t.unchanged for t in plan.targets}
        redirects: list[RedirectLine] = []
        if redirect is not None:
            redirects += [line(c) for c in redirect.done]
            redirects += [line(c, error) for c, error in redirect.failed]
            redirects += [line(c, why) for c, why in redirect.conflicts]
        return cls(
            id=uuid.uuid4().hex[:12], revision=revision, trigger=trigger(),
            plan_checksum=plan.checksum(), started=iso(started), ended=iso(ended),
            targets={
                name: TargetLine(
                    None if r.error is None else str(r.error),
                    tuple(ItemLine(i.target, show_path(i.path), i.action, i.reason, i.error,
                                   *content.get((i.target, i.path), (None, None)))
                          for i in r.items),
                    (takeovers or {}).get(name), _summary(r, unchanged.get(name, 0)))
                for name, r in sorted(results.items())
            },
            redirects=tuple(redirects),
            rollouts=tuple(r.to_json() for r in plan.rollouts),
            summary=plan.counts(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of docs/json.md (lists, not tuples). Built field by field: asdict
        deep-copies, seconds for the 150,000 items of a first apply."""
        body: dict[str, Any] = {
            "id": self.id, "revision": self.revision, "trigger": self.trigger,
            "plan_checksum": self.plan_checksum, "started": self.started, "ended": self.ended,
            "targets": {}, "redirects": [asdict(r) for r in self.redirects],
            "rollouts": [dict(r) for r in self.rollouts],
        }
        for name, t in self.targets.items():
            line: dict[str, Any] = {"error": t.error, "items": [
                {"target": i.target, "path": i.path, "action": i.action, "reason": i.reason,
                 "error": i.error, "sha256": i.sha256, "size": i.size} for i in t.items]}
            if t.summary is not None:
                line["summary"] = dict(t.summary)
            if t.lock_taken_over is not None:  # only a run that took a stale lock over
                line["lock_taken_over"] = t.lock_taken_over
            body["targets"][name] = line
        if self.summary is not None:
            body["summary"] = dict(self.summary)
        if self.only is not None:  # receipts of whole runs keep their shape
            body["only"] = {k: list(v) for k, v in self.only.items()}
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def write_receipt(state_dir: Path, receipt: Receipt, targets: Mapping[str, Target]) -> None:
    line = receipt.to_json()
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "receipts.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    name = f"{RECEIPTS}/{receipt.started.replace(':', '')}-{receipt.id}.json"
    for target in targets.values():
        # A receipt that cannot be copied to a target must not fail the run that produced it.
        with contextlib.suppress(ProvctlError):
            target.meta.execute([Put(name, (line + "\n").encode())])


def read_status(state_dir: Path) -> dict[str, Any]:
    try:
        status: dict[str, Any] = json.loads((state_dir / "status.json").read_text())
        return status
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




def last_scan(state_dir: Path, target: str) -> tuple[float, int] | None:
    """When the target was last scanned in full (epoch seconds) and how many files drifted."""
    entry = read_status(state_dir).get(target, {}).get("last_scan") or {}
    at, drift = entry.get("ts"), entry.get("drift", 0)
    if not isinstance(at, int | float) or not isinstance(drift, int):
        return None
    return float(at), drift


def record_scan(state_dir: Path, target: str, now: float, drift: int) -> None:
    """A full scan ran: the next is due policy.drift_scan_every later, or at once if it found
    drift (so drift stays visible on every run until it is gone)."""
    status = read_status(state_dir)
    status.setdefault(target, {})["last_scan"] = {"at": iso(now), "ts": now, "drift": drift}
    atomic_write(state_dir / "status.json", (json.dumps(status, indent=1, sort_keys=True)
                                              + "\n").encode())


# --- git notes: deployment next to intent ---------------------------------------------------
