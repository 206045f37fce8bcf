"""provctl plan/apply against a real OpenSSH sshd on 127.0.0.1, through the CLI."""

from __future__ import annotations

import os
import stat

import pytest
from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state
from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

MAC = "001565aabb01"  # acme reception


def phones_of(fleet, customer: str) -> set[str]:
    state = load_state(read_source(fleet))
    return {mac for mac, d in state.devices.items() if d.value.customer == customer}


def use_sftp(fleet, sshd, root, extra: str = "", keep_local: bool = False) -> None:
    target = (f"  eu-1: {{kind: sftp, host: {sshd.host}, port: {sshd.port}, user: {sshd.user}, "
              f"key: '{sshd.key}', known_hosts: '{sshd.known_hosts}', root: '{root}', "
              f"base_url: 'https://prov1.example.net/'{extra}}}\n")
    text = (fleet / "provisioning.yaml").read_text()
    local = '  local: {kind: local, root: ./out/www, base_url: "http://localhost:8080/"}\n'
    text = text.replace(local, (local if keep_local else "") + target)
    text = text.replace("redirect:\n  default: {kind: local, path: ./out/redirect.json}\n", "")
    (fleet / "provisioning.yaml").write_text(text)
    for path in (fleet / "devices").glob("*.yaml"):  # no redirect service in these fleets
        path.write_text(path.read_text().replace("  redirect: true\n", ""))


