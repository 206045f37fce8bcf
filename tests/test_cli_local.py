"""End to end on a local directory target: plan, apply, no-op, change, prune, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.render.addressing import url_token

MAC = "001565aabb01"  # reception, Yealink T46U, account acme/200


def www(repo):
    return repo / "out" / "www"


def meta(repo):
    """The local target's records: beside the served tree, never in it."""
    return repo / "out" / ".provctl-www"


def published(repo) -> dict[str, bytes]:
    root = www(repo)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".provctl" not in p.parts}


def test_first_apply_publishes_every_phone_then_nothing_to_do(fleet, capsys):
    assert run(fleet, "plan") == 2
    out = capsys.readouterr().out
    assert "to create" in out and "Summary:" in out
    assert run(fleet, "apply") == 2
    files = published(fleet)
    token = url_token(FLEET_SECRET, MAC)
    cfg = files[f"{token}/{MAC}.cfg"].decode()
    assert cfg.startswith("#!version:1.0.0.1\n")
    assert f"static.auto_provision.server.url = http://localhost:8080/{token}/" in cfg
    assert "rec-Pw-200" in cfg  # the phone needs its password ...
    assert f"{url_token(FLEET_SECRET, '000413aabb04')}/000413AABB04.xml" in files
    assert "firmware/T46U-108.86.0.95.rom" in files
    manifest = json.loads((meta(fleet) / "manifest.json").read_text())
    assert set(manifest["files"]) == set(files)
    assert not (meta(fleet) / "lock.json").exists()
    assert not (www(fleet) / ".provctl").exists()
    capsys.readouterr()
    # A second apply right after the first reports no changes and exits 0.
    assert run(fleet, "apply") == 0
    assert "No changes" in capsys.readouterr().out
    assert run(fleet, "plan") == 0


def test_secrets_never_appear_in_plan_output(fleet, capsys):
    for fmt in ("text", "json", "markdown"):
        run(fleet, "plan", "--format", fmt)
        out = capsys.readouterr().out
        assert "rec-Pw-200" not in out and "Adm1n-Demo" not in out
        assert url_token(FLEET_SECRET, MAC) not in out  # tokens are shortened


def test_one_profile_change_writes_exactly_the_affected_files(fleet, capsys):
    run(fleet, "apply")
    before = published(fleet)
    edit(fleet / "profiles" / "desk-snom.yaml", "language: de", "language: fr")
    assert run(fleet, "apply") == 2
    after = published(fleet)
    changed = {p for p in after if after[p] != before.get(p)}
    snom_macs = {"000413aabb04", "000413cc0002", "000413dd0001", "000413ee0002"}
    assert changed == {f"{url_token(FLEET_SECRET, m)}/{m.upper()}.xml" for m in snom_macs}


def test_removing_a_phone_prunes_its_files_within_the_limit(fleet):
    edit(fleet / "provisioning.yaml", "max_delete_percent: 10", "max_delete_percent: 20")
    run(fleet, "apply")
    edit(fleet / "devices" / "pool.yaml", '- mac: "00:15:65:EE:00:01"\n  model: yealink/T46U\n'
         '  profile: office-yealink\n  name: spare-1\n', "")
    assert run(fleet, "apply") == 2
    token = url_token(FLEET_SECRET, "001565ee0001")
    assert not (www(fleet) / token).exists()


def test_prune_beyond_the_limit_exits_3_until_forced(fleet, capsys):
    run(fleet, "apply")
    (fleet / "devices" / "pool.yaml").write_text("[]\n")
    (fleet / "assignments" / "initech.yaml").unlink()
    (fleet / "devices" / "initech.yaml").write_text("[]\n")
    capsys.readouterr()
    assert run(fleet, "apply") == 3
    err = capsys.readouterr().err
    assert "would delete 4 of 23 managed files (17.4%)" in err
    assert "above policy.max_delete_percent (10%)" in err
    assert (www(fleet) / url_token(FLEET_SECRET, "001565ee0001")).exists()  # nothing deleted
    assert run(fleet, "apply", "--force") == 2
    assert not (www(fleet) / url_token(FLEET_SECRET, "001565ee0001")).exists()


