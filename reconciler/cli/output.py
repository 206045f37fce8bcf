"""Formatting for people and machines: plans and apply results as text, markdown and JSON.

Paths are shown with the URL token shortened; contents are never shown here, only digests.
The JSON shape (`provctl-plan/1`) is stable; see docs/json.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from reconciler.gitops.compare import Comparison, FileDiff
from reconciler.pipeline.apply import TargetResult
from reconciler.pipeline.plan import FORMAT, Plan
from reconciler.redirect.stage import redact_url
from reconciler.render.addressing import show_path


def plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "revision": plan.revision,
        "checksum": plan.checksum(),
        "summary": plan.counts(),
        "targets": [asdict(t) for t in plan.targets],
        "changes": [dict(asdict(c), path=show_path(c.path)) for c in plan.changes],
        "redirects": [dict(asdict(r), url=redact_url(r.url)) for r in plan.redirects],
        "drift": [dict(asdict(d), path=show_path(d.path)) for d in plan.drift],
        "refusals": list(plan.refusals),
        "orphans": [dict(asdict(o), path=show_path(o.path)) for o in plan.orphans],
        "held": [dict(asdict(c), path=show_path(c.path)) for c in plan.held],
        "rollouts": [r.to_json() for r in plan.rollouts],
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
    if c.get("orphan"):
        parts.append(f"{c['orphan']} orphaned (kept: pruning is off)")
    if c.get("held"):
        parts.append(f"{c['held']} held back by a rollout")
    parts.append(f"{c['unchanged']} unchanged")
    return ", ".join(parts)


TEXT_LIMIT = 200  # changes listed per target in text output; JSON always has every one


def plan_text(plan: Plan, limit: int = TEXT_LIMIT) -> str:
    out = [f"Plan for revision {plan.revision[:12]} (checksum {plan.checksum()[:12]})"]
    for t in plan.targets:
        if t.error:
            out.append(f"  target {t.target}: FAILED to observe: {t.error}")
            continue
        mine = [c for c in plan.changes if c.target == t.target]
        out.append(f"  target {t.target}: {len(mine)} change(s), {t.unchanged} unchanged, "
                   f"{t.managed} managed")
        for c in mine[:limit]:
            sign = {"create": "+", "update": "~", "heal": "!", "prune": "-"}[c.reason]
            dev = f"  [{c.device}]" if c.device else ""
            out.append(f"    {sign} {show_path(c.path)}  ({c.reason}, {c.size} B){dev}")
        if len(mine) > limit:
            out.append(f"    … and {len(mine) - limit} more (--format json lists them all)")
        for d in (d for d in plan.drift if d.target == t.target):
            out.append(f"    drift {d.kind}: {show_path(d.path)}: {d.detail}")
        for o in [o for o in plan.orphans if o.target == t.target][:limit]:
            out.append(f"    orphan {show_path(o.path)}: no longer desired, kept (--prune "
                       "deletes it)")
    for r in plan.redirects:
        out.append(f"  redirect {r.service}: {r.action} {r.mac} -> {redact_url(r.url)}: "
                   f"{r.reason}")
    for refusal in plan.refusals:
        out.append(f"  REFUSED: {refusal}")
    out += rollout_lines(plan)
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
    if plan.rollouts:
        out += ["", "#### Rollouts", ""]
        out += [f"- {line.strip()}" if not line.startswith("    ") else f"  - {line.strip()}"
                for line in rollout_lines(plan)]
    return "\n".join(out) + "\n"


def rollout_lines(plan: Plan) -> list[str]:
    """Each rollout: its wave, what its gate shows (counts), what the next wave would change."""
    out = []
    for r in plan.rollouts:
        sizes = "/".join(str(n) for n in r.per_wave)
        out.append(f"  rollout {r.id}: {r.subject}")
        out.append(f"    wave {r.wave}/{r.waves} published ({r.phones} phone(s), per wave "
                   f"{sizes}) — {r.action}: {r.message}")
        if r.reading is not None and r.action not in ("halted",):
            lagging = ", ".join(r.reading.lagging[:10])
            more = " …" if len(r.reading.lagging) > 10 else ""
            out.append(f"    gate of wave {r.wave}: {r.reading.show()}"
                       + (f"; not yet: {lagging}{more}" if lagging else ""))
        if r.held:
            what = (f"{r.held} phone(s) keep their previous firmware" if r.kind == "firmware"
                    else f"{r.held} phone(s) keep their published files ({r.held_changes} "
                         "change(s) wait for their wave)")
            out.append(f"    held back: {what}")
        if r.wave < r.waves and r.action != "halted":
            files = f" ({r.next_changes} file change(s))" if r.kind == "policy" else ""
            out.append(f"    next: wave {r.wave + 1}/{r.waves} would change {r.next_phones} "
                       f"phone(s){files} once the gate holds")
        elif r.action == "halted":
            out.append("    HALTED: nothing more is published for this rollout; revert the "
                       "commit (rollback) or fix it (a new commit)")
    return out


def render_plan(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return plan_json(plan)
    if fmt == "markdown":
        return plan_markdown(plan)
    return plan_text(plan)


def apply_text(results: dict[str, TargetResult], redirect: Any = None) -> str:
    out = []
    if redirect is not None and (redirect.done or redirect.failed or redirect.conflicts):
        out.append(f"redirect: {len(redirect.done)} change(s) applied, {len(redirect.failed)} "
                   f"failed, {len(redirect.conflicts)} conflict(s)")
        for change, error in redirect.failed:
            out.append(f"  {change.action} {change.mac} at {change.service}: {error}")
        for change, why in redirect.conflicts:
            out.append(f"  {change.mac} at {change.service}: {why}")
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


# --- plans between two revisions (pull requests) -------------------------------------------

MARKDOWN_BUDGET = 60_000  # a GitHub comment holds 65,536 characters
DIFF_LINES = 60  # per file
FILES_PER_CUSTOMER = 25


def comparison_dict(c: Comparison) -> dict[str, Any]:
    return {
        "format": "provctl-compare/1",
        "base": c.base,
        "head": c.head,
        "summary": _comparison_counts(c),
        "files": [dict(asdict(f), path=show_path(f.path)) for f in c.files],
        "redirects": [asdict(r) for r in c.redirects],
        "errors": [str(p) for p in c.problems],
        "base_errors": [str(p) for p in c.base_problems],
    }


def _comparison_counts(c: Comparison) -> dict[str, int]:
    counts = {"phones": len({f.device for f in c.files if f.device}), "added": 0,
              "changed": 0, "removed": 0, "redirects": len(c.redirects)}
    for f in c.files:
        counts[f.status] += 1
    return counts


def comparison_text(c: Comparison) -> str:
    out = [f"Changes from {c.base} to {c.head}:"]
    for p in c.problems:
        out.append(f"  INVALID: {p}")
    n = _comparison_counts(c)
    out.append(f"  {n['phones']} phone(s): {n['added']} file(s) added, {n['changed']} changed, "
               f"{n['removed']} removed; {n['redirects']} redirect change(s)")
    for f in c.files:
        out.append(f"  {f.status:<8} {show_path(f.path)}  [{f.customer} {f.device}] ({f.target})")
        if f.diff:
            out += ["    " + line.rstrip("\n") for line in f.diff.splitlines()[:DIFF_LINES]]
    for r in c.redirects:
        out.append(f"  redirect {r.mac}: {r.before} -> {r.after}")
    return "\n".join(out) + "\n"


def comparison_markdown(c: Comparison) -> str:
    n = _comparison_counts(c)
    head = [f"### provctl plan: `{c.base}` → `{c.head}`", ""]
    if c.problems:
        head += [f":x: **The head revision is invalid ({len(c.problems)} problem(s)); nothing "
                 "would be applied.**", "", "```"] + [str(p) for p in c.problems[:50]] + ["```", ""]
    head.append(f"**{n['phones']} phone(s) affected** — {n['added']} file(s) added, "
                f"{n['changed']} changed, {n['removed']} removed; {n['redirects']} redirect "
                "registration change(s). Secrets are shown redacted.")
    head.append("")
    if c.redirects:
        head += ["| redirect | before | after |", "|---|---|---|"]
        head += [f"| `{r.mac}` | {r.before} | {r.after} |" for r in c.redirects] + [""]
    body: list[str] = []
    used = sum(len(line) + 1 for line in head)
    omitted = 0
    by_customer: dict[str, list[FileDiff]] = {}
    for f in c.files:
        by_customer.setdefault(f.customer, []).append(f)
    for customer, files in by_customer.items():
        phones = len({f.device for f in files if f.device})
        section = ["<details>", f"<summary><b>{customer}</b>: {phones} phone(s), {len(files)} "
                   "file(s)</summary>", ""]
        for f in files[:FILES_PER_CUSTOMER]:
            block = [f"**{f.status}** `{show_path(f.path)}` ({f.device or 'shared'}, "
                     f"target {f.target})"]
            if f.diff:
                lines = f.diff.splitlines()
                block += ["```diff", *lines[:DIFF_LINES]]
                if len(lines) > DIFF_LINES:
                    block.append(f"… {len(lines) - DIFF_LINES} more diff line(s)")
                block.append("```")
            size = sum(len(line) + 1 for line in block)
            if used + size > MARKDOWN_BUDGET:
                omitted += 1
                continue
            used += size
            section += block + [""]
        if len(files) > FILES_PER_CUSTOMER:
            omitted += len(files) - FILES_PER_CUSTOMER
            section.append(f"… and {len(files) - FILES_PER_CUSTOMER} more file(s) of {customer}")
        section += ["</details>", ""]
        body += section
    if omitted:
        body.append(f"_{omitted} file diff(s) not shown to keep this comment short; run "
                    f"`provctl plan --base {c.base} --head {c.head}` for all of them._")
    return "\n".join(head + body) + "\n"


def render_comparison(c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(comparison_dict(c), indent=1, sort_keys=True) + "\n"
    if fmt == "markdown":
        return comparison_markdown(c)
    return comparison_text(c)
