"""Exit codes that tell the truth: plan and apply agree on drift, heal sees what it heals,
orphans stay visible with pruning off, and a refused apply is recorded in the status."""

from __future__ import annotations

import json
import os

from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.render.addressing import url_token

MAC = "001565aabb01"  # reception, Yealink T46U
SPARE = "001565ee0001"  # spare-1 in devices/pool.yaml
SPARE_YAML = ('- mac: "00:15:65:EE:00:01"\n  model: yealink/T46U\n'
              "  profile: office-yealink\n  name: spare-1\n")


def cfg(fleet, mac=MAC):
    return fleet / "out" / "www" / url_token(FLEET_SECRET, mac) / f"{mac}.cfg"


def status(fleet) -> dict:
    return json.loads((fleet / ".provctl" / "status.json").read_text())


def test_drift_that_is_only_reported_exits_0_from_plan_and_apply(fleet, capsys):
    assert run(fleet, "apply") == 2
    cfg(fleet).unlink()
    capsys.readouterr()
    # policy.drift: report (the default): shown, not pending; apply would change nothing.
    # (A full scan sees it: --scan, or policy.drift_scan_every.)
    assert run(fleet, "plan", "--scan") == 0
    out = capsys.readouterr().out
    assert f"drift missing: {url_token(FLEET_SECRET, MAC)[:6]}…/{MAC}.cfg" in out
    assert "1 drifted" in out and "No changes" not in out
    assert run(fleet, "apply") == 0
    assert "1 drifted" in capsys.readouterr().out
    assert not cfg(fleet).exists()
    # Healing is a change: plan and apply both exit 2, and then it is gone.
    assert run(fleet, "plan", "--heal") == 2
    assert run(fleet, "apply", "--heal") == 2
    assert cfg(fleet).exists()
    capsys.readouterr()
    assert run(fleet, "plan") == 0
    assert "drift" not in capsys.readouterr().out


def test_heal_finds_a_same_size_edit_with_the_mtime_put_back(fleet, capsys):
    assert run(fleet, "apply") == 2
    path = cfg(fleet)
    good = path.read_bytes()
    st = path.stat()
    bad = good.replace(b"rec-Pw-200", b"REC-PW-200")  # same size, someone's hand edit
    assert bad != good and len(bad) == len(good)
    path.write_bytes(bad)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    capsys.readouterr()
    assert run(fleet, "apply", "--heal") == 2
    assert "1 to heal" in capsys.readouterr().out
    assert path.read_bytes() == good
    assert run(fleet, "apply", "--heal") == 0


def test_policy_heal_verifies_too(fleet):
    # every run a full scan (drift_scan_every: 0), and policy heal reads each file back
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7}",
         "redirect_window_days: 7, drift: heal, drift_scan_every: 0}")
    assert run(fleet, "apply") == 2
    path = cfg(fleet)
    good, st = path.read_bytes(), path.stat()
    path.write_bytes(good.replace(b"rec-Pw-200", b"REC-PW-200"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(fleet, "apply") == 2
    assert path.read_bytes() == good


def test_with_pruning_off_a_removed_phones_files_are_shown_as_orphans(fleet, capsys, tmp_path):
    assert run(fleet, "apply") == 2
    edit(fleet / "devices" / "pool.yaml", SPARE_YAML, "")
    capsys.readouterr()
    shown = f"{url_token(FLEET_SECRET, SPARE)[:6]}…/{SPARE}"
    assert run(fleet, "plan", "--no-prune") == 0  # nothing would change
    out = capsys.readouterr().out
    assert f"orphan {shown}.cfg: no longer desired, kept" in out
    assert f"orphan {shown}.boot" in out
    assert "2 orphaned (kept: pruning is off)" in out
    assert run(fleet, "plan", "--no-prune", "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert sorted(o["path"] for o in body["orphans"]) == [f"{shown}.boot", f"{shown}.cfg"]
    assert body["summary"]["orphan"] == 2
    assert url_token(FLEET_SECRET, SPARE) not in json.dumps(body)  # tokens shortened
    assert run(fleet, "apply", "--no-prune") == 0
    assert cfg(fleet, SPARE).exists()
    assert run(fleet, "plan") == 2  # policy.prune: true deletes them


def test_an_apply_refused_by_the_deletion_limit_is_recorded_as_attempted(fleet, capsys):
    assert run(fleet, "apply") == 2
    before = status(fleet)["local"]
    (fleet / "devices" / "pool.yaml").write_text("[]\n")
    (fleet / "assignments" / "initech.yaml").unlink()
    (fleet / "devices" / "initech.yaml").write_text("[]\n")
    assert run(fleet, "apply") == 3
    after = status(fleet)["local"]
    attempted = after["last_attempted"]
    assert attempted["error"].startswith("refused: target local: would delete 4 of 23")
    assert attempted["at"] >= before["last_attempted"]["at"]
    assert after["last_applied"] == before["last_applied"]
    capsys.readouterr()
    assert run(fleet, "status") == 0
    assert "FAILED: refused: target local: would delete" in capsys.readouterr().out


def test_a_stale_plan_file_is_recorded_as_refused(fleet, tmp_path):
    plan_file = tmp_path / "plan.json"
    assert run(fleet, "plan", "--format", "json", "--out", str(plan_file)) == 2
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    assert run(fleet, "apply", "--plan", str(plan_file)) == 3
    error = status(fleet)["local"]["last_attempted"]["error"]
    assert error.startswith("refused: the plan file (")
    assert "last_applied" not in status(fleet)["local"]


def test_a_run_whose_files_failed_one_by_one_records_why(fleet, monkeypatch):
    from reconciler.targets import local as local_mod

    original = local_mod.LocalTarget.read

    def corrupt(self, path):
        data = original(self, path)
        return b"corrupted" if path.startswith("firmware/") and data else data

    monkeypatch.setattr(local_mod.LocalTarget, "read", corrupt)
    assert run(fleet, "apply") == 1
    error = status(fleet)["local"]["last_attempted"]["error"]
    assert error.startswith("1 change(s) failed, first: put firmware/T46U-108.86.0.95.rom: "
                            "firmware on the target does not match")


def test_policy_heal_heals_at_the_next_full_scan(fleet):
    """Between full scans (policy.drift_scan_every, 1h) the manifest is trusted: a hand edit is
    healed by the next scan, or at once with --heal."""
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7}",
         "redirect_window_days: 7, drift: heal}")
    assert run(fleet, "apply") == 2
    path = cfg(fleet)
    good, st = path.read_bytes(), path.stat()
    path.write_bytes(good.replace(b"rec-Pw-200", b"REC-PW-200"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run(fleet, "apply") == 0 and path.read_bytes() != good  # not scanned yet
    assert run(fleet, "apply", "--scan") == 2 and path.read_bytes() == good
