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


def big_fleet(fleet: Path, phones: int) -> None:
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    with open(fleet / "devices" / "bulk.yaml", "w", encoding="utf-8") as fh:
        for i in range(phones):
            fh.write(f"- {{mac: '0015651{i:05x}', model: yealink/T46U, profile: office-yealink,"
                     f" name: bulk-{i}}}\n")
    git(fleet, "init", "-q", "-b", "main")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "a big fleet")


def test_sigterm_while_loading_stops_the_daemon_at_once(fleet: Path, tmp_path: Path) -> None:
    big_fleet(fleet, PHONES)
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


def test_render_workers_never_keep_the_daemon_from_finishing(fleet: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    """The render worker processes are forked from the daemon: they must not inherit its
    SIGTERM handler, or the pool cannot stop them and the daemon waits for them forever (its
    first run on a fleet of 400 phones or more never ended)."""
    from reconciler.render.renderer import PARALLEL_MIN

    big_fleet(fleet, PARALLEL_MIN + 200)
    monkeypatch.setenv("PROVCTL_RENDER_PROCESSES", "2")
    log = tmp_path / "once.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.daemon", "--repo", str(fleet),
                                 "--once"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon's run did not end:\n" + log.read_text()) from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the workers too
                proc.wait(5)
    assert code == 2, log.read_text()
    assert len(list((fleet / "out" / "www").rglob("0015651*.cfg"))) == PARALLEL_MIN + 200


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_a_render_worker_ends_on_sigterm_and_the_daemon_still_stops(fleet: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """systemd sends SIGTERM to every process of the service. A render worker that inherited
    the daemon's handler (which only sets a flag) ignored it, and so did Pool.terminate():
    the daemon then waited for it forever. A worker ends on SIGTERM, and the daemon notices
    its own stop even while the dead worker's batch never comes back."""
    big_fleet(fleet, 3000)
    monkeypatch.setenv("PROVCTL_RENDER_PROCESSES", "2")
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler.daemon", "--repo", str(fleet),
                                 "--log-format", "json"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            workers: list[int] = []
            while len(workers) < 2:  # git's helpers are children too: only python workers
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                workers = [c for c in _children(proc.pid)
                           if b"reconciler.daemon" in Path(f"/proc/{c}/cmdline").read_bytes()]
                time.sleep(0.02)
            os.kill(workers[0], signal.SIGTERM)
            deadline = time.monotonic() + 3
            while not _gone(workers[0]):
                assert time.monotonic() < deadline, "a render worker ignored SIGTERM"
                time.sleep(0.02)
            signalled = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError("the daemon did not stop within 10 s of SIGTERM:\n"
                                     + log.read_text()) from None
            elapsed = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    assert code == 0, log.read_text()
    assert elapsed < 5, elapsed
