"""Narrowed runs, one phone's diff, status --exit-code, init, history as JSON, PR tokens."""

from __future__ import annotations

import json
import subprocess

from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.render.addressing import url_token

MAC = "001565aabb01"  # acme, Yealink T46U
SNOM = "000413cc0002"  # globex, Snom D735
GLOBEX = {"001565cc0001", "000413cc0002"}


def www(repo):
    return repo / "out" / "www"


def published(repo) -> dict[str, bytes]:
    root = www(repo)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".provctl" not in p.parts}


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                   check=True, capture_output=True)


def test_device_limits_apply_to_that_phone(fleet, capsys):
    assert run(fleet, "apply", "--device", "00:15:65:AA:BB:01") == 2
    files = published(fleet)
    token = url_token(FLEET_SECRET, MAC)
    assert set(files) == {f"{token}/{MAC}.cfg", f"{token}/{MAC}.boot"}
    manifest = json.loads((fleet / "out" / ".provctl-www" / "manifest.json").read_text())
    assert manifest["revision"] is None  # the target as a whole is not at the new revision
    status = json.loads((fleet / ".provctl" / "status.json").read_text())
    assert "last_applied" not in status["local"]
    receipt = json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])
    assert receipt["only"] == {"devices": [MAC], "customers": []}
    capsys.readouterr()
    assert run(fleet, "plan", "--device", MAC) == 0
    assert run(fleet, "plan") == 2  # everyone else is still pending
    # a phone with a firmware pin brings the binary it needs
    assert run(fleet, "apply", "--device", "00:15:65:CC:00:01") == 2
    assert "firmware/T46U-108.86.0.95.rom" in published(fleet)
    assert run(fleet, "apply") == 2
    assert run(fleet, "plan") == 0


def test_customer_limits_changes_and_other_phones_are_neither_changed_nor_pruned(fleet, capsys):
    assert run(fleet, "apply") == 2
    edit(fleet / "defaults.yaml", "call_waiting: true", "call_waiting: false")
    before = published(fleet)
    assert run(fleet, "apply", "--customer", "globex") == 2
    after = published(fleet)
    from reconciler.pipeline.run import Options, load_desired

    resolved = load_desired(Options(repo=fleet)).renderer.resolved()
    globex = {mac for mac, d in resolved.items() if d.customer == "globex"}
    assert GLOBEX < globex
    changed = {p.partition("/")[0] for p in after if after[p] != before[p]}
    tokens = {url_token(FLEET_SECRET, m) for m in globex}
    assert {url_token(FLEET_SECRET, m) for m in GLOBEX} <= changed <= tokens
    assert set(after) == set(before)
    capsys.readouterr()
    assert run(fleet, "plan", "--customer", "globex") == 0
    assert run(fleet, "plan", "--customer", "acme") == 2


def test_device_of_a_removed_phone_prunes_only_its_files(fleet, capsys):
    assert run(fleet, "apply") == 2
    pool = fleet / "devices" / "pool.yaml"
    edit(pool, '- mac: "00:15:65:EE:00:01"\n  model: yealink/T46U\n'
         '  profile: office-yealink\n  name: spare-1\n', "")
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    assert run(fleet, "apply", "--device", "00:15:65:EE:00:01") == 2
    out = capsys.readouterr().out
    assert "- " in out and "(prune" in out and "~ " not in out  # globex's change waits
    assert not (www(fleet) / url_token(FLEET_SECRET, "001565ee0001")).exists()
    assert run(fleet, "apply", "--device", "00:15:65:EE:00:0F") == 1
    assert "unknown device 001565ee000f" in capsys.readouterr().err


def test_one_phones_diff_is_unified_and_redacted(fleet, tmp_path, monkeypatch, capsys):
    assert run(fleet, "diff", MAC) == 2  # nothing published yet: every file is added
    out = capsys.readouterr().out
    assert f"+++ desired/{url_token(FLEET_SECRET, MAC)[:6]}…/{MAC}.cfg" in out
    assert "rec-Pw-200" not in out and "<secret:acme/200 hmac:" in out
    run(fleet, "apply")
    capsys.readouterr()
    assert run(fleet, "diff", MAC) == 0
    assert "0 of 2 file(s) would change" in capsys.readouterr().out
    # the password is rotated: neither the old nor the new value is shown
    rotated = tmp_path / "secrets.yaml"
    from fleet_fixtures import SECRETS

    rotated.write_text(SECRETS.read_text().replace("rec-Pw-200", "rec-Pw-NEW"))
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(rotated))
    edit(fleet / "profiles" / "office-yealink.yaml", "language: it", "language: fr")
    assert run(fleet, "diff", "00:15:65:aa:bb:01", "--host", "local") == 2
    out = capsys.readouterr().out
    assert "rec-Pw" not in out
    assert "-account.1.password = <redacted hmac:" in out
    assert "+account.1.password = <secret:acme/200 hmac:" in out
    assert "+lang.gui = French" in out or "French" in out
    assert "1 of 2 file(s) would change" in out


