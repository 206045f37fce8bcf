"""What the render cache keys on (issue 11, item 18)."""

from __future__ import annotations

import shutil
from pathlib import Path

from reconciler.render import cache


def test_the_cache_version_covers_every_module_rendering_runs(tmp_path):
    dirs = cache.code_dirs()
    covered = {p for d in dirs for p in d.rglob("*") if p.is_file()}
    root = Path(cache.__file__).resolve().parents[2]
    for needed in ("vendors/common.py", "vendors/base.py", "vendors/yealink/__init__.py",
                   "templates/yealink", "reconciler/render/renderer.py",
                   "reconciler/render/templating.py"):
        path = root / needed
        assert (path in covered) or any(p.is_relative_to(path) for p in covered), needed
    # An edit anywhere (vendors/common.py was left out of the hand-kept list) changes it.
    copies = []
    for d in dirs:
        copy = tmp_path / d.name
        shutil.copytree(d, copy, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(copy)
    before = cache.tree_digest(tuple(copies))
    common = tmp_path / "vendors" / "common.py"
    common.write_text(common.read_text() + "\n# an edit\n")
    assert cache.tree_digest(tuple(copies)) != before
