"""Fixtures for tests that run provctl on a copy of the test fleet (tests/fixtures/fleet).

The tests have their own fleet, so the example fleet in desired-state/ (the quick start's data)
can change without moving the tests' MACs and counts.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tests" / "fixtures" / "fleet"
SECRETS = ROOT / "tests" / "fixtures" / "secrets.yaml"
QUICK_START = ROOT / "desired-state"  # the example fleet: tested only as a whole
FLEET_SECRET = "test-fleet-secret"


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the test fleet with its secrets in the environment."""
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("out", ".provctl"))
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", FLEET_SECRET)
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(SECRETS))
    monkeypatch.delenv("PROVCTL_STATE_DIR", raising=False)
    return repo


def run(repo: Path, *args: str) -> int:
    return main([args[0], "--repo", str(repo), *args[1:]])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` as a fixed operator identity; its stdout."""
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=Op Erator",
                           "-c", "user.email=op@example.net", *args], check=True,
                          capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> str:
    """Commit everything in `repo`; the new commit's sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def yealink_fleet(repo: Path, service: str, tokens: str, macs: list[str]) -> list[str]:
    """`redirect.yealink` set to `{service}` (the inside of a YAML flow mapping), `url_tokens`
    set to `tokens`, and these Yealink phones added, each asking for a registration."""
    edit(repo / "provisioning.yaml", "redirect:\n", f"redirect:\n  yealink: {{{service}}}\n")
    edit(repo / "provisioning.yaml", "url_tokens: per-device", f"url_tokens: {tokens}")
    (repo / "devices" / "many.yaml").write_text("".join(
        f"- {{mac: '{m}', model: yealink/T46U, profile: office-yealink, name: spare-{i}, "
        "redirect: true}\n" for i, m in enumerate(macs)))
    return macs
