"""User-Agent parsing per vendor, from recorded samples.

The samples are real phones' User-Agents as public provisioning code records them (wazo-provd-
plugins' extractor comments, FusionPBX app/provision/index.php, Cisco's MPP provisioning guide);
each vendor module names its source next to its pattern.
"""

from __future__ import annotations

import importlib

import pytest

import vendors
from vendors.base import UserAgent

# (User-Agent, vendor, model, firmware, mac)
SAMPLES: list[tuple[str, str, str | None, str | None, str | None]] = [
    # Yealink
    ("Yealink SIP-T46U 108.86.0.95 00:15:65:aa:bb:cc", "yealink", "T46U", "108.86.0.95",
     "001565aabbcc"),
    ("Yealink SIP-T31G 124.85.257.55 80:5e:c0:d5:7d:72", "yealink", "T31G", "124.85.257.55",
     "805ec0d57d72"),
    ("Yealink SIP-T56A  58.80.0.25 001565f429a4", "yealink", "T56A", "58.80.0.25",
     "001565f429a4"),
    ("yealink SIP-T28P 2.70.0.140 00:15:65:13:ae:0b", "yealink", "T28P", "2.70.0.140",
     "00156513ae0b"),
    ("Yealink SIP VP-T49G 51.80.0.10 00:15:65:9b:5a:44", "yealink", "T49G", "51.80.0.10",
     "0015659b5a44"),
    ("Yealink W60B 25.80.0.15 00:15:65:b8:60:05", "yealink", "W60B", "25.80.0.15",
     "001565b86005"),
    ("Yealink SIP-T21P_E2 52.80.0.3 00:15:65:4c:4c:26", "yealink", "T21P_E2", "52.80.0.3",
     "0015654c4c26"),
    ("Yealink-T46G 28.71.0.81 28.1.0.128.0.0.0", "yealink", "T46G", "28.71.0.81", None),
    # Snom
    ("Mozilla/4.0 (compatible; snomD785-SIP 10.1.54.13 2010.12-00004-g9ba52f5 000413922D24 "
     "SXM:0 UXM:0)", "snom", "D785", "10.1.54.13", "000413922d24"),
    ("Mozilla/4.0 (compatible; snomD785-SIP 10.1.169.16 2010.12-00001-gd311851f1 (Feb 25 2019 "
     "- 14:19:43) 00041396D9B4 SXM:0 UXM:0 UXMC:0)", "snom", "D785", "10.1.169.16",
     "00041396d9b4"),
    ("Mozilla/4.0 (compatible; snom710-SIP 8.7.5.35 1.1.5-IFX-05.01.12 000413741767)", "snom",
     "710", "8.7.5.35", "000413741767"),
    ("Mozilla/4.0 (compatible; snom710-SIP 8.7.3.19 1.1.5-IFX-05.01.12)", "snom", "710",
     "8.7.3.19", None),
    ("Mozilla/4.0 (compatible; snom320-SIP 6.5.20; snom320 jffs2 v3.36; snom320 linux 3.38)",
     "snom", "320", "6.5.20", None),
    ("Mozilla/4.0 (compatible; Snom M900 05.20.0001 000413b60680)", "snom", "M900",
     "05.20.0001", "000413b60680"),
    # Poly
    ("FileTransport PolycomVVX-VVX_450-UA/6.4.6.2390 Type/Application", "poly", "VVX450",
     "6.4.6.2390", None),
    ("FileTransport PolycomVVX-VVX_101-UA/5.4.3.1014 Type/Application", "poly", "VVX101",
     "5.4.3.1014", None),
    ("FileTransport PolycomVVX-VVX_400-UA/5.0.3.1667 Type/Updater", "poly", "VVX400", None, None),
    ("FileTransport PolyCCX-CCX_500-UA/9.4.1.0508 (SN:64167f9f4c90) Type/Application", "poly",
     "CCX500", "9.4.1.0508", "64167f9f4c90"),
    ("FileTransport PolyEdge-Edge_E450-UA/8.0.0.15602 Type/Application", "poly", "EdgeE450",
     "8.0.0.15602", None),
    ("FileTransport PolycomSoundStationIP-SSIP_5000-UA/4.0.3.7562 (SN:0004f2e765da) "
     "Type/Application", "poly", "SSIP5000", "4.0.3.7562", "0004f2e765da"),
    # Grandstream
    ("Grandstream Model HW GXP2135 SW 1.0.7.97 DevId 000b828aa872", "grandstream", "GXP2135",
     "1.0.7.97", "000b828aa872"),
    ("Grandstream Model HW GXP2170 SW 1.0.11.79 DevId 000b82a1b2c3", "grandstream", "GXP2170",
     "1.0.11.79", "000b82a1b2c3"),
    ("Grandstream Model HW GXP2200 V2.2A SW 1.0.1.33 DevId 000b82462d97", "grandstream",
     "GXP2200", "1.0.1.33", "000b82462d97"),
    ("Grandstream Model HW GRP2614 SW 1.0.5.15 DevId c074ad0b63ee", "grandstream", "GRP2614",
     "1.0.5.15", "c074ad0b63ee"),
    # Cisco MPP
    ("Cisco-CP-8841-3PCC/11.0 (00562b043615)", "cisco", "CP-8841-3PCC", "11.0",
     "00562b043615"),
    ("Cisco-CP-7832-3PCC/11.0.1 (00562b043615)", "cisco", "CP-7832-3PCC", "11.0.1",
     "00562b043615"),
    ("Cisco-CP8841-3PCC/11.3.7 (c80084a1b2c3)", "cisco", "CP-8841-3PCC", "11.3.7",
     "c80084a1b2c3"),
    ("Cisco-CP-6841-3PCC/12.0.1 (FCH2145ABCD)", "cisco", "CP-6841-3PCC", "12.0.1", None),
    # Fanvil
    ("Fanvil X4 2.10.2.6887 0c383e07e16c", "fanvil", "X4", "2.10.2.6887", "0c383e07e16c"),
    ("Fanvil X6U Pro 0.0.10 0c383e2cd782", "fanvil", "X6U-Pro", "0.0.10", "0c383e2cd782"),
    ("Fanvil X5U-V2 2.12.16.17 0c383e557eb1", "fanvil", "X5U-V2", "2.12.16.17",
     "0c383e557eb1"),
    ("Fanvil X5U-V2 2.12.1 0c3800000000)", "fanvil", "X5U-V2", "2.12.1", "0c3800000000"),
    # Gigaset
    ("Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;7C2F80E0D605", "gigaset", "N870",
     "83.V2.11.0", "7c2f80e0d605"),
    ('"Gigaset N670 IP PRO/83.V2.65.0+build.1234abc;7C2F80A1B2C3"', "gigaset", "N670",
     "83.V2.65.0", "7c2f80a1b2c3"),
    ("N510 IP PRO/42.245.00.000.000;7C2F804DF9A9", "gigaset", "N510", "42.245.00.000.000",
     "7c2f804df9a9"),
    ("Gigaset N720 DM PRO/70.108.00.000.000", "gigaset", "N720", "70.108.00.000.000", None),
    ("N720-DM-PRO/70.040.00.000.000", "gigaset", "N720", "70.040.00.000.000", None),
    # Panasonic
    ("Panasonic_KX-UT113/01.133 (0080f0c8c381)", "panasonic", "KX-UT113", "01.133",
     "0080f0c8c381"),
    ("Panasonic_KX-UT670/01.022 (0080f000000)", "panasonic", "KX-UT670", "01.022", None),
]

