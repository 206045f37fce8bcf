"""Gigaset Nx70: render RenderInputs for a DECT base, parse the XML back strictly, check it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vendor_parsers import GigasetFile, parse_gigaset

import vendors
from reconciler.render.templating import render
from vendors import timezones
from vendors.base import FirmwareInput, LineInput, RenderInput
from vendors.gigaset import VENDOR

MAC = "589ec6a1b2c3"
FILE = f"{MAC}.xml"
URL = "https://prov.example.net/tok123/"
GOLDEN = Path(__file__).parent / "golden" / "gigaset"
COMMON: dict[str, Any] = {
    "sip": {"server": "pbx.example.net", "port": 5060, "transport": "udp"},
    "ntp": {"server": "pool.ntp.org"},
    "timezone": "Europe/Berlin",
    "admin_password": "Adm1n-Pw",
}
PINNED = FirmwareInput("83.V2.65.0", "Gigaset-Nx70-V2.65.0-build.8504c90.bin",
                       "https://prov.example.net/firmware/Gigaset-Nx70-V2.65.0-build.8504c90.bin")


def line(port: int = 1, account: str = "acme/201", extension: str = "201",
         password: str = "S3cr&t", display_name: str = "Alice Example",
         sip: dict[str, Any] | None = None) -> LineInput:
    return LineInput(port=port, account=account, extension=extension,
                     auth_user=f"{extension}-auth", password=password,
                     display_name=display_name, label=extension,
                     sip=sip if sip is not None else COMMON["sip"], params={})


def device(model: str = "N610", lines: tuple[LineInput, ...] = (), params: dict | None = None,
           firmware: FirmwareInput | None = None,
           raw: dict[str, Any] | None = None) -> RenderInput:
    return RenderInput(mac=MAC, vendor="gigaset", model=VENDOR.models[model], name="dect",
                       customer="acme", params=COMMON if params is None else params,
                       lines=lines, user_owned=frozenset(), provisioning_url=URL,
                       firmware=firmware, raw=raw or {})


def rendered(dev: RenderInput) -> dict[str, str]:
    assert VENDOR.check(dev) == []
    return {out.name: render(out.template, out.context, autoescape=VENDOR.autoescape,
                             line_ending=out.line_ending) for out in VENDOR.files(dev)}


def xml(dev: RenderInput) -> GigasetFile:
    return parse_gigaset(rendered(dev)[FILE])


def test_registry_and_one_lowercase_mac_file() -> None:
    assert vendors.get("gigaset") is VENDOR and VENDOR.autoescape is True
    assert set(rendered(device(lines=(line(),)))) == {FILE}


def test_two_handsets_on_ports_one_and_two_with_their_own_accounts() -> None:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob")
    g = xml(device(lines=(line(), bob)))
    assert g.handsets == ["00001", "00002"]
    p = g.params
    assert p["hs.00001.DECT_AC"] == "0201" and p["hs.00002.DECT_AC"] == "0202"
    assert p["SipAccount.00001.UserName"] == "201"
    assert p["SipAccount.00001.AuthName"] == "201-auth"
    assert p["SipAccount.00001.AuthPassword"] == "S3cr&t"
    assert p["SipAccount.00001.DisplayName"] == "Alice Example"
    assert p["SipAccount.00002.UserName"] == "202"
    assert p["SipAccount.00002.AuthPassword"] == "pw-202"
    assert p["SipAccount.00001.ProviderId"] == p["SipAccount.00002.ProviderId"] == "0"


def test_sip_provider_carries_server_port_and_transport() -> None:
    p = xml(device(lines=(line(),))).params
    assert p["SipProvider.0.Domain"] == "pbx.example.net"
    assert p["SipProvider.0.ProxyServerAddress"] == "pbx.example.net"
    assert p["SipProvider.0.ProxyServerPort"] == "5060"
    assert p["SipProvider.0.RegServerAddress"] == "pbx.example.net"
    assert p["SipProvider.0.RegServerPort"] == "5060"
    assert p["SipProvider.0.TransportProtocol"] == "1"
    assert p["SipProvider.0.OutboundProxyMode"] == "2"


def test_lines_with_other_servers_get_their_own_provider() -> None:
    sip = {"server": "other.example.net", "transport": "tls",
           "outbound_proxy": "sbc.example.net", "expires": 600}
    g = xml(device(lines=(line(), line(port=3, account="acme/203", extension="203", sip=sip))))
    p = g.params
    assert p["SipAccount.00003.ProviderId"] == "1"
    assert p["SipProvider.1.Domain"] == "other.example.net"
    assert p["SipProvider.1.TransportProtocol"] == "3"
    assert p["SipProvider.1.RegServerPort"] == "5061"
    assert p["SipProvider.1.OutboundProxyMode"] == "0"
    assert p["SipProvider.1.OutboundProxyAddress"] == "sbc.example.net"
    assert p["SipProvider.1.RegServerRefreshTimer"] == "600"
    assert g.handsets == ["00001", "00003"]


def test_xml_characters_in_attribute_values_are_escaped_and_survive() -> None:
    text = rendered(device(lines=(line(password='<"&\'>', display_name="A & B"),)))[FILE]
    assert '<"&' not in text
    p = parse_gigaset(text).params
    assert p["SipAccount.00001.AuthPassword"] == '<"&\'>'
    assert p["SipAccount.00001.DisplayName"] == "A & B"


def test_unused_handset_accounts_are_cleared() -> None:
    p = xml(device(lines=(line(),))).params
    for n in range(2, 9):
        assert p[f"SipAccount.{n:05d}.UserName"] == ""
        assert p[f"SipAccount.{n:05d}.AuthPassword"] == ""
    assert "SipAccount.00009.UserName" not in p


def test_common_settings() -> None:
    g = xml(device(lines=(line(),)))
    p = g.params
    assert p["Provisioning.global.ProvisioningServer"] == "https://prov.example.net/tok123"
    assert p["WebUIAccounts.1.Password"] == "Adm1n-Pw"
    assert p["DmGlobal.0.NtpServer"] == "pool.ntp.org"
    assert p["DmGlobal.0.TimeZone"] == "Europe/Berlin"
    assert g.firmware is None


@pytest.mark.parametrize(("zone", "listed"), [
    ("Europe/Vienna", "Europe/Vienna"),  # in the list
    ("Europe/Kyiv", "Europe/Athens"),  # not listed: the first listed zone with its clock
    ("America/Toronto", "America/New_York"),  # same clock
    ("Asia/Kolkata", None),  # no listed zone has this clock
])
def test_time_zone_from_gigasets_list(zone: str, listed: str | None) -> None:
    dev = device(params={**COMMON, "timezone": zone})
    if listed is None:
        problems = VENDOR.check(dev)
        assert len(problems) == 1 and problems[0].startswith("timezone:") and zone in problems[0]
    else:
        assert xml(dev).params["DmGlobal.0.TimeZone"] == listed


def test_gigaset_zone_list_is_known_to_zoneinfo() -> None:
    known = [z for z in timezones.GIGASET_ZONES if timezones.gigaset(z) == z]
    assert len(known) == len(timezones.GIGASET_ZONES)


def test_pinned_firmware() -> None:
    g = xml(device(lines=(line(),), firmware=PINNED))
    assert g.firmware == {"version": "2.65.0", "url": PINNED.url}


def test_base_without_handset_accounts_gets_common_settings_only() -> None:
    g = xml(device())
    assert g.handsets == []
    assert g.params["DmGlobal.0.NtpServer"] == "pool.ntp.org"
    assert not any(k.startswith("SipProvider.") for k in g.params)


def test_handset_beyond_the_model_is_reported() -> None:
    problems = VENDOR.check(device(lines=(line(port=9),)))
    assert len(problems) == 1 and "N610" in problems[0]


def test_raw_parameters_replace_generated_ones() -> None:
    p = xml(device(lines=(line(),), raw={"Telephony.0.ToneScheme": "Germany",
                                         "DmGlobal.0.NtpServer": "ntp.internal"})).params
    assert p["Telephony.0.ToneScheme"] == "Germany"
    assert p["DmGlobal.0.NtpServer"] == "ntp.internal"
    problems = VENDOR.check(device(raw={"a b": "1"}))
    assert len(problems) == 1 and problems[0].startswith("raw.gigaset")


@pytest.mark.parametrize(("dev", "named"), [
    (device(lines=(line(display_name="A\nB"),)), "display_name"),
    (device(params={**COMMON, "admin_password": "x\x01"}), "admin_password"),
])
def test_value_an_attribute_cannot_carry_is_rejected(dev: RenderInput, named: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and problems[0].startswith(named)


def test_models_firmware_scheme_and_redirect() -> None:
    assert {n: m.lines for n, m in VENDOR.models.items()} == {
        "N610": 8, "N670": 20, "N770": 100, "N870": 250, "N870E": 250}
    assert VENDOR.firmware_version("83.V2.65.0") == VENDOR.firmware_version("2.65.0") == (
        2, 65, 0)
    with pytest.raises(ValueError, match="Gigaset Nx70 firmware version"):
        VENDOR.firmware_version("42.262")
    assert VENDOR.check_firmware(VENDOR.models["N670"], "42.V2.65.0") is not None
    assert VENDOR.redirect_kinds == ("gigaset-grape",)
    assert VENDOR.redirect_url(URL, MAC) == "https://prov.example.net/tok123"
    assert "line_keys" not in VENDOR.supported and "codecs" not in VENDOR.supported


def golden_device() -> RenderInput:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob & Co")
    return device(lines=(line(), bob), firmware=PINNED)


def test_golden_files() -> None:
    files = rendered(golden_device())
    if os.environ.get("PROVCTL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (GOLDEN / name).write_bytes(text.encode("utf-8"))
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (GOLDEN / name).read_bytes() == text.encode("utf-8"), name
