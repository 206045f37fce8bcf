"""Secrets at rest (age file in the repository) and derived secrets (derive:NAME, rotation)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pyrage
import pytest
from fleet_fixtures import FLEET_SECRET, edit, run
from pyrage import x25519

import vendors
from reconciler.core.errors import ConfigError
from reconciler.desired.load import read_source
from reconciler.desired.secrets import BadReference, derive_password, parse_derive
from reconciler.desired.validate import load_state
from reconciler.gitops.compare import compare

# --- derived secrets ------------------------------------------------------------------------


def test_derived_password_is_stable_strong_and_changes_with_name_rotation_and_fleet():
    pw = derive_password("fleet-a", "admin-001565aabb01")
    assert pw == derive_password("fleet-a", "admin-001565aabb01")  # stable
    assert len(pw) == 20 and pw.isalnum()
    assert any(c.isdigit() for c in pw) and any(c.isupper() for c in pw) \
        and any(c.islower() for c in pw)
    others = {derive_password("fleet-a", "admin-001565aabb02"),
              derive_password("fleet-a", "admin-001565aabb01", 1),
              derive_password("fleet-b", "admin-001565aabb01")}
    assert pw not in others and len(others) == 3


def test_derive_syntax():
    assert parse_derive("derive:admin-{mac}") == ("admin-{mac}", 0)
    assert parse_derive("derive:sip/acme/201@rotation=3") == ("sip/acme/201", 3)
    for bad in ("derive:", "derive:x@rotation=", "derive:x@rotation=two", "derive:x@3",
                "derive:{host}-admin", "derive:a{mac"):
        with pytest.raises(BadReference):
            parse_derive(bad)


def per_phone_admin_passwords(repo: Path) -> None:
    edit(repo / "defaults.yaml", "admin_password: secret:admin-password",
         'admin_password: "derive:admin-{mac}"     # one password per phone')


def test_every_phone_gets_its_own_admin_password_from_one_line(fleet, tmp_path, capsys):
    per_phone_admin_passwords(fleet)
    out = tmp_path / "rendered"
    assert run(fleet, "render", "--out", str(out)) == 0
    files = {p.name: p.read_text() for p in out.rglob("*") if p.is_file()}
    one = derive_password(FLEET_SECRET, "admin-001565aabb01")
    two = derive_password(FLEET_SECRET, "admin-001565aabb02")
    assert f"static.security.user_password = admin:{one}" in files["001565aabb01.cfg"]
    assert f"static.security.user_password = admin:{two}" in files["001565aabb02.cfg"]
    assert derive_password(FLEET_SECRET, "admin-000413aabb04") in files["000413AABB04.xml"]
    assert "Adm1n-Demo" not in "".join(files.values())
    capsys.readouterr()
    assert run(fleet, "explain", "001565aabb01", "--param", "admin_password") == 0
    shown = capsys.readouterr().out
    assert "admin_password = <derive:admin-001565aabb01 hmac:" in shown and one not in shown


def test_mac_placeholder_only_in_phone_parameters(fleet):
    edit(fleet / "assignments" / "initech.yaml", "secret:initech/10", '"derive:sip-{mac}"')
    edit(fleet / "provisioning.yaml", "secret: env:PROVCTL_FLEET_SECRET",
         "secret: derive:fleet")
    with pytest.raises(ConfigError) as err:
        load_state(read_source(fleet))
    found = [str(p) for p in err.value.problems]
    assert ("assignments/initech.yaml:3: password: secret reference derive:sip-{mac} is "
            "invalid: {mac} is allowed only in phone parameters (e.g. admin_password), where "
            "each phone fills in its own MAC") in found
    assert any("derive:fleet is invalid: the fleet secret cannot itself be derived" in p
               for p in found)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                   check=True, capture_output=True)


def test_a_rotation_shows_in_the_plan_for_exactly_the_phones_it_touches(fleet):
    per_phone_admin_passwords(fleet)
    git(fleet, "init", "-q")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "per-phone admin passwords")
    # Rotate acme's phones (customer layer) and nothing else.
    edit(fleet / "customers" / "acme.yaml", "params: {timezone: Europe/Berlin}",
         'params: {timezone: Europe/Berlin, admin_password: "derive:admin-{mac}@rotation=1"}')
    git(fleet, "commit", "-qam", "rotate acme's admin passwords")
    result = compare(fleet, "HEAD~1", "HEAD")
    assert result.problems == []
    acme = {mac for mac, d in load_state(read_source(fleet)).devices.items()
            if d.value.customer == "acme"
            and "admin_password" in vendors.get(d.value.vendor).supported}
    assert {"001565aabb01", "001565aabb02", "001565aabb03", "000413aabb04"} <= acme
    assert {f.device for f in result.files} == acme
    assert {f.status for f in result.files} == {"changed"}
    cfg = next(f for f in result.files if f.path.endswith("001565aabb01.cfg"))
    assert ("-static.security.user_password = admin:<derive:admin-001565aabb01 hmac:"
            in cfg.diff)
    assert ("+static.security.user_password = admin:<derive:admin-001565aabb01@rotation=1 "
            "hmac:" in cfg.diff)
    for f in result.files:
        for rotation in (0, 1):
            assert derive_password(FLEET_SECRET, f"admin-{f.device}", rotation) not in f.diff


# --- the age-encrypted secrets file ---------------------------------------------------------


@pytest.fixture
def identity(fleet, monkeypatch):
    """An age identity in the environment, its public key as the file's recipient."""
    key = x25519.Identity.generate()
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         "secrets:\n  file: env:PROVCTL_SECRETS_FILE\n  age_file: secrets.age\n"
         f"  recipients: [{key.to_public()}]   # the operators' keys")
    monkeypatch.setenv("PROVCTL_AGE_IDENTITY", str(key))
    monkeypatch.delenv("PROVCTL_AGE_IDENTITY_FILE", raising=False)
    return key


