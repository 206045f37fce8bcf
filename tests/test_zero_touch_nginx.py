"""Zero-touch behind DHCP, end to end (docs/zero-touch.md): provctl publishes bootstrap files, a
real nginx (configured by `provctl serve-config`) serves them, factory-fresh phones
(tests/factory.py on the phone simulator) start from the bootstrap URL the DHCP option names and
follow what the files say to their own files; provctl reads the access log: the windows close,
and the next apply withdraws the bootstrap files.

For each of Cisco, Grandstream, Fanvil and Panasonic (and Yealink and Snom on networks that use
DHCP instead of their redirect services): the phone reaches its own file; a second
MAC of the same vendor, not onboarding, gets 404 at the bootstrap URL and is reported as
scanning; no bootstrap file holds a secret.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from factory import Factory
from fleet_fixtures import FLEET_SECRET, SECRETS, edit, git, run
from phones import Phone
from test_bootstrap import onboard

from reconciler.render.addressing import url_token

pytestmark = pytest.mark.integration

PHONES = {  # vendor: (the onboarding phone, its customer; a MAC of the same vendor not onboarding)
    "cisco": (Phone("cisco", "c80084cc0001", "CP-8841-3PCC", "11-3-7MPP0001-609",
                    ip="127.0.0.21"), "initech", "c80084cc00ff"),
    "grandstream": (Phone("grandstream", "000b82bb0001", "GXP2140", "1.0.11.79",
                          ip="127.0.0.22"), "globex", "000b82bb00ff"),
    "fanvil": (Phone("fanvil", "0c383eaa0002", "X4U", "2.12.16.17", ip="127.0.0.23"), "acme",
               "0c383eaa00ff"),
    "panasonic": (Phone("panasonic", "0080f0cc0002", "KX-HDV230", "01.133", ip="127.0.0.24"),
                  "initech", "0080f0cc00ff"),
    # networks that use DHCP instead of RPS / SRAPS
    "yealink": (Phone("yealink", "001565aabb01", "T46U", "108.86.0.95", ip="127.0.0.25"),
                "acme", "001565aabbff"),
    "snom": (Phone("snom", "000413aabb04", "D785", "10.1.54.13", ip="127.0.0.26"), "acme",
             "000413aabbff"),
}
OWN_FILE = {"cisco": "{mac}.xml", "grandstream": "cfg{mac}.xml", "fanvil": "{mac}.cfg",
            "panasonic": "Config{MAC}.cfg", "yealink": "{mac}.cfg", "snom": "{MAC}.xml"}



def devices(fleet: Path, capsys) -> dict:
    capsys.readouterr()
    assert run(fleet, "status", "--devices", "--format", "json") == 0
    return json.loads(capsys.readouterr().out)["devices"]


def bootstrap_url(customer: str, vendor: str = "") -> str:
    """What `provctl dhcp` hands out: the fleet's base URL and the customer's bootstrap token
    (for Snom a file URL with {mac}: vendors/zerotouch.py)."""
    url = f"http://localhost:8080/{url_token(FLEET_SECRET, f'bootstrap:{customer}:0')}/"
    return url + "{mac}.xml" if vendor == "snom" else url


@pytest.fixture
def served(fleet, tmp_path, nginx_factory, capsys):
    """The test fleet in git with the four phones onboarding, applied, served by nginx."""
    log = tmp_path / "nginx" / "access.log"
    log.parent.mkdir()
    edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
         f'base_url: "http://localhost:8080/", access_log: {{path: "{log}", format: json}}}}')
    for phone, _, _ in PHONES.values():
        onboard(fleet, phone.mac)
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    git(fleet, "init", "-q")
    git(fleet, "add", "-A")
    git(fleet, "commit", "-qm", "fleet, four phones onboarding")
    assert run(fleet, "apply") == 2
    capsys.readouterr()
    assert run(fleet, "serve-config", "nginx", "--target", "local", "--listen",
               "127.0.0.1:{port}") == 0
    server = nginx_factory(fleet / "out" / "www", capsys.readouterr().out, access_log=log)
    return fleet, server


def factory(phone: Phone, server) -> Factory:
    # the phones resolve the fleet's host to the test server, as DNS would
    return Factory(phone, hosts={"localhost:8080": f"127.0.0.1:{server.port}"})


@pytest.mark.parametrize("vendor", sorted(PHONES))
def test_a_factory_phone_finds_its_own_file_from_the_bootstrap_url(served, capsys, vendor):
    fleet, server = served
    phone, customer, stranger = PHONES[vendor]
    own = OWN_FILE[vendor].format(mac=phone.mac, MAC=phone.mac.upper())
    url = bootstrap_url(customer, vendor)

    # the other MAC, not onboarding, gets 404 at the bootstrap URL (and goes no further)
    other = factory(Phone(vendor, stranger, phone.model, phone.firmware, ip="127.0.0.66"),
                    server)
    got = other.boot(url)
    assert got[-1][1] == 404 and all(name != own for name, _ in got)

    # 1. the onboarding phone: bootstrap files, then its own file in its token directory
    booting = factory(phone, server)
    got = booting.boot(url)
    expected = {
        "cisco": [("8841-3PCC.xml", 200), (own, 200), (own, 200)],
        "grandstream": [(f"cfg{phone.mac}", 404), (own, 200), (f"cfg{phone.mac}", 404),
                        (own, 200)],
        "fanvil": [(own, 200), (own, 200)],
        "panasonic": [("KX-HDV230.cfg", 200), (own, 200), (own, 200)],
        "yealink": [("y000000000000.boot", 404), (f"{phone.mac}.boot", 200), (own, 200),
                    (own, 200)],
        "snom": [(own, 200), (own, 200)],
    }[vendor]
    assert got == expected
    mine = url_token(FLEET_SECRET, phone.mac)
    reached = {  # a key only the phone's own file has: it got there
        "cisco": ("Profile_Rule", f"http://localhost:8080/{mine}/{own}"),
        "grandstream": ("P237", f"localhost:8080/{mine}"),
        "fanvil": ("Flash File Name", f"{mine}/{own}"),
        "panasonic": ("CFG_STANDARD_FILE_PATH", f"http://localhost:8080/{mine}/{own}"),
        "yealink": ("static.auto_provision.server.url", f"http://localhost:8080/{mine}/"),
        "snom": ("setting_server", f"http://localhost:8080/{mine}/{own}"),
    }[vendor]
    assert booting.settings[reached[0]] == reached[1]
    assert any(k in booting.settings for k in ("User_ID_1_", "P35", "SIP1 Phone Number",
                                               "PHONE_NUMBER_1", "Line_Enable_1_",
                                               "LINE_ENABLE_1", "account.1.user_name",
                                               "user_name"))

    # 2. provctl observes the fetch: the window closes, and the next apply withdraws the files
    body = devices(fleet, capsys)
    entry = next(d for d in body["devices"] if d["mac"] == phone.mac)
    assert entry["onboarding"]["state"] == "arrived"
    assert entry["onboarding"]["arrived"]["ip"] == phone.ip
    scanners = body["onboarding"]["scanning"]
    assert [(s["ip"], s["macs"]) for s in scanners] == [("127.0.0.66", [stranger])]
    assert any("BOOTSTRAP SCANNING" in w and stranger in w for w in body["warnings"])
    assert body["onboarding"]["hijack"] == []

    capsys.readouterr()
    assert run(fleet, "apply") == 2
    out = capsys.readouterr().out
    assert "withdraw" in out
    again = factory(Phone(vendor, phone.mac, phone.model, phone.firmware, ip=phone.ip), server)
    got = again.boot(url)
    assert (own, 404) in got or got[0][1] == 404  # nothing for it under the bootstrap URL now
    # 3. its own file is still where it went
    status, _ = phone.get(f"{server.url}{mine}/", own)
    assert status == 200


def test_no_bootstrap_file_holds_a_resolved_secret(served):
    fleet, _ = served
    www = fleet / "out" / "www"
    directories = {url_token(FLEET_SECRET, f"bootstrap:{c}:0") for c in ("acme", "globex",
                                                                         "initech")}
    files = [p for p in www.rglob("*") if p.is_file() and p.relative_to(www).parts[0]
             in directories]
    assert len(files) == 9
    secrets = [str(v) for v in yaml.safe_load(SECRETS.read_text()).values()] + [FLEET_SECRET]
    for path in files:
        text = path.read_text()
        for secret in secrets:
            assert secret not in text and secret.replace("&", "&amp;").replace(
                "<", "&lt;").replace(">", "&gt;") not in text, (path, secret)


def test_a_second_client_fetching_the_phones_file_in_its_window_is_a_possible_hijack(
        served, capsys):
    fleet, server = served
    phone, customer, _ = PHONES["grandstream"]
    thief = factory(Phone("grandstream", phone.mac, phone.model, phone.firmware,
                          ip="127.0.0.99"), server)
    thief.boot(bootstrap_url(customer))  # someone on the network used the bootstrap file first
    factory(phone, server).boot(bootstrap_url(customer))  # then the phone itself
    body = devices(fleet, capsys)
    assert body["onboarding"]["hijack"] == [{"mac": phone.mac,
                                             "ips": ["127.0.0.22", "127.0.0.99"]}]
    entry = next(d for d in body["devices"] if d["mac"] == phone.mac)
    assert entry["onboarding"]["arrived"]["ip"] == "127.0.0.99"  # the first fetch closed it
    capsys.readouterr()
    assert run(fleet, "status", "--devices") == 0
    text = capsys.readouterr().out
    assert f"POSSIBLE HIJACK of {phone.mac}: its own file was fetched from 127.0.0.22, " \
           "127.0.0.99" in text
    assert "onboarding arrived" in text and "onboarding waiting until" in text
