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

from reconciler.core.files import atomic_write
from reconciler.targets.base import RECEIPTS, Put, Target


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
