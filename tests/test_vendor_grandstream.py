"""Grandstream: render RenderInputs, parse cfg<mac>.xml back strictly, check the P-values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vendor_inputs import VendorInputs
from vendor_parsers import parse_grandstream

import vendors
from vendors.base import FirmwareInput, RenderInput
from vendors.grandstream import VENDOR, account_pvalues

MAC = "000b82a1b2c3"
FILE = f"cfg{MAC}.xml"
GOLDEN = Path(__file__).parent / "golden" / "grandstream"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "codecs": ["g722", "pcma", "pcmu"],
    "ntp": {"server": "pool.ntp.org"},
    "timezone": "Europe/Berlin",
    "language": "de",
    "admin_password": "Adm1n-Pw",
    "call_waiting": True,
    "provisioning": {"resync": {"start": "01:30", "end": "03:45", "on_boot": True}},
}
PINNED = FirmwareInput("1.0.11.79", "gxp2100fw.bin",
                       "https://prov.example.net/firmware/gxp2100fw.bin")


_inputs = VendorInputs(VENDOR, MAC, "GXP2140", COMMON)
line, device, rendered = _inputs.line, _inputs.device, _inputs.rendered


def pvalues(dev: RenderInput) -> dict[str, str]:
    mac, values = parse_grandstream(rendered(dev)[FILE])
    assert mac == MAC
    return values


def test_registry_and_one_lowercase_cfg_mac_file_carrying_its_mac() -> None:
    assert vendors.get("grandstream") is VENDOR and VENDOR.autoescape is True
    files = rendered(device(lines=(line(),)))
    assert set(files) == {FILE}
    assert parse_grandstream(files[FILE])[0] == MAC


def test_account_one_p_values() -> None:
    p = pvalues(device(lines=(line(),)))
    assert p["P271"] == "1"
    assert p["P35"] == "201"
    assert p["P36"] == "201-auth"
    assert p["P34"] == "S3cr&t"
    assert p["P3"] == "Alice Example"
    assert p["P270"] == "201"
    assert p["P47"] == "pbx.example.net:5060"
    assert p["P130"] == "0"
    assert p["P48"] == ""


def test_accounts_two_to_six_follow_their_own_numbering() -> None:
    assert account_pvalues(2)["password"] == 406
    assert account_pvalues(5)["server"] == 1702
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob", sip={"server": "other.example.net", "transport": "tcp",
                                        "outbound_proxy": "sbc.example.net",
                                        "outbound_proxy_port": 5070, "expires": 600})
    eve = line(port=5, account="acme/205", extension="205", password="pw-205")
    p = pvalues(device(model="GXP2160", lines=(line(), bob, eve)))
    assert (p["P401"], p["P404"], p["P405"], p["P406"], p["P407"]) == (
        "1", "202", "202-auth", "pw-202", "Bob")
    assert p["P402"] == "other.example.net" and p["P448"] == "1"
    assert p["P403"] == "sbc.example.net:5070"
    assert p["P412"] == "10"  # expiry in minutes
    assert (p["P1701"], p["P1704"], p["P1706"]) == ("1", "205", "pw-205")


def test_unused_accounts_are_switched_off_and_emptied() -> None:
    p = pvalues(device(model="GXP2160", lines=(line(),)))
    for active, user, password in ((401, 404, 406), (501, 504, 506), (601, 604, 606),
                                   (1701, 1704, 1706), (1801, 1804, 1806)):
        assert p[f"P{active}"] == "0"
        assert p[f"P{user}"] == p[f"P{password}"] == ""


def test_accounts_above_six_are_refused_not_guessed() -> None:
    problems = VENDOR.check(device(model="GXP2170", lines=(line(port=7),)))
    assert len(problems) == 1 and "port 7" in problems[0] and "1 to 6" in problems[0]
    problems = VENDOR.check(device(model="GXP2140", lines=(line(port=5),)))
    assert len(problems) == 1 and "GXP2140" in problems[0]


def test_escaping_of_xml_characters() -> None:
    text = rendered(device(lines=(line(password="<&>", display_name='"Q"'),)))[FILE]
    assert "<&>" not in text
    p = parse_grandstream(text)[1]
    assert p["P34"] == "<&>" and p["P3"] == '"Q"'


def test_codec_choices_in_order_and_the_rest_repeat_the_last() -> None:
    p = pvalues(device(lines=(line(),)))
    assert [p[f"P{n}"] for n in (57, 58, 59, 60, 61, 62, 46)] == ["9", "8", "0", "0", "0", "0",
                                                                  "0"]
    p = pvalues(device(model="GRP2614", lines=(line(params={"codecs": ["opus", "g722"]}),)))
    assert [p["P57"], p["P58"], p["P59"]] == ["125", "9", "9"]
    problems = VENDOR.check(device(lines=(line(params={"codecs": ["opus"]}),)))
    assert len(problems) == 1 and "opus" in problems[0] and "GXP2140" in problems[0]


def test_common_settings_time_zone_language_admin_provisioning() -> None:
    p = pvalues(device(lines=(line(),)))
    assert p["P30"] == "pool.ntp.org"
    assert p["P64"] == "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00"
    assert p["P1362"] == "de"
    assert p["P2"] == "Adm1n-Pw"
    assert p["P212"] == "2" and p["P237"] == "prov.example.net/tok123"
    assert (p["P194"], p["P285"], p["P8459"], p["P8458"]) == ("2", "1", "3", "1")
    assert p["P91"] == "0"  # call waiting not disabled
    assert not {"P192", "P6767", "P8375"} & set(p)


@pytest.mark.parametrize(("zone", "posix"), [
    ("America/New_York", "EST5EDT4,M3.2.0/02:00:00,M11.1.0/02:00:00"),
    ("Asia/Kolkata", "IST-5:30"),
    ("Asia/Dubai", "STD-4"),
    ("Australia/Sydney", "AEST-10AEDT-11,M10.1.0/02:00:00,M4.1.0/03:00:00"),
])
def test_time_zones_as_posix_strings(zone: str, posix: str) -> None:
    assert pvalues(device(params={**COMMON, "timezone": zone}))["P64"] == posix


def test_pinned_firmware_sets_the_firmware_path_without_scheme() -> None:
    p = pvalues(device(lines=(line(),), firmware=PINNED))
    assert p["P6767"] == "2"
    assert p["P192"] == "prov.example.net/firmware"
    assert p["P8375"] == "0"


def test_phone_without_account_gets_common_settings_only() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}]}
    p = pvalues(device(model="GXP2130", params=params))
    assert p["P237"] == "prov.example.net/tok123" and p["P2"] == "Adm1n-Pw"
    assert p["P271"] == p["P401"] == p["P501"] == "0"
    assert "P1363" not in p


def test_line_keys_on_gxp_and_refused_on_grp() -> None:
    keys = [{"type": "line"}, {"type": "blf", "value": "202", "label": "Bob"},
            {"type": "speed_dial", "value": "*97", "label": "VM", "line": 2}]
    p = pvalues(device(lines=(line(),), params={**COMMON, "line_keys": keys}))
    assert (p["P1363"], p["P1364"]) == ("0", "0")
    assert (p["P1365"], p["P1467"], p["P1468"]) == ("11", "Bob", "202")
    assert (p["P1367"], p["P1368"], p["P1469"], p["P1470"]) == ("10", "1", "VM", "*97")
    problems = VENDOR.check(device(model="GRP2614", lines=(line(),),
                                   params={**COMMON, "line_keys": keys}))
    assert len(problems) == 1 and problems[0].startswith("line_keys")


def test_user_owned_parameters_are_not_written() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}]}
    p = pvalues(device(lines=(line(),), params=params,
                       user_owned=("line_keys", "language", "call_waiting")))
    assert not {"P1363", "P1362", "P91"} & set(p)


def test_vlan() -> None:
    p = pvalues(device(params={**COMMON, "vlan": {"id": 20, "priority": 5}}))
    assert p["P51"] == "20" and p["P87"] == "5"


def test_raw_p_values_replace_generated_ones() -> None:
    p = pvalues(device(lines=(line(),), raw={"P30": "ntp.internal", "P8467": 1}))
    assert p["P30"] == "ntp.internal" and p["P8467"] == "1"
    problems = VENDOR.check(device(raw={"account.1.enable": "Yes"}))
    assert len(problems) == 1 and problems[0].startswith("raw.grandstream")


@pytest.mark.parametrize(("dev", "named"), [
    (device(lines=(line(display_name="A\nB"),)), "display_name"),
    (device(params={**COMMON, "admin_password": "x\x00"}), "admin_password"),
])
def test_value_xml_cannot_carry_is_rejected_naming_the_parameter(dev: RenderInput,
                                                                 named: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and problems[0].startswith(named)


def test_models_and_firmware_scheme() -> None:
    assert VENDOR.models["GXP2135"].lines == 8
    assert VENDOR.models["GRP2612"].lines == 2
    assert VENDOR.firmware_version("1.0.11.79") == (1, 0, 11, 79)
    with pytest.raises(ValueError, match="Grandstream firmware version"):
        VENDOR.firmware_version("1.0.11")
    assert VENDOR.check_firmware(VENDOR.models["GXP2140"], "1.0.11.79") is None


def golden_device() -> RenderInput:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob & Co")
    keys = [{"type": "line"}, {"type": "line", "line": 2},
            {"type": "blf", "value": "203", "label": "Carol"}]
    return device(lines=(line(), bob), params={**COMMON, "line_keys": keys}, firmware=PINNED)


def test_golden_files() -> None:
    files = rendered(golden_device())
    if os.environ.get("PROVCTL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_bytes(text.encode("utf-8"))
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (GOLDEN / name).read_bytes() == text.encode("utf-8"), name
