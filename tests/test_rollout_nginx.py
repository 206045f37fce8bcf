"""A firmware rollout end to end: provctl publishes, a real nginx (from `provctl serve-config`)
serves, simulated Yealink phones fetch, upgrade and report their firmware in the User-Agent,
and provctl reads the access log to gate the waves.

1. wave 1 of a new version is published; its phones fetch it, download the firmware and come
   back reporting it; the others are still served their previous version;
2. the next run publishes wave 2 (the gate counted wave 1's fetches and User-Agents);
3. a newer version whose wave-1 phones fetch but keep reporting the old version halts after
   twice its soak, naming them; wave 2 never gets it;
4. a revert takes wave 1 back at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, commit, edit, git, run
from phones import Phone

from reconciler.pipeline import waves
from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

OLD, NEW, NEWER = "108.86.0.90", "108.86.0.95", "108.86.0.99"
MACS = [f"0015657c{i:04x}" for i in range(20)]
SOAK = 1.0  # seconds
ROLLOUT = (f'{{canary: ["{MACS[0]}"], waves: [20%, 100%], soak: 1s, '
           "gate: {fetched: 100%, reports_version: 100%, errors_max: 0%}}")




def catalog_entry(fleet: Path, version: str) -> str:
    binary = fleet / "firmware-store" / f"T46U-{version}.rom"
    if not binary.exists():
        binary.write_bytes(f"firmware {version}\n".encode())
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    return (f"  - {{vendor: yealink, models: [T46U], version: {version}, file: T46U-{version}.rom,"
            f'\n     sha256: "{sha}", source: firmware-store/T46U-{version}.rom}}\n')


def pin(fleet: Path, version: str, rollout: str | None = None) -> None:
    path = fleet / "firmware" / "yealink.yaml"
    head = path.read_text().split("pins:")[0]
    extra = f", rollout: {rollout}" if rollout else ""
    path.write_text(f"{head}pins:\n  - {{models: [yealink/T46U], version: {version}, "
                    f"customer: acme{extra}}}\n")


class Fleet:
    def __init__(self, repo: Path, server, capsys):
        self.repo, self.server, self.capsys = repo, server, capsys
        self.phones = {m: Phone("yealink", m, "T46U", OLD, ip=f"127.0.0.{30 + i}")
                       for i, m in enumerate(MACS)}

    def apply(self) -> str:
        self.capsys.readouterr()
        code = run(self.repo, "apply")
        out = self.capsys.readouterr().out
        assert code in (0, 2), out
        return out

    def boot(self, mac: str, upgrade: bool = True) -> str | None:
        """The phone fetches its files; a firmware URL for another version: it downloads it,
        installs it (when `upgrade`), reboots and fetches again. Returns the version offered."""
        phone = self.phones[mac]
        base = f"{self.server.url}{url_token(FLEET_SECRET, mac)}/"
        assert phone.boot(base)[-1] == (f"{mac}.cfg", 200)
        status, body = phone.get(base, f"{mac}.cfg")
        m = re.search(r"^static\.firmware\.url = https?://[^/]+/(\S+)$", body.decode(), re.M)
        offered = m.group(1).rsplit("T46U-", 1)[1].removesuffix(".rom") if m else None
        if offered and offered != phone.firmware:
            got, _ = phone.get(self.server.url, m.group(1))
            assert got == 200
            if upgrade:
                phone.firmware = offered
                phone.boot(base)
        return offered

    def book(self) -> waves.Book:
        return waves.load_book(self.repo / ".provctl")


@pytest.fixture
def fleet_served(fleet: Path, tmp_path: Path, nginx_factory, capsys) -> Fleet:
    log = tmp_path / "nginx" / "access.log"
    log.parent.mkdir()
    edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         f'base_url: "http://localhost:8080/", access_log: {{path: "{log}", format: json}}}}')
    (fleet / "devices" / "wave.yaml").write_text("".join(
        f'- {{mac: "{m}", model: yealink/T46U, profile: office-yealink, customer: acme}}\n'
        for m in MACS))
    path = fleet / "firmware" / "yealink.yaml"
    path.write_text(path.read_text().replace("pins: []\n", "") + catalog_entry(fleet, OLD)
                    + catalog_entry(fleet, NEWER) + "pins: []\n")
    pin(fleet, OLD)
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    git(fleet, "init", "-q")
    commit(fleet, "acme's T46U on the older firmware")
    assert run(fleet, "apply") == 2
    capsys.readouterr()
    assert run(fleet, "serve-config", "nginx", "--target", "local",
               "--listen", "127.0.0.1:{port}") == 0
    block = capsys.readouterr().out
    server = nginx_factory(fleet / "out" / "www", block, access_log=log)
    served = Fleet(fleet, server, capsys)
    assert {served.boot(m) for m in MACS} == {OLD}  # every phone runs OLD, as pinned
    return served


def test_waves_gated_on_what_the_phones_fetch_and_report(fleet_served: Fleet) -> None:
    f = fleet_served
    pin(f.repo, NEW, ROLLOUT)
    commit(f.repo, f"acme T46U: {NEW} in waves")
    out = f.apply()
    assert "wave 1/2 is current" in out and "start: wave 1/2 starts" in out
    (stored,) = [r for r in f.book().rollouts.values() if r.version == NEW]
    first = sorted(m for m, (w, _, _) in stored.phones.items() if w == 1 and m in MACS)
    second = sorted(m for m in MACS if m not in first)
    assert MACS[0] in first and second  # the canary leads, the others follow

    # wave 1 is offered NEW, downloads it and comes back reporting it; wave 2 is offered OLD
    assert {m: f.boot(m) for m in MACS} == {m: NEW if m in first else OLD for m in MACS}
    assert {f.phones[m].firmware for m in first} == {NEW}
    assert {f.phones[m].firmware for m in second} == {OLD}

    time.sleep(SOAK + 0.2)
    out = f.apply()  # the gate holds (fetched, reporting, no errors): wave 2
    n = len(first)
    assert f"wave 1/2 gate holds ({n}/{n} fetched, {n}/{n} report the new version, 0/{n} " \
           "with errors): wave 2/2 starts" in out
    assert {f.boot(m) for m in second} == {NEW}
    assert {p.firmware for p in f.phones.values()} == {NEW}
    f.apply()  # sees wave 2 take it (for the book and history)
    stored = f.book().rollouts[stored.state.id]
    assert all(stored.phones[m][1] and stored.phones[m][2] for m in MACS)  # took, reported
    f.capsys.readouterr()
    assert run(f.repo, "history", second[0], "--format", "json") == 0
    (entry,) = [e for e in json.loads(f.capsys.readouterr().out)["rollouts"]
                if e["rollout"] == stored.state.id]
    assert entry["wave"] == 2 and entry["took"] and entry["reported"]
    assert entry["took"] >= entry["wave_started"]

    # a newer version: wave 1 fetches it but keeps reporting NEW (the upgrade fails)
    pin(f.repo, NEWER, ROLLOUT)
    commit(f.repo, f"acme T46U: {NEWER} in waves")
    assert "wave 1/2 is current" in f.apply()
    (broken,) = [r for r in f.book().rollouts.values() if r.version == NEWER]
    assert sorted(m for m, (w, _, _) in broken.phones.items() if w == 1) == \
        sorted(m for m, (w, _, _) in stored.phones.items() if w == 1)  # the same wave 1
    assert {f.boot(m, upgrade=False) for m in first} == {NEWER}
    time.sleep(SOAK + 0.2)
    out = f.apply()
    assert "waiting for the gate" in out and f"{n}/{n} fetched, 0/{n} report" in out
    time.sleep(SOAK)
    out = f.apply()
    assert "HALTED" in out and "halted at wave 1/2" in out and first[0] in out
    assert {f.boot(m) for m in second} == {NEW}  # nothing more is published
    f.capsys.readouterr()
    assert run(f.repo, "status") == 0
    assert "HALTED: halted at wave 1/2" in f.capsys.readouterr().out

    # rollback: revert; wave 1 is offered NEW again at once, the rollout closes
    git(f.repo, "revert", "--no-edit", "HEAD")
    out = f.apply()
    assert "REFUSED" not in out
    assert {f.boot(m) for m in MACS} == {NEW}
    assert f.book().rollouts[broken.state.id].closed is not None
