"""provctl device add|remove|move|assign|unassign: edits as by hand, validated, committable."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state
from reconciler.render.addressing import url_token

RECEPTION = "001565aabb01"  # acme, Yealink T46U, the only phone of account acme/200


def snapshot(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in repo.rglob("*.yaml")}


def state(repo: Path):
    return load_state(read_source(repo))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e",
                           *args], check=True, capture_output=True, text=True).stdout


def test_add_appends_an_entry_and_keeps_everything_else(fleet, capsys):
    before = snapshot(fleet)
    assert run(fleet, "device", "add", "0015.6512.3456", "--model", "yealink/T54W",
               "--profile", "office-yealink", "--customer", "acme", "--name", "lab",
               "--serial", "0801", "--description", "lab bench, 2nd floor") == 2
    out = capsys.readouterr().out
    assert "added 00:15:65:12:34:56 (yealink/T54W, profile office-yealink) to devices/acme.yaml" \
        in out
    text = (fleet / "devices" / "acme.yaml").read_text()
    assert text == before["devices/acme.yaml"].decode() + (
        '- mac: "00:15:65:12:34:56"  # lab bench, 2nd floor\n  model: yealink/T54W\n'
        '  profile: office-yealink\n  customer: acme\n  name: lab\n  serial: "0801"\n')
    changed = {rel for rel, data in snapshot(fleet).items() if before.get(rel) != data}
    assert changed == {"devices/acme.yaml"}
    assert state(fleet).devices["001565123456"].value.serial == "0801"


def test_add_uses_the_model_profile_table_and_refuses_duplicates(fleet, capsys):
    edit(fleet / "defaults.yaml", "firmware: installed",
         "firmware: installed\nmodel_profiles: {snom/D785: desk-snom}")
    assert run(fleet, "device", "add", "00:04:13:12:34:56", "--model", "snom/D785") == 2
    assert "to devices/pool.yaml" in capsys.readouterr().out
    assert state(fleet).devices["000413123456"].value.profile == "desk-snom"
    before = snapshot(fleet)
    assert run(fleet, "device", "add", "000413123456", "--model", "snom/D785") == 1
    assert "is already in the inventory (devices/pool.yaml)" in capsys.readouterr().err
    assert snapshot(fleet) == before


def test_remove_refuses_an_assigned_phone_unless_told_to_unassign(fleet, capsys):
    before = snapshot(fleet)
    assert run(fleet, "device", "remove", RECEPTION) == 1
    assert "assigned to acme/200: unassign it first, or pass --unassign" in \
        capsys.readouterr().err
    assert snapshot(fleet) == before
    assert run(fleet, "device", "remove", RECEPTION, "--unassign") == 2
    out = capsys.readouterr().out
    assert "removed account acme/200 (its last phone was 00:15:65:aa:bb:01)" in out
    s = state(fleet)
    assert RECEPTION not in s.devices
    assert "acme/200" not in {a.value.account for a in s.assignments}
    devices = (fleet / "devices" / "acme.yaml").read_text()
    assert devices.startswith("# ACME: Alice has three phones (201, 91201, 92201); the D785 "
                              'carries two accounts.\n- mac: "0015.65aa.bb02"\n')
    accounts = (fleet / "assignments" / "acme.yaml").read_text()
    assert accounts.startswith("- account: acme/201             # three phones: 201, 91201, "
                               "92201\n")


def test_unassign_and_removing_an_account_keep_the_phones(fleet, capsys):
    assert run(fleet, "device", "unassign", "00:04:13:AA:BB:04", "--account", "acme/201") == 2
    s = state(fleet)
    acme201 = next(a.value for a in s.assignments if a.value.account == "acme/201")
    assert [r.mac for r in acme201.devices] == ["001565aabb02", "001565aabb03"]
    assert "000413aabb04" in s.devices
    assert (fleet / "assignments" / "acme.yaml").read_text().count(
        '  devices: ["00:15:65:AA:BB:02", "00:15:65:AA:BB:03"]\n') == 1
    assert run(fleet, "device", "unassign", "--account", "acme/205") == 2
    assert "its phones stay in the inventory" in capsys.readouterr().out
    s = state(fleet)
    assert "acme/205" not in {a.value.account for a in s.assignments}
    assert "000413aabb04" in s.devices  # now with no account: common settings only


def test_assign_follows_the_allocation_rules(fleet, capsys):
    # Allocated to acme: never to another customer's account.
    assert run(fleet, "device", "assign", RECEPTION, "--account", "globex/100") == 1
    assert "allocated to customer 'acme': cannot be assigned to globex/100" in \
        capsys.readouterr().err
    # A pooled phone may serve any customer; a new account is created in that customer's file.
    assert run(fleet, "device", "assign", "00:15:65:EE:00:01", "--account", "globex/199",
               "--display-name", "Lab") == 2
    text = (fleet / "assignments" / "globex.yaml").read_text()
    assert text.endswith('- account: globex/199\n  display_name: Lab\n'
                         '  password: secret:globex/199\n  devices: ["00:15:65:EE:00:01"]\n')
    # A port of a two-line phone, appended to an existing account in the file's own style.
    assert run(fleet, "device", "assign", "00:04:13:EE:00:02", "--account", "acme/201",
               "--port", "2") == 2
    assert ('  devices: ["00:15:65:AA:BB:02", "00:15:65:AA:BB:03", {mac: "00:04:13:AA:BB:04", '
            'port: 2}, {mac: "00:04:13:EE:00:02", port: 2}]\n'
            ) in (fleet / "assignments" / "acme.yaml").read_text()
    capsys.readouterr()
    assert run(fleet, "device", "assign", "00:04:13:EE:00:02", "--account", "acme/201",
               "--port", "2") == 0  # already so
    assert "nothing to change" in capsys.readouterr().out


def test_an_edit_whose_result_is_invalid_writes_nothing(fleet, capsys):
    before = snapshot(fleet)
    assert run(fleet, "device", "assign", RECEPTION, "--account", "acme/201", "--port", "17") == 1
    err = capsys.readouterr().err
    assert "the result would be invalid; nothing was written" in err
    assert "yealink/T46U has 16 line(s); port 17 does not exist" in err
    assert snapshot(fleet) == before


def test_owned_phone_is_not_moved_until_ownership_is_cleared(fleet, capsys):
    before = snapshot(fleet)
    assert run(fleet, "device", "move", "00-15-65-AA-BB-03", "--customer", "globex",
               "--unassign") == 1
    assert "owned by customer 'acme': clear its ownership first" in capsys.readouterr().err
    assert snapshot(fleet) == before
    edit(fleet / "devices" / "acme.yaml", "owned_by_customer: true", "owned_by_customer: false")
    assert run(fleet, "device", "move", "00-15-65-AA-BB-03", "--customer", "globex",
               "--unassign") == 2
    moved = state(fleet).devices["001565aabb03"]
    assert moved.file == "devices/globex.yaml"
    assert moved.value.params == {"timezone": "Europe/Lisbon"}  # device settings kept


def test_move_needs_unassign_when_the_phone_serves_the_old_customer(fleet, capsys):
    assert run(fleet, "device", "move", RECEPTION, "--customer", "globex") == 1
    assert "assigned to acme/200: unassign it first, or pass --unassign" in \
        capsys.readouterr().err


def test_terminating_a_customer(fleet, capsys):
    edit(fleet / "customers" / "acme.yaml", "status: active", "status: terminated")
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert "its owned phone 001565aabb03 must be removed from the inventory" in err
    for mac in ("001565aabb01", "001565aabb02", "000413aabb04"):
        assert f"its allocated phone {mac} must return to the pool" in err
    assert "customer 'acme' is terminated: remove account 'acme/201'" in err
    # The commands that fix it, one at a time: each may leave problems that were there before,
    # none may add one. Remove the owned phone, return the rest to the pool.
    assert run(fleet, "device", "remove", "00:15:65:AA:BB:03", "--unassign") == 2
    assert "problem(s) of the repository remain" in capsys.readouterr().err
    assert run(fleet, "device", "move", "--all-of", "acme", "--pool", "--unassign") == 2
    out = capsys.readouterr().out
    assert "removed account acme/205" in out
    assert run(fleet, "validate") == 0
    s = state(fleet)
    for mac in ("001565aabb01", "001565aabb02", "000413aabb04"):
        assert s.devices[mac].value.customer is None
        assert s.devices[mac].file == "devices/pool.yaml"
    assert not [a for a in s.assignments if a.value.customer == "acme"]
    assert (fleet / "devices" / "acme.yaml").read_text() == (
        "# ACME: Alice has three phones (201, 91201, 92201); the D785 carries two accounts.\n"
        "[]\n")


def test_commit_on_a_new_branch(fleet, capsys):
    git(fleet, "init", "-q", "-b", "main")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "base")
    assert run(fleet, "device", "move", "00:15:65:EE:00:01", "--customer", "initech",
               "--commit", "-m", "Allocate spare-1 to Initech", "--branch", "alloc-spare-1") == 2
    assert "on new branch alloc-spare-1" in capsys.readouterr().out
    assert git(fleet, "rev-parse", "--abbrev-ref", "HEAD").strip() == "alloc-spare-1"
    assert git(fleet, "log", "-1", "--format=%s").strip() == "Allocate spare-1 to Initech"
    assert git(fleet, "show", "--name-status", "--format=", "HEAD").split() == [
        "M", "devices/initech.yaml", "M", "devices/pool.yaml"]
    assert git(fleet, "status", "--porcelain") == ""
    # The branch exists now: refused (exit 3), nothing written.
    before = snapshot(fleet)
    assert run(fleet, "device", "move", "00:15:65:EE:00:01", "--pool", "--commit",
               "--branch", "alloc-spare-1") == 3
    assert "branch 'alloc-spare-1' already exists" in capsys.readouterr().err
    assert snapshot(fleet) == before


def test_commit_refuses_files_with_uncommitted_changes(fleet, capsys):
    git(fleet, "init", "-q", "-b", "main")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "base")
    edit(fleet / "devices" / "pool.yaml", "name: spare-1", "name: spare-one")
    before = snapshot(fleet)
    assert run(fleet, "device", "remove", "00:15:65:EE:00:01", "--commit", "--branch", "x") == 3
    assert "uncommitted changes in devices/pool.yaml" in capsys.readouterr().err
    assert snapshot(fleet) == before


def test_dry_run(fleet, capsys):
    before = snapshot(fleet)
    assert run(fleet, "device", "move", "00:15:65:EE:00:01", "--customer", "globex",
               "--dry-run") == 2
    assert "would change devices/globex.yaml, devices/pool.yaml" in capsys.readouterr().out
    assert snapshot(fleet) == before


# --- a move, then plan/apply on the local target ---------------------------------------------


def www(repo: Path) -> Path:
    return repo / "out" / "www"


def published(repo: Path) -> dict[str, bytes]:
    root = www(repo)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".provctl" not in p.parts}


def test_move_between_customers_moves_the_published_files_in_one_apply(fleet, capsys):
    edit(fleet / "provisioning.yaml", "url_tokens: per-device", "url_tokens: per-customer")
    edit(fleet / "provisioning.yaml", "max_delete_percent: 10", "max_delete_percent: 20")
    edit(fleet / "devices" / "acme.yaml", "  name: reception\n",
         "  name: reception\n  params: {timezone: Europe/Lisbon}\n")
    assert run(fleet, "apply") == 2
    old_dir = url_token(FLEET_SECRET, "customer:acme")
    new_dir = url_token(FLEET_SECRET, "customer:globex")
    assert f"{old_dir}/{RECEPTION}.cfg" in published(fleet)
    assert run(fleet, "device", "move", RECEPTION, "--customer", "globex", "--unassign") == 2
    capsys.readouterr()
    assert run(fleet, "plan") == 2
    plan = capsys.readouterr().out
    assert f"+ {new_dir[:6]}…/{RECEPTION}.cfg  (create" in plan
    assert f"- {old_dir[:6]}…/{RECEPTION}.cfg  (prune" in plan
    assert "2 to create" in plan and "2 to delete" in plan
    assert run(fleet, "apply") == 2
    files = published(fleet)
    assert f"{old_dir}/{RECEPTION}.cfg" not in files
    assert f"{old_dir}/{RECEPTION}.boot" not in files
    cfg = files[f"{new_dir}/{RECEPTION}.cfg"].decode()
    assert "local_time.ntp_server1 = ntp.globex.example.it" in cfg  # globex's settings ...
    assert "Lisboa" in cfg  # ... and its own
    assert "rec-Pw-200" not in cfg  # no longer on acme/200
    assert f"{old_dir}/001565aabb02.cfg" in files  # acme's other phones stay
    capsys.readouterr()
    assert run(fleet, "apply") == 0


def test_move_with_per_device_tokens_changes_the_content_in_place(fleet, capsys):
    assert run(fleet, "apply") == 2
    path = f"{url_token(FLEET_SECRET, RECEPTION)}/{RECEPTION}.cfg"
    paths = set(published(fleet))
    before = published(fleet)[path].decode()
    assert "acme.pbx.example.net" in before
    assert run(fleet, "device", "move", RECEPTION, "--customer", "globex", "--unassign") == 2
    assert run(fleet, "apply") == 2
    files = published(fleet)
    assert set(files) == paths  # same places
    after = files[path].decode()
    assert "acme.pbx.example.net" not in after
    assert "ntp.globex.example.it" in after


POOL = """\
# The pool.

