"""What `render` leaves on disk, and what the render cache keys on (issue 11, items 15, 18)."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from fleet_fixtures import run

from reconciler.render import cache


def modes(out: Path) -> tuple[set[int], set[int]]:
    files = {stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    dirs = {stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")] if p.is_dir()}
    return files, dirs


def test_render_writes_private_files_even_over_existing_ones(fleet, tmp_path):
    out = tmp_path / "rendered"
    assert run(fleet, "render", "--out", str(out)) == 0
    assert modes(out) == ({0o600}, {0o700})
    cfg = next(out.rglob("001565aabb01.cfg"))
    assert "rec-Pw-200" in cfg.read_text()  # cleartext: hence the modes
    cfg.chmod(0o644)
    assert run(fleet, "render", "--out", str(out)) == 0
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_render_never_writes_through_a_symlink(fleet, tmp_path, capsys):
    out = tmp_path / "rendered"
    assert run(fleet, "render", "--out", str(out)) == 0
    cfg = next(out.rglob("001565aabb01.cfg"))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    cfg.unlink()
    cfg.symlink_to(victim)
    assert run(fleet, "render", "--out", str(out)) == 1
    assert "cannot write" in capsys.readouterr().err
    assert victim.read_text() == "keep me\n"


def test_render_redact_writes_no_secret(fleet, tmp_path):
    out = tmp_path / "redacted"
    assert run(fleet, "render", "--out", str(out), "--redact") == 0
    text = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    for secret in ("rec-Pw-200", "S3cr&t", "Adm1n-Demo!", "in-Pw-10"):
        assert secret not in text
    assert "account.1.password = <secret:acme/200 hmac:" in text


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