NOT_PHONES = [
    "", "-", "curl/8.5.0", "Wget/1.21.4",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/4.0 (compatible; snom lid 3605)",  # Snom 6.5: no model or version
    "Htek UC926 2.0.4.2 00:1f:c1:00:00:00",
    "Aastra6731i MAC:00-08-5D-29-4C-6B V:3.3.1.4365-SIP",
    "AUDC-IPPhone/2.2.8.61 (440HDG-Rev0; 00908F602AAC)",
    "Cisco/SPA508G-7.4.4 (0002FDFF2103)(CBT141400UK)",  # SPA, not an MPP phone
    "Yealink SIP-T46U " + "1" * 600,
]


@pytest.mark.parametrize(("text", "vendor", "model", "firmware", "mac"), SAMPLES,
                         ids=[s[0][:40] for s in SAMPLES])
def test_recorded_user_agent_parses_to_model_firmware_and_mac(
        text: str, vendor: str, model: str | None, firmware: str | None,
        mac: str | None) -> None:
    expected = UserAgent(vendor, model, firmware, mac)
    assert importlib.import_module(f"vendors.{vendor}").parse_user_agent(text) == expected
    assert vendors.identify_user_agent(text) == expected


@pytest.mark.parametrize("text", [s[0] for s in SAMPLES], ids=[s[0][:40] for s in SAMPLES])
def test_exactly_one_vendor_claims_each_sample(text: str) -> None:
    claims = [name for name in vendors.KNOWN
              if importlib.import_module(f"vendors.{name}").parse_user_agent(text) is not None]
    assert len(claims) == 1, claims


@pytest.mark.parametrize("text", NOT_PHONES)
def test_other_clients_are_no_vendors_phone(text: str) -> None:
    assert vendors.identify_user_agent(text) is None
    for name in vendors.KNOWN:
        assert importlib.import_module(f"vendors.{name}").parse_user_agent(text) is None


def test_every_vendor_module_parses_user_agents() -> None:
    covered = {s[1] for s in SAMPLES}
    assert covered == set(vendors.KNOWN)
    for name in vendors.KNOWN:
        assert callable(importlib.import_module(f"vendors.{name}").parse_user_agent)


def test_mac_is_twelve_lowercase_hex_digits_whatever_the_phone_writes() -> None:
    for text, *_ in SAMPLES:
        found = vendors.identify_user_agent(text)
        assert found is not None
        assert found.mac is None or (len(found.mac) == 12 and found.mac == found.mac.lower()
                                     and int(found.mac, 16) >= 0)


def test_the_model_a_phone_reports_is_provctls_model_name_where_provctl_knows_it() -> None:
    """So the observed model can be compared with the inventory's model as is."""
    for text, vendor, model, *_ in SAMPLES:
        known = vendors.get(vendor).models
        if model in known:
            assert vendors.identify_user_agent(text).model in known  # type: ignore[union-attr]
    assert "T46U" in vendors.get("yealink").models
    assert "VVX450" in vendors.get("poly").models and "EdgeE450" in vendors.get("poly").models
    assert "CP-8841-3PCC" in vendors.get("cisco").models
    assert "N870" in vendors.get("gigaset").models and "D785" in vendors.get("snom").models


def test_quoted_user_agent_as_a_log_line_carries_it() -> None:
    assert vendors.identify_user_agent('"Fanvil X4 2.10.2.6887 0c383e07e16c"') == UserAgent(
        "fanvil", "X4", "2.10.2.6887", "0c383e07e16c")
