"""`provctl apply` on a real pseudo-terminal: the plan, the question, progress and colour."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, SECRETS, edit

PROMPT = "Only 'yes' is accepted: "


def published(repo: Path) -> list[Path]:
    root = repo / "out" / "www"
    return [p for p in root.rglob("*") if p.is_file() and ".provctl" not in p.parts]


def drive(repo: Path, *args: str, answer: str | None = None, no_color: bool = False,
          at_prompt=lambda: None, timeout: float = 90.0) -> tuple[str, int]:
    """Run provctl with stdin, stdout and stderr on one pty; answer the question if asked."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PYTHONWARNINGS")}
    env.update(TERM="xterm-256color", PROVCTL_FLEET_SECRET=FLEET_SECRET,
               PROVCTL_SECRETS_FILE=str(SECRETS))
    if no_color:
        env["NO_COLOR"] = "1"
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execve(sys.executable, [sys.executable, "-m", "reconciler.cli", "apply", "--repo",
                                   str(repo), *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    out = b""
    answered = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if not answered and PROMPT.encode() in out:
            at_prompt()
            answered = True
            if answer is not None:
                os.write(fd, (answer + "\n").encode())
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode("utf-8", "replace"), os.waitstatus_to_exitcode(status)


@pytest.mark.integration
def test_apply_on_a_terminal_shows_the_plan_asks_and_shows_progress_in_colour(fleet):
    seen_at_prompt: list[int] = []
    out, code = drive(fleet, answer="yes",
                      at_prompt=lambda: seen_at_prompt.append(len(published(fleet))))
    assert code == 2, out
    assert seen_at_prompt == [0]  # nothing was written while it asked
    plan_at = out.index("Plan for revision")
    prompt_at = out.index(PROMPT)
    assert out.index("phones rendered (local)") < plan_at < out.index("Summary:") < prompt_at
    assert "Apply these" in out[plan_at:prompt_at + len(PROMPT)]
    after = out[prompt_at:]
    assert "files published (local)" in after and "it/s" not in after
    assert re.search(r"files published \(local\):.*\d+/\d+ \[", after)  # N/M, then time, rate
    assert "file/s]" in after
    assert "\x1b[32m" in out  # colour: the "+" lines of the plan
    assert "target local: " in after and "change(s) applied" in after
    assert published(fleet)


@pytest.mark.integration
def test_answering_no_writes_nothing_and_exits_3(fleet):
    out, code = drive(fleet, answer="no")
    assert code == 3, out
    assert "Apply cancelled: nothing was written." in out
    assert published(fleet) == []


@pytest.mark.integration
def test_no_color_means_no_escape_codes_at_all(fleet):
    out, code = drive(fleet, "-y")  # -y: no question; colour and progress still on
    assert code == 2 and PROMPT not in out and "\x1b[" in out
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    out, code = drive(fleet, answer="yes", no_color=True)
    assert code == 2, out
    assert PROMPT in out and "files published (local)" in out
    assert "\x1b" not in out


@pytest.mark.integration
def test_apply_plan_file_never_asks(fleet, tmp_path):
    import subprocess

    plan = tmp_path / "plan.json"
    env = {**os.environ, "PROVCTL_FLEET_SECRET": FLEET_SECRET,
           "PROVCTL_SECRETS_FILE": str(SECRETS)}
    subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "--repo", str(fleet),
                    "--format", "json", "--out", str(plan)], env=env, capture_output=True)
    out, code = drive(fleet, "--plan", str(plan))
    assert code == 2 and PROMPT not in out and published(fleet)



@pytest.mark.integration
def test_the_register_progress_shows_each_services_rate_and_throttling(fleet, monkeypatch):
    """Registrations at a service that throttles (a gateway allowing 20 requests/s, bursts
    of 2): the registrations bar carries the service's measured rate, its limit now and the
    throttled count."""
    from fakes import FakeYmcs
    from fleet_fixtures import yealink_fleet

    monkeypatch.setenv("YMCS_ID", "client-1")
    monkeypatch.setenv("YMCS_SECRET", "secret-1")
    with FakeYmcs({"client-1": "secret-1"}) as fake:
        yealink_fleet(fleet, "kind: yealink-ymcs, client_id: env:YMCS_ID, client_secret: "
                      f"env:YMCS_SECRET, base_url: '{fake.url}', rate_per_second: 1000",
                      "per-device", [f"00156550{i:04x}" for i in range(400)])
        fake.rate_limit(20, burst=2)
        out, code = drive(fleet, "-y", no_color=True)
    assert code == 2, out
    assert all(fake.effective_url(f"00156550{i:04x}") for i in range(400))
    lines = [line for line in re.split(r"[\r\n]", out) if line.startswith("registrations")]
    assert lines, out
    last = lines[-1]
    assert re.search(r"\d+/\d+ \[", last)  # N/M, then time and rate
    found = re.search(r"yealink (\d+\.\d)/([\d.]+) req/s, (\d+) throttled", last)
    assert found, last
    assert float(found.group(2)) < 1000  # the limit came down after the 429s
    assert int(found.group(3)) == sum(1 for r in fake.requests if r.status == 429) >= 1
