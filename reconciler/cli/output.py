"""Formatting for people and machines: plans and apply results as text, markdown and JSON.

Paths are shown with the URL token shortened; contents are never shown here, only digests.
The JSON shape (`provctl-plan/1`) is stable; see docs/json.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from reconciler.gitops.compare import Comparison
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
    if c["withdraw"]:
        parts.append(f"{c['withdraw']} bootstrap file(s) to withdraw")
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
SIGNS = {"create": "+", "update": "~", "heal": "!", "prune": "-", "withdraw": "-"}


class Style:
    """Colour for people on a terminal; plain text otherwise (NO_COLOR, --no-color, a pipe)."""

    CODES = {"add": "32", "change": "33", "delete": "31", "bold": "1", "dim": "2",
             "error": "1;31", "ok": "32"}

    def __init__(self, enabled: bool):
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: Any, no_color: bool = False,
                   environ: Mapping[str, str] | None = None) -> Style:
        env = os.environ if environ is None else environ
        wanted = not no_color and not env.get("NO_COLOR") and env.get("TERM") != "dumb"
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            tty = False
        return cls(wanted and tty)

    def __call__(self, kind: str, text: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\033[{self.CODES[kind]}m{text}\033[0m"


PLAIN = Style(False)
_SIGN_STYLE = {"+": "add", "~": "change", "!": "change", "-": "delete"}


def plan_text(plan: Plan, limit: int = TEXT_LIMIT, style: Style = PLAIN) -> str:
    out = [style("bold", f"Plan for revision {plan.revision[:12]} (checksum "
                         f"{plan.checksum()[:12]})")]
    for t in plan.targets:
        if t.error:
            out.append(style("error", f"  target {t.target}: FAILED to observe: {t.error}"))
            continue
        mine = [c for c in plan.changes if c.target == t.target]
        out.append(f"  target {t.target}: {len(mine)} change(s), {t.unchanged} unchanged, "
                   f"{t.managed} managed")
        for c in mine[:limit]:
            sign = SIGNS[c.reason]
            dev = f"  [{c.device}]" if c.device else ""
            out.append(style(_SIGN_STYLE[sign], f"    {sign} {show_path(c.path)}  ({c.reason}, "
                                                f"{c.size} B){dev}"))
        if len(mine) > limit:
            out.append(f"    … and {len(mine) - limit} more (--format json lists them all)")
        for d in (d for d in plan.drift if d.target == t.target):
            out.append(style("change", f"    drift {d.kind}: {show_path(d.path)}: {d.detail}"))
        for o in [o for o in plan.orphans if o.target == t.target][:limit]:
            out.append(f"    orphan {show_path(o.path)}: no longer desired, kept (--prune "
                       "deletes it)")
    for r in plan.redirects:
        out.append(f"  redirect {r.service}: {r.action} {r.mac} -> {redact_url(r.url)}: "
                   f"{r.reason}")
    for refusal in plan.refusals:
        out.append(style("error", f"  REFUSED: {refusal}"))
    out += rollout_lines(plan)
    out.append(style("bold", f"Summary: {_summary_line(plan)}"))
    failed = [t.target for t in plan.targets if t.error]
    if plan.empty and not plan.drift and failed:
        # Nothing to do on the others; these could not be observed or locked: unknown.
        out.append(style("error", f"No changes on the other targets; {', '.join(failed)} "
                                  "could not be checked (see above)."))
    elif plan.empty and not plan.drift:
        out.append(style("ok", "No changes. The targets match the desired state."))
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
            sign = SIGNS[c.reason]
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
        if r.action == "done" and not r.held:
            out.append(f"  rollout {r.id}: {r.subject}: done, {r.waves} wave(s) published")
            continue
        out.append(f"  rollout {r.id}: {r.subject}")
        if r.action == "removed":
            out.append(f"    removed (a rollback): {r.message}")
            continue
        message = r.message.removeprefix(f"wave {r.wave}/{r.waves}: ")
        out.append(f"    wave {r.wave}/{r.waves} is current ({r.phones} phone(s), per wave "
                   f"{sizes}) — {r.action}: {message}")
        if r.reading is not None and r.reading.lagging and r.action != "halted":
            lagging = ", ".join(r.reading.lagging[:10])
            more = " …" if len(r.reading.lagging) > 10 else ""
            out.append(f"    gate not met by {len(r.reading.lagging)} of {r.reading.phones} "
                       f"phone(s) of wave {r.wave}: {lagging}{more}")
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


def apply_text(results: dict[str, TargetResult], redirect: Any = None,
               style: Style = PLAIN) -> str:
    out = []
    if redirect is not None and (redirect.done or redirect.failed or redirect.conflicts):
        out.append(f"redirect: {len(redirect.done)} change(s) applied, {len(redirect.failed)} "
                   f"failed, {len(redirect.conflicts)} conflict(s)")
        # One line per distinct error: a service that refuses a whole batch (or every
        # batch) says so once, with the MACs it concerns, not once per MAC.
        same: dict[tuple[str, str, str], list[str]] = {}
        for change, error in redirect.failed:
            same.setdefault((change.action, change.service, str(error)), []).append(change.mac)
        for (action, service, error), macs in same.items():
            who = (macs[0] if len(macs) == 1
                   else f"of {len(macs)} MACs ({macs[0]} … {macs[-1]})")
            out.append(style("error", f"  {action} {who} at {service}: {error}"))
        for change, why in redirect.conflicts:
            out.append(f"  {change.mac} at {change.service}: {why}")
    for name, r in sorted(results.items()):
        done = len(r.done)
        if r.error:
            out.append(style("error", f"target {name}: FAILED: {r.error} ({done} change(s) "
                                      "applied before)"))
        elif r.failed:
            out.append(style("error", f"target {name}: {done} applied, {len(r.failed)} FAILED"))
            for item in r.failed[:20]:
                out.append(f"  {item.action} {show_path(item.path)}: {item.error}")
        else:
            out.append(style("ok", f"target {name}: {done} change(s) applied"))
    return "\n".join(out) + "\n"


def phone_diff_text(mac: str, diffs: list[Any], style: Style = PLAIN) -> str:
    """`provctl diff MAC`: a unified diff per file, redacted, coloured on a terminal."""
    out = []
    for d in diffs:
        if d.status == "unchanged":
            out.append(style("dim", f"= {show_path(d.path)} ({d.target}): published and "
                                    "up to date"))
            continue
        if not d.diff:
            out.append(f"{d.status} {show_path(d.path)} ({d.target}): {d.note}")
            continue
        for line in d.diff.splitlines():
            kind = ("bold" if line.startswith(("---", "+++")) else "add" if line[:1] == "+"
                    else "delete" if line[:1] == "-" else "dim" if line[:2] == "@@" else "")
            out.append(style(kind, line) if kind else line)
    if not diffs:
        out.append(f"{mac} has no files on the target(s) asked for")
    changed = sum(1 for d in diffs if d.status != "unchanged")
    out.append(f"{mac}: {changed} of {len(diffs)} file(s) would change (secrets redacted)")
    return "\n".join(out) + "\n"


# --- plans between two revisions (pull requests) -------------------------------------------

DIFF_LINES = 60  # per file


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
        "refusals": list(c.refusals),
        "real_tokens": c.real_tokens,
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
    """The whole pull-request comment (cli/comment.py): marker, summary, grouped diffs, footer,
    under GitHub's 65,536 characters."""
    from reconciler.cli.comment import comment

    return comment(c)


def render_comparison(c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(comparison_dict(c), indent=1, sort_keys=True) + "\n"
    if fmt == "markdown":
        return comparison_markdown(c)
    return comparison_text(c)