def test_status_exit_code(fleet, capsys):
    assert run(fleet, "status", "--exit-code") == 2  # nothing applied: changes pending
    run(fleet, "apply")
    assert run(fleet, "status", "--exit-code") == 0
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    assert run(fleet, "status", "--exit-code", "--format", "json") == 2
    assert '"exit_code": 2' in capsys.readouterr().out
    # the last run failed: the document root cannot be written
    (www(fleet) / url_token(FLEET_SECRET, SNOM)).chmod(0o500)
    try:
        import os

        if os.geteuid() == 0:  # root writes anyway: make the failure another way
            (www(fleet) / url_token(FLEET_SECRET, SNOM)).chmod(0o755)
            status = fleet / ".provctl" / "status.json"
            body = json.loads(status.read_text())
            body["local"]["last_attempted"]["error"] = "target local: connection refused"
            status.write_text(json.dumps(body))
        else:
            assert run(fleet, "apply") == 1
        assert run(fleet, "status", "--exit-code") == 1
    finally:
        (www(fleet) / url_token(FLEET_SECRET, SNOM)).chmod(0o755)


def test_init_scaffolds_a_repository_that_validates_and_plans(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "phones"
    from reconciler.cli.main import main

    assert main(["init", str(repo), "--vendor", "yealink", "--vendor", "snom", "--customer",
                 "acme", "--no-git"]) == 2
    names = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    assert names == {"provisioning.yaml", "defaults.yaml", "profiles/yealink.yaml",
                     "profiles/snom.yaml", "customers/acme.yaml", "devices/acme.yaml",
                     "assignments/acme.yaml", "secrets.example.yaml", ".gitignore",
                     ".github/workflows/provctl.yml", ".pre-commit-config.yaml"}
    assert "secrets.yaml" in (repo / ".gitignore").read_text()
    assert "rev: v0.1.0" in (repo / ".pre-commit-config.yaml").read_text()
    assert "head -c" not in (repo / ".github/workflows/provctl.yml").read_text()
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text((repo / "secrets.example.yaml").read_text())
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(secrets))
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", "init-test")
    capsys.readouterr()
    assert main(["validate", "--repo", str(repo)]) == 0
    assert "valid: 2 devices, 2 accounts" in capsys.readouterr().out
    assert main(["plan", "--repo", str(repo)]) == 2
    assert main(["init", str(repo), "--no-git"]) == 1  # never overwrites
    assert "exist" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "gl"), "--ci", "gitlab", "--vendor", "snmo"]) == 1
    assert "did you mean 'snom'" in capsys.readouterr().err


def test_history_json_is_structured(fleet, capsys):
    git(fleet, "init", "-q")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "one")
    run(fleet, "apply")
    edit(fleet / "profiles" / "office-yealink.yaml", "language: it", "language: fr")
    git(fleet, "commit", "-qam", "french")
    capsys.readouterr()
    assert run(fleet, "history", MAC, "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["format"] == "provctl-history/1"
    first, second = body["commits"]
    assert first["what"] == "added" and second["what"] == "changed"
    assert first["applied"][0]["target"] == "local" and first["applied"][0]["changes"] > 0
    assert second["applied"] == []
    (cfg,) = [f for f in second["files"] if f["name"].endswith(".cfg")]
    assert {"op": "+", "line": "lang.gui = French"} in cfg["lines"] or any(
        line["op"] == "+" and "French" in line["line"] for line in cfg["lines"])
    assert all(set(line) == {"op", "line"} for line in cfg["lines"])


def test_pr_plans_show_real_short_tokens_with_the_fleet_secret_else_placeholders(
        fleet, monkeypatch, capsys):
    git(fleet, "init", "-q")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "one")
    edit(fleet / "provisioning.yaml", "http://localhost:8080/", "https://prov.example.net/")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "markdown") == 2
    md = capsys.readouterr().out
    token = url_token(FLEET_SECRET, MAC)
    assert f"`{token[:6]}…/{MAC}.cfg`" in md and token not in md
    assert "URL tokens shortened" in md
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    monkeypatch.delenv("PROVCTL_SECRETS_FILE")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "markdown") == 2
    md = capsys.readouterr().out
    assert f"`{{token:{MAC}}}/{MAC}.cfg`" in md and token[:6] not in md
    assert "URL tokens shown as placeholders" in md


def test_diff_never_shows_the_password_of_an_account_taken_off_the_phone(fleet, capsys):
    run(fleet, "apply")
    assert run(fleet, "device", "unassign", "00:04:13:CC:00:02") == 2
    capsys.readouterr()
    assert run(fleet, "diff", SNOM) == 2
    out = capsys.readouterr().out
    assert "gx-Pw-110" not in out and "gx-Pw" not in out
    assert '-    <user_pass idx="1" perm="R"><redacted hmac:' in out
