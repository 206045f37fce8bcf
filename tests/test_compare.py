"""plan --base/--head: desired vs desired, no target contacted, secrets redacted."""

from __future__ import annotations

import json
import subprocess

from fleet_fixtures import SECRETS, edit, run


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                   check=True, capture_output=True)


def committed(fleet):
    git(fleet, "init", "-q")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "base")
    return fleet


def test_profile_change_shows_per_customer_diffs_in_markdown(fleet, capsys):
    committed(fleet)
    edit(fleet / "profiles" / "desk-snom.yaml", "language: de", "language: fr")
    git(fleet, "commit", "-qam", "french")
    assert run(fleet, "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", "markdown") == 2
    md = capsys.readouterr().out
    assert md.index("**4 phone(s) changed**") < md.index("<details>")  # summary first
    for customer in ("acme", "globex", "initech", "(pool)"):
        assert f"| {customer} | 1 | 0 | 1 | 0 |" in md
    # acme's and initech's D785 get the same diff: shown once
    assert "<code>{MAC}.xml</code> — applies to 2 phones (acme: 1, initech: 1)" in md
    assert "+    <language perm=\"R\">Français</language>" in md
    assert "/targets" not in md and ".provctl" not in md


def test_secret_rotation_is_visible_but_never_readable(fleet, tmp_path, monkeypatch, capsys):
    committed(fleet)
    rotated = tmp_path / "secrets.yaml"
    rotated.write_text(SECRETS.read_text().replace("in-Pw-10", "in-Pw-NEW"))
    edit(fleet / "assignments" / "initech.yaml", "secret:initech/10", "secret:initech/10b")
    with open(rotated, "a") as fh:
        fh.write('initech/10b: "in-Pw-NEW"\n')
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(rotated))
    assert run(fleet, "plan", "--base", "HEAD") == 2
    out = capsys.readouterr().out
    assert "-    <user_pass idx=\"1\" perm=\"R\">&lt;secret:initech/10 hmac:" in out
    assert "+    <user_pass idx=\"1\" perm=\"R\">&lt;secret:initech/10b hmac:" in out
    assert "in-Pw" not in out


def test_works_without_any_secrets_like_a_pull_request_ci(fleet, monkeypatch, capsys):
    committed(fleet)
    monkeypatch.delenv("PROVCTL_SECRETS_FILE")
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "json") == 2
    body = json.loads(capsys.readouterr().out)
    assert body["summary"]["changed"] >= 2
    assert {f["customer"] for f in body["files"]} == {"globex"}  # only globex's phones
    assert all("ntp2.globex.example.it" in f["diff"] for f in body["files"])


def test_invalid_head_is_reported_with_exit_1(fleet, capsys):
    committed(fleet)
    edit(fleet / "devices" / "initech.yaml", "snom/D715", "snom/D000")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "markdown") == 1
    md = capsys.readouterr().out
    assert ":x: **The head revision is invalid" in md
    assert "devices/initech.yaml:2: model: unknown model 'snom/D000'" in md


def test_no_difference_exits_0(fleet, capsys):
    committed(fleet)
    assert run(fleet, "plan", "--base", "HEAD", "--head", "HEAD") == 0


def test_redirect_changes_are_listed(fleet, capsys):
    committed(fleet)
    edit(fleet / "devices" / "globex.yaml", "  name: warehouse\n",
         "  name: warehouse\n  redirect: {until: 2026-12-01}\n")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "markdown") == 2
    assert "| `000413cc0002` | none | register until 2026-12-01 |" in capsys.readouterr().out


def test_big_change_is_truncated_for_a_pr_comment(fleet, capsys):
    devices = "".join(
        f"- {{mac: '001565{i:06x}', model: yealink/T46U, profile: office-yealink, "
        f"customer: acme}}\n" for i in range(400))
    (fleet / "devices" / "bulk.yaml").write_text(devices)
    committed(fleet)
    edit(fleet / "profiles" / "office-yealink.yaml", "timezone: Europe/Rome",
         "timezone: Europe/Paris")
    edit(fleet / "customers" / "acme.yaml", "timezone: Europe/Berlin", "timezone: Europe/Paris")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "markdown") == 2
    md = capsys.readouterr().out
    assert len(md) < 65_536
    # one diff for the 400 bulk phones and the two of the example with the same diff
    assert "<code>{mac}.cfg</code> — applies to 402 phones (acme: 402)" in md
    assert "- … and 392 more file(s)" in md


def test_unknown_base_is_an_error_not_an_empty_fleet(fleet, capsys):
    committed(fleet)
    assert run(fleet, "plan", "--base", "origin/main") == 1
    assert "unknown revision 'origin/main'" in capsys.readouterr().err


def test_validate_without_secrets_for_pull_requests_from_forks(fleet, monkeypatch, capsys):
    monkeypatch.delenv("PROVCTL_SECRETS_FILE")
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    assert run(fleet, "validate") == 1
    assert run(fleet, "validate", "--no-secrets") == 0
    edit(fleet / "devices" / "initech.yaml", "snom/D715", "snom/D000")
    assert run(fleet, "validate", "--no-secrets") == 1


def test_diffs_never_show_a_whole_url_token(fleet, capsys):
    import re

    committed(fleet)
    edit(fleet / "provisioning.yaml", "http://localhost:8080/", "https://prov.example.net/")
    assert run(fleet, "plan", "--base", "HEAD", "--format", "markdown") == 2
    md = capsys.readouterr().out
    assert "+static.auto_provision.server.url = https://prov.example.net/" in md
    assert not re.search(r"[0-9a-f]{32}", md)
