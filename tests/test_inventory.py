"""provctl import / export: CSV rows checked before anything is written, all or nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fleet_fixtures import edit, run

from reconciler.core.errors import ConfigError
from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state

HEADER = "Action,Device name,Device model,MAC address,Customer,Owned by customer,Description," \
         "Serial,Profile\n"


def snapshot(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in repo.rglob("*.yaml")}


def csv_file(tmp_path: Path, body: str, name: str = "batch.csv") -> str:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return str(path)


def byod_profiles(repo: Path) -> None:
    """A second Yealink profile; acme's table maps the T46U to it, the fleet's to office."""
    (repo / "profiles" / "byod-yealink.yaml").write_text(
        "name: byod-yealink\nvendor: yealink\nmodels: [T46U, T54W]\n"
        "user_owned: [line_keys, soft_keys]\n")
    with open(repo / "defaults.yaml", "a") as fh:
        fh.write("model_profiles:\n  yealink/T46U: office-yealink\n  snom/D785: desk-snom\n")
    with open(repo / "customers" / "acme.yaml", "a") as fh:
        fh.write("model_profiles: {yealink/T46U: byod-yealink}   # customers' own phones\n")


def test_template_prints_the_header(fleet, capsys):
    assert run(fleet, "import", "--template") == 0
    assert capsys.readouterr().out == HEADER


def test_good_batch_adds_updates_deletes_and_keeps_comments(fleet, tmp_path, capsys):
    byod_profiles(fleet)
    before = snapshot(fleet)
    path = csv_file(tmp_path, (
        "add,byod-1,yealink/T46U,00:15:65:10:00:01,acme,yes,Alice's own phone,SN1,\n"
        "add,spare-3,Yealink T46U,0015.6510.0002,,no,,,\n"
        "add,desk-9,snom/D785,00-04-13-10-00-03,globex,no,,,desk-snom\n"
        "update,spare-one,yealink/T46U,00:15:65:EE:00:01,,,,,\n"
        "delete,,,00:04:13:EE:00:02,,,,,\n"))
    assert run(fleet, "import", path) == 2
    out = capsys.readouterr().out
    assert "3 added, 1 updated, 1 deleted, 0 unchanged" in out
    state = load_state(read_source(fleet))
    byod = state.devices["001565100001"].value
    assert (byod.customer, byod.owned_by_customer, byod.profile, byod.serial) == (
        "acme", True, "byod-yealink", "SN1")  # the customer's table wins
    assert state.devices["001565100002"].value.profile == "office-yealink"  # the fleet's
    assert state.devices["001565100002"].value.customer is None
    assert state.devices["000413100003"].file == "devices/globex.yaml"
    assert state.devices["001565ee0001"].value.name == "spare-one"
    assert "000413ee0002" not in state.devices
    acme = (fleet / "devices" / "acme.yaml").read_text()
    assert acme.startswith(before["devices/acme.yaml"].decode())  # appended, nothing else
    assert acme.endswith('- mac: "00:15:65:10:00:01"  # Alice\'s own phone\n'
                         "  model: yealink/T46U\n  profile: byod-yealink\n  customer: acme\n"
                         "  name: byod-1\n  owned_by_customer: true\n  serial: \"SN1\"\n")
    pool = (fleet / "devices" / "pool.yaml").read_text()
    assert pool.startswith("# The provider's pool: not allocated to any customer.")
    assert "  name: spare-one\n" in pool and "spare-2" not in pool
    for rel in ("devices/initech.yaml", "assignments/acme.yaml", "customers/globex.yaml"):
        assert (fleet / rel).read_bytes() == before[rel]
    assert run(fleet, "validate") == 0


def test_bad_rows_are_all_reported_by_row_and_column_and_nothing_is_written(
        fleet, tmp_path, capsys):
    before = snapshot(fleet)
    path = csv_file(tmp_path, (
        "add,ok,yealink/T46U,00:15:65:10:00:01,acme,no,,,office-yealink\n"       # row 2: fine
        "add,a,yealink/T99,00:15:65:10:00:02,acme,no,,,office-yealink\n"         # unknown model
        "add,b,yealink/T46U,00:15:65:10:00:01,acme,no,,,office-yealink\n"        # dup in file
        "add,c,yealink/T46U,00:15:65:AA:BB:01,acme,no,,,office-yealink\n"        # in the fleet
        "add,d,yealink/T46U,00:15:65:GG:00:04,acme,no,,,office-yealink\n"        # bad MAC
        "add,e,yealink/T46U,00:15:65:10:00:05,umbrella,no,,,office-yealink\n"    # no customer
        "update,f,,00:15:65:AA:BB:02,globex,no,,,\n"          # assigned to acme/201
        "update,g,,00:15:65:AA:BB:03,globex,yes,,,\n"         # owned by acme
        "add,h,snom/D785,00:04:13:10:00:09,acme,no,,,office-yealink\n"           # wrong profile
        "add,i,yealink/T46U,00:15:65:10:00:0A,,yes,,,office-yealink\n"           # owned, no one
        "upsert,j,yealink/T46U,00:15:65:10:00:0B,,no,,,office-yealink\n"))       # action
    assert run(fleet, "import", path) == 1
    err = capsys.readouterr().err
    assert "nothing was imported (11 problem(s))" in err
    expected = [
        "batch.csv row 3, column Device model: unknown model 'yealink/T99' (known yealink "
        "models:",
        "batch.csv row 4, column MAC address: 00:15:65:10:00:01 is also on row 2",
        "batch.csv row 5, column MAC address: 00:15:65:aa:bb:01 is already in the inventory "
        "(devices/acme.yaml)",
        "batch.csv row 6, column MAC address: not a MAC address: '00:15:65:GG:00:04'",
        "batch.csv row 7, column Customer: unknown customer 'umbrella'",
        "batch.csv row 8, column Customer: 00:15:65:aa:bb:02 is assigned to acme/201: unassign "
        "it before allocating it to 'globex'",
        "batch.csv row 9, column Customer: 00:15:65:aa:bb:03 is owned by customer 'acme': "
        "clear Owned by customer first",
        "batch.csv row 10, column Profile: model 'snom/D785' is not one of profile "
        "'office-yealink'",
        "batch.csv row 11, column Owned by customer: a customer-owned phone needs a Customer",
        "batch.csv row 12, column Action: must be add, update or delete, not 'upsert'",
    ]
    for line in expected:
        assert line in err
    assert err.index("row 3,") < err.index("row 10,")  # rows in order
    assert snapshot(fleet) == before


def test_bad_header_is_row_1(fleet, tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("Action;Device name;MAC;Colour\nadd;x;00:15:65:10:00:01;red\n")
    assert run(fleet, "import", str(path)) == 1
    err = capsys.readouterr().err
    assert "x.csv row 1, column Colour: unknown column" in err
    assert "x.csv row 1, column Device model: required column is missing" in err


def test_missing_profile_mapping_is_a_row_error(fleet, tmp_path, capsys):
    path = csv_file(tmp_path, "add,x,yealink/T46U,00:15:65:10:00:01,acme,yes,,,\n")
    assert run(fleet, "import", path) == 1
    assert ("row 2, column Profile: no profile for yealink/T46U: fill in Profile, or map the "
            "model in model_profiles (customers/acme.yaml or defaults.yaml)"
            ) in capsys.readouterr().err


def test_result_is_validated_as_a_whole(fleet, tmp_path, capsys):
    """A row fine on its own that breaks another rule of the repository: nothing written."""
    before = snapshot(fleet)
    path = csv_file(tmp_path, "update,front-desk,yealink/T54W,00:15:65:CC:00:01,globex,no,,,\n")
    assert run(fleet, "import", path) == 1
    err = capsys.readouterr().err
    assert "the result would be invalid; nothing was written" in err
    assert ("devices/globex.yaml:6: firmware: firmware 108.86.0.95 for yealink/T54W is not in "
            "the firmware catalog") in err
    assert snapshot(fleet) == before


def test_export_then_import_changes_nothing(fleet, tmp_path, capsys):
    out = tmp_path / "inventory.csv"
    assert run(fleet, "export", "--out", str(out)) == 0
    rows = out.read_text().splitlines()
    assert rows[0] + "\n" == HEADER
    assert "update,alice-home,yealink/T43U,00:15:65:AA:BB:03,acme,yes,,,office-yealink" in rows
    assert "update,spare-1,yealink/T46U,00:15:65:EE:00:01,,no,,,office-yealink" in rows
    devices = len(load_state(read_source(fleet)).devices)
    assert len(rows) == devices + 1
    before = snapshot(fleet)
    capsys.readouterr()
    assert run(fleet, "import", str(out)) == 0
    assert f"0 added, 0 updated, 0 deleted, {devices} unchanged" in capsys.readouterr().out
    assert snapshot(fleet) == before


def test_round_trip_into_another_fleet_keeps_descriptions(fleet, tmp_path, capsys):
    edit(fleet / "devices" / "pool.yaml", '- mac: "00:15:65:EE:00:01"',
         '- mac: "00:15:65:EE:00:01"   # shelf 3, box 12')
    out = tmp_path / "pool.csv"
    (tmp_path / "pool.csv").write_text("")
    assert run(fleet, "export", "--action", "add", "--out", str(out)) == 0
    exported = out.read_text()
    assert "add,spare-1,yealink/T46U,00:15:65:EE:00:01,,no,\"shelf 3, box 12\",,office-yealink" \
        in exported
    # Another fleet: same customers and profiles, no pool phones yet.
    other = tmp_path / "other"
    shutil.copytree(fleet, other)
    (other / "devices" / "pool.yaml").write_text("# the pool\n[]\n")
    pool_only = tmp_path / "pool-only.csv"
    pool_only.write_text("".join(line + "\n" for line in exported.splitlines()
                                 if line.startswith("Action") or ",,no," in line
                                 and "EE:00" in line))
    assert run(other, "import", str(pool_only)) == 2
    text = (other / "devices" / "pool.yaml").read_text()
    assert text.startswith("# the pool\n- mac: \"00:15:65:EE:00:01\"  # shelf 3, box 12\n")
    assert "[]" not in text
    capsys.readouterr()
    assert run(other, "export", "--action", "add") == 0
    assert capsys.readouterr().out == exported


def test_model_profiles_are_validated(fleet):
    with open(fleet / "defaults.yaml", "a") as fh:
        fh.write("model_profiles:\n  yealink/T46U: nope\n  snom/D785: office-yealink\n")
    with pytest.raises(ConfigError) as err:
        load_state(read_source(fleet))
    found = [str(p) for p in err.value.problems]
    assert "defaults.yaml:16: model_profiles.yealink/T46U: unknown profile 'nope'" in found
    assert any(p.startswith("defaults.yaml:17: model_profiles.snom/D785: model 'snom/D785' is "
                            "not one of profile 'office-yealink'") for p in found)


def test_dry_run_writes_nothing(fleet, tmp_path, capsys):
    before = snapshot(fleet)
    path = csv_file(tmp_path, "add,x,yealink/T46U,00:15:65:10:00:01,,no,,,office-yealink\n")
    assert run(fleet, "import", path, "--dry-run") == 2
    assert "would change devices/pool.yaml" in capsys.readouterr().out
    assert snapshot(fleet) == before
