"""Poly: render RenderInputs, parse both files back strictly, check what the phone would get."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vendor_inputs import URL, VendorInputs
from vendor_parsers import parse_poly_config, parse_poly_master

import vendors
from vendors.base import FirmwareInput, RenderInput
from vendors.poly import VENDOR

MAC = "0004f2a1b2c3"
MASTER, CONFIG = f"{MAC}.cfg", f"{MAC}-provctl.cfg"
GOLDEN = Path(__file__).parent / "golden" / "poly"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "codecs": ["g722", "pcma", "pcmu"],
    "ntp": {"server": "pool.ntp.org", "server2": "ntp2.example.net"},
    "timezone": "Europe/Berlin",
    "language": "de",
    "admin_password": "Adm1n-Pw",
    "call_waiting": True,
    "provisioning": {"resync": {"start": "01:30", "end": "03:45", "on_boot": True}},
}
PINNED = FirmwareInput("6.4.6.2390", "UC-6.4.6.2390.sip.ld",
                       "https://prov.example.net/firmware/UC-6.4.6.2390.sip.ld")


_inputs = VendorInputs(VENDOR, MAC, "VVX450", COMMON)
line, device, rendered = _inputs.line, _inputs.device, _inputs.rendered


def cfg(dev: RenderInput) -> dict[str, str]:
    return parse_poly_config(rendered(dev)[CONFIG])


def test_registry_and_xml_autoescape() -> None:
    assert vendors.get("poly") is VENDOR
    assert VENDOR.autoescape is True


def test_phone_gets_its_master_file_naming_our_config_file_never_phone_written_names() -> None:
    files = rendered(device(lines=(line(),)))
    assert set(files) == {MASTER, CONFIG}
    assert not any(name.endswith(("-phone.cfg", "-web.cfg")) for name in files)
    master = parse_poly_master(files[MASTER])
    assert master["CONFIG_FILES"] == CONFIG
    assert master["APP_FILE_PATH"] == ""  # installed software kept


def test_pinned_firmware_is_the_app_file_path() -> None:
    master = parse_poly_master(rendered(device(lines=(line(),), firmware=PINNED))[MASTER])
    assert master["APP_FILE_PATH"] == PINNED.url


def test_registration_one_carries_the_account() -> None:
    keys = cfg(device(lines=(line(),)))
    assert keys["reg.1.address"] == "201"
    assert keys["reg.1.auth.userId"] == "201-auth"
    assert keys["reg.1.auth.password"] == "S3cr&t"
    assert keys["reg.1.displayName"] == "Alice Example"
    assert keys["reg.1.label"] == "201"
    assert keys["reg.1.server.1.address"] == "pbx.example.net"
    assert keys["reg.1.server.1.port"] == "5060"
    assert keys["reg.1.server.1.transport"] == "UDPOnly"


def test_xml_characters_in_attribute_values_are_escaped_and_survive() -> None:
    text = rendered(device(lines=(line(password='p&<"\'>', display_name='A "B" & C'),)))[CONFIG]
    assert 'p&<"' not in text
    keys = parse_poly_config(text)
    assert keys["reg.1.auth.password"] == 'p&<"\'>'
    assert keys["reg.1.displayName"] == 'A "B" & C'


def test_outbound_proxy_and_tls() -> None:
    sip = {"server": "acme.pbx.example.net", "transport": "tls", "port": 5061,
           "outbound_proxy": "sbc.example.net", "outbound_proxy_port": 5062, "expires": 600}
    keys = cfg(device(lines=(line(sip=sip),)))
    assert keys["reg.1.server.1.transport"] == "TLS"
    assert keys["reg.1.server.1.expires"] == "600"
    assert keys["reg.1.outboundProxy.address"] == "sbc.example.net"
    assert keys["reg.1.outboundProxy.port"] == "5062"
    assert keys["reg.1.outboundProxy.transport"] == "TLS"


def test_codec_priorities_in_order_and_unlisted_codecs_off() -> None:
    keys = cfg(device(lines=(line(),)))
    assert keys["voice.codecPref.G722"] == "1"
    assert keys["voice.codecPref.G711_A"] == "2"
    assert keys["voice.codecPref.G711_Mu"] == "3"
    assert keys["voice.codecPref.G729_AB"] == "0"


def test_codecs_are_phone_wide_so_lines_that_differ_are_refused() -> None:
    bob = line(port=2, account="acme/202", extension="202", params={"codecs": ["pcmu"]})
    problems = VENDOR.check(device(lines=(line(), bob)))
    assert len(problems) == 1 and problems[0].startswith("codecs:")
    problems = VENDOR.check(device(lines=(line(),), params={**COMMON, "codecs": ["opus"]}))
    assert len(problems) == 1 and "opus" in problems[0]


def test_common_settings_ntp_time_zone_language_admin_provisioning() -> None:
    keys = cfg(device(lines=(line(),)))
    assert keys["tcpIpApp.sntp.address"] == "pool.ntp.org"
    assert keys["tcpIpApp.sntp.gmtOffset"] == "3600"
    assert keys["tcpIpApp.sntp.daylightSavings.enable"] == "1"
    assert keys["tcpIpApp.sntp.daylightSavings.start.month"] == "3"
    assert keys["tcpIpApp.sntp.daylightSavings.start.dayOfWeek"] == "1"
    assert keys["tcpIpApp.sntp.daylightSavings.start.dayOfWeek.lastInMonth"] == "1"
    assert keys["tcpIpApp.sntp.daylightSavings.start.time"] == "2"
    assert keys["tcpIpApp.sntp.daylightSavings.stop.month"] == "10"
    assert keys["tcpIpApp.sntp.daylightSavings.stop.time"] == "3"
    assert keys["lcl.ml.lang"] == "German_Germany"
    assert keys["device.set"] == "1"
    assert keys["device.auth.localAdminPassword.set"] == "1"
    assert keys["device.auth.localAdminPassword"] == "Adm1n-Pw"
    assert keys["device.prov.serverName"] == URL
    assert keys["device.prov.serverType"] == "3"
    assert keys["prov.polling.mode"] == "random"
    assert keys["prov.polling.time"] == "01:30"
    assert keys["prov.polling.timeRandomEnd"] == "03:45"
    assert keys["call.callWaiting.enable"] == "1"


def test_us_rule_uses_nth_week_dates_and_zone_without_dst() -> None:
    keys = cfg(device(params={**COMMON, "timezone": "America/New_York"}))
    assert keys["tcpIpApp.sntp.gmtOffset"] == "-18000"
    assert keys["tcpIpApp.sntp.daylightSavings.start.dayOfWeek.lastInMonth"] == "0"
    assert keys["tcpIpApp.sntp.daylightSavings.start.date"] == "8"  # second Sunday of March
    assert keys["tcpIpApp.sntp.daylightSavings.stop.date"] == "1"  # first Sunday of November
    keys = cfg(device(params={**COMMON, "timezone": "Asia/Kolkata"}))
    assert keys["tcpIpApp.sntp.gmtOffset"] == "19800"
    assert keys["tcpIpApp.sntp.daylightSavings.enable"] == "0"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Africa/Casablanca"])
def test_time_zone_a_rule_cannot_express_is_reported(zone: str) -> None:
    problems = VENDOR.check(device(params={**COMMON, "timezone": zone}))
    assert len(problems) == 1 and problems[0].startswith("timezone:") and zone in problems[0]


def test_unused_registrations_are_cleared() -> None:
    keys = cfg(device(model="VVX250", lines=(line(),)))
    for n in range(2, 5):
        assert keys[f"reg.{n}.address"] == ""
        assert keys[f"reg.{n}.auth.password"] == ""
        assert keys[f"reg.{n}.server.1.address"] == ""
    assert "reg.5.address" not in keys


def test_port_beyond_the_model_is_reported() -> None:
    problems = VENDOR.check(device(model="VVX101", lines=(line(port=2),)))
    assert len(problems) == 1 and "VVX101" in problems[0]


def test_phone_without_account_gets_common_settings_only() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202", "label": "Bob"}]}
    keys = cfg(device(model="VVX150", params=params))
    assert keys["device.prov.serverName"] == URL
    assert keys["tcpIpApp.sntp.address"] == "pool.ntp.org"
    assert keys["voice.codecPref.G722"] == "1"
    assert keys["reg.1.address"] == keys["reg.2.address"] == ""
    assert not any(key.startswith("attendant.") for key in keys)


def test_blf_and_park_keys_and_unsupported_key_types() -> None:
    keys_in = [{"type": "line"}, {"type": "blf", "value": "202", "label": "Bob"},
               {"type": "park", "value": "700", "label": "Park"}]
    keys = cfg(device(lines=(line(),), params={**COMMON, "line_keys": keys_in}))
    assert keys["attendant.resourceList.2.address"] == "202"
    assert keys["attendant.resourceList.2.label"] == "Bob"
    assert keys["attendant.resourceList.3.address"] == "700"
    assert "attendant.resourceList.1.address" not in keys
    problems = VENDOR.check(device(lines=(line(),), params={
        **COMMON, "line_keys": [{"type": "speed_dial", "value": "*97"}]}))
    assert len(problems) == 1 and problems[0].startswith("line_keys[1]")


def test_user_owned_parameters_are_left_out() -> None:
    params = {**COMMON, "line_keys": [{"type": "blf", "value": "202"}]}
    keys = cfg(device(lines=(line(),), params=params,
                      user_owned=("line_keys", "language", "call_waiting")))
    assert not any(key.startswith(("attendant.", "lcl.ml.lang", "call.callWaiting"))
                   for key in keys)
    assert keys["reg.1.auth.password"] == "S3cr&t"


def test_vlan() -> None:
    keys = cfg(device(params={**COMMON, "vlan": {"id": 20, "priority": 5}}))
    assert keys["device.net.vlanId.set"] == "1"
    assert keys["device.net.vlanId"] == "20"


def test_raw_parameters_replace_generated_ones() -> None:
    raw = {"lcl.ml.lang": "English_United_Kingdom", "feature.enhancedFeatureKeys.enabled": 1}
    keys = cfg(device(lines=(line(),), raw=raw))
    assert keys["lcl.ml.lang"] == "English_United_Kingdom"
    assert keys["feature.enhancedFeatureKeys.enabled"] == "1"
    problems = VENDOR.check(device(raw={"bad name": "x"}))
    assert len(problems) == 1 and problems[0].startswith("raw.poly")


@pytest.mark.parametrize(("dev", "named"), [
    (device(lines=(line(display_name="Alice\nExample"),)), "display_name"),
    (device(lines=(line(password="pw\x07"),)), "password"),
    (device(params={**COMMON, "admin_password": "a\rb"}), "admin_password"),
])
def test_value_an_attribute_cannot_carry_is_rejected_naming_the_parameter(
        dev: RenderInput, named: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and problems[0].startswith(named)


def test_models_and_firmware_scheme() -> None:
    assert {n: m.lines for n, m in VENDOR.models.items() if n.startswith("VVX")} == {
        "VVX101": 1, "VVX150": 2, "VVX201": 2, "VVX250": 4, "VVX301": 6, "VVX311": 6,
        "VVX350": 6, "VVX401": 12, "VVX411": 12, "VVX450": 12, "VVX501": 12, "VVX601": 16}
    assert VENDOR.firmware_version("6.4.6.2390") == (6, 4, 6, 2390)
    assert VENDOR.firmware_version("6.4.6") == (6, 4, 6)
    with pytest.raises(ValueError, match="Poly UC Software version"):
        VENDOR.firmware_version("6.4")
    assert VENDOR.check_firmware(VENDOR.models["VVX450"], "6.4.6.2390") is None
    assert VENDOR.check_firmware(VENDOR.models["VVX450"], "8.1.0.1") is not None
    assert VENDOR.check_firmware(VENDOR.models["EdgeE450"], "6.4.6.2390") is not None


def test_redirect_binding_is_poly_ztp_with_the_directory_url() -> None:
    assert VENDOR.redirect_kinds == ("poly-ztp",)
    assert VENDOR.redirect_url(URL, MAC) == URL


def golden_device() -> RenderInput:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob & Co")
    params = {**COMMON, "line_keys": [{"type": "line"}, {"type": "blf", "value": "203",
                                                        "label": "Carol"}]}
    return device(model="VVX250", lines=(line(), bob), params=params, firmware=PINNED)


def test_golden_files() -> None:
    files = rendered(golden_device())
    if os.environ.get("PROVCTL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_bytes(text.encode("utf-8"))
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (GOLDEN / name).read_bytes() == text.encode("utf-8"), name
