"""The daemon stays responsive to SIGTERM while it loads a big desired state (issue 11, item 3).

A real daemon subprocess follows a real repository whose tip takes seconds to load; SIGTERM in
the middle of that stops it at once, with nothing applied.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
PHONES = 20_000  # some seconds to load and minutes to render on a CI machine


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
                   capture_output=True)


def test_sigterm_while_loading_stops_the_daemon_at_once(fleet: Path, tmp_path: Path) -> None:
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    with open(fleet / "devices" / "bulk.yaml", "w", encoding="utf-8") as fh:
        for i in range(PHONES):
            fh.write(f"- {{mac: '0015651{i:05x}', model: yealink/T46U, profile: office-yealink,"
                     f" name: bulk-{i}}}\n")
    git(fleet, "init", "-q", "-b", "main")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "a big fleet")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.daemon", "--repo", str(fleet),
                                 "--log-format", "json"], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while "run started" not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline, log.read_text()
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
            time.sleep(0.3)  # well inside the load
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise AssertionError("the daemon did not stop within 5 s of SIGTERM") from None
            elapsed = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert code == 0, lines
    assert elapsed < 3, elapsed
    assert any(e["msg"].startswith("SIGTERM while loading") for e in lines), lines
    assert not (fleet / "out" / "www").exists()  # nothing applied
    assert not (fleet / ".provctl" / "status.json").exists()  # no attempt recorded as failed
