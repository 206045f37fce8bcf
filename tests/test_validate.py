"""Validation: each rule reported by message and location, all problems in one run."""

from __future__ import annotations

import pytest
from fleet_fixtures import edit, run

from reconciler.core.errors import ConfigError
from reconciler.desired.load import read_source
from reconciler.desired.validate import load_state


def problems(repo) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_state(read_source(repo))
    return [str(p) for p in err.value.problems]


def test_example_fleet_is_valid(fleet):
    state = load_state(read_source(fleet))
    assert len(state.devices) == 15
    assert "001565aabb02" in state.devices  # "0015.65aa.bb02" normalised


def test_validate_command_exit_codes(fleet, capsys):
    assert run(fleet, "validate") == 0
    assert "valid: 15 devices" in capsys.readouterr().out
    (fleet / "devices" / "acme.yaml").write_text("- mac: nope\n")
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert "devices/acme.yaml:1: mac: not a MAC address: 'nope'" in err


def test_duplicate_mac_names_both_places(fleet):
    edit(fleet / "devices" / "pool.yaml", '"00:15:65:EE:00:01"', '"001565aabb01"')
    assert ("devices/pool.yaml:3: mac: duplicate MAC 001565aabb01: also in "
            "devices/acme.yaml:2") in problems(fleet)


def test_unknown_model_profile_and_customer(fleet):
    path = fleet / "devices" / "initech.yaml"
    edit(path, "snom/D715", "snom/D999")
    edit(path, "customer: initech", "customer: nobody")
    found = problems(fleet)
    assert any(p.startswith("devices/initech.yaml:2: model: unknown model 'snom/D999'")
               for p in found)
    assert "devices/initech.yaml:4: customer: unknown customer 'nobody'" in found


def test_model_must_belong_to_the_profile(fleet):
    edit(fleet / "devices" / "initech.yaml", "profile: desk-snom", "profile: office-yealink")
    assert any("devices/initech.yaml:2: model: model 'snom/D715' is not one of profile "
               "'office-yealink'" in p for p in problems(fleet))


def test_port_must_exist_on_the_model(fleet):
    edit(fleet / "assignments" / "initech.yaml", 'devices: ["00:04:13:DD:00:01"]',
         'devices: [{mac: "00:04:13:DD:00:01", port: 5}]')
    assert ("assignments/initech.yaml:4: devices.0.port: snom/D715 has 4 line(s); port 5 "
            "does not exist") in problems(fleet)


def test_phone_of_one_customer_cannot_serve_another(fleet):
    edit(fleet / "assignments" / "initech.yaml", 'devices: ["00:04:13:DD:00:01"]',
         'devices: ["00:04:13:CC:00:02"]')
    assert ("assignments/initech.yaml:4: devices.0: device 000413cc0002 is allocated to "
            "customer 'globex' and cannot be assigned to account initech/10 of customer 'initech'"
            ) in problems(fleet)


def test_owned_phone_says_owned(fleet):
    edit(fleet / "assignments" / "globex.yaml", 'devices: ["00:15:65:CC:00:01"]',
         'devices: ["00-15-65-AA-BB-03"]')
    assert any("device 001565aabb03 is owned by customer 'acme'" in p for p in problems(fleet))


def test_at_most_eight_phones_per_account(fleet):
    macs = [f'"00:15:65:99:00:{i:02x}"' for i in range(9)]
    devices = "".join(f"- {{mac: {m}, model: yealink/T46U, profile: office-yealink, "
                      f"customer: acme}}\n" for m in macs)
    (fleet / "devices" / "many.yaml").write_text(devices)
    (fleet / "assignments" / "many.yaml").write_text(
        f"- account: acme/300\n  password: secret:acme/201\n  devices: [{', '.join(macs)}]\n")
    assert ("assignments/many.yaml:3: devices: account acme/300 has 9 phones; at most 8 "
            "(extensions 300, 91300 … 97300)") in problems(fleet)


def test_unknown_field_is_reported_with_its_line(fleet):
    edit(fleet / "profiles" / "desk-snom.yaml", "language: de", "langauge: de")
    assert "profiles/desk-snom.yaml:5: langauge: unknown field" in problems(fleet)


def test_plaintext_password_is_refused(fleet):
    edit(fleet / "assignments" / "initech.yaml", "password: secret:initech/10",
         "password: hunter2")
    found = problems(fleet)
    assert any(p.startswith("assignments/initech.yaml:3: password: must be a secret reference")
               for p in found)
    assert not any("hunter2" in p for p in found)


def test_missing_secret_names_the_reference(fleet):
    edit(fleet / "assignments" / "initech.yaml", "secret:initech/10", "secret:initech/11")
    assert ("assignments/initech.yaml:3: password: secret reference secret:initech/11 does not "
            "resolve: not in the secrets file") in problems(fleet)


