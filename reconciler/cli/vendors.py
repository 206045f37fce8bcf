"""`provctl vendors`: the vendors, their models and line counts, and the parameters each maps.

Everything shown comes from the vendor modules (`vendors.KNOWN`, each module's `models`,
`supported`, `notes`, `redirect_kinds` and `without_account`), so the table cannot drift from
the code. `provctl vendors --markdown > docs/vendors.md` regenerates the documentation page; a test
keeps that page up to date.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import vendors
from reconciler.desired.schema import PARAM_NAMES

TITLE = "# Vendors, models and parameters"
INTRO = (
    "Generated from the vendor modules by `provctl vendors --markdown > docs/vendors.md`; do not "
    "edit by hand (a test fails when this page and the modules disagree).\n\n"
    "A parameter a vendor cannot express is left out of that phone's files and reported by "
    "`provctl validate` as a warning naming the device and the parameter. *Notes* list the parts "
    "of a supported parameter a vendor expresses only partly. Model names are written after "
    "`<vendor>/` in `devices/*.yaml`; *lines* are the SIP accounts (DECT: handsets) a port can "
    "be assigned to. Where each mapping comes from, and what is still inferred, is in "
    "`docs/vendors/<vendor>.md`."
)


def _notes(vendor: vendors.Vendor) -> dict[str, str]:
    return dict(vendor.notes)


def _redirect(vendor: vendors.Vendor) -> str:
    return ", ".join(vendor.redirect_kinds) or "-"


def _models(vendor: vendors.Vendor) -> str:
    return ", ".join(f"{m.name} ({m.lines})" for m in vendor.models.values())


def rows() -> list[dict[str, str]]:
    """One row per vendor: name, models with line counts, redirect service, notes."""
    out = []
    for vendor in vendors.all_vendors():
        out.append({
            "vendor": vendor.name,
            "models": _models(vendor),
            "redirect": _redirect(vendor),
            "notes": "; ".join(f"{k}: {v}" for k, v in sorted(_notes(vendor).items())),
        })
    return out


def params() -> list[str]:
    return [name for name in PARAM_NAMES]


def markdown() -> str:
    all_vendors = vendors.all_vendors()
    lines = [TITLE, "", INTRO, "", "## Models and line counts", "",
             "| vendor | models (lines) | redirect service |", "|---|---|---|"]
    for row in rows():
        lines.append(f"| {row['vendor']} | {row['models']} | {row['redirect']} |")
    lines += ["", "## Parameters", "",
              "| parameter | " + " | ".join(v.name for v in all_vendors) + " |",
              "|---|" + "---|" * len(all_vendors)]
    for name in params():
        cells = ["yes" if name in v.supported else "-" for v in all_vendors]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += ["", "## Notes", ""]
    for vendor in all_vendors:
        notes = _notes(vendor)
        if notes:
            lines.append(f"- **{vendor.name}**: " + "; ".join(
                f"`{k}`: {v}" for k, v in sorted(notes.items())))
    lines += ["", "## Phones without an account", "",
              "A pooled phone, or one whose lines are all unassigned, gets:", ""]
    for vendor in all_vendors:
        lines.append(f"- **{vendor.name}**: {vendor.without_account}")
    lines += ["", "## Sources", ""]
    for vendor in all_vendors:
        lines.append(f"- [{vendor.name}](vendors/{vendor.name}.md)")
    lines.append("")
    return "\n".join(lines)


def text() -> str:
    all_vendors = vendors.all_vendors()
    out = []
    width = max(len(v.name) for v in all_vendors)
    for vendor in all_vendors:
        models = ", ".join(f"{m.name} ({m.lines})" for m in vendor.models.values())
        supported = ", ".join(p for p in params() if p in vendor.supported)
        out.append(f"{vendor.name:<{width}}  models (lines): {models}")
        out.append(f"{'':<{width}}  parameters: {supported}")
        missing = [p for p in params() if p not in vendor.supported]
        if missing:
            out.append(f"{'':<{width}}  not expressed: {', '.join(missing)}")
        out.append(f"{'':<{width}}  redirect service: {_redirect(vendor)}")
        for key, note in sorted(_notes(vendor).items()):
            out.append(f"{'':<{width}}  note {key}: {note}")
        out.append(f"{'':<{width}}  without an account: {vendor.without_account}")
    return "\n".join(out) + "\n"


def cmd_vendors(args: argparse.Namespace) -> int:
    sys.stdout.write(markdown() if args.markdown else text())
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"vendors": cmd_vendors}


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register this module's subcommands on the provctl parser."""
    p = sub.add_parser("vendors", help="vendors, models, line counts and supported parameters")
    p.add_argument("--markdown", action="store_true",
                   help="print the Markdown page (docs/vendors.md) instead of text")
