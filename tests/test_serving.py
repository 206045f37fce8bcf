"""Serving a target's root with a real nginx: what a phone (or a scanner) can fetch."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_nginx_serves_the_root_and_hides_dot_paths(nginx_factory, tmp_path):
    root = tmp_path / "www"
    (root / "tok").mkdir(parents=True)
    (root / "tok" / "a.cfg").write_text("hello\n")
    (root / ".provctl").mkdir()
    (root / ".provctl" / "manifest.json").write_text("{}")
    server = nginx_factory(root)
    assert server.get("tok/a.cfg") == (200, b"hello\n")
    assert server.get(".provctl/manifest.json")[0] == 404
    assert server.get("tok/")[0] in (403, 404)  # no listing of a token directory
    log = server.access_log.read_text()
    assert '"GET /tok/a.cfg HTTP/1.1" 200' in log