def test_missing_fleet_secret_env(fleet, monkeypatch):
    monkeypatch.delenv("PROVCTL_FLEET_SECRET")
    assert ("provisioning.yaml:4: fleet.secret: secret reference env:PROVCTL_FLEET_SECRET does "
            "not resolve: environment variable PROVCTL_FLEET_SECRET is not set") in problems(fleet)


def test_firmware_rules(fleet):
    path = fleet / "firmware" / "yealink.yaml"
    edit(path, "file: T46U-108.86.0.95.rom", "file: T46U 108.86.0.95.rom")
    (fleet / "firmware" / "snom.yaml").write_text(
        "catalog:\n  - {vendor: yealink, models: [T46U], version: 66.86.0.15, file: a.rom,\n"
        "     sha256: '" + "0" * 64 + "'}\n"
        "  - {vendor: snom, models: [D785], version: 10.x, file: b.bin, sha256: '" + "0" * 64
        + "'}\n")
    found = problems(fleet)
    assert any(p.startswith("firmware/yealink.yaml:2: catalog.0.file: firmware file names may "
                            "use only letters, digits and ._-()") for p in found)
    assert any(p.startswith("firmware/snom.yaml:2: version:") and "66" in p and "108" in p
               for p in found), found
    assert any(p.startswith("firmware/snom.yaml:4: version:") for p in found), found


def test_pin_to_a_version_not_in_the_catalog(fleet):
    edit(fleet / "devices" / "globex.yaml", "firmware: 108.86.0.95", "firmware: 108.86.0.99")
    assert ("devices/globex.yaml:6: firmware: firmware 108.86.0.99 for yealink/T46U is not in "
            "the firmware catalog") in problems(fleet)


def test_every_problem_is_reported_in_one_run(fleet):
    edit(fleet / "devices" / "initech.yaml", "snom/D715", "snom/D999")
    edit(fleet / "profiles" / "desk-snom.yaml", "language: de", "langauge: de")
    edit(fleet / "assignments" / "globex.yaml", "secret:globex/100", "secret:nope")
    (fleet / "customers" / "broken.yaml").write_text("id: [\n")
    found = problems(fleet)
    files = {p.split(":")[0] for p in found}
    assert {"devices/initech.yaml", "profiles/desk-snom.yaml", "assignments/globex.yaml",
            "customers/broken.yaml"} <= files


def test_empty_inventory_is_an_error_not_delete_everything(fleet):
    for path in (fleet / "devices").glob("*.yaml"):
        path.write_text("[]\n")
    for path in (fleet / "assignments").glob("*.yaml"):
        path.unlink()
    assert any("no devices in the desired state" in p for p in problems(fleet))


def test_terminated_customer_with_owned_phone(fleet):
    edit(fleet / "customers" / "acme.yaml", "status: active", "status: terminated")
    found = problems(fleet)
    assert any("customer 'acme' is terminated: its owned phone 001565aabb03 must be removed"
               in p for p in found)


# --- issue 11: firmware, paths, SIP users, unserved phones ----------------------------------

import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

ROM = "firmware-store/T46U-108.86.0.95.rom"


def test_a_firmware_binary_that_does_not_match_the_catalog_publishes_nothing(fleet, capsys):
    rom = fleet / ROM
    rom.write_bytes(rom.read_bytes() + b"\0")
    assert run(fleet, "apply") == 1
    err = capsys.readouterr().err
    assert ("firmware/yealink.yaml:3: catalog.0.sha256: firmware T46U-108.86.0.95.rom: "
            f"{ROM} has sha256 ") in err
    assert "nothing is published until the binary or the catalog is fixed" in err
    assert not (fleet / "out" / "www").exists()  # no config, no redirect registration
    assert not (fleet / "out" / "redirect.json").exists()


