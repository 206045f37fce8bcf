"""Secret references cannot read the host, carry control characters, or leak by redaction;
with a revision, repository files come from its tree (issue 11, items 1, 4 and 5)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, SECRETS, edit, run
from pyrage import x25519

from reconciler.core.errors import ConfigError
from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state

INITECH = "assignments/initech.yaml"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                   check=True, capture_output=True)


def commit(repo: Path, message: str) -> None:
    if not (repo / ".git").exists():
        git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def problems(repo: Path, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_state(read_source(repo), **kwargs)
    return [str(p) for p in err.value.problems]


def password(repo: Path, ref: str) -> None:
    edit(repo / INITECH, "password: secret:initech/10", f"password: {ref}")


def password_from_extra_secret(repo: Path, tmp_path: Path, monkeypatch, name: str,
                               value: str) -> None:
    """initech/10's password becomes secret:NAME, a line added to a copy of the secrets file."""
    copy = tmp_path / "secrets.yaml"
    copy.write_text(SECRETS.read_text() + f"{name}: {value}\n")
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(copy))
    password(repo, f"secret:{name}")


def rendered(repo: Path, out: Path, *args: str) -> str:
    assert run(repo, "render", "--out", str(out), *args) == 0
    return "".join(p.read_text() for p in sorted(out.rglob("*")) if p.is_file())


# --- file: confinement ----------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["file:/proc/self/environ", "file:../../etc/hostname",
                                 "file:~/.bash_history"])
def test_a_file_reference_cannot_read_the_host(fleet, ref, monkeypatch):
    monkeypatch.setenv("PROVCTL_LEAK_CANARY", "canary-value-1234")
    password(fleet, ref)
    found = problems(fleet)
    assert (f"{INITECH}:3: password: secret reference {ref} is invalid: a file: reference must "
            "name a file inside the repository, or inside a directory listed in "
            "secrets.file_dirs (provisioning.yaml)") in found
    assert not any("canary" in p for p in found)


def test_redacting_ci_reports_it_too(fleet, monkeypatch):
    monkeypatch.delenv("PROVCTL_SECRETS_FILE")
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    password(fleet, "file:/proc/self/environ")
    assert any("file:/proc/self/environ is invalid" in p
               for p in problems(fleet, redacting=True))


def test_a_symlink_that_leaves_the_repository_is_refused(fleet, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not-for-phones\n")
    (fleet / "secrets").mkdir()
    (fleet / "secrets" / "initech-10").symlink_to(outside)
    password(fleet, "file:secrets/initech-10")
    found = problems(fleet)
    assert (f"{INITECH}:3: password: secret reference file:secrets/initech-10 is invalid: "
            "secrets/initech-10: is a symbolic link that leaves the repository") in found


def test_files_in_the_repository_and_in_file_dirs_are_read(fleet, tmp_path):
    (fleet / "secrets").mkdir()
    (fleet / "secrets" / "initech-10").write_text("in-repo-Pw-10\n")
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "globex-100").write_text("vault-Pw-100\r\n")
    (vault / "escape").symlink_to(tmp_path / "outside.txt")
    (tmp_path / "outside.txt").write_text("x")
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         f"secrets: {{file: env:PROVCTL_SECRETS_FILE, file_dirs: [{vault}]}}")
    password(fleet, "file:secrets/initech-10")
    edit(fleet / "assignments" / "globex.yaml", "password: secret:globex/100",
         f"password: file:{vault}/globex-100")
    text = rendered(fleet, tmp_path / "out")
    assert "in-repo-Pw-10" in text and "vault-Pw-100" in text
    edit(fleet / "assignments" / "globex.yaml", f"file:{vault}/globex-100",
         f"file:{vault}/escape")
    assert any("is a symbolic link that leaves its secrets.file_dirs directory" in p
               for p in problems(fleet))


@pytest.mark.parametrize("folder", ["/", "/proc/self", "/sys", "/dev/", "/run/user"])
def test_file_dirs_may_not_name_the_hosts_system_folders(fleet, folder):
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         f"secrets: {{file: env:PROVCTL_SECRETS_FILE, file_dirs: ['{folder}']}}")
    assert any(p.startswith("provisioning.yaml:6: secrets.file_dirs.0:") and
               "would let file: references read the host's system files" in p
               for p in problems(fleet))


