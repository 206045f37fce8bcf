"""Fanvil: render RenderInputs, parse the text configuration back strictly, check the values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vendor_inputs import VendorInputs
from vendor_parsers import parse_fanvil

import vendors
from vendors.base import FirmwareInput, RenderInput
from vendors.fanvil import VENDOR

MAC = "0c383ea1b2c3"
FILE = f"{MAC}.cfg"
GOLDEN = Path(__file__).parent / "golden" / "fanvil"
SIP, PHONE, AUTO = "SIP CONFIG MODULE", "PHONE FEATURE MODULE", "AUTOUPDATE CONFIG MODULE"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "codecs": ["g722", "pcma", "pcmu"],
    "ntp": {"server": "pool.ntp.org", "server2": "ntp2.example.net"},
    "timezone": "Europe/Berlin",
    "language": "it",
    "admin_password": "Adm1n-Pw",
    "call_waiting": True,
    "provisioning": {"resync": {"start": "01:30", "end": "03:45", "on_boot": True}},
}
PINNED = FirmwareInput("2.12.22.2", "x4u-2.12.22.2.z",
                       "https://prov.example.net/firmware/x4u-2.12.22.2.z")


_inputs = VendorInputs(VENDOR, MAC, "X4", COMMON)
line, device, rendered = _inputs.line, _inputs.device, _inputs.rendered


def cfg(dev: RenderInput) -> dict[str, dict[str, str]]:
    return parse_fanvil(rendered(dev)[FILE])


def test_registry_and_one_lowercase_mac_text_file() -> None:
    assert vendors.get("fanvil") is VENDOR and VENDOR.autoescape is False
    files = rendered(device(lines=(line(),)))
    assert set(files) == {FILE}
    assert files[FILE].startswith("<<VOIP CONFIG FILE>>Version:2.0000000000\n")
    assert files[FILE].endswith("\n<<END OF FILE>>\n")


def test_sip_line_one_carries_the_account_verbatim() -> None:
    s = cfg(device(lines=(line(),)))[SIP]
    assert s["SIP1 Phone Number"] == "201"
    assert s["SIP1 Register User"] == "201-auth"
    assert s["SIP1 Register Pswd"] == "S3cr&t"  # text format: no escaping
    assert s["SIP1 Display Name"] == "Alice Example"
    assert s["SIP1 Register Addr"] == "pbx.example.net"
    assert s["SIP1 Register Port"] == "5060"
    assert s["SIP1 Transport"] == "0"
    assert s["SIP1 Enable Reg"] == "1"
    assert s["SIP1 VoiceCodecMap"] == "G722,PCMA,PCMU"


def test_colons_in_values_survive() -> None:
    s = cfg(device(lines=(line(password="a:b: c"),)))[SIP]
    assert s["SIP1 Register Pswd"] == "a:b: c"


def test_tls_outbound_proxy_and_expiry() -> None:
    sip = {"server": "acme.example.net", "transport": "tls", "outbound_proxy": "sbc.example.net",
           "outbound_proxy_port": 5061, "expires": 600}
    s = cfg(device(lines=(line(sip=sip),)))[SIP]
    assert s["SIP1 Transport"] == "3"
    assert s["SIP1 Proxy Addr"] == "sbc.example.net" and s["SIP1 Proxy Port"] == "5061"
    assert s["SIP1 Register TTL"] == "600"


def test_unused_lines_are_disabled_and_emptied() -> None:
    s = cfg(device(lines=(line(),)))[SIP]
    for n in (2, 3, 4):
        assert s[f"SIP{n} Enable Reg"] == "0"
        assert s[f"SIP{n} Register User"] == s[f"SIP{n} Register Pswd"] == ""
    assert "SIP5 Enable Reg" not in s


def test_common_settings() -> None:
    c = cfg(device(lines=(line(),)))
    phone, auto = c[PHONE], c[AUTO]
    assert phone["Default Language"] == "it"
    assert phone["SNTP Server"] == "pool.ntp.org"
    assert phone["Second SNTP Server"] == "ntp2.example.net"
    assert phone["Time Zone"] == "4" and phone["Time Zone Name"] == "UTC+1"
    assert (phone["DST Type"], phone["DST Min Offset"]) == ("1", "60")
    assert [phone[f"DST Start {k}"] for k in ("Mon", "Week", "Wday", "Hour")] == ["3", "5", "0",
                                                                                  "2"]
    assert [phone[f"DST End {k}"] for k in ("Mon", "Week", "Wday", "Hour")] == ["10", "5", "0",
                                                                                "2"]
    assert c["MMI CONFIG MODULE"]["Account1 Password"] == "Adm1n-Pw"
    assert c["CALL FEATURE MODULE"]["P1 CallWaiting"] == "1"
    assert auto["Flash Server IP"] == "prov.example.net"
    assert auto["Flash File Name"] == f"tok123/{FILE}"
    assert auto["Flash Protocol"] == "5"
    assert auto["Download CommonConf"] == "0"
    assert "Auto Image Url" not in auto


def test_time_zones() -> None:
    phone = cfg(device(params={**COMMON, "timezone": "America/New_York"}))[PHONE]
    assert phone["Time Zone"] == "-20" and phone["Time Zone Name"] == "UTC-5"
    assert (phone["DST Start Mon"], phone["DST Start Week"], phone["DST End Week"]) == (
        "3", "2", "1")
    phone = cfg(device(params={**COMMON, "timezone": "Asia/Kolkata"}))[PHONE]
    assert phone["Time Zone"] == "22" and phone["DST Type"] == "0"
    assert "DST Start Mon" not in phone
    problems = VENDOR.check(device(params={**COMMON, "timezone": "Nowhere/Town"}))
    assert len(problems) == 1 and problems[0].startswith("timezone:")


def test_pinned_firmware() -> None:
    assert cfg(device(lines=(line(),), firmware=PINNED))[AUTO]["Auto Image Url"] == PINNED.url


def test_phone_without_account_gets_common_settings_only() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}]}
    c = cfg(device(model="X3S", params=params))
    assert c[AUTO]["Flash File Name"] == f"tok123/{FILE}"
    assert c[PHONE]["SNTP Server"] == "pool.ntp.org"
    assert c[SIP]["SIP1 Enable Reg"] == c[SIP]["SIP2 Enable Reg"] == "0"
    assert "DSSKEY CONFIG MODULE" not in c


def test_dss_keys() -> None:
    keys = [{"type": "line"}, {"type": "blf", "value": "202", "label": "Bob"},
            {"type": "speed_dial", "value": "*97", "label": "VM"},
            {"type": "dtmf", "value": "123"}, {"type": "none"}]
    d = cfg(device(lines=(line(),), params={**COMMON, "line_keys": keys}))["DSSKEY CONFIG MODULE"]
    assert (d["Fkey1 Type"], d["Fkey1 Value"]) == ("2", "SIP1")
    assert (d["Fkey2 Type"], d["Fkey2 Value"], d["Fkey2 Title"]) == ("1", "202@1/b", "Bob")
    assert (d["Fkey3 Type"], d["Fkey3 Value"]) == ("1", "*97@1/f")
    assert (d["Fkey4 Type"], d["Fkey4 Value"]) == ("4", "123")
    assert (d["Fkey5 Type"], d["Fkey5 Value"]) == ("0", "")


def test_user_owned_parameters_are_not_written() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}]}
    c = cfg(device(lines=(line(),), params=params,
                   user_owned=("line_keys", "language", "call_waiting")))
    assert "DSSKEY CONFIG MODULE" not in c and "CALL FEATURE MODULE" not in c
    assert "Default Language" not in c[PHONE]


def test_vlan() -> None:
    q = cfg(device(params={**COMMON, "vlan": {"id": 20, "pc_id": 30}}))["QOS CONFIG MODULE"]
    assert (q["Enable VLAN"], q["VLAN ID"], q["Enable PVID"], q["PVID Value"]) == (
        "1", "20", "1", "30")


def test_raw_keys_by_module_replace_generated_ones() -> None:
    raw = {"PHONE FEATURE MODULE/LCD Title": "ACME", "PHONE FEATURE MODULE/SNTP Server": "ntp",
           "NET CONFIG MODULE/Enable DHCP": True}
    c = cfg(device(lines=(line(),), raw=raw))
    assert c[PHONE]["LCD Title"] == "ACME" and c[PHONE]["SNTP Server"] == "ntp"
    assert c["NET CONFIG MODULE"]["Enable DHCP"] == "1"
    problems = VENDOR.check(device(raw={"LCD Title": "x"}))
    assert len(problems) == 1 and problems[0].startswith("raw.fanvil")


@pytest.mark.parametrize(("dev", "named"), [
    (device(lines=(line(display_name="Alice\nSIP1 Register Pswd :x"),)), "display_name"),
    (device(params={**COMMON, "admin_password": "a\rb"}), "admin_password"),
])
def test_line_break_in_a_value_is_rejected_naming_the_parameter(dev: RenderInput,
                                                                named: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and problems[0].startswith(named) and "line break" in problems[0]


def test_models_and_firmware_scheme() -> None:
    assert {VENDOR.models[m].lines for m in ("X3S", "X4", "X4U", "X5U", "X6U", "X210")} == {
        2, 4, 12, 16, 20}
    assert VENDOR.firmware_version("2.12.22.2") == (2, 12, 22, 2)
    with pytest.raises(ValueError, match="Fanvil firmware version"):
        VENDOR.firmware_version("2.12")


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