def test_apply_refuses_a_stale_plan_file(fleet, tmp_path):
    plan_file = tmp_path / "plan.json"
    assert run(fleet, "plan", "--format", "json", "--out", str(plan_file)) == 2
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    assert run(fleet, "apply", "--plan", str(plan_file)) == 3
    assert not meta(fleet).joinpath("manifest.json").exists()
    assert run(fleet, "plan", "--format", "json", "--out", str(plan_file)) == 2
    assert run(fleet, "apply", "--plan", str(plan_file)) == 2


def test_a_held_lock_refuses_apply_with_exit_3(fleet, capsys):
    run(fleet, "apply")
    from reconciler.targets import lock as target_lock
    from reconciler.targets.local import LocalTarget

    target = LocalTarget("local", www(fleet))
    lock = target_lock.acquire(target, "someone-else", 600).info
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    capsys.readouterr()
    assert run(fleet, "apply") == 3
    out = capsys.readouterr()
    assert f"lock {lock.id} held by someone-else" in out.out + out.err
    assert run(fleet, "unlock", "--target", "local", "--id", lock.id) == 0
    assert run(fleet, "apply") == 2


def test_invalid_state_publishes_nothing(fleet, capsys):
    run(fleet, "apply")
    before = published(fleet)
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    edit(fleet / "devices" / "initech.yaml", "snom/D715", "snom/D000")
    assert run(fleet, "apply") == 1
    assert published(fleet) == before


def test_plan_from_a_git_revision(fleet, capsys):
    def git(*args):
        subprocess.run(["git", "-C", str(fleet), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@e", "add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "one")
    run(fleet, "apply")
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qam", "two")
    capsys.readouterr()
    assert run(fleet, "plan", "--rev", "HEAD~1") == 0  # what was applied
    assert run(fleet, "plan", "--rev", "HEAD") == 2
    assert run(fleet, "plan", "--rev", "nope") == 1
    assert "unknown revision 'nope'" in capsys.readouterr().err


def test_render_one_device_and_explain(fleet, tmp_path, capsys):
    out = tmp_path / "r"
    assert run(fleet, "render", "--out", str(out), "--device", "00:15:65:aa:bb:01") == 0
    names = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert names == [f"{MAC}.boot", f"{MAC}.cfg"]
    capsys.readouterr()
    assert run(fleet, "explain", "001565AABB03", "--param", "timezone") == 0
    text = capsys.readouterr().out
    assert "timezone = Europe/Lisbon    <- device (devices/acme.yaml:" in text
    assert run(fleet, "explain", "001565aabb01") == 0
    text = capsys.readouterr().out
    assert "sip.server = acme.pbx.example.net    <- customer (customers/acme.yaml:3)" in text
    assert "codecs = [\"g722\", \"pcmu\", \"pcma\"]    <- profile (profiles/office-yealink" in text
    assert "admin_password = <secret:admin-password hmac:" in text
    assert "Adm1n-Demo" not in text


def test_status_live_shows_pending_drift_and_lock(fleet, capsys):
    run(fleet, "apply")
    token = url_token(FLEET_SECRET, MAC)
    (www(fleet) / token / f"{MAC}.cfg").unlink()
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    from reconciler.targets import lock as target_lock
    from reconciler.targets.local import LocalTarget

    lock = target_lock.acquire(LocalTarget("local", www(fleet)), "ops-team", 600).info
    capsys.readouterr()
    assert run(fleet, "status", "--live") == 0
    out = capsys.readouterr().out
    assert "target local: last applied" in out
    assert "1 drifted" in out and f"lock {lock.id} held by ops-team" in out
    assert "0 change(s) pending" not in out


def test_firmware_goes_to_the_targets_firmware_folder(fleet):
    edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         'base_url: "http://localhost:8080/", firmware_dir: fw/yealink}')
    assert run(fleet, "apply") == 2
    token = url_token(FLEET_SECRET, "001565cc0001")  # the pinned T46U
    cfg = (www(fleet) / token / "001565cc0001.cfg").read_text()
    assert ("static.firmware.url = http://localhost:8080/fw/yealink/T46U-108.86.0.95.rom"
            in cfg)
    assert (www(fleet) / "fw" / "yealink" / "T46U-108.86.0.95.rom").exists()
    assert "static.firmware.url" not in (www(fleet) / url_token(FLEET_SECRET, MAC)
                                         / f"{MAC}.cfg").read_text()  # not pinned: nothing