def test_no_phone_value_may_equal_a_secret_of_the_host(fleet, tmp_path, monkeypatch):
    # the fleet secret's value under another name is caught as well
    password_from_extra_secret(fleet, tmp_path, monkeypatch, "initech/copy", FLEET_SECRET)
    out = tmp_path / "out"
    assert run(fleet, "render", "--out", str(out)) == 1
    assert not out.exists() or FLEET_SECRET not in "".join(
        p.read_text() for p in out.rglob("*") if p.is_file())


def test_the_fleet_secret_is_refused_as_a_phone_password_naming_file_and_line(
        fleet, tmp_path, monkeypatch, capsys):
    password_from_extra_secret(fleet, tmp_path, monkeypatch, "initech/copy", FLEET_SECRET)
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert (f"{INITECH}:3: initech/10.password: secret reference secret:initech/copy is "
            "invalid: resolves to the value of fleet.secret, which must never reach a phone"
            ) in err
    assert FLEET_SECRET not in err


# --- env: confinement -----------------------------------------------------------------------

ENV_REFUSED = ("a phone's value may read only the environment variables listed in secrets.env "
               "of provisioning.yaml")


def allow_env(repo: Path, names: str) -> None:
    edit(repo / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         f"secrets: {{file: env:PROVCTL_SECRETS_FILE, env: {names}}}")


@pytest.mark.parametrize("redacting", [False, True])
def test_a_phone_value_cannot_read_an_unlisted_environment_variable(fleet, tmp_path,
                                                                    monkeypatch, redacting):
    monkeypatch.setenv("CLOUD_TOKEN", "canary-cloud-token-42")
    password(fleet, "env:CLOUD_TOKEN")
    assert any(p.startswith(f"{INITECH}:3: password: secret reference env:CLOUD_TOKEN is "
                            f"invalid: {ENV_REFUSED}") for p in problems(fleet,
                                                                          redacting=redacting))
    out = tmp_path / "out"
    assert run(fleet, "render", "--out", str(out)) == 1
    assert not out.exists() or "canary-cloud-token-42" not in "".join(
        p.read_text() for p in out.rglob("*") if p.is_file())


def test_secrets_check_reports_an_unlisted_environment_variable(fleet, monkeypatch, capsys):
    monkeypatch.setenv("CLOUD_TOKEN", "canary-cloud-token-42")
    password(fleet, "env:CLOUD_TOKEN")
    assert run(fleet, "secrets", "check") == 1
    err = capsys.readouterr().err
    assert f"{INITECH}:3: password: secret reference env:CLOUD_TOKEN is invalid: {ENV_REFUSED}" \
        in err
    assert "provisioning.yaml:" not in err  # the host's own env: references are not confined
    allow_env(fleet, "[CLOUD_TOKEN]")
    assert run(fleet, "secrets", "check") == 0


def test_a_listed_environment_variable_or_prefix_is_read(fleet, tmp_path, monkeypatch):
    monkeypatch.setenv("PBX_INITECH_10", "listed-value-77")
    password(fleet, "env:PBX_INITECH_10")
    allow_env(fleet, "[PBX_*]")
    assert "listed-value-77" in rendered(fleet, tmp_path / "a")
    edit(fleet / "provisioning.yaml", "env: [PBX_*]", "env: [PBX_INITECH_10]")
    assert "listed-value-77" in rendered(fleet, tmp_path / "b")
    edit(fleet / "provisioning.yaml", "env: [PBX_INITECH_10]", "env: [PBX_INITECH_1]")
    assert any(ENV_REFUSED in p for p in problems(fleet))


def test_provctl_variables_never_reach_a_phone_even_when_listed(fleet, monkeypatch):
    monkeypatch.setenv("PROVCTL_AGE_IDENTITY", "AGE-SECRET-KEY-1CANARY")
    password(fleet, "env:PROVCTL_AGE_IDENTITY")
    assert any(f"env:PROVCTL_AGE_IDENTITY is invalid: {ENV_REFUSED}" in p
               for p in problems(fleet))
    for listed in ("[PROVCTL_AGE_IDENTITY]", "[PROV*]", "[PROVCTL_*]", "['*']", "[a-b]"):
        allow_env(fleet, listed)
        found = problems(fleet)
        assert any(p.startswith("provisioning.yaml:") and "secrets.env.0" in p
                   for p in found), (listed, found)
        edit(fleet / "provisioning.yaml", f", env: {listed}}}", "}")