def set_secret(repo: Path, monkeypatch, name: str, value: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(value + "\n"))
    return run(repo, "secrets", "set", name)


def everything_in(repo: Path) -> bytes:
    return b"".join(p.read_bytes() for p in repo.rglob("*") if p.is_file())


def test_set_encrypts_and_the_value_reaches_the_phone(fleet, identity, monkeypatch, tmp_path,
                                                      capsys):
    assert set_secret(fleet, monkeypatch, "acme/200", "N3w-Pw-200") == 2
    out = capsys.readouterr().out
    assert "set secret:acme/200 in secrets.age (encrypted to 1 recipient(s))" in out
    assert "N3w-Pw-200" not in out
    data = (fleet / "secrets.age").read_bytes()
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert b"N3w-Pw-200" not in everything_in(fleet)  # never in clear in the working tree
    assert pyrage.decrypt(data, [identity]) == b"acme/200: N3w-Pw-200\n"
    assert set_secret(fleet, monkeypatch, "acme/200", "N3w-Pw-200") == 0  # unchanged
    # The encrypted file wins over the plain one.
    rendered = tmp_path / "rendered"
    assert run(fleet, "render", "--out", str(rendered), "--device", "001565aabb01") == 0
    cfg = next(rendered.rglob("001565aabb01.cfg")).read_text()
    assert "N3w-Pw-200" in cfg and "rec-Pw-200" not in cfg


def test_identity_from_a_file_and_refusal_without_one(fleet, identity, monkeypatch, tmp_path,
                                                      capsys):
    assert set_secret(fleet, monkeypatch, "acme/200", "N3w-Pw-200") == 2
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# created: today\n# public key: {identity.to_public()}\n"
                        f"{identity}\n")
    monkeypatch.delenv("PROVCTL_AGE_IDENTITY")
    monkeypatch.setenv("PROVCTL_AGE_IDENTITY_FILE", str(key_file))
    assert run(fleet, "validate") == 0
    monkeypatch.delenv("PROVCTL_AGE_IDENTITY_FILE")
    capsys.readouterr()
    assert run(fleet, "validate") == 1  # never falls back to the plain file's older values
    assert ("no age identity: set PROVCTL_AGE_IDENTITY or PROVCTL_AGE_IDENTITY_FILE"
            in capsys.readouterr().err)
    monkeypatch.setenv("PROVCTL_AGE_IDENTITY", str(x25519.Identity.generate()))
    assert run(fleet, "validate") == 1
    assert "cannot decrypt" in capsys.readouterr().err
    # A pull request's plan needs no identity: values are placeholders there.
    monkeypatch.delenv("PROVCTL_AGE_IDENTITY")
    git(fleet, "init", "-q")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "base")
    assert run(fleet, "plan", "--base", "HEAD") == 0


def test_set_needs_recipients(fleet, monkeypatch, capsys):
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         "secrets: {file: env:PROVCTL_SECRETS_FILE, age_file: secrets.age}")
    assert set_secret(fleet, monkeypatch, "x", "y") == 1
    assert "secrets.recipients in provisioning.yaml is empty" in capsys.readouterr().err
    assert not (fleet / "secrets.age").exists()


