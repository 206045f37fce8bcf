"""The pull-request comment of `plan --base/--head --format markdown`, whole and within budget.

The output is the complete comment: the marker CI templates find it by, the summary first
(phones changed per customer; files created, updated, deleted; redirect changes; refusals),
then the diffs grouped — files whose diff is the same up to the phone's MAC and token
directory are shown once, "applies to 9,873 phones (acme: 4,120, …)" — largest group first,
then the footer. Every block is added whole or not at all, so code fences and <details> are
always closed, and the total, footer included, stays under GitHub's 65,536 characters.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from reconciler import __version__
from reconciler.gitops.compare import Comparison, FileDiff
from reconciler.render.addressing import show_path

MARKER = "<!-- provctl-plan -->"
GITHUB_LIMIT = 65_536  # characters of a GitHub comment
BUDGET = 65_000  # what provctl allows itself, leaving room for a CI's one-line prefix
DIFF_LINES = 60  # per group
PATHS_PER_GROUP = 10
CUSTOMERS_IN_SUMMARY = 25
CUSTOMERS_PER_GROUP = 5
REDIRECT_ROWS = 50
PROBLEMS = 50
STATUS_WORD = {"added": "created", "changed": "updated", "removed": "deleted"}


@dataclass
class Group:
    status: str
    name: str  # the file name, {mac} for the phone's MAC
    diff: str  # the first file's diff, as shown
    files: list[FileDiff] = field(default_factory=list)

    @property
    def phones(self) -> int:
        return len({f.device for f in self.files if f.device}) or 0


_HUNK = re.compile(r"^@@ [^@]* @@", re.M)


def _key(f: FileDiff) -> tuple[str, str]:
    """What makes two files' diffs "the same": the body without headers, line numbers, the
    phone's MAC (any spelling) and its token directory."""
    body = "\n".join(line for line in f.diff.splitlines() if not line.startswith(("---", "+++")))
    body = _HUNK.sub("@@", body)
    if f.device:
        mac = f.device
        spellings = {mac, mac.upper(), ":".join(mac[i:i + 2] for i in range(0, 12, 2)),
                     ":".join(mac[i:i + 2] for i in range(0, 12, 2)).upper()}
        for spelling in sorted(spellings, key=len, reverse=True):
            body = body.replace(spelling, "{mac}")
    directory = show_path(f.path).rpartition("/")[0]
    if directory:
        body = body.replace(directory.removesuffix("…"), "{token}")
    name = f.path.rpartition("/")[2]
    if f.device:
        name = re.sub(re.escape(f.device), "{mac}", name, flags=re.I)
    return f.status, f"{name}\n{body}"


def _shown_name(f: FileDiff) -> str:
    name = f.path.rpartition("/")[2]
    if not f.device:
        return name
    upper = f.device.upper()
    if upper != f.device and upper in name:
        return name.replace(upper, "{MAC}")
    return name.replace(f.device, "{mac}")


def groups(files: list[FileDiff]) -> list[Group]:
    by_key: dict[tuple[str, str], Group] = {}
    for f in files:
        key = _key(f)
        group = by_key.get(key)
        if group is None:
            group = by_key[key] = Group(f.status, _shown_name(f), f.diff)
        group.files.append(f)
    return sorted(by_key.values(), key=lambda g: (-len(g.files), g.status, g.files[0].path))


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in the text."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _n(count: int) -> str:
    return f"{count:,}"


