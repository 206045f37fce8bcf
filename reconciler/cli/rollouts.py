"""Rollouts for people: `status` (each rollout, its wave, why it halted) and `history MAC`
(which wave the phone was in, when that wave started, when the phone took the change).

Read from the state directory's book (pipeline/waves.py); offline, nothing is observed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.core.errors import OperationError
from reconciler.pipeline import receipt as record
from reconciler.pipeline.waves import Book, load_book, phone_rollouts


def book(state_dir: Path) -> Book:
    try:
        return load_book(state_dir)
    except ValueError as exc:
        raise OperationError(str(exc)) from exc


def status_dict(b: Book) -> dict[str, Any]:
    out = {}
    for gid, r in sorted(b.rollouts.items()):
        out[gid] = {"kind": r.kind, "subject": r.subject, "version": r.version,
                    "wave": r.state.wave, "waves": len(r.waves),
                    "started": [record.iso(t) for t in r.state.started],
                    "phones": len(r.phones),
                    "took": sum(1 for _, took, _ in r.phones.values() if took),
                    "halted": r.state.halted, "closed": r.closed,
                    "last": r.gates[-1] if r.gates else None}
    return out


def status_lines(b: Book, everything: bool = False) -> list[str]:
    """Rollouts under way (and halted ones); finished or closed ones only with `everything`."""
    out = []
    for gid, r in sorted(b.rollouts.items(), key=lambda kv: kv[1].updated):
        if r.closed and not everything:
            continue
        took = sum(1 for _, t, _ in r.phones.values() if t)
        since = record.iso(r.state.started[-1]) if r.state.started else "-"
        head = (f"rollout {gid}: {r.subject}: wave {r.state.wave}/{len(r.waves)} since {since}, "
                f"{took}/{len(r.phones)} phone(s) took it")
        if r.state.halted:
            out.append(f"{head} — HALTED: {r.state.halted}")
        elif r.closed:
            out.append(f"{head} — closed: {r.closed}")
        else:
            out.append(head)
    return out


def history_entries(state_dir: Path, mac: str) -> list[dict[str, Any]]:
    entries = phone_rollouts(book(state_dir), mac)
    for e in entries:
        for key in ("wave_started", "took", "reported"):
            e[key] = record.iso(e[key]) if e[key] else None
    return entries


def history_lines(entries: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in entries:
        out.append(f"rollout {e['rollout']}: {e['subject']}")
        if e["wave_started"]:
            line = f"    in wave {e['wave']}/{e['waves']}, published {e['wave_started']}"
        else:
            line = f"    in wave {e['wave']}/{e['waves']}, not published yet"
        if e["took"]:
            line += f"; took the change {e['took']}"
        if e["reported"] and e["kind"] == "firmware":
            line += f"; reported the new version {e['reported']}"
        out.append(line)
        if e["halted"]:
            out.append(f"    the rollout halted: {e['halted']}")
        elif e["closed"]:
            out.append(f"    the rollout closed: {e['closed']}")
    return out