def test_explain_shows_only_what_a_line_overrides(fleet, capsys):
    assert run(fleet, "explain", "000413aabb04") == 0  # D785: port 1 acme/205, port 2 acme/201
    text = capsys.readouterr().out
    overrides = text.split("line 1 overrides:\n")[1].split("  line 2:")[0]
    assert overrides.strip().splitlines() == [
        'codecs = ["opus", "g722"]    <- line (assignments/acme.yaml:13)']
    assert "line 2: acme/201 as 92201 (<secret:acme/201 hmac:" in text


def test_repo_option_after_a_sub_subcommand(fleet):
    from reconciler.cli.main import main

    assert main(["secrets", "check", "--repo", str(fleet)]) == 0
    assert main(["secrets", "--repo", str(fleet), "check"]) == 0


def test_no_secret_in_receipts_manifests_status_or_logs(fleet, capsys, caplog):
    import logging

    import yaml
    from fleet_fixtures import SECRETS

    caplog.set_level(logging.DEBUG)
    assert run(fleet, "apply") == 2
    values = [str(v) for v in yaml.safe_load(SECRETS.read_text()).values()] + [FLEET_SECRET]
    token = url_token(FLEET_SECRET, MAC)
    state = fleet / ".provctl"
    # What auditors read: receipts (state dir and target copies) and status.
    written = [state / "receipts.jsonl", state / "status.json"]
    written += list((meta(fleet) / "receipts").glob("*.json"))
    assert len(written) == 3
    # Operational state that must know registered URLs (tokens, no credentials) is private.
    assert (state / "redirect-records.json").stat().st_mode & 0o077 == 0
    captured = capsys.readouterr()
    texts = [p.read_text() for p in written] + [captured.out, captured.err, caplog.text]
    for text in texts:
        for value in values:
            assert value not in text
        assert token not in text  # receipts, status, logs: tokens only shortened


def test_the_command_ends_at_once_with_its_output_and_exit_code(fleet, tmp_path):
    """`provctl plan` and `apply` end the process without freeing the desired state
    (os._exit, cli/main.py run()): what they print is all there, to a pipe and to a file,
    the exit code is the command's, and apply's records are written."""
    cmd = [sys.executable, "-m", "reconciler.cli"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered
    first = subprocess.run([*cmd, "apply", "--repo", str(fleet)], capture_output=True,
                           text=True, env=env)
    assert first.returncode == 2, first.stderr
    assert "Summary:" in first.stdout and first.stdout.rstrip().endswith("applied")
    assert (fleet / ".provctl" / "receipts.jsonl").read_text().strip()
    out = tmp_path / "plan.txt"
    with open(out, "w") as fh:  # a file: block-buffered, flushed before the end
        code = subprocess.run([*cmd, "plan", "--repo", str(fleet)], stdout=fh,
                              env=env).returncode
    assert code == 0
    text = out.read_text()
    assert text.startswith("Plan for revision worktree") and text.endswith(
        "Summary: 0 to create, 0 to update, 0 to delete, 23 unchanged\n"
        "No changes. The targets match the desired state.\n")
    bad = subprocess.run([*cmd, "plan", "--repo", str(fleet), "--target", "nope"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "unknown target 'nope'" in bad.stderr
