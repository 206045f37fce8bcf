"""Where a target's records live (targets/meta.py) and what provisioning.yaml may say about it."""

from __future__ import annotations

import pytest
from fleet_fixtures import edit, run

from reconciler.targets.meta import places

LOCAL = '  local: {kind: local, root: ./out/www, base_url: "http://localhost:8080/"}\n'


@pytest.mark.parametrize(
    ("root", "meta_root", "expected"),
    [
        ("/srv/www", None, ["/srv/.provctl-www", "/srv/www/.provctl"]),
        ("/srv/www/", None, ["/srv/.provctl-www", "/srv/www/.provctl"]),
        ("www", None, [".provctl-www", "www/.provctl"]),  # SFTP: relative to the login directory
        ("/", None, ["/.provctl"]),  # no sibling of its own: only the private dot-directory
        (".", None, ["./.provctl"]),
        ("/srv/www", "/var/lib/provctl/www/", ["/var/lib/provctl/www"]),  # as configured, only
    ],
)
def test_places_preferred_first(root, meta_root, expected):
    choices, legacy = places(root, meta_root)
    assert choices == expected
    assert legacy == f"{root.rstrip('/') or '/'}/.provctl".replace("//", "/")


def test_a_configured_meta_root_is_used(fleet):
    edit(
        fleet / "provisioning.yaml",
        LOCAL,
        LOCAL.replace("root: ./out/www,", "root: ./out/www, meta_root: ./records,"),
    )
    assert run(fleet, "apply") == 2
    assert (fleet / "records" / "manifest.json").exists()
    assert not (fleet / "out" / ".provctl-www").exists()
    assert not (fleet / "out" / "www" / ".provctl").exists()
    assert run(fleet, "apply") == 0


@pytest.mark.parametrize(
    ("meta_root", "message"),
    [
        ("./out/www/records", "meta_root inside the root must be a dot-directory"),
        ("./out/www", "meta_root must not be the root itself"),
    ],
)
def test_a_meta_root_the_web_server_would_serve_is_refused(fleet, capsys, meta_root, message):
    edit(
        fleet / "provisioning.yaml",
        LOCAL,
        LOCAL.replace("root: ./out/www,", f"root: ./out/www, meta_root: {meta_root},"),
    )
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert "provisioning.yaml:" in err and message in err


def test_a_private_dot_directory_inside_the_root_is_allowed(fleet):
    edit(
        fleet / "provisioning.yaml",
        LOCAL,
        LOCAL.replace("root: ./out/www,", "root: ./out/www, meta_root: ./out/www/.records,"),
    )
    assert run(fleet, "apply") == 2
    assert (fleet / "out" / "www" / ".records" / "manifest.json").exists()
    assert (fleet / "out" / "www" / ".records").stat().st_mode & 0o777 == 0o700
