"""The redirect stage through the reconciler: files first, then registrations; windows,
conflicts, steal, and a vendor API that fails — with the local registry and the Yealink fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fakes import FakeYealinkRps
from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.pipeline.run import Options, apply, plan
from reconciler.redirect.clients.local import LocalRegistry
from reconciler.render.addressing import url_token

MAC = "001565aabb01"  # redirect: true in the example fleet
DAY0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def registry(fleet) -> dict:
    path = fleet / "out" / "redirect.json"
    return LocalRegistry("default", path).entries() if path.exists() else {}


def test_register_after_publish_then_deregister_when_the_window_ends(fleet):
    first = apply(Options(repo=fleet, now=DAY0))
    assert first.exit_code == 2
    entry = registry(fleet)[MAC]
    token = url_token(FLEET_SECRET, MAC)
    assert entry["url"] == f"http://localhost:8080/{token}/"
    assert (fleet / "out" / "www" / token / f"{MAC}.cfg").exists()  # the file it points at
    assert [(c.action, c.mac) for c in first.plan.redirects] == [("register", MAC)]
    assert apply(Options(repo=fleet, now=DAY0 + timedelta(days=3))).exit_code == 0
    late = apply(Options(repo=fleet, now=DAY0 + timedelta(days=7, minutes=1)))
    assert [(c.action, c.cause) for c in late.plan.redirects] == [("deregister",
                                                                  "window-elapsed")]
    assert MAC not in registry(fleet)
    # The window does not reopen by itself ...
    assert apply(Options(repo=fleet, now=DAY0 + timedelta(days=9))).plan.redirects == ()
    # ... but a new value in git opens a new one.
    edit(fleet / "devices" / "acme.yaml", "  redirect: true\n",
         "  redirect: {until: 2026-12-31}\n")
    again = apply(Options(repo=fleet, now=DAY0 + timedelta(days=10)))
    assert [(c.action, c.cause) for c in again.plan.redirects] == [("register", "new")]
    receipt = json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])
    assert receipt["redirects"][0]["action"] == "register"
    assert token not in json.dumps(receipt)  # tokens are shortened in receipts


def test_mac_held_by_another_account_is_left_alone_unless_steal(fleet, capsys):
    LocalRegistry("default", fleet / "out" / "redirect.json").seed(
        MAC, "https://competitor.example/", "someone-else")
    assert run(fleet, "apply") == 3  # files published, registration refused
    assert "held by another account" in capsys.readouterr().out
    assert registry(fleet)[MAC]["url"] == "https://competitor.example/"
    assert run(fleet, "plan") == 3
    edit(fleet / "devices" / "acme.yaml", "  redirect: true\n", "  redirect: {steal: true}\n")
    assert run(fleet, "apply") == 2
    assert registry(fleet)[MAC]["url"].startswith("http://localhost:8080/")


def test_deregistration_limit_applies(fleet):
    apply(Options(repo=fleet, now=DAY0))
    edit(fleet / "devices" / "acme.yaml", "  redirect: true\n", "")
    result = plan(Options(repo=fleet, now=DAY0 + timedelta(hours=1)))
    assert result.exit_code == 3
    assert any("deregist" in r for r in result.plan.refusals)
    forced = apply(Options(repo=fleet, now=DAY0 + timedelta(hours=1), force=True))
    assert forced.exit_code == 2 and MAC not in registry(fleet)


@pytest.mark.integration
def test_yealink_rps_through_the_reconciler(fleet, monkeypatch, capsys):
    with FakeYealinkRps({"ak-1": "sk-1"}) as fake:
        monkeypatch.setenv("YEALINK_AK", "ak-1")
        monkeypatch.setenv("YEALINK_SK", "sk-1")
        edit(fleet / "provisioning.yaml", "redirect:\n",
             "redirect:\n  yealink: {kind: yealink-rps, access_key: env:YEALINK_AK, "
             f"secret: env:YEALINK_SK, base_url: '{fake.url}'}}\n")
        fake.fail_next(2, status=500)  # a vendor API that answers 500, then recovers
        assert run(fleet, "apply") == 2
        token = url_token(FLEET_SECRET, MAC)
        assert fake.effective_url(MAC) == f"http://localhost:8080/{token}/"
        out = capsys.readouterr()
        assert "sk-1" not in out.out + out.err
        assert run(fleet, "apply") == 0
        monkeypatch.setenv("YEALINK_SK", "wrong")
        assert run(fleet, "plan") == 1  # the service cannot be observed: named, exit 1
        assert "redirect:yealink" in capsys.readouterr().out


def test_status_shows_targets_and_redirect_states(fleet, capsys):
    apply(Options(repo=fleet, now=DAY0))
    capsys.readouterr()
    assert run(fleet, "status", "--devices") == 0
    out = capsys.readouterr().out
    assert "target local: last applied worktree" in out
    assert "redirect: 1 active" in out
    assert f"  {MAC} active at default since 2026-11-02T09:00:00+00:00" in out
