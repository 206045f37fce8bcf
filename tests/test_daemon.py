"""The reconcile daemon as operators run it: a real subprocess following a real git repository.

Every wait is bounded; a daemon left running is killed by the fixture.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleet_fixtures import edit
from sshd import free_port

pytestmark = pytest.mark.integration

GIT_ENV = {"GIT_AUTHOR_NAME": "Olivia Operator", "GIT_AUTHOR_EMAIL": "olivia@example.net",
           "GIT_COMMITTER_NAME": "Olivia Operator", "GIT_COMMITTER_EMAIL": "olivia@example.net"}
WAIT = 10.0  # seconds: the longest any single expectation may take


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A", ".")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def add_devices(repo: Path, first: int, count: int = 1) -> None:
    with open(repo / "devices" / "pool.yaml", "a", encoding="utf-8") as fh:
        for i in range(first, first + count):
            fh.write(f'- mac: "00:15:65:EF:{i // 256:02X}:{i % 256:02X}"\n'
                     f"  model: yealink/T46U\n  profile: office-yealink\n  name: gen-{i}\n")


def device_file(repo: Path, i: int) -> list[Path]:
    return sorted((repo / "out" / "www").glob(f"*/001565ef{i // 256:02x}{i % 256:02x}.cfg"))


def published(repo: Path) -> dict[str, bytes]:
    root = repo / "out" / "www"
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".provctl" not in p.parts}


def status(state: Path) -> dict:
    try:
        return json.loads((state / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def wait_for(what: str, check: Callable[[], object], timeout: float = WAIT) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Daemon:
    """`python -m reconciler.daemon ...` with its stderr in a file (read at any time)."""

    def __init__(self, tmp: Path, *args: str, name: str = "daemon"):
        self.log = tmp / f"{name}.log"
        self.fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler.daemon", *args],
                                     stdout=self.fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, **GIT_ENV})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def runs(self, revision: str | None = None) -> list[dict]:
        return [e for e in self.lines() if e["msg"].startswith("run started")
                and (revision is None or e.get("revision") == revision)]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout}s:\n"
                                 f"{self.text()[-3000:]}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.fh.close()


@pytest.fixture
def repo(fleet: Path) -> Path:
    """The example fleet as a git repository with one commit on main."""
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    git(fleet, "init", "-q", "-b", "main")
    commit(fleet, "the example fleet")
    return fleet


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(*args: str, name: str = "daemon") -> Daemon:
        d = Daemon(tmp_path, *args, name=f"{name}-{len(started)}")
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def synced(repo: Path, state: Path, rev: str) -> bool:
    entry = status(state).get("local", {})
    return (entry.get("last_applied") or {}).get("revision") == rev


def test_follows_the_branch_coalesces_bursts_logs_json_and_exports_metrics(
        repo: Path, tmp_path: Path, daemons) -> None:
    state = repo / ".provctl"
    prom = tmp_path / "textfile" / "provctl.prom"
    port = free_port()
    d = daemons("--repo", str(repo), "--interval", "30", "--log-format", "json",
                "--metrics-textfile", str(prom), "--metrics-port", str(port))
    first = git(repo, "rev-parse", "HEAD")
    wait_for("the first revision applied", lambda: synced(repo, state, first))
    base = len(published(repo))  # the example fleet's files (it grows with the project)
    assert base > 0

    # A commit is picked up while the daemon runs (watchdog on .git/refs), well before the
    # 30 s interval.
    add_devices(repo, 1)
    t0 = time.monotonic()
    second = commit(repo, "add gen-1")
    wait_for("gen-1's file on the target", lambda: device_file(repo, 1))
    assert time.monotonic() - t0 < 5
    wait_for("the second revision recorded", lambda: synced(repo, state, second))

    # A burst of commits (one shell, tens of milliseconds apart) becomes one run on the newest.
    script = ""
    for i in (2, 3, 4):
        add_devices(repo, i)
        snapshot = tmp_path / f"pool-{i}.yaml"
        snapshot.write_bytes((repo / "devices" / "pool.yaml").read_bytes())
        script += (f"cp '{snapshot}' devices/pool.yaml && git add -A . && "
                   f"git commit -q -m 'add gen-{i}' && ")
    subprocess.run(["sh", "-c", script + "true"], cwd=repo, env={**os.environ, **GIT_ENV},
                   check=True)
    burst = git(repo, "rev-list", "--max-count=3", "--reverse", "HEAD").split()
    wait_for("the burst's tip applied", lambda: synced(repo, state, burst[-1]))
    assert all(device_file(repo, i) for i in (2, 3, 4))
    assert d.runs(burst[0]) == [] and len(d.runs(burst[-1])) == 1

    # JSON lines: every line one object with ts, level, msg; runs carry the revision.
    lines = d.lines()
    assert all({"ts", "level", "msg"} <= set(e) for e in lines)
    applied = [e for e in lines if e.get("target") == "local" and e.get("revision") == second]
    assert applied and applied[0]["changes"] == 2  # gen-1's .cfg and .boot

    # Metrics: the textfile and the HTTP endpoint.
    puts = f'provctl_changes_applied_total{{action="put",target="local"}} {base + 8}.0'
    text = wait_for("the metrics textfile after the burst",
                    lambda: prom.exists() and puts in prom.read_text() and prom.read_text())
    for name in ("provctl_target_synced", "provctl_last_applied_timestamp_seconds",
                 "provctl_last_applied_revision_timestamp_seconds",
                 "provctl_run_duration_seconds_bucket", "provctl_changes_applied_total",
                 "provctl_failures_total", "provctl_drift_files", "provctl_redirect_states",
                 "provctl_git_fetch_failures_total", "provctl_runs_total"):
        assert name in text, name
    assert 'provctl_target_synced{target="local"} 1.0' in text
    assert 'provctl_redirect_states{state="active"}' in text
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b'provctl_target_synced{target="local"} 1.0' in body

    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    assert not (state / "daemon.lock").read_text().strip()  # the lock is released


def test_bad_commit_applies_nothing_and_is_not_retried_until_a_fix(
        repo: Path, daemons) -> None:
    state = repo / ".provctl"
    good = git(repo, "rev-parse", "HEAD")
    d = daemons("--repo", str(repo), "--interval", "1", "--log-format", "json")
    wait_for("the good revision applied", lambda: synced(repo, state, good))
    before = published(repo)

    # A change that would rebuild files, and an error in the same commit.
    edit(repo / "defaults.yaml", "ntp: {server: pool.ntp.org}", "ntp: {server: ntp.example.net}")
    add_devices(repo, 7)
    edit(repo / "devices" / "pool.yaml", "profile: office-yealink\n  name: gen-7",
         "profile: no-such-profile\n  name: gen-7")
    bad = commit(repo, "broken: unknown profile")

    def attempted_bad():
        entry = status(state).get("local", {})
        return (entry.get("last_attempted") or {}).get("revision") == bad and entry

    entry = wait_for("the bad revision recorded as attempted", attempted_bad)
    assert "no-such-profile" in entry["last_attempted"]["error"]
    assert entry["last_applied"]["revision"] == good  # kept separately: last good
    time.sleep(2.5)  # more than two intervals: drift is only reported, the bad one not retried
    assert published(repo) == before
    assert len(d.runs(bad)) == 1
    assert any(e["msg"].startswith("local: tip") and e.get("last_applied") == good
               for e in d.lines())

    # SIGHUP reloads: the invalid revision is tried again once, and still applies nothing.
    d.signal(signal.SIGHUP)
    wait_for("a re-run after SIGHUP", lambda: len(d.runs(bad)) == 2)
    assert published(repo) == before

    edit(repo / "devices" / "pool.yaml", "profile: no-such-profile", "profile: office-yealink")
    fixed = commit(repo, "fix the profile")
    wait_for("the fix applied", lambda: synced(repo, state, fixed))
    entry = status(state)["local"]
    assert entry["last_attempted"] == {**entry["last_attempted"], "revision": fixed,
                                       "error": None}
    assert device_file(repo, 7)
    assert published(repo) != before
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_sigterm_mid_apply_finishes_the_batch_records_and_the_next_run_converges(
        repo: Path, daemons) -> None:
    state = repo / ".provctl"
    add_devices(repo, 100, 150)  # 300 more files: two batches of up to 200
    head = commit(repo, "150 phones for a new site")
    d = daemons("--repo", str(repo), "--interval", "60", "--batch-pause", "30")
    wait_for("the first batch on the target", lambda: len(published(repo)) >= 200)
    d.signal(signal.SIGTERM)
    assert d.wait() == 0  # the pause is cut short: no 30 s wait
    partial = len(published(repo))
    assert partial >= 200
    entry = status(state)["local"]
    assert entry["last_attempted"]["revision"] == head
    assert "stopped" in entry["last_attempted"]["error"]
    assert "last_applied" not in entry
    assert "SIGTERM: daemon stopped" in d.text()

    again = daemons("--repo", str(repo), "--once")
    assert again.wait() == 2  # changes made: the rest of the plan
    assert len(published(repo)) > partial
    assert all(device_file(repo, i) for i in range(100, 250))
    assert synced(repo, state, head)
    assert daemons("--repo", str(repo), "--once").wait() == 0  # converged


def test_one_daemon_per_state_directory(repo: Path, daemons) -> None:
    state = repo / ".provctl"
    first = daemons("--repo", str(repo), "--interval", "60")
    wait_for("the first daemon's lock",
             lambda: (state / "daemon.lock").exists()
             and (state / "daemon.lock").read_text().strip() == str(first.pid))
    second = daemons("--repo", str(repo), "--once", name="second")
    assert second.wait() == 3
    assert f"pid {first.pid}" in second.text()
    first.signal(signal.SIGTERM)
    assert first.wait() == 0


def test_drift_is_reported_each_scan_and_healed_when_policy_says_so(
        repo: Path, tmp_path: Path, daemons) -> None:
    state = repo / ".provctl"
    prom = tmp_path / "provctl.prom"
    # Between full scans (policy.drift_scan_every, 1h by default) the manifest is trusted.
    edit(repo / "provisioning.yaml", "redirect_window_days: 7",
         "redirect_window_days: 7, drift_scan_every: 1s")
    commit(repo, "scan every second")
    d = daemons("--repo", str(repo), "--interval", "1", "--metrics-textfile", str(prom))
    head = git(repo, "rev-parse", "HEAD")
    wait_for("the first revision applied", lambda: synced(repo, state, head))
    victim = next(p for p in (repo / "out" / "www").glob("*/*.cfg"))
    victim.unlink()
    wait_for("drift in the metrics",
             lambda: 'provctl_drift_files{target="local"} 1.0' in prom.read_text())
    assert not victim.exists()  # policy.drift defaults to report

    edit(repo / "provisioning.yaml", "drift_scan_every: 1s", "drift_scan_every: 1s, drift: heal")
    commit(repo, "heal drift")
    wait_for("the file healed", victim.exists)
    d.signal(signal.SIGTERM)
    assert d.wait() == 0


def test_follows_a_remote_and_pushes_the_deployment_notes(
        repo: Path, tmp_path: Path, daemons) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    state = tmp_path / "state"
    prom = tmp_path / "provctl.prom"
    args = ("--repo", f"file://{bare}", "--state-dir", str(state), "--metrics-textfile",
            str(prom))

    assert daemons(*args, "--once").wait() == 2
    clone = state / "repo"
    assert any(path.endswith(".cfg") for path in published(clone))
    head = git(repo, "rev-parse", "HEAD")
    notes = git(bare, "notes", "--ref", "provctl", "show", head)
    assert "applied to local" in notes

    d = daemons(*args, "--interval", "1")
    add_devices(repo, 9)
    pushed = commit(repo, "add gen-9")
    git(repo, "push", "-q", "origin", "main")
    wait_for("the pushed commit applied", lambda: synced(clone, state, pushed))
    assert device_file(clone, 9)

    bare.rename(tmp_path / "gone.git")  # the remote disappears: fetches fail, counted
    wait_for("a fetch failure counted", lambda: "provctl_git_fetch_failures_total 0.0"
             not in prom.read_text() and "provctl_git_fetch_failures_total" in prom.read_text())
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
