"""The architecture, enforced: each outside library in one module; imports flow one way.

The allow-list below is docs/architecture.md's layer table: a package may import only itself and
the packages listed for it. vendors/ imports only vendors/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reconciler", "vendors")

# library -> the only modules allowed to import it
OWNERS = {
    "paramiko": {"reconciler/targets/sftp/connection.py"},
    "httpx": {"reconciler/redirect/http.py"},
    "jinja2": {"reconciler/render/templating.py"},
    "git": {"reconciler/desired/load.py", "reconciler/gitops/repo.py"},
    "watchdog": {"reconciler/daemon/source.py"},
    "prometheus_client": {"reconciler/daemon/metrics.py"},
    "ruamel": {"reconciler/inventory/yamledit.py"},
    "pyrage": {"reconciler/desired/secrets.py"},
    "tqdm": {"reconciler/cli/progress.py"},
    "sqlite3": {"reconciler/uptake/store.py"},
}

# package -> the packages it may import (besides itself). Lower layers never import higher ones:
# cli → daemon → pipeline → {render, redirect, targets, gitops, inventory} → desired → core.
LOWER = {"core": set(), "desired": {"core", "vendors"}}
SIBLINGS = {
    "render": {"desired", "core", "vendors"},
    "targets": {"desired", "core"},
    # the redirect stage takes its addresses from render/addressing, never the renderer
    "redirect": {"desired", "core", "vendors", "render.addressing"},
    "gitops": {"render", "desired", "core", "vendors"},
    "inventory": {"gitops.repo", "desired", "core", "vendors"},
    # the loop with the phones: reads logs through the target seam, never the desired state
    "uptake": {"targets", "core", "vendors", "render.addressing"},
}
MIDDLE = set(SIBLINGS) | {"desired", "core", "vendors"}
ALLOWED: dict[str, set[str]] = {
    **LOWER,
    **SIBLINGS,
    "pipeline": MIDDLE,
    "daemon": MIDDLE | {"pipeline"},
    "cli": MIDDLE | {"pipeline", "daemon"},
}


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
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


def layer(dotted: str) -> str | None:
    """reconciler.pipeline.run -> pipeline; vendors.yealink -> vendors; else None."""
    parts = dotted.split(".")
    if parts[0] == "vendors":
        return "vendors"
    if parts[0] == "reconciler" and len(parts) > 1:
        return parts[1]
    return None


def allowed(me: str, target: str) -> bool:
    own, other = layer(me), layer(target)
    if other is None or own == other:
        return True
    rest = target.split(".", 2)[2] if target.count(".") >= 2 else ""
    for ok in ALLOWED.get(own or "", set()):
        name, _, module = ok.partition(".")
        if name == other and (not module or rest == module or rest.startswith(module + ".")):
            return True
    return False


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
        me = rel.removesuffix(".py").replace("/", ".")
        if rel.startswith("vendors/"):
            offenders += [f"{rel} imports {n}" for n in imported(rel, tree)
                          if n.split(".")[0] == "reconciler"]
            continue
        if layer(me) not in ALLOWED and me != "reconciler.__init__":
            offenders.append(f"{rel}: package {layer(me)} is not in the layer table")
            continue
        offenders += [f"{rel} imports {n}" for n in imported(rel, tree) if not allowed(me, n)]
    assert offenders == []


def test_architecture_names_every_package():
    doc = (ROOT / "docs/architecture.md").read_text()
    packages = sorted(p.name for p in (ROOT / "reconciler").iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    missing = [p for p in packages if not re.search(rf"`{p}/`", doc)]
    assert missing == [], f"docs/architecture.md does not name: {missing}"
    assert sorted(ALLOWED) == packages