def test_provisioning_references_still_read_any_variable(fleet, monkeypatch):
    """The host's own references (fleet secret, secrets file, redirect credentials) are not
    phone values: the fixture fleet reads PROVCTL_FLEET_SECRET and PROVCTL_SECRETS_FILE."""
    assert "PROVCTL_FLEET_SECRET" in (fleet / "provisioning.yaml").read_text()
    load_state(read_source(fleet))


# --- control characters ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\\0b", "two\\nlines", "tab\\there", "nel\\x85x",
                                   "ls\\u2028x", "esc\\x1b[2J"])
def test_control_characters_in_a_secret_are_refused_naming_never_showing(
        fleet, tmp_path, monkeypatch, value):
    password_from_extra_secret(fleet, tmp_path, monkeypatch, "initech/ctl", f'"{value}"')
    found = problems(fleet)
    assert any(p.startswith(f"{INITECH}:3: password: secret reference secret:initech/ctl is "
                            "invalid: its value holds a control character") for p in found)


def test_a_nul_in_a_file_reference_does_not_pass_as_a_password(fleet):
    (fleet / "secrets").mkdir()
    (fleet / "secrets" / "initech-10").write_bytes(b"A=1\0FLEET=secret\0")
    password(fleet, "file:secrets/initech-10")
    assert any("file:secrets/initech-10 is invalid: its value holds a control character" in p
               for p in problems(fleet))


def test_control_characters_in_rendered_values_name_the_parameter(fleet, capsys):
    edit(fleet / INITECH, "display_name: Lobby", 'display_name: "Lob\\u2028by"')
    edit(fleet / "customers" / "acme.yaml", "params: {timezone: Europe/Berlin}",
         'params: {timezone: Europe/Berlin, raw: {yealink: {"x.y": "a\\x1bb", "k\\0": v}}}')
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert ("assignments/initech.yaml:2: initech/10.display_name: holds a control character "
            "(U+0000-U+001F, U+007F-U+009F, U+2028 or U+2029), which no phone format carries "
            "safely (phone 000413dd0001)") in err
    assert "customers/acme.yaml:4: raw.yealink.x.y: holds a control character" in err
    assert "raw.yealink.k\\x00: holds" in err
    assert "\x1b" not in err and "\u2028" not in err


# --- the revision's tree, not the work tree (item 4) -----------------------------------------


@pytest.fixture
def identity(fleet, monkeypatch):
    key = x25519.Identity.generate()
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         "secrets:\n  file: env:PROVCTL_SECRETS_FILE\n  age_file: secrets.age\n"
         f"  recipients: [{key.to_public()}]")
    monkeypatch.setenv("PROVCTL_AGE_IDENTITY", str(key))
    monkeypatch.delenv("PROVCTL_AGE_IDENTITY_FILE", raising=False)
    return key


def set_secret(repo: Path, monkeypatch, name: str, value: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(value + "\n"))
    assert run(repo, "secrets", "set", name) == 2


def test_apply_rev_publishes_the_committed_secret_not_the_work_trees(
        fleet, identity, monkeypatch):
    set_secret(fleet, monkeypatch, "acme/200", "Committed-Pw-200")
    commit(fleet, "acme/200's password")
    set_secret(fleet, monkeypatch, "acme/200", "Uncommitted-Pw-200")  # not committed
    assert run(fleet, "apply", "--rev", "HEAD") == 2
    text = "".join(p.read_text() for p in (fleet / "out" / "www").rglob("001565aabb01.cfg"))
    assert "Committed-Pw-200" in text and "Uncommitted-Pw-200" not in text


