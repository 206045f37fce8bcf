"""Observe by manifest: plans trust the manifest between full scans, and every scan is as
strict as ever. Receipts keep a summary and the changed paths only."""

from __future__ import annotations

import json
import time

from fleet_fixtures import edit, run

from reconciler.pipeline import receipt as record
from reconciler.pipeline.run import Options, load_desired


def www(fleet):
    return fleet / "out" / "www"


def a_published_file(fleet):
    return next(p for p in www(fleet).glob("*/*.cfg"))


def test_between_scans_the_manifest_is_trusted_and_a_scan_finds_drift(fleet, capsys):
    assert run(fleet, "apply") == 2  # the first run scans (never scanned): clean
    victim = a_published_file(fleet)
    victim.unlink()
    capsys.readouterr()
    assert run(fleet, "plan") == 0  # within policy.drift_scan_every: not listed
    assert "drift" not in capsys.readouterr().out
    assert run(fleet, "plan", "--scan") == 0  # drift is reported (policy.drift: report)
    assert "drift missing" in capsys.readouterr().out
    assert run(fleet, "plan") == 0  # the last scan found drift: every run scans until it is gone
    assert "drift missing" in capsys.readouterr().out
    assert run(fleet, "apply", "--heal") == 2 and victim.exists()
    capsys.readouterr()
    assert run(fleet, "plan") == 0  # scanned again: clean, and trusted from now on
    assert "drift" not in capsys.readouterr().out
    assert record.last_scan(fleet / ".provctl", "local")[1] == 0


def test_a_scan_is_due_when_the_interval_has_passed(fleet, capsys):
    assert run(fleet, "apply") == 2
    a_published_file(fleet).unlink()
    assert run(fleet, "plan") == 0
    status = fleet / ".provctl" / "status.json"
    body = json.loads(status.read_text())
    body["local"]["last_scan"]["ts"] = time.time() - 3601  # policy.drift_scan_every: 1h
    status.write_text(json.dumps(body))
    capsys.readouterr()
    assert run(fleet, "plan") == 0
    assert "drift missing" in capsys.readouterr().out


def test_drift_scan_every_zero_scans_every_run(fleet, capsys):
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7",
         "redirect_window_days: 7, drift_scan_every: 0")
    assert run(fleet, "apply") == 2
    a_published_file(fleet).unlink()
    capsys.readouterr()
    assert run(fleet, "plan") == 0
    assert "drift missing" in capsys.readouterr().out


def test_a_bad_interval_is_named(fleet, capsys):
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7",
         "redirect_window_days: 7, drift_scan_every: soon")
    assert run(fleet, "plan") == 1
    assert "provisioning.yaml:11: policy.drift_scan_every: a duration such as 30m, 1h or 0" in (
        capsys.readouterr().err)


def test_without_a_scan_a_foreign_file_where_a_phone_goes_is_still_refused(fleet, capsys):
    assert run(fleet, "apply") == 2
    # A phone joins the fleet; someone already put a file where its file goes. Without a full
    # scan the directories of files to be created are still listed: never overwritten.
    edit(fleet / "devices" / "initech.yaml", "- mac:", "- mac: 00:15:65:12:34:56\n"
         "  model: yealink/T46U\n  profile: office-yealink\n  customer: initech\n- mac:")
    desired = load_desired(Options(repo=fleet))
    path = next(p for p, a in desired.artifacts["local"].items() if a.device == "001565123456")
    foreign = www(fleet) / path
    foreign.parent.mkdir(parents=True)
    foreign.write_text("someone else's")
    capsys.readouterr()
    assert run(fleet, "apply") == 3
    assert "exists but was not published by provctl" in capsys.readouterr().err
    assert foreign.read_text() == "someone else's"


def test_receipts_hold_a_summary_and_the_changed_paths_only(fleet):
    assert run(fleet, "apply") == 2
    edit(fleet / "devices" / "acme.yaml", "Europe/Lisbon", "Europe/Rome")
    assert run(fleet, "apply") == 2
    receipt = json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])
    local = receipt["targets"]["local"]
    assert local["summary"] == {"put": 1, "delete": 0, "failed": 0,
                                "unchanged": local["summary"]["unchanged"]}
    assert local["summary"]["unchanged"] > 10
    assert [i["action"] for i in local["items"]] == ["put"]
    assert receipt["summary"]["update"] == 1