def test_edit_uses_a_private_temporary_file_outside_the_repository(
        fleet, identity, monkeypatch, tmp_path, capsys):
    assert set_secret(fleet, monkeypatch, "acme/200", "N3w-Pw-200") == 2
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys, os, stat\n"
        "path = sys.argv[1]\n"
        f"open({str(seen)!r}, 'w').write(path + ' ' + oct(os.stat(path).st_mode & 0o777))\n"
        "text = open(path).read()\n"
        "assert 'acme/200: N3w-Pw-200' in text, text\n"
        "open(path, 'a').write('globex/100: Gx-New-100\\n')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.delenv("VISUAL", raising=False)
    assert run(fleet, "secrets", "edit") == 2
    path, mode = seen.read_text().split()
    assert mode == "0o600"
    assert not Path(path).exists() and not Path(path).parent.exists()
    assert not Path(path).resolve().is_relative_to(fleet.resolve())
    plain = pyrage.decrypt((fleet / "secrets.age").read_bytes(), [identity]).decode()
    assert plain == "acme/200: N3w-Pw-200\nglobex/100: Gx-New-100\n"
    assert b"Gx-New-100" not in everything_in(fleet)
    # An editor that fails saves nothing, and still leaves no plaintext behind.
    editor.write_text(f"import sys\nopen({str(seen)!r}, 'w').write(sys.argv[1] + ' x')\n"
                      "sys.exit(1)\n")
    before = (fleet / "secrets.age").read_bytes()
    assert run(fleet, "secrets", "edit") == 1
    assert "the editor exited with status 1: nothing saved" in capsys.readouterr().err
    assert not Path(seen.read_text().split()[0]).exists()
    assert (fleet / "secrets.age").read_bytes() == before


def test_check_lists_every_reference_that_does_not_resolve(fleet, monkeypatch, capsys):
    assert run(fleet, "secrets", "check") == 0
    found = re.search(r"all (\d+) secret reference\(s\) resolve", capsys.readouterr().out)
    assert found
    refs = int(found[1])
    edit(fleet / "assignments" / "initech.yaml", "secret:initech/10", "secret:initech/11")
    edit(fleet / "devices" / "pool.yaml", "  name: spare-1\n",
         '  name: spare-1\n  params: {admin_password: "derive:spare-{mac}@rotation=2"}\n')
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    assert run(fleet, "secrets", "check") == 1
    err = capsys.readouterr().err
    assert f"3 of {refs + 1} secret reference(s) do not resolve" in err
    assert ("assignments/initech.yaml:3: password: secret reference secret:initech/11 does not "
            "resolve: not in the secrets file") in err
    assert ("provisioning.yaml:4: fleet.secret: secret reference env:PROVCTL_FLEET_SECRET does "
            "not resolve: environment variable PROVCTL_FLEET_SECRET is not set") in err
    assert "devices/pool.yaml:7: params.admin_password: secret reference " \
           "derive:spare-{mac}@rotation=2 does not resolve: the fleet secret does not resolve" \
           in err


@pytest.mark.parametrize("text", [
    "", "a: b\n", "a: 010\nb: yes\nc: 1.5\nd: 2020-01-02\ne: '010'\n", "a: [1]\n", "a:\n",
    "[]\n", "- a\n", "a: &x v\nb: *x\n", "<<: {a: 1}\nb: 2\n", "1: x\ntrue: y\n",
    "a: b\na: c\n", "x", "a: !!str 5\n", 'acme/201: "S3cr&t<201>"\n', "{a: b, c: d}",
    "a: ~\n", "0\n", "a: [unclosed\n"])
def test_the_secrets_file_reads_as_yaml_safe_load_reads_it(text):
    """libyaml for the secrets file (a tenth of the time at 50,000 entries), same values."""
    import yaml

    from reconciler.desired.secrets import MissingSecret, parse_secrets_map

    def reference() -> object:
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            return "invalid"
        if not isinstance(loaded, dict) or any(
                isinstance(v, dict | list) or v is None for v in loaded.values()):
            return "not a map"
        return {str(k): str(v) for k, v in loaded.items()}

    try:
        got: object = parse_secrets_map(text, "s.yaml")
    except MissingSecret as exc:
        got = "invalid" if "not valid YAML" in str(exc) else "not a map"
    assert got == reference()
