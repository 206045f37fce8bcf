"""The quick start's data (desired-state/, the embedded default) stays a fleet that validates,
plans and applies, and converges on the second run."""

from __future__ import annotations

import shutil
from pathlib import Path

from fleet_fixtures import FLEET_SECRET, QUICK_START, ROOT, run

from reconciler.render.addressing import url_token


def test_the_example_fleet_applies_and_converges(tmp_path: Path, monkeypatch):
    repo = tmp_path / "desired-state"
    shutil.copytree(QUICK_START, repo, ignore=shutil.ignore_patterns("out", ".provctl"))
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", FLEET_SECRET)
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(ROOT / "examples" / "demo-secrets.yaml"))
    monkeypatch.delenv("PROVCTL_STATE_DIR", raising=False)
    assert run(repo, "validate") == 0
    assert run(repo, "plan") == 2
    assert run(repo, "apply") == 2
    published = [p for p in (repo / "out" / "www").rglob("*") if p.is_file()]
    assert len(published) > 10
    assert run(repo, "plan") == 0
    # one phone of each vendor without a redirect client onboards behind DHCP
    boot = {url_token(FLEET_SECRET, f"bootstrap:{c}:0"): c for c in ("acme", "globex", "initech")}
    files = sorted(f"{boot[p.parent.name]}/{p.name}" for p in published if p.parent.name in boot)
    assert files == ["acme/0c383eaa0002.cfg", "globex/cfg000b82bb0001.xml",
                     "initech/8841-3PCC.xml", "initech/Config0080F0CC0002.cfg",
                     "initech/KX-HDV230.cfg", "initech/c80084cc0001.xml"]
    assert run(repo, "dhcp", "--customer", "initech") == 0
