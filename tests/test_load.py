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


# --- what a YAML file may cost (issue 11, items 3 and 16) -----------------------------------

import subprocess  # noqa: E402
import time  # noqa: E402

from fleet_fixtures import edit, run  # noqa: E402

from reconciler.desired.load import read_source  # noqa: E402
from reconciler.desired.validate import load_state  # noqa: E402

BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def messages(repo) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_state(read_source(repo))
    return [str(p) for p in err.value.problems]


def test_an_alias_bomb_is_refused_at_once_naming_the_file(fleet):
    (fleet / "devices" / "bomb.yaml").write_bytes(BILLION_LAUGHS)
    started = time.monotonic()
    found = messages(fleet)
    assert time.monotonic() - started < 5  # 9**9 values were never built
    assert any(p.startswith("devices/bomb.yaml:") and "YAML aliases expand to more than 10000 "
               "values (policy.load_limits.alias_nodes is 10000)" in p for p in found), found


def test_a_small_alias_expansion_is_refused_too_but_anchors_within_the_budget_work(fleet):
    # 10 x 10 x 10 x 12 = 12 000 values through aliases: under any memory limit, over budget
    (fleet / "devices" / "wide.yaml").write_bytes(BILLION_LAUGHS[:BILLION_LAUGHS.index(b"e:")]
                                                  .replace(b'"lol",', b'"lol","lol",'))
    assert any(p.startswith("devices/wide.yaml:") and "YAML aliases expand" in p
               for p in messages(fleet))
    (fleet / "devices" / "wide.yaml").unlink()
    edit(fleet / "defaults.yaml", "  codecs: [g722, pcma, pcmu]\n",
         "  codecs: &codecs [g722, pcma, pcmu]\n")
    edit(fleet / "defaults.yaml", "model_params:\n",
         "model_params:\n  yealink: {codecs: *codecs}\n")
    state = load_state(read_source(fleet))
    assert state.defaults.value.model_params["yealink"]["codecs"] == ["g722", "pcma", "pcmu"]


def test_nodes_file_size_and_depth_are_capped_and_configurable(fleet):
    edit(fleet / "provisioning.yaml", "policy: {prune: true,",
         "policy: {load_limits: {file_bytes: 4096, nodes: 1000}, prune: true,")
    devices = "".join(f"- {{mac: '001565{i:06x}', model: yealink/T46U, profile: "
                      f"office-yealink}}\n" for i in range(60))  # about 4.5 kB
    (fleet / "devices" / "big.yaml").write_text(devices)
    (fleet / "assignments" / "many.yaml").write_text(
        "- {account: acme/999, password: secret:acme/201, devices: [001565aabb01], params: "
        "{codecs: [" + ",".join("0" for _ in range(1100)) + "]}}\n")  # 2.3 kB
    found = messages(fleet)
    assert any(p.startswith("devices/big.yaml: file is ") and "at most 4096 are read "
               "(policy.load_limits.file_bytes is 4096)" in p for p in found), found
    assert any(p.startswith("assignments/many.yaml:1: more than 1000 values in one file "
                            "(policy.load_limits.nodes is 1000)") for p in found), found


def test_deep_nesting_under_raw_is_one_clear_message_not_a_traceback(fleet, capsys):
    nested = "{a: " * 500 + "1" + "}" * 500
    edit(fleet / "customers" / "acme.yaml", "params: {timezone: Europe/Berlin}",
         f"params: {{timezone: Europe/Berlin, raw: {{yealink: {nested}}}}}")
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert ("customers/acme.yaml:4: nested deeper than 64 levels (policy.load_limits.depth is "
            "64)") in err
    assert "Traceback" not in err and "RecursionError" not in err


def test_a_revision_that_names_a_path_is_one_clear_message(fleet, capsys):
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", "-C", str(fleet), "-c", "user.name=t", "-c", "user.email=t@e",
                        *args], check=True, capture_output=True)
    for rev in ("HEAD:../../etc", "HEAD:devices", "HEAD^{tree}"):
        assert run(fleet, "validate", "--rev", rev) == 1
        err = capsys.readouterr().err
        assert f"--rev: unknown revision {rev!r}" in err and "Traceback" not in err


def test_parsing_keeps_no_yaml_node_alive(fleet):
    """The daemon parses every file every interval: nothing of a parse may outlive it (a
    module-wide constructor used to keep every node it ever built)."""
    import gc

    import yaml

    load_state(read_source(fleet))
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, yaml.Node)]


def test_limits_defaults_match_the_schema():
    from reconciler.desired.load import Limits
    from reconciler.desired.schema import LoadLimits

    assert Limits() == Limits(**LoadLimits().model_dump())


# --- MAC spellings YAML mangles (issue 11, item 14) ---------------------------------------


def test_oui_dash_nic_spelling_is_accepted():
    assert normalize_mac("001565-AABB01") == "001565aabb01"


@pytest.mark.parametrize(("written", "number"), [
    ("001565000010", "231997448"),  # octal to YAML 1.1
    ("12:30:45:10:20:30", "9729757230"),  # sexagesimal
    ("123456789012", "123456789012"),
])
def test_unquoted_macs_are_told_to_be_quoted(fleet, written, number):
    edit(fleet / "devices" / "pool.yaml", '"00:15:65:EE:00:01"', written)
    edit(fleet / "assignments" / "initech.yaml", '["00:04:13:DD:00:01"]', f"[{written}]")
    found = messages(fleet)
    for where in ("devices/pool.yaml:3: mac:", "assignments/initech.yaml:4: devices.0.mac:"):
        assert (f"{where} write MAC addresses in quotes (YAML read this one as the number "
                f"{number})") in found, found
