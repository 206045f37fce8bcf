"""The daemon closes onboarding windows on its drift checks (docs/zero-touch.md): the phone's
fetch in the access log withdraws its bootstrap file without a new commit, and the metrics say
what happened, possible hijack and bootstrap scanning included."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, edit
from test_bootstrap import onboard
from test_daemon import commit, daemons, git, repo, synced, wait_for  # noqa: F401 - fixtures

from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

MAC = "000b82bb0001"  # the Grandstream of globex
AGENT = "Grandstream Model HW GXP2140 SW 1.0.11.79 DevId 000b82bb0001"


def line(path: str, status: int, ip: str, agent: str = AGENT) -> str:
    return json.dumps({"msec": round(time.time(), 3), "remote_addr": ip,
                       "request": f"GET /{path} HTTP/1.1", "status": status,
                       "body_bytes_sent": 100, "http_user_agent": agent,
                       "request_time": 0.001}) + "\n"


def test_a_drift_check_withdraws_the_bootstrap_file_and_counts_it(  # noqa: F811
        repo: Path, tmp_path: Path, daemons) -> None:  # noqa: F811
    log = tmp_path / "access.log"
    edit(repo / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         f'base_url: "http://localhost:8080/", access_log: {{path: "{log}", format: json}}}}')
    onboard(repo, MAC)
    head = commit(repo, "office-rome onboards")
    boot = url_token(FLEET_SECRET, "bootstrap:globex:0")
    bootstrap_file = repo / "out" / "www" / boot / f"cfg{MAC}.xml"
    prom = tmp_path / "provctl.prom"
    d = daemons("--repo", str(repo), "--interval", "1", "--metrics-textfile", str(prom))
    wait_for("the first revision applied", lambda: synced(repo, repo / ".provctl", head))
    assert bootstrap_file.is_file()
    text = wait_for("a waiting window in the metrics", lambda: (
        t if 'provctl_onboarding_windows{state="waiting"} 1.0' in (t := prom.read_text())
        else None))
    assert isinstance(text, str)
    assert "provctl_onboarding_hijack_suspected 0.0" in text

    own = url_token(FLEET_SECRET, MAC)
    with open(log, "a") as fh:
        fh.write(line(f"{boot}/cfg{MAC}.xml", 200, "192.0.2.20"))  # the bootstrap file
        fh.write(line(f"{own}/cfg{MAC}.xml", 200, "192.0.2.20"))  # then its own: arrived
        fh.write(line(f"{own}/cfg{MAC}.xml", 200, "198.51.100.7"))  # and someone else
        fh.write(line(f"{boot}/cfg000b82bb00ee.xml", 404, "203.0.113.9",
                      agent="Mozilla/5.0"))  # a MAC that is not onboarding

    wait_for("the bootstrap file withdrawn", lambda: not bootstrap_file.exists())
    text = wait_for("the arrival in the metrics", lambda: (
        t if 'provctl_onboarding_windows{state="arrived"} 1.0' in (t := prom.read_text())
        else None))
    assert isinstance(text, str)
    assert "provctl_onboarding_hijack_suspected 1.0" in text
    assert 'provctl_bootstrap_scanning_clients{target="local"} 1.0' in text
    assert (repo / "out" / "www" / own / f"cfg{MAC}.xml").is_file()
    receipts = (repo / ".provctl" / "receipts.jsonl").read_text().splitlines()
    items = json.loads(receipts[-1])["targets"]["local"]["items"]
    assert [(i["action"], i["reason"]) for i in items] == [("delete", "withdraw")]
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    assert git(repo, "status", "--porcelain") == ""
