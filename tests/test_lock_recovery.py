"""A killed run must not block the next; a lock that must be respected says how to remove it.

After `kill -9` of an apply (or of the daemon) the lock names a pid that no longer exists on
this host: the next run takes it over and records that in its receipt, instead of exiting 3
until the lock's TTL passes (which `RestartPreventExitStatus=3` turned into a daemon that
stays down). A lock of another host is respected, and the refusal prints the exact `provctl
unlock` command, which works without any secret. A target that could not be locked or observed
is never reported as matching the desired state.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from fleet_fixtures import ROOT, edit, run

from reconciler.targets import lock
from reconciler.targets.local import LocalTarget

MATCH = "The targets match the desired state"

HOLD = """
import sys, time, pathlib
from reconciler.targets import lock
from reconciler.targets.local import LocalTarget
held = lock.acquire(LocalTarget("local", pathlib.Path(sys.argv[1])), "apply@ci", 1800)
print(held.info.id, flush=True)
time.sleep(120)
"""


def test_the_lock_of_a_killed_apply_is_taken_over_and_recorded(fleet, capsys):
    assert run(fleet, "apply") == 2
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    held = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(fleet / "out" / "www")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert held.stdout is not None
    lock_id = held.stdout.readline().strip()
    assert len(lock_id) == 12
    held.send_signal(signal.SIGKILL)
    held.wait()
    capsys.readouterr()

    assert run(fleet, "apply") == 2  # not 3 for the next 30 minutes

    receipt = json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])
    taken = receipt["targets"]["local"]["lock_taken_over"]
    assert lock_id in taken and f"process {held.pid} is gone" in taken
    assert lock.holder(LocalTarget("local", fleet / "out" / "www")) is None  # released


def test_a_lock_of_another_host_is_refused_with_the_unlock_command(fleet, capsys, monkeypatch):
    assert run(fleet, "apply") == 2
    now = time.time()
    other = lock.LockInfo(
        "5ca1ab1e0042", "daemon@prov2", 4242, "prov2.example.net", now, now + 1800
    )
    records = fleet / "out" / ".provctl-www"
    (records / "lock.json").write_bytes(other.to_bytes())
    capsys.readouterr()

    assert run(fleet, "apply") == 3

    out = capsys.readouterr()
    text = out.out + out.err
    assert "provctl unlock --target local --id 5ca1ab1e0042" in text
    assert MATCH not in text  # the locked target was not even looked at
    assert (records / "lock.json").read_bytes() == other.to_bytes()

    # The operator runs the printed command; it needs no fleet secret and no secrets file.
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    monkeypatch.delenv("PROVCTL_SECRETS_FILE")
    assert run(fleet, "unlock", "--target", "local", "--id", "5ca1ab1e0042") == 0
    assert "removed lock 5ca1ab1e0042 held by daemon@prov2" in capsys.readouterr().out
    assert not (records / "lock.json").exists()


def test_no_changes_is_never_claimed_for_a_target_that_was_not_observed(fleet, capsys):
    assert run(fleet, "apply") == 2
    local = '  local: {kind: local, root: ./out/www, base_url: "http://localhost:8080/"}\n'
    edit(
        fleet / "provisioning.yaml",
        local,
        local
        + (
            "  eu-1: {kind: sftp, host: 127.0.0.1, port: 1, user: prov, key: ./no-such-key, "
            "known_hosts: ./no-such-known-hosts, root: /srv/prov, base_url: 'https://p/'}\n"
        ),
    )
    capsys.readouterr()

    assert run(fleet, "plan", "--target", "local") == 0
    assert MATCH in capsys.readouterr().out
    assert run(fleet, "plan") == 1

    out = capsys.readouterr().out
    assert "eu-1: FAILED to observe" in out and "no-such-key" in out
    assert MATCH not in out
    assert "eu-1 could not be checked" in out


def test_unlock_of_a_free_target_or_a_wrong_id_says_so(fleet, capsys):
    assert run(fleet, "unlock", "--target", "local", "--id", "0123456789ab") == 1
    assert "no lock is held" in capsys.readouterr().err
    held = lock.acquire(LocalTarget("local", fleet / "out" / "www"), "ops", 600).info
    assert run(fleet, "unlock", "--target", "local", "--id", "0123456789ab") == 3
    assert held.id in capsys.readouterr().err
    assert run(fleet, "unlock", "--target", "nope", "--id", held.id) == 1
    assert socket.gethostname() in held.host