def _per_customer(files: list[FileDiff], limit: int) -> str:
    phones: dict[str, set[str]] = {}
    for f in files:
        phones.setdefault(f.customer, set()).add(f.device or f.path)
    ranked = sorted(phones.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    shown = ", ".join(f"{c}: {_n(len(p))}" for c, p in ranked[:limit])
    if len(ranked) > limit:
        shown += f", … {len(ranked) - limit} more customer(s)"
    return shown


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def summary(c: Comparison) -> list[str]:
    counts = Counter(f.status for f in c.files)
    phones = {f.device for f in c.files if f.device}
    out = [f"### provctl plan: `{c.base}` → `{c.head}`", ""]
    if c.problems:
        out += [f":x: **The head revision is invalid ({len(c.problems)} problem(s)); nothing "
                "would be applied.**", "", "```"]
        out += [_clip(str(p).replace("```", "'''")) for p in c.problems[:PROBLEMS]]
        if len(c.problems) > PROBLEMS:
            out.append(f"… {len(c.problems) - PROBLEMS} more problem(s)")
        out += ["```", ""]
    out.append(f"**{_n(len(phones))} phone(s) changed** · files: {_n(counts['added'])} created, "
               f"{_n(counts['changed'])} updated, {_n(counts['removed'])} deleted · "
               f"{_n(len(c.redirects))} redirect change(s) · {len(c.refusals)} refusal(s)")
    out.append("")
    for refusal in c.refusals:
        out.append(f"> :no_entry: **Refused:** {refusal}")
    if c.refusals:
        out.append("")
    per: dict[str, dict[str, object]] = {}
    for f in c.files:
        row = per.setdefault(f.customer, {"phones": set(), "added": 0, "changed": 0,
                                          "removed": 0})
        if f.device:
            row["phones"].add(f.device)  # type: ignore[attr-defined]
        row[f.status] = int(row[f.status]) + 1  # type: ignore[call-overload]
    if per:
        out += ["| customer | phones | created | updated | deleted |", "|---|--:|--:|--:|--:|"]
        ranked = sorted(per.items(), key=lambda kv: (-len(kv[1]["phones"]), kv[0]))  # type: ignore[arg-type]
        for customer, row in ranked[:CUSTOMERS_IN_SUMMARY]:
            out.append(f"| {customer} | {_n(len(row['phones']))} | {_n(row['added'])} | "  # type: ignore[arg-type]
                       f"{_n(row['changed'])} | {_n(row['removed'])} |")  # type: ignore[arg-type]
        if len(ranked) > CUSTOMERS_IN_SUMMARY:
            out.append(f"| … {len(ranked) - CUSTOMERS_IN_SUMMARY} more | | | | |")
        out.append("")
    if c.redirects:
        out += ["| redirect | before | after |", "|---|---|---|"]
        out += [f"| `{r.mac}` | {_clip(r.before, 80)} | {_clip(r.after, 80)} |"
                for r in c.redirects[:REDIRECT_ROWS]]
        if len(c.redirects) > REDIRECT_ROWS:
            out.append(f"| … {len(c.redirects) - REDIRECT_ROWS} more | | |")
        out.append("")
    return out


def group_block(g: Group) -> list[str]:
    first = g.files[0]
    phones = g.phones
    where = (f"{_n(phones)} phone{'s' if phones > 1 else ''} "
             f"({_per_customer(g.files, CUSTOMERS_PER_GROUP)})" if phones
             else f"{_n(len(g.files))} shared file(s)")
    title = f"<b>{STATUS_WORD[g.status]}</b> <code>{g.name}</code> — applies to {where}"
    block = ["<details>", f"<summary>{title}</summary>", ""]
    for f in g.files[:PATHS_PER_GROUP]:
        block.append(f"- `{show_path(f.path)}` ({f.device or 'shared'}, target {f.target})")
    if len(g.files) > PATHS_PER_GROUP:
        block.append(f"- … and {_n(len(g.files) - PATHS_PER_GROUP)} more file(s)")
    block.append("")
    if g.diff:
        lines = g.diff.splitlines()
        shown = lines[:DIFF_LINES]
        if len(lines) > DIFF_LINES:
            shown.append(f"… {len(lines) - DIFF_LINES} more diff line(s)")
        fence = _fence("\n".join(shown))
        if len(g.files) > 1:
            block.append(f"Diff of `{show_path(first.path)}`; the others differ only in MAC "
                         "and token directory:")
            block.append("")
        block += [f"{fence}diff", *shown, fence, ""]
    elif g.status != "removed":
        block += ["(binary file: no text diff)", ""]
    block += ["</details>", ""]
    return block


def footer(c: Comparison) -> list[str]:
    tokens = ("URL tokens shortened" if c.real_tokens else
              "URL tokens shown as placeholders (no fleet secret here)")
    return [f"<sub>provctl {__version__} · `{c.base}` → `{c.head}` · exit code {c.exit_code} · "
            f"secrets redacted · {tokens}</sub>"]


def comment(c: Comparison, budget: int = BUDGET) -> str:
    head = [MARKER, *summary(c)]  # bounded: capped rows and problem lines
    tail = footer(c)
    body: list[str] = []
    all_groups = groups(c.files)
    shown: list[Group] = []
    used = _size(head) + _size(tail) + 400  # room for the "not shown" line
    if all_groups:
        body += ["#### Changes, grouped by identical diff", ""]
        used += _size(body)
    for g in all_groups:
        block = group_block(g)
        if used + _size(block) > budget:
            continue  # a smaller group further down may still fit
        used += _size(block)
        body += block
        shown.append(g)
    if len(shown) < len(all_groups):
        files = len(c.files) - sum(len(g.files) for g in shown)
        body += [f"_{len(all_groups) - len(shown)} more group(s) of diffs ({_n(files)} file(s)) "
                 f"not shown to keep this comment under {GITHUB_LIMIT:,} characters; run "
                 f"`provctl plan --base {c.base} --head {c.head}` for all of them._", ""]
    return "\n".join(head + body + tail) + "\n"
