"""What a real nginx serving a target's root gives away after an apply: no URL token.

The manifest once sat at `<root>/.provctl/manifest.json`, mode 0644: one GET of it listed every
token directory, so every config and its SIP password. The records now live in meta_root,
beside the root; the root itself is 0711 so that the token directories cannot be listed.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, QUICK_START, ROOT, edit, run

pytestmark = pytest.mark.integration

# A careless but common server block: serves the root, no listings, and nothing else: no rule
# for dot-paths. What provctl keeps must be safe even behind this.
PLAIN_BLOCK = """
server {
    listen 127.0.0.1:{port};
    root {root};
    autoindex off;
    access_log {access_log} combined;
}
"""

OLD_RECORDS = [
    ".provctl/manifest.json",
    ".provctl/journal.json",
    ".provctl/lock.json",
    ".provctl/",
    ".provctl/receipts/",
]


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example fleet (the quick start's), with its demo secrets."""
    repo = tmp_path / "desired-state"
    shutil.copytree(QUICK_START, repo, ignore=shutil.ignore_patterns("out", ".provctl"))
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", FLEET_SECRET)
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(ROOT / "examples" / "demo-secrets.yaml"))
    monkeypatch.delenv("PROVCTL_STATE_DIR", raising=False)
    return repo


def _tokens(root: Path) -> set[str]:
    """The token directories published under the root."""
    return {
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name != "firmware"
    }


def _assert_nothing_reveals_a_token(server, root: Path, tokens: set[str]) -> None:
    assert tokens
    fetched: list[tuple[str, int, bytes]] = []
    for path in OLD_RECORDS:
        fetched.append((path, *server.get(path)))
    # Listings of the root and of every directory that is not itself a token.
    for directory in [
        "",
        *(
            p.relative_to(root).as_posix() + "/"
            for p in root.rglob("*")
            if p.is_dir() and p.name not in tokens
        ),
    ]:
        fetched.append((directory, *server.get(directory)))
    # Every file served outside the token directories (firmware, anything at the top).
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel.split("/")[0] not in tokens:
            fetched.append((rel, *server.get(rel)))
    for path, status, body in fetched:
        for token in tokens:
            assert token.encode() not in body, f"GET /{path} ({status}) reveals a token"
    for path in OLD_RECORDS:
        assert server.get(path)[0] == 404, path
    assert server.get("")[0] in (403, 404)  # no listing of the root


def test_nothing_served_reveals_a_token_after_applying_the_example_fleet(example, nginx_factory):
    assert run(example, "apply") == 2
    root = example / "out" / "www"
    records = example / "out" / ".provctl-www"
    server = nginx_factory(root, PLAIN_BLOCK)

    _assert_nothing_reveals_a_token(server, root, _tokens(root))

    assert not (root / ".provctl").exists()
    assert stat.S_IMODE(root.stat().st_mode) == 0o711
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    assert sorted(p.name for p in records.iterdir()) == ["manifest.json", "receipts"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in records.rglob("*") if p.is_file())


def test_records_of_an_older_provctl_in_the_root_move_out_on_the_first_run(example, nginx_factory):
    assert run(example, "apply") == 2
    root = example / "out" / "www"
    records = example / "out" / ".provctl-www"
    # The layout an older provctl left: its records inside the served tree, world-readable.
    shutil.move(records, root / ".provctl")
    server = nginx_factory(root, PLAIN_BLOCK)
    assert server.get(".provctl/manifest.json")[0] == 200  # what the hole looked like

    assert run(example, "plan") == 0  # the old records are read where they are ...
    assert (root / ".provctl").is_dir()  # ... and a plan writes nothing
    assert run(example, "apply") == 0

    assert not (root / ".provctl").exists()
    assert (records / "manifest.json").exists() and len(list(records.glob("receipts/*"))) == 1
    _assert_nothing_reveals_a_token(server, root, _tokens(root))
    tokens = {
        p.split("/")[0]
        for p in json.loads((records / "manifest.json").read_text())["files"]
        if not p.startswith("firmware/")
    }
    assert tokens == _tokens(root)


def test_an_account_that_writes_only_inside_the_root_keeps_records_private(example, nginx_factory):
    """The fallback: <root>/.provctl, mode 0700, behind a server that denies dot-paths."""
    edit(example / "provisioning.yaml", "root: ./out/www", "root: ./jail/www")
    jail = example / "jail"
    (jail / "www").mkdir(parents=True)
    done = subprocess.run(["chattr", "+i", str(jail)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here ({done.stderr.strip()})")
    try:
        assert run(example, "apply") == 2
        root = jail / "www"
        assert not (jail / ".provctl-www").exists()
        assert stat.S_IMODE((root / ".provctl").stat().st_mode) == 0o700
        server = nginx_factory(root)  # the default block denies dot-paths, as serve-config's
        _assert_nothing_reveals_a_token(server, root, _tokens(root))
        assert run(example, "apply") == 0
    finally:
        subprocess.run(["chattr", "-i", str(jail)], check=True)