def test_firmware_digests_are_kept_by_size_and_mtime(fleet, capsys):
    state = fleet / ".provctl"
    assert run(fleet, "validate") == 0
    cache = json.loads((state / "firmware-digests.json").read_text())
    ((stamp, digest),) = cache.items()
    rom = (fleet / ROM).resolve()
    info = rom.stat()
    assert stamp == f"disk:{rom}:{info.st_size}:{info.st_mtime_ns}"
    assert digest == "5c781032fb75ec396bcec343ca16d031d35c24f91741bc223b98a08918aff44a"
    # A change of size or mtime is hashed again.
    rom.write_bytes(rom.read_bytes()[:-1] + b"X")
    os.utime(rom, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    assert run(fleet, "validate") == 1
    assert "not the catalog's" in capsys.readouterr().err


@pytest.mark.parametrize(("where", "old", "new", "field"), [
    ("provisioning.yaml", "base_url: \"http://localhost:8080/\"",
     'base_url: "http://localhost:8080/", firmware_dir: ../../etc', "firmware_dir"),
    ("provisioning.yaml", "base_url: \"http://localhost:8080/\"",
     'base_url: "http://localhost:8080/", firmware_dir: /var/fw', "firmware_dir"),
    ("provisioning.yaml", "base_url: \"http://localhost:8080/\"",
     'base_url: "http://localhost:8080/", firmware_dir: fw/./x', "firmware_dir"),
    ("firmware/yealink.yaml", f"source: {ROM}", "source: ../secrets/x.rom", "catalog.0.source"),
    ("firmware/yealink.yaml", f"source: {ROM}", "source: /etc/shadow", "catalog.0.source"),
    ("provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
     "secrets: {file: env:PROVCTL_SECRETS_FILE, age_file: /tmp/x.age}", "secrets.age_file"),
])
def test_path_fields_refuse_dot_dot_and_absolute_paths(fleet, where, old, new, field):
    edit(fleet / where, old, new)
    assert any(f"{field}:" in p and ("relative path inside" in p or "'..'" in p
                                       or "String should match pattern" in p)
               for p in problems(fleet)), problems(fleet)


def sip_problems(fleet) -> list[str]:
    return [p for p in render_problems(fleet) if "registers as" in p]


def render_problems(fleet) -> list[str]:
    from reconciler.render.renderer import Renderer

    with pytest.raises(ConfigError) as err:
        Renderer(load_state(read_source(fleet))).resolved()
    return [str(p) for p in err.value.problems]


def test_an_account_that_registers_like_another_accounts_second_phone_is_refused(fleet, capsys):
    with open(fleet / "assignments" / "acme.yaml", "a") as fh:
        fh.write("- account: acme/91201\n  password: secret:acme/205\n"
                 '  devices: ["00:15:65:EE:00:01"]\n')
    edit(fleet / "devices" / "pool.yaml", "  name: spare-1\n", "  name: spare-1\n"
         "  customer: acme\n")
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert ("assignments/acme.yaml:16: devices: acme/91201 on 001565ee0001 port 1 registers as "
            "91201@acme.pbx.example.net, as does acme/201 on 001565aabb03 port 1 "
            "(assignments/acme.yaml:8); a registrar cannot tell them apart") in err


def test_any_two_lines_with_one_user_at_one_domain_are_refused(fleet):
    # globex and initech on one PBX domain, each with an extension 100
    edit(fleet / "customers" / "initech.yaml", "pbx.initech.example.de", "pbx.example.net")
    edit(fleet / "customers" / "globex.yaml", "sip.globex.example.it", "pbx.example.net")
    edit(fleet / "assignments" / "initech.yaml", "account: initech/10", "account: initech/100")
    found = sip_problems(fleet)
    assert any("initech/100 on 000413dd0001 port 1 registers as 100@pbx.example.net, as does "
               "globex/100" in p for p in found), found
    # the same account on two ports of one phone registers twice as well
    edit(fleet / "customers" / "initech.yaml", "pbx.example.net", "pbx.initech.example.de")
    edit(fleet / "assignments" / "initech.yaml", 'devices: ["00:04:13:DD:00:01"]',
         'devices: ["00:04:13:DD:00:01", {mac: "00:04:13:DD:00:01", port: 2}]')
    assert any("initech/100 on 000413dd0001 port 2 registers as 100@pbx.initech.example.de, as "
               "does initech/100 on 000413dd0001 port 1" in p for p in sip_problems(fleet))


def test_phones_no_target_serves_are_an_error_or_with_allow_unserved_a_warning(fleet, capsys):
    edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"',
         'base_url: "http://localhost:8080/", customers: [acme, globex]')
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert ("devices/pool.yaml:3: mac: no target serves phone 001565ee0001 of the pool (no "
            "customer): every target in provisioning.yaml has a customers: filter and none "
            "lists it (add it to one, or pass --allow-unserved)") in err
    assert "no target serves phone 000413dd0001 of customer 'initech'" in err
    assert "001565aabb01" not in err  # acme's phones are served
    assert run(fleet, "validate", "--allow-unserved") == 0
    assert "warning: devices/pool.yaml:3: mac: no target serves" in capsys.readouterr().err
    assert run(fleet, "plan") == 1
    assert run(fleet, "plan", "--allow-unserved") == 2
    assert run(fleet, "apply", "--allow-unserved") == 2
    assert not list(Path(fleet / "out" / "www").rglob("001565ee0001.cfg"))