def test_publish_noop_change_and_drift(fleet, sshd, sftp_root, capsys):
    use_sftp(fleet, sshd, sftp_root)
    assert run(fleet, "apply") == 2
    cfg = sftp_root / url_token(FLEET_SECRET, MAC) / f"{MAC}.cfg"
    assert "static.auto_provision.server.url = https://prov1.example.net/" in cfg.read_text()
    assert (sftp_root.parent / f".provctl-{sftp_root.name}" / "manifest.json").exists()
    assert not (sftp_root / ".provctl").exists()
    assert run(fleet, "apply") == 0
    edit(fleet / "customers" / "initech.yaml", "pbx.initech.example.de", "pbx9.initech.example.de")
    capsys.readouterr()
    assert run(fleet, "apply") == 2
    out = capsys.readouterr().out
    changed = [line for line in out.splitlines() if line.startswith("    ~ ")]
    assert {line.rsplit("[", 1)[1].rstrip("]") for line in changed} == phones_of(fleet,
                                                                                "initech")
    # A file edited by hand on the host with its size and mtime kept: only --verify can tell.
    text = cfg.read_text()
    stat = cfg.stat()
    cfg.write_text(text.replace("weekly.begin_time = 02:00", "weekly.begin_time = 03:00"))
    os.utime(cfg, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert run(fleet, "plan") == 0
    capsys.readouterr()
    assert run(fleet, "plan", "--verify") == 0  # drift that is only reported: nothing pending
    out = capsys.readouterr().out
    assert f"drift modified: {url_token(FLEET_SECRET, MAC)[:6]}…/{MAC}.cfg" in out
    # ... is reported, not rewritten, under policy drift: report; --heal rewrites it.
    assert run(fleet, "apply", "--verify") == 0
    assert "03:00" in cfg.read_text()
    assert run(fleet, "apply", "--verify", "--heal") == 2
    assert cfg.read_text() == text
    assert run(fleet, "plan") == 0  # a full scan (the last one found drift): clean again
    # An edit that changes the mtime is found by the listing alone, in a full scan: between
    # two (policy.drift_scan_every) plans trust the manifest ...
    os.utime(cfg, (stat.st_atime + 60, stat.st_mtime + 60))
    assert run(fleet, "plan") == 0
    capsys.readouterr()
    assert run(fleet, "plan", "--scan") == 0  # drift is reported, not pending (no heal)
    assert "drift replaced" in capsys.readouterr().out
    # ... and so is a missing file; a scan that found drift is due again at the next run.
    cfg.unlink()
    capsys.readouterr()
    assert run(fleet, "plan") == 0
    assert "drift missing" in capsys.readouterr().out
    assert run(fleet, "plan", "--heal") == 2


def test_files_provctl_did_not_publish_are_left_alone(fleet, sshd, sftp_root):
    use_sftp(fleet, sshd, sftp_root)
    foreign = sftp_root / "index.html"
    foreign.write_text("hello")
    assert run(fleet, "apply") == 2
    edit(fleet / "provisioning.yaml", "max_delete_percent: 10", "max_delete_percent: 100")
    for path in (fleet / "devices").glob("*.yaml"):
        if path.name != "acme.yaml":
            path.write_text("[]\n")
    for path in (fleet / "assignments").glob("*.yaml"):
        if path.name != "acme.yaml":
            path.unlink()
    assert run(fleet, "apply") == 2
    assert foreign.read_text() == "hello"


def test_unknown_host_key_stops_that_target_only(fleet, sshd, sftp_root, tmp_path, capsys):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    use_sftp(fleet, sshd, sftp_root, keep_local=True)
    edit(fleet / "provisioning.yaml", f"known_hosts: '{sshd.known_hosts}'",
         f"known_hosts: '{empty}'")
    assert run(fleet, "apply") == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert f"{sshd.host}:{sshd.port}" in out and "SHA256:" in out
    assert not any(sftp_root.iterdir())  # nothing written to the unverified host
    assert (fleet / "out" / ".provctl-www" / "manifest.json").exists()  # local went on


def test_target_customers_limit_what_it_publishes(fleet, sshd, sftp_root):
    use_sftp(fleet, sshd, sftp_root, extra=", customers: [acme]", keep_local=True)
    assert run(fleet, "apply") == 2
    dirs = {p.name for p in sftp_root.iterdir()}
    assert dirs == {url_token(FLEET_SECRET, m) for m in phones_of(fleet, "acme")}


def test_unreachable_host_is_named_and_others_proceed(fleet, sshd, sftp_root, capsys):
    use_sftp(fleet, sshd, sftp_root, keep_local=True)
    edit(fleet / "provisioning.yaml", f"port: {sshd.port}", "port: 1")
    assert run(fleet, "apply") == 1
    out = capsys.readouterr().out
    assert "eu-1" in out and "127.0.0.1:1" in out
    assert (fleet / "out" / ".provctl-www" / "manifest.json").exists()


def test_records_of_an_older_provctl_move_out_of_the_sftp_root(fleet, sshd, sftp_root, capsys):
    use_sftp(fleet, sshd, sftp_root)
    assert run(fleet, "apply") == 2
    records = sftp_root.parent / f".provctl-{sftp_root.name}"
    records.rename(sftp_root / ".provctl")  # the layout an older provctl left on the host
    (sftp_root / ".provctl").chmod(0o755)

    assert run(fleet, "plan") == 0  # read where they are; a plan moves nothing
    assert (sftp_root / ".provctl" / "manifest.json").exists()
    assert run(fleet, "apply") == 0

    assert not (sftp_root / ".provctl").exists()
    assert (records / "manifest.json").exists() and list(records.glob("receipts/*.json"))
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    assert stat.S_IMODE(sftp_root.stat().st_mode) == 0o711  # token directories unlistable


def test_temporary_journal_files_a_timeout_left_are_removed_by_the_next_run(
        fleet, sshd, sftp_root):
    """A journal upload cut off by a timeout leaves `.provctl-tmp-journal.json.*` behind."""
    use_sftp(fleet, sshd, sftp_root)
    assert run(fleet, "apply") == 2
    records = sftp_root.parent / f".provctl-{sftp_root.name}"
    left = [records / ".provctl-tmp-journal.json.6f2a9c0d1", records / ".provctl-tmp-manifest."
            "json.6f2a9c0d2", sftp_root / ".provctl" / ".provctl-tmp-journal.json.3b7e11aa0"]
    for path in left:  # (the last where an older provctl kept its journal)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b'{"paths": ["')

    assert run(fleet, "apply") == 0  # nothing to publish: the clean-up does not need a change

    assert [p for p in left if p.exists()] == []
    assert not (sftp_root / ".provctl").exists()
    assert sorted(p.name for p in records.iterdir()) == ["manifest.json", "receipts"]