- mac: "00:15:65:EE:00:01"   # shelf 3
  model: yealink/T46U
  profile: office-yealink
  name: spare-1
  params:
    line_keys:
      - {type: blf, value: "202", label: Bob}   # Bob's key
      - type: speed_dial
        value: "*97"
  # keys above are for the lab

# --- second batch (2026) ---
- mac: '00:04:13:EE:00:02'
  model: snom/D785
  profile: desk-snom
  name: spare-2
"""


def test_comments_quotes_and_nested_style_survive_edits(fleet, tmp_path):
    (fleet / "devices" / "pool.yaml").write_text(POOL)
    batch = tmp_path / "rename.csv"
    batch.write_text("Action,Device name,MAC address,Device model\n"
                     "update,spare-one,00:15:65:EE:00:01,\n")
    assert run(fleet, "import", str(batch)) == 2
    assert (fleet / "devices" / "pool.yaml").read_text() == POOL.replace(
        "name: spare-1", "name: spare-one")
    globex = (fleet / "devices" / "globex.yaml").read_text()
    assert run(fleet, "device", "move", "00:15:65:EE:00:01", "--customer", "globex") == 2
    entry = POOL.split("\n\n")[1].replace("name: spare-1", "customer: globex\n  name: spare-one")
    entry += "\n"
    assert (fleet / "devices" / "globex.yaml").read_text() == globex + entry
    # The comment above the second batch belongs to it and stays; the header stays too.
    assert (fleet / "devices" / "pool.yaml").read_text() == (
        "# The pool.\n\n\n# --- second batch (2026) ---\n- mac: '00:04:13:EE:00:02'\n"
        "  model: snom/D785\n  profile: desk-snom\n  name: spare-2\n")
