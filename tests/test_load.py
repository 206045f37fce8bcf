"""Loading: MAC spellings, YAML with line numbers, directory and git sources."""

from __future__ import annotations

import pytest

from reconciler.core.errors import ConfigError
from reconciler.core.macs import normalize_mac
from reconciler.desired.load import parse_yaml


@pytest.mark.parametrize("spelling", [
    "00:15:65:aa:bb:cc", "00:15:65:AA:BB:CC", "0015.65aa.bbcc", "001565AABBCC",
    "00-15-65-AA-BB-CC", " 001565aabbcc ",
])
def test_every_usual_mac_spelling_is_normalised(spelling):
    assert normalize_mac(spelling) == "001565aabbcc"


@pytest.mark.parametrize("bad", ["00:15:65:aa:bb", "0015-65aa-bbcc", "00:15:65:aa:bb:cg",
                                 "001565aabbccdd", "00:1565:aa:bb:cc"])
def test_malformed_macs_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="not a MAC address"):
        normalize_mac(bad)


def test_yaml_keeps_the_line_of_every_key_and_item():
    doc = parse_yaml("devices/x.yaml", b"# comment\n- mac: a\n  model: m\n- mac: b\n  params:\n"
                                       b"    sip: {server: s}\n")
    assert doc.line((0, "model")) == 3
    assert doc.line((1,)) == 4
    assert doc.line((1, "params", "sip", "server")) == 6
    # unknown deeper paths fall back to the closest known parent
    assert doc.line((1, "params", "sip", "server", "nope")) == 6


def test_invalid_yaml_names_file_and_line():
    with pytest.raises(ConfigError) as err:
        parse_yaml("profiles/p.yaml", b"name: p\nparams: {codecs: [g722\nvendor: x\n")
    problem = err.value.problems[0]
    assert problem.file == "profiles/p.yaml"
    assert problem.line >= 2
    assert "invalid YAML" in problem.message


def test_duplicate_keys_are_an_error_not_a_silent_override():
    with pytest.raises(ConfigError) as err:
        parse_yaml("customers/c.yaml", b"id: c\nname: C\nname: D\n")
    assert str(err.value.problems[0]) == "customers/c.yaml:3: name: duplicate key"


# --- MAC spellings YAML mangles (issue 11, item 14) ---------------------------------------


def test_oui_dash_nic_spelling_is_accepted():
    assert normalize_mac("001565-AABB01") == "001565aabb01"


@pytest.mark.parametrize(("written", "number"), [
    ("001565000010", "231997448"),  # octal to YAML 1.1
    ("12:30:45:10:20:30", "9729757230"),  # sexagesimal
    ("123456789012", "123456789012"),
])
def test_unquoted_macs_are_told_to_be_quoted(fleet, written, number):
    from fleet_fixtures import edit

    from reconciler.desired.load import read_source
    from reconciler.desired.validate import load_state

    edit(fleet / "devices" / "pool.yaml", '"00:15:65:EE:00:01"', written)
    edit(fleet / "assignments" / "initech.yaml", '["00:04:13:DD:00:01"]', f"[{written}]")
    with pytest.raises(ConfigError) as err:
        load_state(read_source(fleet))
    found = [str(p) for p in err.value.problems]
    for where in ("devices/pool.yaml:3: mac:", "assignments/initech.yaml:4: devices.0.mac:"):
        assert (f"{where} write MAC addresses in quotes (YAML read this one as the number "
                f"{number})") in found, found
