"""The architecture, enforced: each outside library in one module; imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reconciler", "vendors")

# library -> the only modules allowed to import it
OWNERS = {
    "paramiko": {"reconciler/targets/sftp.py"},
    "httpx": {"reconciler/redirect/http.py"},
    "jinja2": {"reconciler/templating.py"},
    "git": {"reconciler/load.py", "reconciler/record.py"},
    "watchdog": {"reconciler/daemon.py"},
    "prometheus_client": {"reconciler/metrics.py"},
    "ruamel": {"reconciler/edit.py"},
    "pyrage": {"reconciler/secrets.py"},
}

# A module in the left group must not import anything in the right groups (lower layers never
# import higher ones).
FORBIDDEN = [
    ({"reconciler/errors.py", "reconciler/macs.py"}, ("reconciler.", "vendors")),
    ({"reconciler/model.py"}, ("reconciler.validate", "reconciler.render", "reconciler.plan",
                               "reconciler.apply", "reconciler.reconcile", "reconciler.cli")),
    ({"reconciler/plan.py"}, ("reconciler.targets.local", "reconciler.targets.sftp",
                              "reconciler.apply", "reconciler.reconcile", "reconciler.cli",
                              "reconciler.render")),
    ({"reconciler/targets/base.py", "reconciler/targets/local.py",
      "reconciler/targets/sftp.py"}, ("reconciler.reconcile", "reconciler.plan",
                                      "reconciler.apply", "reconciler.cli", "vendors")),
    ({"reconciler/redirect/base.py", "reconciler/redirect/plan.py"},
     ("reconciler.reconcile", "reconciler.cli", "reconciler.redirect.http")),
]


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def imported(rel: str, tree: ast.Module) -> set[str]:
    names = set()
    package = rel.rsplit("/", 1)[0].replace("/", ".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                names.add(mod)
                names |= {f"{mod}.{a.name}" for a in node.names}
            else:
                names.add(node.module or "")
    return names


def test_each_outside_library_lives_in_one_module():
    offenders = []
    for rel, tree in modules():
        for name in imported(rel, tree):
            top = name.split(".")[0]
            if top in OWNERS and rel not in OWNERS[top]:
                offenders.append(f"{rel} imports {name}")
    assert offenders == []


def test_imports_flow_one_way():
    offenders = []
    for rel, tree in modules():
        names = imported(rel, tree)
        for group, banned in FORBIDDEN:
            if rel in group:
                offenders += [f"{rel} imports {n}" for n in names if n.startswith(banned)]
    assert offenders == []
