"""The loop with the phones, end to end: provctl publishes, a real nginx (configured by
`provctl serve-config`) serves, simulated phones fetch over HTTP, provctl reads the access log.

Steps as in the issue: apply the fleet; phones of four vendors fetch; they are `current`, the
others `never-fetched`; a profile change makes the affected phone `pending`; it fetches again and
is `current` with the new revision in `history`; its redirect registration ended at its fetch;
a burst of misses from one address is reported as scanning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, commit, edit, git, run
from phones import Phone, scan

from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

YEALINK = Phone("yealink", "001565aabb01", "T46U", "108.86.0.95", ip="127.0.0.11")
SNOM = Phone("snom", "000413aabb04", "D785", "10.1.54.13", ip="127.0.0.12")
POLY = Phone("poly", "0004f2aa0001", "VVX450", "6.4.6.2390", ip="127.0.0.13")
GRANDSTREAM = Phone("grandstream", "000b82bb0001", "GXP2140", "1.0.11.79", ip="127.0.0.14")
PHONES = (YEALINK, SNOM, POLY, GRANDSTREAM)




def serve_config(fleet: Path, capsys, target: str = "local", *extra: str) -> str:
    capsys.readouterr()
    assert run(fleet, "serve-config", "nginx", "--target", target,
               "--listen", "127.0.0.1:{port}", *extra) == 0
    return capsys.readouterr().out


def devices(fleet: Path, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert run(fleet, "status", "--devices", "--format", "json", *extra) == 0
    return json.loads(capsys.readouterr().out)["devices"]


def url(server, mac: str) -> str:
    return f"{server.url}{url_token(FLEET_SECRET, mac)}/"


@pytest.fixture
def served(fleet, tmp_path, nginx_factory, capsys):
    """The test fleet in git, applied, with nginx serving its local target."""
    log = tmp_path / "nginx" / "access.log"
    log.parent.mkdir()
    edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         f'base_url: "http://localhost:8080/", access_log: {{path: "{log}", format: json}}}}')
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    git(fleet, "init", "-q")
    commit(fleet, "initial fleet")
    assert run(fleet, "apply") == 2
    block = serve_config(fleet, capsys)
    assert "autoindex off" in block and f"access_log {log} provctl_local" in block
    server = nginx_factory(fleet / "out" / "www", block, access_log=log)
    return fleet, server, log


def test_the_loop_with_real_nginx(served, capsys):
    fleet, server, log = served
    registry = json.loads((fleet / "out" / "redirect.json").read_text())
    assert YEALINK.mac in json.dumps(registry)  # registered, waiting for the phone

    # 2. phones boot and fetch what their factory firmware asks for
    assert YEALINK.boot(url(server, YEALINK.mac)) == [
        ("y000000000000.boot", 404), ("001565aabb01.boot", 200), ("001565aabb01.cfg", 200)]
    assert SNOM.boot(url(server, SNOM.mac)) == [("000413AABB04.xml", 200)]
    assert POLY.boot(url(server, POLY.mac)) == [
        ("0004f2aa0001.cfg", 200), ("0004f2aa0001-provctl.cfg", 200),
        ("0004f2aa0001-directory.xml", 404)]
    assert GRANDSTREAM.boot(url(server, GRANDSTREAM.mac)) == [
        ("cfg000b82bb0001", 404), ("cfg000b82bb0001.xml", 200)]

    # 3. those four are current, every other phone never fetched
    body = devices(fleet, capsys)
    states = {d["mac"]: d["state"] for d in body["devices"]}
    fetched = {p.mac for p in PHONES}
    assert {m for m, s in states.items() if s == "current"} == fetched
    assert {s for m, s in states.items() if m not in fetched} == {"never-fetched"}
    assert body["summary"]["current"] == 4
    yealink = next(d for d in body["devices"] if d["mac"] == YEALINK.mac)
    first_rev = git(fleet, "rev-parse", "HEAD").strip()
    assert yealink["last_fetch"]["revision"] == first_rev
    assert yealink["last_fetch"]["ip"] == "127.0.0.11"
    assert yealink["last_fetch"]["phone"] == {"vendor": "yealink", "model": "T46U",
                                              "firmware": "108.86.0.95", "mac": YEALINK.mac}
    assert yealink["published"]["revision"] == first_rev
    assert body["scanners"] == [] and body["warnings"] == []

    # 4. a profile parameter changes: the Yealink phone that fetched is pending
    edit(fleet / "profiles" / "office-yealink.yaml", "language: it", "language: de")
    second_rev = commit(fleet, "office-yealink: German")
    yealink = next(d for d in devices(fleet, capsys)["devices"] if d["mac"] == YEALINK.mac)
    assert yealink["desired"] == {"revision": second_rev, "applied": False}
    assert yealink["state"] == "current"  # it has what is published; the change is not yet
    capsys.readouterr()
    assert run(fleet, "apply") == 2
    applied = capsys.readouterr().out
    # 6. ... and its redirect registration ended at its first fetch (cause fetched)
    assert f"deregister {YEALINK.mac}" in applied and "fetched its file" in applied
    assert YEALINK.mac not in (fleet / "out" / "redirect.json").read_text()
    receipt = json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])
    assert [r["cause"] for r in receipt["redirects"]] == ["fetched"]
    body = devices(fleet, capsys)
    states = {d["mac"]: d["state"] for d in body["devices"]}
    assert states[YEALINK.mac] == "pending"
    assert states[SNOM.mac] == states[POLY.mac] == states[GRANDSTREAM.mac] == "current"
    yealink = next(d for d in body["devices"] if d["mac"] == YEALINK.mac)
    assert yealink["redirect"] == "disabled"
    assert yealink["pending"] == [f"{url_token(FLEET_SECRET, YEALINK.mac)[:6]}…/"
                                  f"{YEALINK.mac}.cfg"]
    assert devices(fleet, capsys, "--state", "pending")["summary"]["pending"] == 1

    # 5. it fetches again: current, with the new revision in history
    YEALINK.boot(url(server, YEALINK.mac))
    body = devices(fleet, capsys, "--customer", "acme")
    yealink = next(d for d in body["devices"] if d["mac"] == YEALINK.mac)
    assert yealink["state"] == "current" and yealink["last_fetch"]["revision"] == second_rev
    assert {d["customer"] for d in body["devices"]} == {"acme"}
    capsys.readouterr()
    assert run(fleet, "history", YEALINK.mac) == 0
    history = capsys.readouterr().out
    assert f"fetched rev {first_rev[:10]}" in history
    assert f"fetched rev {second_rev[:10]}" in history
    assert "from 127.0.0.11, Yealink T46U 108.86.0.95" in history
    assert history.index("office-yealink: German") < history.index(
        f"fetched rev {second_rev[:10]}")

    # 7. a burst of misses from one address is scanning; the phones' own misses are not
    assert scan(server.url, 15) == [404] * 15
    capsys.readouterr()
    assert run(fleet, "status", "--devices") == 0
    text = capsys.readouterr().out
    assert "SCANNING on local: 127.0.0.66 asked for 15 unknown paths" in text
    assert "127.0.0.11" not in text.split("SCANNING", 1)[1]
    assert "devices: 4 current, 0 pending, 0 stale, 11 never-fetched, 0 errors" in text


def _requests_read(body: dict) -> int:
    return sum(entry["requests"] for entry in body["logs"])


def _reopen(server, log: Path) -> None:
    """What logrotate's postrotate does: nginx reopens its logs (a new file at `log`)."""
    import os
    import signal
    import time

    os.kill(server.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.exists()


@pytest.mark.parametrize("compress", [False, True], ids=["dot-1", "dot-1-gz"])
def test_rotation_in_the_middle_of_a_run(served, capsys, compress):
    import gzip

    fleet, server, log = served
    YEALINK.boot(url(server, YEALINK.mac))  # 3 requests
    assert _requests_read(devices(fleet, capsys)) == 3
    SNOM.boot(url(server, SNOM.mac))  # written to the log that is about to be rotated
    log.rename(log.with_name(log.name + ".1"))
    _reopen(server, log)
    if compress:
        rotated = log.with_name(log.name + ".1")
        log.with_name(log.name + ".1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()
    POLY.boot(url(server, POLY.mac))  # 3 requests to the new log

    body = devices(fleet, capsys)

    assert _requests_read(body) == 7 and body["warnings"] == []
    states = {d["mac"]: d["state"] for d in body["devices"]}
    assert states[YEALINK.mac] == states[SNOM.mac] == states[POLY.mac] == "current"


def test_truncated_log_garbage_and_unreadable_log(served, capsys):
    fleet, server, log = served
    GRANDSTREAM.boot(url(server, GRANDSTREAM.mac))
    assert _requests_read(devices(fleet, capsys)) == 2  # a cursor into the log
    YEALINK.boot(url(server, YEALINK.mac))
    log.write_bytes(b"")  # truncated in place (copytruncate without a copy): lines are lost
    SNOM.boot(url(server, SNOM.mac))
    with open(log, "ab") as fh:
        fh.write(b"garbage \x00\xff line\n{\"msec\": \"not a number\"}\n\n")

    body = devices(fleet, capsys)

    assert len(body["warnings"]) == 1 and "not seen" in body["warnings"][0]
    states = {d["mac"]: d["state"] for d in body["devices"]}
    assert states[YEALINK.mac] == "never-fetched" and states[SNOM.mac] == "current"
    assert states[GRANDSTREAM.mac] == "current"
    assert body["logs"][0]["unparsed"] == 2  # blank lines do not count

    # a log that cannot be read is a warning on its target; plan and apply go on
    log.unlink()
    log.mkdir()
    capsys.readouterr()
    assert run(fleet, "plan") == 0
    assert run(fleet, "apply") == 0
    body = devices(fleet, capsys)
    assert body["warnings"] and "cannot be read" in body["warnings"][0]
    assert str(log) in body["warnings"][0]
    assert {d["mac"]: d["state"] for d in body["devices"]}[SNOM.mac] == "current"


def test_the_loop_over_sftp(fleet, sshd, sftp_root, nginx_factory, capsys, tmp_path):
    """The log lives on the provisioning host and is read over the target's SFTP connection."""
    log = sftp_root.parent / f"{sftp_root.name}-logs" / "access.log"
    log.parent.mkdir()
    text = (fleet / "provisioning.yaml").read_text()
    local = '  local: {kind: local, root: ./out/www, base_url: "http://localhost:8080/"}\n'
    target = (f"  eu-1: {{kind: sftp, host: {sshd.host}, port: {sshd.port}, user: {sshd.user}, "
              f"key: '{sshd.key}', known_hosts: '{sshd.known_hosts}', root: '{sftp_root}', "
              f"base_url: 'https://prov1.example.net/', "
              f"access_log: {{path: '{log}', format: combined}}}}\n")
    (fleet / "provisioning.yaml").write_text(text.replace(local, target))
    assert run(fleet, "apply") == 2
    block = serve_config(fleet, capsys, "eu-1")
    assert f"root {sftp_root};" in block and f"access_log {log} combined;" in block
    server = nginx_factory(sftp_root, block, access_log=log)
    YEALINK.boot(url(server, YEALINK.mac))
    GRANDSTREAM.boot(url(server, GRANDSTREAM.mac))

    body = devices(fleet, capsys)

    states = {d["mac"]: d["state"] for d in body["devices"]}
    assert states[YEALINK.mac] == states[GRANDSTREAM.mac] == "current"
    assert list(states.values()).count("never-fetched") == len(states) - 2
    assert body["logs"] == [{"target": "eu-1", "path": str(log), "offset": log.stat().st_size,
                             "requests": 5, "unparsed": 0, "newest": body["logs"][0]["newest"]}]
    capsys.readouterr()
    assert run(fleet, "apply") == 2  # the phone arrived over SFTP-read logs: deregistered
    assert "the phone fetched its file" in capsys.readouterr().out
    # an account that cannot read the log: a warning naming the host, the run goes on
    log.chmod(0o000)
    if os.geteuid() == 0:  # root reads anything: make the path unreadable another way
        log.unlink()
        log.mkdir()
    capsys.readouterr()
    assert run(fleet, "plan") == 0
    body = devices(fleet, capsys)
    assert f"{sshd.host}:{sshd.port}" in body["warnings"][0]


EVERY_VENDOR = [
    YEALINK, SNOM, POLY, GRANDSTREAM,
    Phone("fanvil", "0c383eaa0002", "X4U", "2.12.16.17", ip="127.0.0.15"),
    Phone("gigaset", "589ec6bb0002", "N670", "83.V2.65.0", ip="127.0.0.16"),
    Phone("cisco", "c80084cc0001", "CP-8841-3PCC", "11.3.7", ip="127.0.0.17"),
    Phone("panasonic", "0080f0cc0002", "KX-HDV230", "01.133", ip="127.0.0.18"),
]


def test_a_phone_of_every_vendor_fetches_and_is_recognised(served, capsys):
    fleet, server, _ = served
    for phone in EVERY_VENDOR:
        got = phone.boot(url(server, phone.mac))
        assert any(status == 200 for _, status in got), (phone.vendor, got)

    body = devices(fleet, capsys)

    by_mac = {d["mac"]: d for d in body["devices"]}
    for phone in EVERY_VENDOR:
        seen = by_mac[phone.mac]
        assert seen["state"] == "current", (phone.vendor, seen)
        assert seen["last_fetch"]["phone"]["vendor"] == phone.vendor
        assert seen["last_fetch"]["phone"]["firmware"] == phone.firmware
        assert seen["notes"] == [], (phone.vendor, seen["notes"])
    assert body["scanners"] == []
