"""history MAC: commits that changed what a phone gets (through any layer) and when applied."""

from __future__ import annotations

import subprocess

from fleet_fixtures import edit, run


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=Op Erator",
                    "-c", "user.email=op@example.net", *args], check=True, capture_output=True)


def commit(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_history_follows_layers_and_notes(fleet, capsys):
    git(fleet, "init", "-q")
    commit(fleet, "initial fleet")
    assert run(fleet, "apply") == 2  # writes a git note on this commit
    edit(fleet / "customers" / "initech.yaml", "pbx.initech.example.de", "pbx2.initech.example.de")
    commit(fleet, "initech: move to pbx2")  # reaches 000413dd0001 through the customer layer
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    commit(fleet, "globex: new NTP")  # does not reach the initech phone
    edit(fleet / "devices" / "initech.yaml", "dnd_mode: \"off\"", "dnd_mode: \"on\"")
    commit(fleet, "lobby: dnd on")
    capsys.readouterr()
    assert run(fleet, "history", "00:04:13:DD:00:01") == 0
    out = capsys.readouterr().out
    assert "initial fleet" in out and "initech: move to pbx2" in out and "lobby: dnd on" in out
    assert "globex: new NTP" not in out
    assert "Op Erator <op@example.net>" in out
    assert "+    <user_host idx=\"1\" perm=\"R\">pbx2.initech.example.de" in out
    assert "&lt;secret:initech/10 hmac:" in out or "user_pass" not in out
    assert "in-Pw-10" not in out  # redacted
    first = out.split("initech: move to pbx2")[0]
    assert "applied to local at" in first  # the initial commit was applied
    assert out.count("not applied yet") == 2
    assert run(fleet, "apply") == 2
    capsys.readouterr()
    run(fleet, "history", "000413dd0001")
    out = capsys.readouterr().out
    assert "not applied yet" not in out
    assert "applied to local at" in out.split("lobby: dnd on")[1]
