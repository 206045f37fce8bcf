"""The daemon observes the access logs on every drift check and exports what it saw."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, edit
from test_daemon import commit, daemons, git, repo, synced, wait_for  # noqa: F401 - fixtures

from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

MAC = "001565aabb01"
AGENT = "Yealink SIP-T46U 108.86.0.95 00:15:65:aa:bb:01"


def line(path: str, status: int, ip: str = "192.0.2.10", agent: str = AGENT) -> str:
    return json.dumps({"msec": round(time.time(), 3), "remote_addr": ip,
                       "request": f"GET /{path} HTTP/1.1", "status": status,
                       "body_bytes_sent": 100, "http_user_agent": agent,
                       "request_time": 0.001}) + "\n"


def test_daemon_exports_uptake_metrics(repo: Path, tmp_path: Path, daemons) -> None:  # noqa: F811
    log = tmp_path / "access.log"
    edit(repo / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         f'base_url: "http://localhost:8080/", access_log: {{path: "{log}", format: json}}}}')
    head = commit(repo, "read the access log")
    prom = tmp_path / "provctl.prom"
    d = daemons("--repo", str(repo), "--interval", "1", "--metrics-textfile", str(prom))
    wait_for("the first revision applied", lambda: synced(repo, repo / ".provctl", head))
    token = url_token(FLEET_SECRET, MAC)
    with open(log, "a") as fh:
        fh.write(line(f"{token}/{MAC}.boot", 200) + line(f"{token}/{MAC}.cfg", 200))
        fh.write(line(f"{token}/y000000000000.boot", 404))  # its own directory: not unknown
        for i in range(12):
            fh.write(line(f"{i:032x}/0015650000{i:02x}.cfg", 404, ip="203.0.113.9",
                          agent="Mozilla/5.0"))
        fh.write("not a log line\n")

    text = wait_for("uptake in the metrics", lambda: (
        t if 'provctl_devices{state="current"} 1.0' in (t := prom.read_text()) else None))

    assert isinstance(text, str)
    assert 'provctl_fetches_total{status="200",target="local"} 2.0' in text
    assert 'provctl_fetches_total{status="404",target="local"} 13.0' in text
    assert 'provctl_unknown_fetches_total{target="local"} 12.0' in text
    assert 'provctl_scanning_clients{target="local"} 1.0' in text
    assert 'provctl_access_log_unparsed_lines_total{target="local"} 1.0' in text
    assert "provctl_publish_to_fetch_seconds_count 2.0" in text
    assert 'provctl_devices{state="never-fetched"} 14.0' in text
    # the redirect registration of that phone ended at its fetch, on a drift check
    wait_for("the registration ended", lambda: MAC not in (repo / "out" / "redirect.json")
             .read_text())
    d.signal(signal.SIGTERM)
    assert d.wait() == 0
    assert git(repo, "status", "--porcelain") == ""
