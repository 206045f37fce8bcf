"""Panasonic: render RenderInputs, parse the CRLF text back with every limit checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from vendor_parsers import FormatError, parse_panasonic

import vendors
from reconciler.render.templating import render
from vendors.base import FirmwareInput, LineInput, RenderInput
from vendors.panasonic import VENDOR

MAC = "0080f0a1b2c3"
FILE = "Config0080F0A1B2C3.cfg"
URL = "https://prov.example.net/tok123/"
GOLDEN = Path(__file__).parent / "golden" / "panasonic"
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
PINNED = FirmwareInput("01.133", "KX-HDV230-01.133.fw",
                       "https://prov.example.net/firmware/KX-HDV230-01.133.fw")


def line(port: int = 1, account: str = "acme/201", extension: str = "201",
         password: str = "S3cr&t<x>", display_name: str = "Alice Example",
         sip: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> LineInput:
    return LineInput(port=port, account=account, extension=extension,
                     auth_user=f"{extension}-auth", password=password,
                     display_name=display_name, label=extension,
                     sip=sip if sip is not None else COMMON["sip"], params=params or {})


def device(model: str = "KX-HDV230", lines: tuple[LineInput, ...] = (),
           params: dict | None = None, user_owned: tuple[str, ...] = (),
           firmware: FirmwareInput | None = None,
           raw: dict[str, Any] | None = None) -> RenderInput:
    return RenderInput(mac=MAC, vendor="panasonic", model=VENDOR.models[model], name="desk",
                       customer="acme", params=COMMON if params is None else params,
                       lines=lines, user_owned=frozenset(user_owned), provisioning_url=URL,
                       firmware=firmware, raw=raw or {})


def rendered(dev: RenderInput) -> dict[str, bytes]:
    assert VENDOR.check(dev) == []
    return {out.name: render(out.template, out.context, autoescape=VENDOR.autoescape,
                             line_ending=out.line_ending).encode("utf-8")
            for out in VENDOR.files(dev)}


def cfg(dev: RenderInput) -> dict[str, str]:
    return parse_panasonic(rendered(dev)[FILE])[1]


def test_registry_and_files_uppercase_mac_standard_file_and_model_bootstrap() -> None:
    assert vendors.get("panasonic") is VENDOR and VENDOR.autoescape is False
    files = rendered(device(lines=(line(),)))
    assert set(files) == {FILE, "KX-HDV230.cfg"}
    first, keys = parse_panasonic(files["KX-HDV230.cfg"])
    assert keys == {"CFG_STANDARD_FILE_PATH": URL + "Config{MAC}.cfg"}


def test_crlf_magic_line_and_trailing_empty_line() -> None:
    data = rendered(device(lines=(line(),)))[FILE]
    assert data.startswith(b"# Panasonic SIP Phone Standard Format File # DO NOT CHANGE THIS "
                           b"LINE!\r\n")
    assert data.endswith(b'"\r\n\r\n')
    assert b"\n" not in data.replace(b"\r\n", b"")
    first, _ = parse_panasonic(rendered(device(model="KX-TGP550"))[FILE])
    assert first.startswith("# PCC Standard Format File #")


def test_size_check_counts_the_bytes_the_template_writes() -> None:
    from vendors.panasonic import HEADERS, _build, file_size

    dev = device(lines=(line(display_name="Zoë Ünal"),), raw={"SYSLOG_ADDR": "é"})
    assert file_size(HEADERS["hdv"], _build(dev).settings) == len(rendered(dev)[FILE])


def test_strict_parser_catches_what_a_phone_would_reject() -> None:
    good = rendered(device())[FILE]
    for bad in (good.replace(b"\r\n", b"\n"), good[:-2], good.replace(b'="', b' = "', 1),
                b"# nothing\r\nX=\"1\"\r\n\r\n"):
        with pytest.raises(FormatError):
            parse_panasonic(bad)


def test_line_one_carries_the_account_verbatim() -> None:
    k = cfg(device(lines=(line(),)))
    assert k["LINE_ENABLE_1"] == "Enabled"
    assert k["PHONE_NUMBER_1"] == "201"
    assert k["SIP_AUTHID_1"] == "201-auth"
    assert k["SIP_PASS_1"] == "S3cr&t<x>"  # text format: no escaping
    assert k["DISPLAY_NAME_1"] == "Alice Example"
    assert k["SIP_RGSTR_ADDR_1"] == k["SIP_PRXY_ADDR_1"] == k["SIP_SVCDOMAIN_1"] == \
        "pbx.example.net"
    assert k["SIP_RGSTR_PORT_1"] == k["SIP_PRXY_PORT_1"] == "5060"
    assert k["SIP_TRANSPORT_1"] == "0"
    assert k["SIP_OUTPROXY_ADDR_1"] == ""
    assert k["CW_ENABLE_1"] == "Y"


def test_outbound_proxy_tls_and_expiry() -> None:
    sip = {"server": "acme.example.net", "transport": "tls", "outbound_proxy": "sbc.example.net",
           "outbound_proxy_port": 5061, "expires": 600}
    k = cfg(device(lines=(line(sip=sip),)))
    assert k["SIP_TRANSPORT_1"] == "2"
    assert k["SIP_OUTPROXY_ADDR_1"] == "sbc.example.net" and k["SIP_OUTPROXY_PORT_1"] == "5061"
    assert k["REG_EXPIRE_TIME_1"] == "600"


def test_hdv_codecs_by_index_priority_in_order_and_tgp_codec_names() -> None:
    k = cfg(device(lines=(line(),)))
    assert (k["CODEC_ENABLE0_1"], k["CODEC_PRIORITY0_1"]) == ("Y", "1")  # G.722
    assert (k["CODEC_ENABLE1_1"], k["CODEC_PRIORITY1_1"]) == ("Y", "2")  # PCMA
    assert (k["CODEC_ENABLE4_1"], k["CODEC_PRIORITY4_1"]) == ("Y", "3")  # PCMU
    assert k["CODEC_ENABLE3_1"] == "N" and "CODEC_PRIORITY3_1" not in k  # G.729A
    k = cfg(device(model="KX-TGP550", lines=(line(),)))
    assert [k[f"SDP_CODEC{i}_1"] for i in range(5)] == ["G722", "PCMA", "PCMU", "", ""]
    problems = VENDOR.check(device(lines=(line(params={"codecs": ["opus"]}),)))
    assert len(problems) == 1 and "opus" in problems[0]


def test_common_settings() -> None:
    k = cfg(device(lines=(line(),)))
    assert k["NTP_ADDR"] == "pool.ntp.org"
    assert (k["TIME_ZONE"], k["DST_ENABLE"], k["DST_OFFSET"]) == ("60", "Y", "60")
    assert [k[f"DST_START_{x}"] for x in ("MONTH", "ORDINAL_DAY", "DAY_OF_WEEK", "TIME")] == [
        "3", "5", "0", "120"]
    assert [k[f"DST_STOP_{x}"] for x in ("MONTH", "ORDINAL_DAY", "DAY_OF_WEEK", "TIME")] == [
        "10", "5", "0", "180"]
    assert k["DEFAULT_LANGUAGE"] == k["WEB_LANGUAGE"] == "de"
    assert (k["ADMIN_ID"], k["ADMIN_PASS"]) == ("admin", "Adm1n-Pw")
    assert k["CFG_STANDARD_FILE_PATH"] == URL + FILE
    assert k["CFG_RESYNC_TIME"] == "01:30"
    assert not any(key.startswith("FIRM_") for key in k)


def test_time_zone_without_dst_and_us_rule() -> None:
    k = cfg(device(params={**COMMON, "timezone": "Asia/Kolkata"}))
    assert (k["TIME_ZONE"], k["DST_ENABLE"]) == ("330", "N") and "DST_OFFSET" not in k
    k = cfg(device(params={**COMMON, "timezone": "America/Chicago"}))
    assert k["TIME_ZONE"] == "-360"
    assert (k["DST_START_ORDINAL_DAY"], k["DST_STOP_MONTH"], k["DST_STOP_TIME"]) == (
        "2", "11", "120")


def test_pinned_firmware() -> None:
    k = cfg(device(lines=(line(),), firmware=PINNED))
    assert (k["FIRM_UPGRADE_ENABLE"], k["FIRM_VERSION"], k["FIRM_FILE_PATH"]) == (
        "Y", "01.133", PINNED.url)


def test_unused_lines_are_disabled_and_emptied() -> None:
    k = cfg(device(lines=(line(),)))
    for n in range(2, 7):
        assert k[f"LINE_ENABLE_{n}"] == "Disabled"
        assert k[f"SIP_AUTHID_{n}"] == k[f"SIP_PASS_{n}"] == k[f"PHONE_NUMBER_{n}"] == ""
    assert "LINE_ENABLE_7" not in k


def test_phone_without_account_gets_common_settings_only() -> None:
    k = cfg(device(model="KX-HDV130"))
    assert k["CFG_STANDARD_FILE_PATH"] == URL + FILE and k["NTP_ADDR"] == "pool.ntp.org"
    assert k["LINE_ENABLE_1"] == k["LINE_ENABLE_2"] == "Disabled"


def test_user_owned_parameters_are_not_written() -> None:
    k = cfg(device(lines=(line(),), user_owned=("language", "call_waiting")))
    assert "DEFAULT_LANGUAGE" not in k and "CW_ENABLE_1" not in k


def test_vlan() -> None:
    k = cfg(device(params={**COMMON, "vlan": {"id": 20, "priority": 5, "pc_id": 30}}))
    assert (k["VLAN_ENABLE"], k["VLAN_ID_IP_PHONE"], k["VLAN_PRI_IP_PHONE"], k["VLAN_ID_PC"]) == (
        "Y", "20", "5", "30")


def test_raw_keys_replace_generated_ones_in_place_because_the_first_wins() -> None:
    data = rendered(device(lines=(line(),), raw={"NTP_ADDR": "ntp.internal",
                                                 "SYSLOG_ADDR": "log.example.net"}))[FILE]
    k = parse_panasonic(data)[1]  # strict: a duplicate would fail
    assert k["NTP_ADDR"] == "ntp.internal" and k["SYSLOG_ADDR"] == "log.example.net"
    for bad in ("ntp_addr", "A" * 33):
        problems = VENDOR.check(device(raw={bad: "1"}))
        assert len(problems) == 1 and problems[0].startswith("raw.panasonic")


@pytest.mark.parametrize(("dev", "named", "why"), [
    (device(lines=(line(display_name='Alice "Al" Example'),)), "display_name", '"'),
    (device(lines=(line(password="a\nb"),)), "password", "line break"),
    (device(params={**COMMON, "admin_password": "x\ty"}), "admin_password", "control"),
    (device(lines=(line(display_name="x" * 501),)), "display_name", "500"),
    (device(raw={"SIP_USER_AGENT": "é" * 300}), "raw.panasonic.SIP_USER_AGENT", "537"),
])
def test_value_the_format_cannot_carry_is_rejected_naming_the_parameter(
        dev: RenderInput, named: str, why: str) -> None:
    problems = VENDOR.check(dev)
    assert len(problems) == 1 and problems[0].startswith(named) and why in problems[0]


def test_file_over_120_kb_is_rejected() -> None:
    raw = {f"X_FILLER_{i}": "z" * 480 for i in range(260)}
    problems = VENDOR.check(device(raw=raw))
    assert len(problems) == 1 and "bytes" in problems[0] and FILE in problems[0]


def test_models_and_firmware_scheme() -> None:
    assert VENDOR.models["KX-HDV330"].lines == 12 and VENDOR.models["KX-TGP550"].lines == 8
    assert VENDOR.firmware_version("01.133") == (1, 133)
    assert VENDOR.firmware_version("12.81") == (12, 81)
    with pytest.raises(ValueError, match="Panasonic firmware version"):
        VENDOR.firmware_version("1.2.3")


def golden_device() -> RenderInput:
    bob = line(port=2, account="acme/202", extension="202", password="pw-202",
               display_name="Bob & Co")
    return device(lines=(line(), bob), firmware=PINNED)


def test_golden_files() -> None:
    files = rendered(golden_device())
    if os.environ.get("PROVCTL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (GOLDEN / name).write_bytes(data)
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (GOLDEN / name).read_bytes() == data, name
