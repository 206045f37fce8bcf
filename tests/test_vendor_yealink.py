"""Yealink: render RenderInputs, parse the files back strictly, check what the phone would get."""

from __future__ import annotations

from typing import Any

import pytest
from vendor_parsers import parse_yealink_boot, parse_yealink_cfg

import vendors
from reconciler.render.templating import render
from vendors import timezones
from vendors.base import FirmwareInput, LineInput, RenderInput
from vendors.yealink import VENDOR

MAC = "001565a1b2c3"
URL = "https://prov.example.net/tok123/"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "codecs": ["g722", "pcma", "pcmu"],
    "ntp": {"server": "pool.ntp.org", "server2": "ntp2.example.net"},
    "timezone": "Europe/Berlin",
    "language": "it",
    "admin_password": "Adm1n-Pw",
    "provisioning": {"resync": {"start": "01:30", "end": "03:45", "on_boot": True}},
}


def line(port: int = 1, account: str = "acme/201", extension: str = "201",
         password: str = "S3cr&t", display_name: str = "Alice Example",
         sip: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> LineInput:
    return LineInput(
        port=port, account=account, extension=extension, auth_user=extension,
        password=password, display_name=display_name, label=extension,
        sip=sip if sip is not None else COMMON["sip"], params=params or {},
    )


def device(model: str = "T46U", lines: tuple[LineInput, ...] = (), params: dict | None = None,
           user_owned: tuple[str, ...] = (), firmware: FirmwareInput | None = None,
           raw: dict[str, Any] | None = None) -> RenderInput:
    return RenderInput(
        mac=MAC, vendor="yealink", model=VENDOR.models[model], name="reception",
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


def cfg(dev: RenderInput) -> dict[str, str]:
    return parse_yealink_cfg(rendered(dev)[f"{MAC}.cfg"])


def test_registry_returns_this_module() -> None:
    assert vendors.get("yealink") is VENDOR
    assert VENDOR.autoescape is False


def test_phone_gets_boot_file_including_only_its_lowercase_mac_cfg() -> None:
    files = rendered(device(lines=(line(),)))
    assert set(files) == {f"{MAC}.cfg", f"{MAC}.boot"}
    assert files[f"{MAC}.cfg"].splitlines()[0] == "#!version:1.0.0.1"
    includes, settings = parse_yealink_boot(files[f"{MAC}.boot"])
    assert includes == [f"{MAC}.cfg"]
    # overwrite_mode 0: keys we leave out (user-owned) are not reset to factory default
    assert settings == {"overwrite_mode": "0"}


def test_sip_account_on_port_one_carries_credentials_verbatim() -> None:
    keys = cfg(device(lines=(line(),)))
    assert keys["account.1.enable"] == "1"
    assert keys["account.1.user_name"] == "201"
    assert keys["account.1.auth_name"] == "201"
    assert keys["account.1.password"] == "S3cr&t"  # text format: no escaping
    assert keys["account.1.display_name"] == "Alice Example"
    assert keys["account.1.label"] == "201"
    assert keys["account.1.sip_server.1.address"] == "pbx.example.net"
    assert keys["account.1.sip_server.1.port"] == "5060"
    assert keys["account.1.sip_server.1.transport_type"] == "0"
    assert keys["account.1.outbound_proxy_enable"] == "0"


@pytest.mark.parametrize(("transport", "code"), [("udp", "0"), ("tcp", "1"), ("tls", "2")])
def test_transport_codes(transport: str, code: str) -> None:
    sip = {"server": "pbx.example.net", "port": 5061, "transport": transport}
    keys = cfg(device(lines=(line(sip=sip),)))
    assert keys["account.1.sip_server.1.transport_type"] == code


def test_outbound_proxy_enabled_with_its_port() -> None:
    sip = {"server": "acme.pbx.example.net", "transport": "tls",
           "outbound_proxy": "sbc.example.net", "outbound_proxy_port": 5061}
    keys = cfg(device(lines=(line(sip=sip),)))
    assert keys["account.1.outbound_proxy_enable"] == "1"
    assert keys["account.1.outbound_proxy.1.address"] == "sbc.example.net"
    assert keys["account.1.outbound_proxy.1.port"] == "5061"
    assert "account.1.sip_server.1.port" not in keys  # not given: the phone's default stays


def test_codecs_get_priorities_in_order_and_unlisted_codecs_are_disabled() -> None:
    keys = cfg(device(lines=(line(),)))
    assert [keys[f"account.1.codec.{c}.priority"] for c in ("g722", "pcma", "pcmu")] == \
        ["1", "2", "3"]
    assert all(keys[f"account.1.codec.{c}.enable"] == "1" for c in ("g722", "pcma", "pcmu"))
    for codec in ("g729", "opus", "ilbc", "g726_32"):
        assert keys[f"account.1.codec.{codec}.enable"] == "0"
        assert f"account.1.codec.{codec}.priority" not in keys


def test_line_level_codecs_win_over_device_codecs() -> None:
    keys = cfg(device(lines=(line(params={"codecs": ["opus"]}),)))
    assert keys["account.1.codec.opus.priority"] == "1"
    assert keys["account.1.codec.g722.enable"] == "0"


def test_codec_yealink_lacks_is_reported() -> None:
    dev = device(lines=(line(),), params={**COMMON, "codecs": ["gsm", "pcma"]})
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and "codecs" in problems[0] and "gsm" in problems[0]


def test_common_settings_ntp_time_zone_language_admin_and_provisioning() -> None:
    keys = cfg(device(lines=(line(),)))
    assert keys["local_time.ntp_server1"] == "pool.ntp.org"
    assert keys["local_time.ntp_server2"] == "ntp2.example.net"
    assert keys["local_time.time_zone"] == "+1"
    assert keys["local_time.time_zone_name"] == "Germany(Berlin)"
    assert keys["local_time.summer_time"] == "2"
    assert keys["lang.gui"] == keys["lang.wui"] == "Italian"
    assert keys["static.security.user_password"] == "admin:Adm1n-Pw"
    assert keys["static.auto_provision.server.url"] == URL
    assert keys["static.auto_provision.power_on"] == "1"
    assert keys["static.auto_provision.weekly.enable"] == "1"
    assert keys["static.auto_provision.weekly.dayofweek"] == "0123456"
    assert keys["static.auto_provision.weekly.begin_time"] == "01:30"
    assert keys["static.auto_provision.weekly.end_time"] == "03:45"


def test_resync_defaults_to_a_nightly_window_when_not_set() -> None:
    params = {k: v for k, v in COMMON.items() if k != "provisioning"}
    keys = cfg(device(lines=(line(),), params=params))
    assert keys["static.auto_provision.weekly.begin_time"] == "02:00"
    assert keys["static.auto_provision.weekly.end_time"] == "04:00"
    assert keys["static.auto_provision.power_on"] == "1"


def test_language_region_suffix_is_accepted_and_unknown_language_reported() -> None:
    keys = cfg(device(lines=(line(),), params={**COMMON, "language": "de_CH"}))
    assert keys["lang.gui"] == "German"
    problems = VENDOR.check(device(params={**COMMON, "language": "xx"}))
    assert len(problems) == 1 and problems[0].startswith("language:")


@pytest.mark.parametrize(("zone", "offset", "name", "summer"), [
    ("America/New_York", "-5", "United States-Eastern Time", "2"),
    ("Europe/London", "0", "United Kingdom(London)", "2"),
    ("Asia/Kolkata", "+5:30", "India(Calcutta)", "0"),
    ("Europe/Vienna", "+1", "Germany(Berlin)", "2"),  # same clock as a row of the table
])
def test_time_zones(zone: str, offset: str, name: str, summer: str) -> None:
    keys = cfg(device(params={**COMMON, "timezone": zone}))
    assert keys["local_time.time_zone"] == offset
    assert keys["local_time.time_zone_name"] == name
    assert keys["local_time.summer_time"] == summer


def test_zone_without_dst_and_without_a_name_is_written_as_offset_only() -> None:
    keys = cfg(device(params={**COMMON, "timezone": "Asia/Dubai"}))
    assert keys["local_time.time_zone"] == "+4"
    assert keys["local_time.summer_time"] == "0"
    assert "local_time.time_zone_name" not in keys


def test_unknown_time_zone_is_reported_not_guessed() -> None:
    problems = VENDOR.check(device(params={**COMMON, "timezone": "Mars/Olympus"}))
    assert len(problems) == 1 and problems[0].startswith("timezone:")
    keys = cfg_unchecked(device(params={**COMMON, "timezone": "Mars/Olympus"}))
    assert "local_time.time_zone" not in keys


def cfg_unchecked(dev: RenderInput) -> dict[str, str]:
    (out,) = [o for o in VENDOR.files(dev) if o.name.endswith(".cfg")]
    return parse_yealink_cfg(render(out.template, out.context, autoescape=False))


def test_yealink_table_rows_agree_with_zoneinfo() -> None:
    for zone, (name, _) in timezones.table().items():
        if name is not None:
            assert timezones.yealink(zone).time_zone_name == name


def test_firmware_url_only_when_pinned() -> None:
    pinned = FirmwareInput("108.86.0.95", "T46U-108.86.0.95.rom",
                           "https://prov.example.net/firmware/T46U-108.86.0.95.rom")
    keys = cfg(device(lines=(line(),), firmware=pinned))
    assert keys["static.firmware.url"] == pinned.url
    assert not any("firmware" in key for key in cfg(device(lines=(line(),))))


def test_unused_account_slots_are_disabled_and_blanked() -> None:
    keys = cfg(device(model="T42U", lines=(line(),)))
    assert keys["account.1.enable"] == "1"
    for n in range(2, 13):
        assert keys[f"account.{n}.enable"] == "0"
        assert keys[f"account.{n}.user_name"] == "%NULL%"
        assert keys[f"account.{n}.password"] == "%NULL%"
    assert "account.13.enable" not in keys


def test_two_ports_with_different_accounts() -> None:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob", sip={"server": "other.example.net", "transport": "tcp"})
    keys = cfg(device(model="T33", lines=(line(), bob)))
    assert keys["account.1.user_name"] == "201"
    assert keys["account.1.password"] == "S3cr&t"
    assert keys["account.2.user_name"] == "202"
    assert keys["account.2.password"] == "pw-202"
    assert keys["account.2.display_name"] == "Bob"
    assert keys["account.2.sip_server.1.address"] == "other.example.net"
    assert keys["account.2.sip_server.1.transport_type"] == "1"
    assert keys["account.3.enable"] == keys["account.4.enable"] == "0"


def test_phone_without_account_gets_common_settings_and_no_credentials() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202", "label": "Bob", "line": 1}]}
    keys = cfg(device(model="T31", params=params))
    assert keys["static.auto_provision.server.url"] == URL
    assert keys["local_time.ntp_server1"] == "pool.ntp.org"
    assert keys["local_time.time_zone_name"] == "Germany(Berlin)"
    assert keys["lang.gui"] == "Italian"
    assert keys["static.security.user_password"] == "admin:Adm1n-Pw"
    assert keys["account.1.enable"] == keys["account.2.enable"] == "0"
    assert keys["account.1.password"] == "%NULL%"
    assert not any(key.startswith("linekey.") for key in keys)


LINE_KEYS = [
    {"type": "line", "value": "", "label": "", "line": 1},
    {"type": "blf", "value": "202", "label": "Bob", "line": 1},
    {"type": "speed_dial", "value": "+4930123456", "label": "Office", "line": 1},
    {"type": "park", "value": "700", "label": "Park", "line": 2},
    {"type": "dtmf", "value": "*1", "label": "", "line": 1},
    {"type": "none", "value": "", "label": "", "line": 1},
]


def test_line_keys_map_to_dss_types() -> None:
    keys = cfg(device(lines=(line(),), params={**COMMON, "line_keys": LINE_KEYS}))
    assert [keys[f"linekey.{k}.type"] for k in range(1, 7)] == ["15", "16", "13", "10", "11",
                                                               "0"]
    assert keys["linekey.2.value"] == "202" and keys["linekey.2.label"] == "Bob"
    assert keys["linekey.4.line"] == "2"
    assert keys["static.auto_provision.custom.protect"] == "0"


def test_soft_and_expansion_keys() -> None:
    params = {**COMMON, "soft_keys": [{"type": "speed_dial", "value": "*97", "label": "VM"}],
              "expansion_keys": [{"type": "blf", "value": "203", "label": "Carol"}]}
    keys = cfg(device(lines=(line(),), params=params))
    assert keys["programablekey.1.type"] == "13"
    assert keys["programablekey.1.value"] == "*97"
    assert keys["expansion_module.1.key.1.type"] == "16"
    assert keys["expansion_module.1.key.1.label"] == "Carol"


def test_user_owned_line_keys_are_not_provisioned_and_protect_is_on() -> None:
    params = {**COMMON, "line_keys": LINE_KEYS, "call_waiting": True}
    keys = cfg(device(lines=(line(),), params=params, user_owned=("line_keys", "language")))
    assert keys["static.auto_provision.custom.protect"] == "1"
    assert not any(key.startswith("linekey.") for key in keys)
    assert "lang.gui" not in keys
    assert keys["call_waiting.enable"] == "1"  # not user-owned: still provisioned


def test_vlan_and_call_waiting() -> None:
    params = {**COMMON, "vlan": {"id": 20, "priority": 5, "pc_id": 30}, "call_waiting": False}
    keys = cfg(device(params=params))
    assert keys["static.network.vlan.internet_port_enable"] == "1"
    assert keys["static.network.vlan.internet_port_vid"] == "20"
    assert keys["static.network.vlan.internet_port_priority"] == "5"
    assert keys["static.network.vlan.pc_port_vid"] == "30"
    assert keys["call_waiting.enable"] == "0"


def test_raw_keys_pass_through_last_and_replace_generated_ones() -> None:
    raw = {"features.dnd.enable": True, "local_time.ntp_server1": "ntp.internal",
           "phone_setting.backlight_time": 60}
    text = rendered(device(lines=(line(),), raw=raw))[f"{MAC}.cfg"]
    keys = parse_yealink_cfg(text)  # strict: a duplicate key would fail here
    assert keys["features.dnd.enable"] == "1"
    assert keys["local_time.ntp_server1"] == "ntp.internal"
    assert keys["phone_setting.backlight_time"] == "60"
    settings = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert settings[-3:] == ["features.dnd.enable = 1", "local_time.ntp_server1 = ntp.internal",
                             "phone_setting.backlight_time = 60"]


def test_invalid_raw_key_is_reported() -> None:
    problems = VENDOR.check(device(raw={"bad key = x": "1"}))
    assert len(problems) == 1 and "raw.yealink" in problems[0]


@pytest.mark.parametrize(("dev", "named"), [
    (device(lines=(line(display_name="Alice\nstatic.security.user_password = admin:x"),)),
     "display_name"),
    (device(lines=(line(password="pw\r\n"),)), "password"),
    (device(params={**COMMON, "admin_password": "a\nb"}), "admin_password"),
    (device(raw={"features.dnd.enable": "1\n"}), "raw.yealink.features.dnd.enable"),
])
def test_line_break_in_a_value_is_rejected_naming_the_parameter(dev: RenderInput,
                                                                named: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1
    assert problems[0].startswith(named) and "line break" in problems[0]


def test_models_line_counts_and_firmware_families() -> None:
    expected = {"T27G": (6, "69"), "T31": (2, "124"), "T33": (4, "124"), "T41S": (6, "66"),
                "T42U": (12, "108"), "T44W": (12, "108"), "T46U": (16, "108"),
                "T48S": (16, "66"), "T53W": (12, "96"), "T54W": (16, "96"),
                "T58W": (16, "150"), "CP920": (1, "78")}
    for name, (lines, family) in expected.items():
        model = VENDOR.models[name]
        assert (model.name, model.lines, model.family) == (name, lines, family)


def test_firmware_version_scheme() -> None:
    assert VENDOR.firmware_version("108.86.0.95") == (108, 86, 0, 95)
    for bad in ("108.86.0", "v108.86.0.95", "108.86.0.95.1", "latest"):
        with pytest.raises(ValueError, match="Yealink firmware version"):
            VENDOR.firmware_version(bad)
    assert VENDOR.check_firmware(VENDOR.models["T46U"], "108.86.0.95") is None
    why = VENDOR.check_firmware(VENDOR.models["T46S"], "108.86.0.95")
    assert why is not None and "66" in why and "T46S" in why


def test_supported_parameters() -> None:
    assert {"sip", "codecs", "line_keys", "raw", "timezone"} <= VENDOR.supported
    assert "screensaver" not in VENDOR.supported
