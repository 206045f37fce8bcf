"""DHCP configurations for zero-touch, checked by the real servers' own syntax checks:
`dhcpd -t` (isc-dhcp-server), `kea-dhcp4 -t` (kea-dhcp4-server), `dnsmasq --test`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.render.dhcp import kea, plan_dhcp, render

URL = "https://prov.example.net/0123456789abcdef0123456789abcdef/"
PHONES = {
    "001565aabb01": "yealink", "805ec0aabb02": "yealink", "000413aabb03": "snom",
    "0004f2aabb04": "poly", "000b82aabb05": "grandstream", "c80084aabb06": "cisco",
    "0c383eaabb07": "fanvil", "080023aabb08": "panasonic", "589ec6aabb09": "gigaset",
}
CHECKS = {
    "isc": (["/usr/sbin/dhcpd", "-t", "-cf"], "isc-dhcp-server"),
    "kea": (["/usr/sbin/kea-dhcp4", "-t"], "kea-dhcp4-server"),
    "dnsmasq": (["/usr/sbin/dnsmasq", "--test", "--conf-file={}"], "dnsmasq-base"),
}


def check(fmt: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    argv, package = CHECKS[fmt]
    if not Path(argv[0]).exists():
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI must run the DHCP syntax checks: install {package}")
        pytest.skip(f"{argv[0]} not found (install {package})")
    conf = tmp_path / f"provctl.{fmt}"
    conf.write_text(text)
    if fmt == "dnsmasq":
        cmd = [argv[0], argv[1], argv[2].format(conf)]
    else:
        cmd = [*argv, str(conf)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          cwd=tmp_path)


@pytest.mark.parametrize("fmt", ["isc", "kea", "dnsmasq"])
def test_every_vendor_accepted_by_the_real_server(fmt, tmp_path):
    plan = plan_dhcp("acme", URL, PHONES)
    assert {g.vendor for g in plan.groups} == set(PHONES.values())
    done = check(fmt, render(plan, fmt), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("fmt", ["isc", "kea", "dnsmasq"])
def test_the_check_itself_refuses_a_broken_file(fmt, tmp_path):
    """The syntax checks are real: a damaged configuration fails them."""
    text = render(plan_dhcp("acme", URL, PHONES), fmt)
    broken = {"isc": text.replace("match if", "match iff", 1),
              "kea": text.replace('"client-classes"', '"client-classez"', 1),
              "dnsmasq": text.replace("dhcp-mac=", "dhcp-mac-typo=", 1)}[fmt]
    assert check(fmt, broken, tmp_path).returncode != 0


def test_vendor_options_and_value_forms():
    plan = plan_dhcp("acme", URL, PHONES)
    opts = {g.vendor: dict(g.options) for g in plan.groups}
    assert opts["yealink"] == {66: URL}
    assert opts["poly"][160] == URL and list(opts["poly"]) == [160, 66]
    assert opts["cisco"][160] == URL + "$PSN.xml"
    assert list(opts["panasonic"]) == [160, 159, 66]
    assert opts["snom"][66] == URL + "{mac}.xml"
    yealink = next(g for g in plan.groups if g.vendor == "yealink")
    assert yealink.prefixes == ("001565", "805ec0") and yealink.phones == 2


def test_kea_sends_the_plain_string_bytes():
    doc = kea(plan_dhcp("acme", URL, {"001565aabb01": "yealink"}))
    body = json.loads(doc[doc.index("{"):])
    (cls,) = body["Dhcp4"]["client-classes"]
    assert cls["test"] == "substring(pkt4.mac, 0, 3) == 0x001565"
    (opt,) = cls["option-data"]
    assert bytes.fromhex(opt["data"]).decode() == URL and opt["code"] == 66


def test_a_vendor_without_dhcp_facts_is_named_not_guessed():
    plan = plan_dhcp("acme", URL, {"001565aabb01": "yealink", "aabbccddeeff": "acmephone"})
    assert plan.unsupported == ("acmephone",)
    assert "acmephone: no known DHCP option" in render(plan, "isc")


def test_a_value_that_would_break_the_quoting_is_refused():
    plan = plan_dhcp("acme", 'https://x/"; evil', {"001565aabb01": "yealink"})
    with pytest.raises(ValueError):
        render(plan, "isc")


def test_system_deps_installs_the_checkers():
    text = (Path(__file__).resolve().parent.parent / "scripts" / "system-deps").read_text()
    for package in ("isc-dhcp-server", "kea-dhcp4-server", "dnsmasq-base"):
        assert package in text
    assert shutil.which("bash")


def test_provctl_dhcp_for_a_fleet_customer(fleet, capsys, tmp_path):
    from fleet_fixtures import run

    assert run(fleet, "dhcp", "--customer", "acme", "--format", "dnsmasq") == 0
    out = capsys.readouterr().out
    assert "dhcp-mac=set:provctl-acme-yealink,00:15:65:*:*:*" in out
    assert check("dnsmasq", out, tmp_path).returncode == 0
    assert run(fleet, "dhcp", "--customer", "acm") == 1
    assert "did you mean 'acme'" in capsys.readouterr().err


def test_the_bootstrap_url_moves_with_its_rotation(fleet, capsys):
    from fleet_fixtures import edit, run

    assert run(fleet, "dhcp", "--customer", "acme") == 0
    before = capsys.readouterr().out
    edit(fleet / "customers" / "acme.yaml", "name: ", "bootstrap: {rotation: 1}\nname: ")
    assert run(fleet, "dhcp", "--customer", "acme") == 0
    after = capsys.readouterr().out
    url = [ln for ln in before.splitlines() if "Bootstrap URL" in ln]
    assert url and url[0] not in after
