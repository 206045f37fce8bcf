"""Cisco MPP: render RenderInputs, parse the flat profile back strictly, check the phone's view."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vendor_inputs import URL, VendorInputs
from vendor_parsers import parse_cisco

import vendors
from vendors.base import FirmwareInput, RenderInput
from vendors.cisco import VENDOR

MAC = "c80084a1b2c3"
FILE = f"{MAC}.xml"
GOLDEN = Path(__file__).parent / "golden" / "cisco"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "codecs": ["g722", "pcma", "pcmu"],
    "ntp": {"server": "pool.ntp.org", "server2": "ntp2.example.net"},
    "timezone": "Europe/Berlin",
    "language": "en",
    "admin_password": "Adm1n-Pw",
    "call_waiting": False,
    "provisioning": {"resync": {"start": "01:30", "end": "03:45", "on_boot": True}},
}
PINNED = FirmwareInput("11-3-7MPP0001-609", "sip78xx.11-3-7MPP0001-609.loads",
                       "https://prov.example.net/firmware/sip78xx.11-3-7MPP0001-609.loads")


_inputs = VendorInputs(VENDOR, MAC, "CP-7841-3PCC", COMMON)
line, device, rendered = _inputs.line, _inputs.device, _inputs.rendered


def profile(dev: RenderInput) -> dict[str, str]:
    return {k: v for k, (v, _) in parse_cisco(rendered(dev)[FILE]).items()}


def test_registry_and_one_lowercase_mac_file() -> None:
    assert vendors.get("cisco") is VENDOR and VENDOR.autoescape is True
    assert set(rendered(device(lines=(line(),)))) == {FILE}


def test_profile_rule_points_at_this_file_and_resync_window() -> None:
    p = profile(device(lines=(line(),)))
    assert p["Provision_Enable"] == "Yes"
    assert p["Profile_Rule"] == URL + FILE
    assert p["Resync_On_Reset"] == "Yes"
    assert p["Resync_Periodic"] == "0"
    assert p["Resync_At__HHmm_"] == "0130"
    assert p["Resync_At_Random_Delay"] == str((3 * 60 + 45 - 90) * 60)


def test_firmware_only_when_pinned() -> None:
    assert not any(k.startswith("Upgrade") for k in profile(device(lines=(line(),))))
    p = profile(device(lines=(line(),), firmware=PINNED))
    assert p["Upgrade_Enable"] == "Yes"
    assert p["Upgrade_Rule"] == PINNED.url


def test_line_one_carries_the_account() -> None:
    p = profile(device(lines=(line(),)))
    assert p["Line_Enable_1_"] == "Yes"
    assert p["User_ID_1_"] == "201"
    assert p["Auth_ID_1_"] == "201-auth"
    assert p["Use_Auth_ID_1_"] == "Yes"
    assert p["Password_1_"] == "S3cr&t"
    assert p["Display_Name_1_"] == "Alice Example"
    assert p["Proxy_1_"] == "pbx.example.net:5060"
    assert p["SIP_Transport_1_"] == "UDP"
    assert p["Outbound_Proxy_1_"] == ""


def test_escaping_of_xml_characters() -> None:
    text = rendered(device(lines=(line(password='a<b>&"c'),)))[FILE]
    assert "a<b>" not in text
    assert parse_cisco(text)["Password_1_"] == ('a<b>&"c', "na")


def test_access_flags_hide_secrets_and_lock_the_rest() -> None:
    p = parse_cisco(rendered(device(lines=(line(),)))[FILE])
    assert p["Password_1_"][1] == p["Admin_Password"][1] == p["Profile_Rule"][1] == "na"
    assert p["Time_Zone"][1] == p["Display_Name_1_"][1] == "ro"
    assert all(ua in ("na", "ro") for _, ua in p.values())


def test_outbound_proxy_and_tls() -> None:
    sip = {"server": "acme.example.net", "transport": "tls", "outbound_proxy": "sbc.example.net",
           "outbound_proxy_port": 5061, "expires": 600}
    p = profile(device(lines=(line(sip=sip),)))
    assert p["Proxy_1_"] == "acme.example.net"
    assert p["SIP_Transport_1_"] == "TLS"
    assert p["Outbound_Proxy_1_"] == "sbc.example.net:5061"
    assert p["Use_OB_Proxy_In_Dialog_1_"] == "Yes"
    assert p["Register_Expires_1_"] == "600"


def test_codecs_in_order_at_most_three() -> None:
    p = profile(device(lines=(line(),)))
    assert [p["Preferred_Codec_1_"], p["Second_Preferred_Codec_1_"],
            p["Third_Preferred_Codec_1_"]] == ["G722", "G711a", "G711u"]
    p = profile(device(lines=(line(params={"codecs": ["opus"]}),)))
    assert p["Preferred_Codec_1_"] == "OPUS" and "Second_Preferred_Codec_1_" not in p
    problems = VENDOR.check(device(lines=(line(),), params={
        **COMMON, "codecs": ["g722", "pcma", "pcmu", "g729"]}))
    assert len(problems) == 1 and problems[0].startswith("codecs") and "at most 3" in problems[0]
    problems = VENDOR.check(device(lines=(line(),), params={**COMMON, "codecs": ["gsm"]}))
    assert len(problems) == 1 and "gsm" in problems[0]


def test_common_settings_ntp_time_zone_language_admin_call_waiting() -> None:
    p = profile(device(lines=(line(),)))
    assert p["Primary_NTP_Server"] == "pool.ntp.org"
    assert p["Secondary_NTP_Server"] == "ntp2.example.net"
    assert p["Time_Zone"] == "GMT+01:00"
    assert p["Daylight_Saving_Time_Enable"] == "Yes"
    assert p["Daylight_Saving_Time_Rule"] == "start=3/-1/7/2;end=10/-1/7/3;save=1"
    assert p["Language_Selection"] == "English-US" and p["Locale"] == "en-US"
    assert p["Admin_Password"] == "Adm1n-Pw"
    assert p["CW_Setting"] == "No"


@pytest.mark.parametrize(("zone", "tz", "rule"), [
    ("America/New_York", "GMT-05:00", "start=3/8/7/2;end=11/1/7/2;save=1"),
    ("Asia/Kolkata", "GMT+05:30", None),
    ("America/St_Johns", "GMT-03:30", "start=3/8/7/2;end=11/1/7/2;save=1"),
])
def test_time_zones(zone: str, tz: str, rule: str | None) -> None:
    p = profile(device(params={**COMMON, "timezone": zone}))
    assert p["Time_Zone"] == tz
    assert p["Daylight_Saving_Time_Enable"] == ("Yes" if rule else "No")
    assert p.get("Daylight_Saving_Time_Rule") == rule


def test_non_english_language_needs_a_dictionary_server_and_is_refused() -> None:
    problems = VENDOR.check(device(params={**COMMON, "language": "de"}))
    assert len(problems) == 1 and problems[0].startswith("language:")


def test_unused_lines_are_disabled_and_emptied() -> None:
    p = profile(device(lines=(line(),)))
    for n in (2, 3, 4):
        assert p[f"Line_Enable_{n}_"] == "No"
        assert p[f"User_ID_{n}_"] == p[f"Password_{n}_"] == p[f"Proxy_{n}_"] == ""
    assert "Line_Enable_5_" not in p


def test_two_ports_with_different_accounts() -> None:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob", sip={"server": "other.example.net", "transport": "tcp"})
    p = profile(device(lines=(line(), bob)))
    assert p["User_ID_2_"] == "202" and p["Password_2_"] == "pw-202"
    assert p["Proxy_2_"] == "other.example.net" and p["SIP_Transport_2_"] == "TCP"


def test_phone_without_account_gets_common_settings_only() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}]}
    p = profile(device(model="CP-7821-3PCC", params=params))
    assert p["Profile_Rule"] == URL + FILE
    assert p["Time_Zone"] == "GMT+01:00"
    assert p["Line_Enable_1_"] == p["Line_Enable_2_"] == "No"
    assert not any(k.startswith(("Extension_", "Extended_Function_")) for k in p)


def test_line_keys() -> None:
    keys = [{"type": "line", "line": 1}, {"type": "blf", "value": "202", "label": "Bob"},
            {"type": "speed_dial", "value": "*97", "label": "VM"}, {"type": "none"}]
    p = profile(device(lines=(line(),), params={**COMMON, "line_keys": keys}))
    assert p["Extension_1_"] == "1"
    assert p["Extension_2_"] == "Disabled"
    assert p["Extended_Function_2_"] == "fnc=blf+sd+cp;sub=202@$PROXY;nme=Bob"
    assert p["Extended_Function_3_"] == "fnc=sd;ext=*97@$PROXY;nme=VM"
    assert p["Extension_4_"] == "Disabled" and p["Extended_Function_4_"] == ""
    problems = VENDOR.check(device(lines=(line(),), params={
        **COMMON, "line_keys": [{"type": "park", "value": "700"}]}))
    assert len(problems) == 1 and problems[0].startswith("line_keys[1]")
    problems = VENDOR.check(device(lines=(line(),), params={
        **COMMON, "line_keys": [{"type": "line"}] * 5}))
    assert len(problems) == 1 and problems[0].startswith("line_keys[5]")


def test_user_owned_parameters_are_not_written_so_the_users_values_stay() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}], "call_waiting": True}
    p = profile(device(lines=(line(),), params=params,
                       user_owned=("line_keys", "call_waiting", "language")))
    assert not any(k.startswith(("Extension_", "Extended_Function_", "CW_Setting",
                                 "Language_Selection", "Locale")) for k in p)
    assert p["Password_1_"] == "S3cr&t"


def test_vlan() -> None:
    p = profile(device(params={**COMMON, "vlan": {"id": 20, "priority": 5, "pc_id": 30}}))
    assert p["Enable_VLAN"] == "Yes" and p["VLAN_ID"] == "20" and p["PC_Port_VLAN_ID"] == "30"


def test_raw_elements_replace_generated_ones() -> None:
    p = profile(device(lines=(line(),), raw={"Time_Zone": "GMT+02:00", "Enable_CDP": False}))
    assert p["Time_Zone"] == "GMT+02:00" and p["Enable_CDP"] == "No"
    problems = VENDOR.check(device(raw={"<x>": "1"}))
    assert len(problems) == 1 and problems[0].startswith("raw.cisco")


@pytest.mark.parametrize(("dev", "named"), [
    (device(lines=(line(display_name="A\nB"),)), "display_name"),
    (device(lines=(line(password="p\x1b"),)), "password"),
    (device(raw={"Station_Name": "a\nb"}), "raw.cisco.Station_Name"),
])
def test_value_xml_cannot_carry_is_rejected_naming_the_parameter(dev: RenderInput,
                                                                 named: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and problems[0].startswith(named)


def test_models_and_firmware_scheme() -> None:
    assert VENDOR.models["CP-7841-3PCC"].lines == 4
    assert VENDOR.models["CP-8851-3PCC"].family == "88xx"
    assert VENDOR.firmware_version("11-3-7MPP0001-609") == (11, 3, 7, 1, 609)
    assert VENDOR.firmware_version("sip78xx.11-0-0MPP-7") == (11, 0, 0, 0, 7)
    assert VENDOR.firmware_version("12-0-1MPP-308") > VENDOR.firmware_version("11-3-7MPP0001-609")
    with pytest.raises(ValueError, match="Cisco MPP firmware version"):
        VENDOR.firmware_version("latest")
    assert VENDOR.check_firmware(VENDOR.models["CP-7841-3PCC"], "sip78xx.11-0-0MPP-7") is None
    why = VENDOR.check_firmware(VENDOR.models["CP-8841-3PCC"], "sip78xx.11-0-0MPP-7")
    assert why is not None and "78xx" in why


def golden_device() -> RenderInput:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob & Co", sip={"server": "pbx.example.net", "transport": "tls",
                                             "outbound_proxy": "sbc.example.net"})
    keys = [{"type": "line", "line": 1}, {"type": "line", "line": 2},
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
