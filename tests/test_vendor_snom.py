"""Snom: render RenderInputs, parse the XML back strictly, check what the phone would get."""

from __future__ import annotations

import re
from typing import Any

import pytest
from vendor_parsers import SnomFile, parse_snom, parse_snom_firmware

import vendors
from reconciler.render.templating import render
from vendors import timezones
from vendors.base import FirmwareInput, LineInput, RenderInput
from vendors.snom import VENDOR

MAC = "000413a1b2c3"
FILE = "000413A1B2C3.xml"
URL = "https://prov.example.net/tok123/"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "codecs": ["g722", "pcmu", "pcma"],
    "ntp": {"server": "pool.ntp.org"},
    "timezone": "Europe/Berlin",
    "language": "it",
    "admin_password": "Adm1n-Pw",
    "provisioning": {"resync": {"start": "01:30", "end": "03:45", "on_boot": True}},
}
PINNED = FirmwareInput("10.1.54.13", "snomD785-10.1.54.13-SIP-r.bin",
                       "https://prov.example.net/firmware/snomD785-10.1.54.13-SIP-r.bin")


def line(port: int = 1, account: str = "acme/201", extension: str = "201",
         password: str = "S3cr&t", display_name: str = "Alice Example",
         sip: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> LineInput:
    return LineInput(
        port=port, account=account, extension=extension, auth_user=f"{extension}-auth",
        password=password, display_name=display_name, label=extension,
        sip=sip if sip is not None else COMMON["sip"], params=params or {},
    )


def device(model: str = "D785", lines: tuple[LineInput, ...] = (), params: dict | None = None,
           user_owned: tuple[str, ...] = (), firmware: FirmwareInput | None = None,
           raw: dict[str, Any] | None = None) -> RenderInput:
    return RenderInput(
        mac=MAC, vendor="snom", model=VENDOR.models[model], name="desk",
        customer="acme", params=COMMON if params is None else params, lines=lines,
        user_owned=frozenset(user_owned), provisioning_url=URL, firmware=firmware,
        raw=raw or {},
    )


def rendered(dev: RenderInput) -> dict[str, str]:
    assert VENDOR.check(dev) == []
    return {
        out.name: render(out.template, out.context, autoescape=VENDOR.autoescape,
                         line_ending=out.line_ending)
        for out in VENDOR.files(dev)
    }


def xml(dev: RenderInput) -> SnomFile:
    return parse_snom(rendered(dev)[FILE])


def test_registry_returns_this_module() -> None:
    assert vendors.get("snom") is VENDOR
    assert VENDOR.autoescape is True


def test_phone_gets_uppercase_mac_xml_and_no_firmware_when_installed_is_kept() -> None:
    files = rendered(device(lines=(line(),)))
    assert set(files) == {FILE}
    settings = parse_snom(files[FILE]).settings
    assert ("update_policy", None) not in settings
    assert ("firmware_status", None) not in settings
    assert not any("firmware" in name for name, _ in settings)


def test_pinned_firmware_adds_the_firmware_file_and_points_the_phone_at_it() -> None:
    files = rendered(device(lines=(line(),), firmware=PINNED))
    assert set(files) == {FILE, "snomD785-firmware.xml"}
    assert parse_snom_firmware(files["snomD785-firmware.xml"]) == PINNED.url
    settings = parse_snom(files[FILE])
    assert settings.value("update_policy") == "auto_update"
    assert settings.value("firmware_status") == URL + "snomD785-firmware.xml"


def test_identity_one_carries_the_sip_account() -> None:
    s = xml(device(lines=(line(),)))
    assert s.value("user_active", 1) == "on"
    assert s.value("user_name", 1) == "201"
    assert s.value("user_pname", 1) == "201-auth"
    assert s.value("user_pass", 1) == "S3cr&t"
    assert s.value("user_realname", 1) == "Alice Example"
    assert s.value("user_idle_text", 1) == "201"
    assert s.value("user_host", 1) == "pbx.example.net:5060"
    assert s.value("user_outbound", 1) == "pbx.example.net:5060;transport=udp"
    assert s.perm("user_pass", 1) == "R"


def test_password_with_xml_characters_is_escaped_and_survives() -> None:
    text = rendered(device(lines=(line(password='S3cr&t<"x">'),)))[FILE]
    assert 'S3cr&t<"x">' not in text
    assert "S3cr&amp;t&lt;" in text
    assert parse_snom(text).value("user_pass", 1) == 'S3cr&t<"x">'


def test_display_name_with_quotes_in_a_key_label_is_escaped() -> None:
    keys = [{"type": "blf", "value": "202", "label": 'Bob "B&B"', "line": 1}]
    s = xml(device(lines=(line(),), params={**COMMON, "line_keys": keys}))
    assert s.fkeys[0]["label"] == 'Bob "B&B"'


def test_tls_via_outbound_proxy() -> None:
    sip = {"server": "acme.pbx.example.net", "transport": "tls",
           "outbound_proxy": "sbc.example.net", "outbound_proxy_port": 5061}
    s = xml(device(lines=(line(sip=sip),)))
    assert s.value("user_host", 1) == "acme.pbx.example.net"
    assert s.value("user_outbound", 1) == "sbc.example.net:5061;transport=tls"


def test_tls_without_port_uses_5061() -> None:
    s = xml(device(lines=(line(sip={"server": "pbx.example.net", "transport": "tls"}),)))
    assert s.value("user_outbound", 1) == "pbx.example.net:5061;transport=tls"


def test_codec_priority_list_in_given_order_with_telephone_event() -> None:
    s = xml(device(lines=(line(),)))
    assert s.value("codec_priority_list", 1) == "g722,pcmu,pcma,telephone-event"


def test_codec_snom_lacks_is_reported() -> None:
    problems = VENDOR.check(device(lines=(line(),), params={**COMMON, "codecs": ["ilbc"]}))
    assert len(problems) == 1 and "ilbc" in problems[0] and "codecs" in problems[0]


def test_common_settings_provisioning_ntp_time_zone_language_admin() -> None:
    s = xml(device(lines=(line(),)))
    assert s.value("setting_server") == URL + "000413A1B2C3.xml"
    assert s.value("prov_polling_enabled") == "on"
    assert s.value("prov_polling_time") == "01:30"
    assert s.value("prov_polling_time_rand_end") == "03:45"
    assert s.value("ntp_server") == "pool.ntp.org"
    assert s.value("timezone") == "GER+1"
    assert s.value("language") == s.value("web_language") == "Italiano"
    assert s.value("admin_mode_password") == "Adm1n-Pw"
    assert s.value("admin_mode_password_confirm") == "Adm1n-Pw"
    assert all(perm == "R" for _, perm in s.settings.values())


@pytest.mark.parametrize(("zone", "code"), [
    ("Europe/Rome", "ITA+1"), ("Europe/Paris", "FRA+1"), ("Europe/London", "GBR-0"),
    ("America/New_York", "USA-5"), ("America/Phoenix", "USA2-7"),
    ("Europe/San_Marino", "GER+1"),  # no row of its own: first row with the same clock
])
def test_time_zone_codes(zone: str, code: str) -> None:
    assert xml(device(params={**COMMON, "timezone": zone})).value("timezone") == code


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Asia/Dubai"])
def test_time_zone_without_a_known_code_is_reported(zone: str) -> None:
    problems = VENDOR.check(device(params={**COMMON, "timezone": zone}))
    assert len(problems) == 1 and problems[0].startswith("timezone:") and zone in problems[0]


def test_snom_codes_in_the_table_match_the_zones_standard_offset() -> None:
    for zone, (_, code) in timezones.table().items():
        if code is None:
            continue
        match = re.fullmatch(r"[A-Z]+\d?([+-])([\d.]+)", code)
        assert match, code
        sign, number = match.groups()
        minutes = round(float(number) * 60) * (1 if sign == "+" else -1)
        assert timezones.clock(zone).standard_minutes == minutes, zone


@pytest.mark.parametrize(("code", "name"), [("fr", "Français"), ("de-AT", "Deutsch"),
                                            ("en", "English"), ("nl", "Nederlands")])
def test_languages(code: str, name: str) -> None:
    assert xml(device(params={**COMMON, "language": code})).value("language") == name


def test_unknown_language_is_reported() -> None:
    problems = VENDOR.check(device(params={**COMMON, "language": "tlh"}))
    assert len(problems) == 1 and problems[0].startswith("language:")


def test_unused_identities_are_switched_off_and_emptied() -> None:
    s = xml(device(model="D785", lines=(line(),)))
    for n in range(2, 13):
        assert s.value("user_active", n) == "off"
        assert s.value("user_name", n) == ""
        assert s.value("user_pass", n) == ""
    assert ("user_active", 13) not in s.settings


def test_two_ports_with_different_accounts() -> None:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob", sip={"server": "other.example.net", "transport": "tcp"})
    s = xml(device(model="D715", lines=(line(), bob)))
    assert s.value("user_name", 1) == "201" and s.value("user_pass", 1) == "S3cr&t"
    assert s.value("user_name", 2) == "202" and s.value("user_pass", 2) == "pw-202"
    assert s.value("user_realname", 2) == "Bob"
    assert s.value("user_outbound", 2) == "other.example.net:5060;transport=tcp"
    assert s.value("user_active", 3) == s.value("user_active", 4) == "off"


def test_phone_without_account_gets_common_settings_only() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202", "label": "", "line": 1}]}
    s = xml(device(model="D140", params=params))
    assert s.value("setting_server") == URL + "000413A1B2C3.xml"
    assert s.value("ntp_server") == "pool.ntp.org"
    assert s.value("timezone") == "GER+1"
    assert s.value("language") == "Italiano"
    assert s.value("admin_mode_password") == "Adm1n-Pw"
    assert s.value("user_active", 1) == s.value("user_active", 2) == "off"
    assert s.value("user_pass", 1) == ""
    assert s.fkeys == {}


LINE_KEYS = [
    {"type": "line", "value": "", "label": "", "line": 1},
    {"type": "blf", "value": "202", "label": "Bob", "line": 1},
    {"type": "speed_dial", "value": "+4930123456", "label": "Office", "line": 1},
    {"type": "park", "value": "700", "label": "", "line": 2},
    {"type": "dtmf", "value": "*1", "label": "", "line": 1},
]


def test_function_keys_zero_based_with_type_and_value() -> None:
    s = xml(device(lines=(line(),), params={**COMMON, "line_keys": LINE_KEYS}))
    assert [s.fkeys[i]["value"] for i in range(5)] == ["line", "blf 202", "speed +4930123456",
                                                       "park 700", "dtmf *1"]
    assert s.fkeys[1]["label"] == "Bob" and "label" not in s.fkeys[0]
    assert s.fkeys[1]["context"] == "active"
    assert s.fkeys[3]["context"] == "2"
    assert all(k["perm"] == "R" for k in s.fkeys.values())


def test_user_owned_keys_and_language_are_defaults_the_user_may_change() -> None:
    dev = device(lines=(line(),), params={**COMMON, "line_keys": LINE_KEYS},
                 user_owned=("line_keys", "language"))
    s = xml(dev)
    assert all(k["perm"] == "!" for k in s.fkeys.values())
    assert s.perm("language") == s.perm("web_language") == "!"
    assert s.perm("timezone") == "R"
    assert s.perm("user_pass", 1) == "R"


def test_vlan_and_call_waiting() -> None:
    params = {**COMMON, "vlan": {"id": 20, "priority": 5, "pc_id": 30}, "call_waiting": True}
    s = xml(device(params=params))
    assert s.value("vlan_id") == "20"
    assert s.value("vlan_qos") == "5"
    assert s.value("vlan_pc_id") == "30"
    assert s.value("call_waiting") == "on"


def test_raw_settings_with_and_without_index_replace_generated_ones() -> None:
    raw = {"dnd_mode": True, "user_ringer[2]": "Ringer3", "timezone": "ITA+1"}
    text = rendered(device(lines=(line(),), raw=raw))[FILE]
    s = parse_snom(text)  # strict: a duplicate (name, idx) would fail here
    assert s.value("dnd_mode") == "on"
    assert s.value("user_ringer", 2) == "Ringer3"
    assert s.value("timezone") == "ITA+1"
    assert list(s.settings)[-3:] == [("dnd_mode", None), ("user_ringer", 2), ("timezone", None)]


def test_invalid_raw_setting_name_is_reported() -> None:
    problems = VENDOR.check(device(raw={"<script>": "x"}))
    assert len(problems) == 1 and "raw.snom" in problems[0]


def test_line_break_in_a_value_is_rejected_naming_the_parameter() -> None:
    problems = VENDOR.check(device(lines=(line(display_name="Alice\nExample"),)))
    assert len(problems) == 1 and problems[0].startswith("display_name")


def test_models_and_identities() -> None:
    expected = {"D713": 6, "D715": 4, "D717": 6, "D735": 12, "D785": 12, "D810": 12,
                "D812": 12, "D815": 12, "D862": 8, "D865": 12, "D892": 12, "D335": 12,
                "D385": 12, "D140": 2, "D150": 2}
    assert {name: m.lines for name, m in VENDOR.models.items()} == expected


def test_firmware_version_scheme() -> None:
    assert VENDOR.firmware_version("10.1.54.13") == (10, 1, 54, 13)
    assert VENDOR.firmware_version("10.1.215.13") > VENDOR.firmware_version("10.1.54.13")
    for bad in ("10.1.54", "10.1.54.13-r", "ten"):
        with pytest.raises(ValueError, match="Snom firmware version"):
            VENDOR.firmware_version(bad)
    assert VENDOR.check_firmware(VENDOR.models["D785"], "10.1.54.13") is None


def test_supported_parameters() -> None:
    assert {"sip", "codecs", "line_keys", "raw", "timezone"} <= VENDOR.supported
    assert not {"soft_keys", "expansion_keys", "screensaver"} & VENDOR.supported