def test_plan_between_commits_shows_a_secret_changed_by_the_head(fleet, identity, monkeypatch,
                                                                  capsys):
    set_secret(fleet, monkeypatch, "acme/200", "First-Pw-200")
    commit(fleet, "base")
    set_secret(fleet, monkeypatch, "acme/200", "Second-Pw-200")
    commit(fleet, "rotate acme/200")
    capsys.readouterr()
    assert run(fleet, "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", "json") == 2
    body = json.loads(capsys.readouterr().out)
    changed = {f["device"] for f in body["files"]}
    assert changed == {"001565aabb01"}  # the phone of acme/200, and only that one
    diff = body["files"][0]["diff"]
    assert "-account.1.password = <secret:acme/200 hmac:" in diff
    assert "+account.1.password = <secret:acme/200 hmac:" in diff
    assert "Pw-200" not in json.dumps(body)
    # CI of a fork: no fleet secret, so no digest; the change still shows.
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    assert run(fleet, "plan", "--base", "HEAD~1", "--head", "HEAD", "--format", "json") == 2
    body = json.loads(capsys.readouterr().out)
    diff = next(f["diff"] for f in body["files"] if f["path"].endswith("001565aabb01.cfg"))
    assert "-account.1.password = <secret:acme/200>" in diff
    assert "+account.1.password = <secret:acme/200 changed>" in diff
    assert "hmac:" not in json.dumps(body)


def test_file_references_and_firmware_come_from_the_revision(fleet, tmp_path, capsys):
    (fleet / "secrets").mkdir()
    (fleet / "secrets" / "initech-10").write_text("Committed-Pw-10\n")
    password(fleet, "file:secrets/initech-10")
    commit(fleet, "base")
    (fleet / "secrets" / "initech-10").write_text("Uncommitted-Pw-10\n")
    text = rendered(fleet, tmp_path / "at-head", "--rev", "HEAD")
    assert "Committed-Pw-10" in text and "Uncommitted-Pw-10" not in text
    assert "Uncommitted-Pw-10" in rendered(fleet, tmp_path / "worktree")
    # A firmware binary changed (and broken) in the work tree only: the revision is still good.
    rom = fleet / "firmware-store" / "T46U-108.86.0.95.rom"
    rom.write_bytes(b"tampered" + rom.read_bytes())
    capsys.readouterr()
    assert run(fleet, "validate") == 1
    assert "not the catalog's" in capsys.readouterr().err
    assert run(fleet, "validate", "--rev", "HEAD") == 0
    # A file the revision does not have is not taken from the work tree either.
    edit(fleet / INITECH, "file:secrets/initech-10", "file:secrets/initech-11")
    (fleet / "secrets" / "initech-11").write_text("New-Pw-11\n")
    commit(fleet, "a password file that was not added")
    git(fleet, "rm", "-q", "--cached", "secrets/initech-11")
    git(fleet, "commit", "-qm", "forget it")
    capsys.readouterr()
    assert run(fleet, "validate", "--rev", "HEAD") == 1
    assert "secrets/initech-11: not in revision" in capsys.readouterr().err


# --- redaction (item 5) -----------------------------------------------------------------------


def explained(fleet: Path, capsys, mac: str = "000413dd0001") -> str:
    capsys.readouterr()
    assert run(fleet, "explain", mac) == 0
    return capsys.readouterr().out


def test_the_shown_digest_is_keyed_by_the_fleet_secret(fleet, capsys, monkeypatch):
    out = explained(fleet, capsys)
    shown = out.split("<secret:initech/10 hmac:")[1][:8]
    plain = hashlib.sha256(b"in-Pw-10").hexdigest()
    assert shown not in plain  # no prefix of the unsalted digest a guess can be tested against
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", "another-fleet")
    assert f"<secret:initech/10 hmac:{shown}>" not in explained(fleet, capsys)


def test_one_password_under_two_names_shows_two_digests(fleet, tmp_path, capsys, monkeypatch):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(SECRETS.read_text() + 'initech/twin: "in-Pw-10"\n')
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(secrets))
    edit(fleet / "assignments" / "globex.yaml", "password: secret:globex/100",
         "password: secret:initech/twin")
    one = explained(fleet, capsys).split("<secret:initech/10 hmac:")[1][:8]
    two = explained(fleet, capsys, "001565cc0001").split("<secret:initech/twin hmac:")[1][:8]
    assert one != two


def test_redaction_without_the_fleet_secret_shows_no_digest(fleet, monkeypatch):
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    state = load_state(read_source(fleet), redacting=True)
    shown = state.secrets.resolve("secret:initech/10")
    assert shown == "<secret:initech/10>"
