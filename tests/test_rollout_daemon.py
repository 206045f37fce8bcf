"""The daemon advances a rollout's waves on its own, and halts one whose gate fails, saying why
in its log (naming the phones) and in its metrics. A real daemon process, real git."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest
from fleet_fixtures import edit
from test_daemon import add_devices, commit, daemons, repo, wait_for  # noqa: F401

from reconciler.pipeline import waves

pytestmark = pytest.mark.integration

PIN = "pins: [{models: [yealink/T46U], version: 108.86.0.95, rollout: %s}]"


def book(state: Path) -> waves.Book:
    try:
        return waves.load_book(state)
    except ValueError:
        return waves.Book()


def test_the_daemon_advances_waves_itself_and_halts_a_failing_one(  # noqa: F811
        repo: Path, tmp_path: Path, daemons) -> None:  # noqa: F811
    state = repo / ".provctl"
    prom = tmp_path / "provctl.prom"
    add_devices(repo, 0, 30)
    edit(repo / "profiles" / "office-yealink.yaml", "firmware: installed", "")
    edit(repo / "firmware" / "yealink.yaml", "pins: []",
         PIN % "{waves: [30%, 100%], soak: 1s, gate: {}}")
    commit(repo, "T46U: 108.86.0.95 in two waves")
    d = daemons("--repo", str(repo), "--interval", "0.3", "--log-format", "json",
                "--metrics-textfile", str(prom))

    def logged(action: str) -> list[dict]:
        return [e for e in d.lines() if e.get("rollout") and e.get("action") == action]

    advance = wait_for("the daemon to publish wave 2 by itself", lambda: logged("advance"))
    started = logged("start")
    assert started and "wave 2/2 starts" in advance[0]["msg"]
    assert any(r.state.wave == 2 for r in book(state).rollouts.values())
    assert started[0]["level"] == "info" and advance[0]["wave"] == 2
    text = wait_for("the wave in the metrics",
                    lambda: prom.exists() and "provctl_rollout_wave{" in prom.read_text()
                    and prom.read_text())
    assert 'kind="firmware"' in text and "} 2.0" in text.split("provctl_rollout_wave{")[1]

    # a new version whose wave 1 must fetch it: nobody fetches (no access log), it halts
    binary = repo / "firmware-store" / "T46U-108.86.0.99.rom"
    binary.write_bytes(b"a newer firmware\n")
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    catalog = repo / "firmware" / "yealink.yaml"
    catalog.write_text(catalog.read_text().replace(
        "pins:", f"  - {{vendor: yealink, models: [T46U], version: 108.86.0.99, file: "
                 f'T46U-108.86.0.99.rom, sha256: "{sha}", source: '
                 f"firmware-store/T46U-108.86.0.99.rom}}\npins:")
        .replace("version: 108.86.0.95, rollout: {waves: [30%, 100%], soak: 1s, gate: {}}",
                 "version: 108.86.0.99, rollout: {waves: [30%, 100%], soak: 1s, "
                 "gate: {fetched: 100%}}"))
    commit(repo, "T46U: 108.86.0.99, gated")

    (line,) = wait_for("the halt in the daemon's log", lambda: logged("halted"))
    assert line["level"] == "warning" and "halted at wave 1/2" in line["msg"]
    assert line["phones"] and all(len(m) == 12 for m in line["phones"])
    assert line["phones"][0] in line["msg"] and line["gate"]["fetched"] == 0
    text = wait_for("the halt in the metrics", lambda: 'provctl_rollout_halted{' in
                    prom.read_text() and "} 1.0" in prom.read_text().split(
                        "provctl_rollout_halted{")[-1] and prom.read_text())
    assert text.count("provctl_rollout_halted{") == 1  # the finished rollout's series is gone
    stored = [r for r in book(state).rollouts.values() if r.state.halted]
    assert len(stored) == 1 and stored[0].version == "108.86.0.99"
    # the halt is logged once, not again on every drift check (three intervals later)
    time.sleep(1.0)
    assert len(logged("halted")) == 1
    receipts = [json.loads(x) for x in (state / "receipts.jsonl").read_text().splitlines()]
    assert [r["action"] for x in receipts for r in x["rollouts"]].count("halted") >= 1
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
