"""`provctl serve` (the development server) and nginx configured by `provctl serve-config` route
requests the same way, and both log what provctl reads."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, edit, run
from phones import Phone
from sshd import free_port

from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

MAC = "001565aabb01"
TOKEN = url_token(FLEET_SECRET, MAC)


def request(port: int, method: str, path: str, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, headers={"User-Agent": "curl/8.0", **(headers or {})})
    status = conn.getresponse().status
    conn.close()
    return status


def keep_alive(port: int) -> list[int]:
    """HEAD of a missing file, then a GET, on one connection: a HEAD answer carries no body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    for method, path in (("HEAD", f"/{TOKEN}/missing.cfg"), ("HEAD", f"/{TOKEN}/{MAC}.cfg"),
                         ("GET", f"/{TOKEN}/{MAC}.cfg")):
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        out.append(response.status)
    conn.close()
    return out


def requests(port: int, root: Path) -> list[int]:
    """What a phone, an operator's curl and a scanner may ask."""
    cfg = root / TOKEN / f"{MAC}.cfg"
    (root / TOKEN / ".hidden").write_text("never served\n")
    (root / "elsewhere").mkdir(exist_ok=True)
    modified = {"If-Modified-Since": formatdate(cfg.stat().st_mtime, usegmt=True)}
    return [
        request(port, "GET", f"/{TOKEN}/{MAC}.cfg"),
        request(port, "HEAD", f"/{TOKEN}/{MAC}.cfg"),
        request(port, "GET", f"/{TOKEN}/{MAC}.cfg", modified),
        request(port, "GET", f"/{TOKEN}//{MAC}.cfg?x=1"),
        request(port, "GET", f"/{TOKEN}/"),  # a token directory: never listed, never confirmed
        request(port, "GET", f"/{TOKEN}"),
        request(port, "GET", "/"),
        request(port, "GET", "/elsewhere/"),
        request(port, "GET", f"/{TOKEN}/.hidden"),
        request(port, "GET", f"/{TOKEN}/missing.cfg"),
        request(port, "GET", f"/{TOKEN}/../{TOKEN}/{MAC}.cfg"),
        request(port, "POST", f"/{TOKEN}/{MAC}.cfg"),
    ]


EXPECTED = [200, 200, 304, 200, 404, 404, 404, 404, 404, 404, 200, 403]


@pytest.fixture
def fleet_with_log(fleet, tmp_path):
    log = tmp_path / "access.log"
    edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         f'base_url: "http://localhost:8080/", access_log: {{path: "{log}", format: json}}}}')
    assert run(fleet, "apply") == 2
    return fleet, log


def start_serve(fleet: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo",
                             str(fleet), "--target", "local", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "") from None
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("provctl serve did not listen")


def test_the_development_server_routes_like_nginx_and_logs_what_provctl_reads(
        fleet_with_log, nginx_factory, capsys):
    fleet, log = fleet_with_log
    root = fleet / "out" / "www"
    port = free_port()
    proc = start_serve(fleet, port)
    try:
        assert requests(port, root) == EXPECTED
        assert keep_alive(port) == [404, 200, 200]
        phone = Phone("yealink", MAC, "T46U", "108.86.0.95")
        assert phone.boot(f"http://127.0.0.1:{port}/{TOKEN}/") == [
            ("y000000000000.boot", 404), (f"{MAC}.boot", 200), (f"{MAC}.cfg", 200)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    banner = proc.stderr.read().decode() if proc.stderr else ""
    assert "production belongs behind nginx or Apache" in banner

    capsys.readouterr()
    assert run(fleet, "status", "--devices") == 0
    out = capsys.readouterr().out
    assert f"  {MAC}  current" in out
    assert "18 request(s) read, 0 unparsed line(s)" in out

    capsys.readouterr()
    assert run(fleet, "serve-config", "nginx", "--target", "local", "--listen",
               "127.0.0.1:{port}") == 0
    server = nginx_factory(root, capsys.readouterr().out, access_log=log)
    assert requests(server.port, root) == EXPECTED
    assert keep_alive(server.port) == [404, 200, 200]


def test_serve_refuses_what_it_cannot_do(fleet, capsys):
    edit(fleet / "provisioning.yaml", "  local: {kind: local",
         "  eu-1: {kind: sftp, host: 127.0.0.1, user: prov, known_hosts: kh, root: /srv, "
         "base_url: 'https://p/'}\n  local: {kind: local")
    assert run(fleet, "serve", "--target", "eu-1") == 64
    assert "serves local targets" in capsys.readouterr().err
    assert run(fleet, "serve", "--target", "local", "--listen", "8080") == 64
    assert run(fleet, "serve", "--target", "nowhere") == 1
    assert run(fleet, "serve-config", "nginx", "--target", "local", "--limit-misses",
               "fast") == 64
    capsys.readouterr()
    assert run(fleet, "serve-config", "apache", "--target", "local") == 0
    captured = capsys.readouterr()
    assert "Options -Indexes" in captured.out and "CustomLog" in captured.out
    assert "names no access_log" in captured.err
    with pytest.raises(SystemExit):
        run(fleet, "serve", "--help")
    assert "production belongs behind nginx or Apache" in capsys.readouterr().out
