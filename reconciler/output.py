"""Formatting for people and machines: plans and apply results as text, markdown and JSON.

Paths are shown with the URL token shortened; contents are never shown here, only digests.
The JSON shape (`provctl-plan/1`) is stable; see docs/json.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from .apply import TargetResult
from .plan import FORMAT, Plan, show_path


def plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "revision": plan.revision,
        "checksum": plan.checksum(),
        "summary": plan.counts(),
        "targets": [asdict(t) for t in plan.targets],
        "changes": [dict(asdict(c), path=show_path(c.path)) for c in plan.changes],
        "redirects": [asdict(r) for r in plan.redirects],
        "drift": [dict(asdict(d), path=show_path(d.path)) for d in plan.drift],
        "refusals": list(plan.refusals),
    }


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_dict(plan), indent=1, sort_keys=True) + "\n"


def _summary_line(plan: Plan) -> str:
    c = plan.counts()
    parts = [f"{c['create']} to create", f"{c['update']} to update", f"{c['prune']} to delete"]
    if c["heal"]:
        parts.append(f"{c['heal']} to heal")
    for action in ("register", "update-registration", "deregister", "conflict"):
        if c.get(action):
            parts.append(f"{c[action]} {action}")
    if c["drift"]:
        parts.append(f"{c['drift']} drifted")
    parts.append(f"{c['unchanged']} unchanged")
    return ", ".join(parts)


def plan_text(plan: Plan) -> str:
    out = [f"Plan for revision {plan.revision[:12]} (checksum {plan.checksum()[:12]})"]
    for t in plan.targets:
        if t.error:
            out.append(f"  target {t.target}: FAILED to observe: {t.error}")
            continue
        mine = [c for c in plan.changes if c.target == t.target]
        out.append(f"  target {t.target}: {len(mine)} change(s), {t.unchanged} unchanged, "
                   f"{t.managed} managed")
        for c in mine:
            sign = {"create": "+", "update": "~", "heal": "!", "prune": "-"}[c.reason]
            dev = f"  [{c.device}]" if c.device else ""
            out.append(f"    {sign} {show_path(c.path)}  ({c.reason}, {c.size} B){dev}")
        for d in (d for d in plan.drift if d.target == t.target):
            out.append(f"    drift {d.kind}: {show_path(d.path)}: {d.detail}")
    for r in plan.redirects:
        out.append(f"  redirect {r.service}: {r.action} {r.mac}: {r.reason}")
    for refusal in plan.refusals:
        out.append(f"  REFUSED: {refusal}")
    out.append(f"Summary: {_summary_line(plan)}")
    if plan.empty and not plan.drift:
        out.append("No changes. The targets match the desired state.")
    return "\n".join(out) + "\n"


def plan_markdown(plan: Plan, limit: int = 200) -> str:
    out = [f"### provctl plan for `{plan.revision[:12]}`", "", f"**{_summary_line(plan)}**", ""]
    for refusal in plan.refusals:
        out.append(f"> :no_entry: **Refused:** {refusal}")
    for t in plan.targets:
        mine = [c for c in plan.changes if c.target == t.target]
        if t.error:
            out.append(f"- target `{t.target}`: failed to observe: {t.error}")
            continue
        out += ["<details>",
                f"<summary>target <code>{t.target}</code>: {len(mine)} change(s), "
                f"{t.unchanged} unchanged</summary>", "",
                "| | file | reason | device |", "|---|---|---|---|"]
        for c in mine[:limit]:
            sign = {"create": "+", "update": "~", "heal": "!", "prune": "-"}[c.reason]
            out.append(f"| {sign} | `{show_path(c.path)}` | {c.reason} | {c.device or ''} |")
        if len(mine) > limit:
            out.append(f"| | … and {len(mine) - limit} more | | |")
        out += ["", "</details>"]
    for r in plan.redirects:
        out.append(f"- redirect `{r.service}`: **{r.action}** `{r.mac}` — {r.reason}")
    return "\n".join(out) + "\n"


def render_plan(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return plan_json(plan)
    if fmt == "markdown":
        return plan_markdown(plan)
    return plan_text(plan)


def apply_text(results: dict[str, TargetResult]) -> str:
    out = []
    for name, r in sorted(results.items()):
        done = len(r.done)
        if r.error:
            out.append(f"target {name}: FAILED: {r.error} ({done} change(s) applied before)")
        elif r.failed:
            out.append(f"target {name}: {done} applied, {len(r.failed)} FAILED")
            for item in r.failed[:20]:
                out.append(f"  {item.action} {show_path(item.path)}: {item.error}")
        else:
            out.append(f"target {name}: {done} change(s) applied")
    return "\n".join(out) + "\n"
