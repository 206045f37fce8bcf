"""`kind: local`: the JSON registry file, and the factory that builds every client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.core.errors import RedirectError
from reconciler.desired.schema import LocalRedirect, PolyZtp, SnomSraps, YealinkRps
from reconciler.redirect import make_client
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.clients.local import LocalRegistry
from reconciler.redirect.clients.poly import PolyZtpClient
from reconciler.redirect.clients.sraps import GRAPE, SrapsClient
from reconciler.redirect.clients.yealink import YealinkRpsClient

M1, M2 = "001565aabb01", "001565aabb02"
U1, U2 = "http://localhost:8080/a/", "http://localhost:8080/b/"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def reg(mac, url=U1, steal=False):
    return DesiredRegistration(mac, "default", url, "yealink/T46U", steal=steal)


@pytest.fixture
def registry(tmp_path):
    return LocalRegistry("default", tmp_path / "out" / "redirect.json", clock=lambda: NOW)


def test_register_lookup_update_deregister(registry):
    assert registry.lookup([M1]) == {M1: Remote(M1, "nobody")}
    registry.register(reg(M1))
    assert json.loads(registry.path.read_text()) == {
        M1: {"url": U1, "account": "provctl", "registered_at": NOW.isoformat()}
    }
    assert registry.lookup([M1]) == {M1: Remote(M1, "us", U1)}
    registry.update(reg(M1, U2))
    assert registry.lookup([M1]) == {M1: Remote(M1, "us", U2)}
    registry.deregister(M1)
    registry.deregister(M1)  # idempotent
    assert registry.entries() == {}


def test_another_account_is_a_conflict_unless_steal(registry):
    registry.seed(M1, "http://elsewhere/", "someone-else")
    assert registry.lookup([M1]) == {M1: Remote(M1, "other")}
    for attempt in (lambda: registry.register(reg(M1)), lambda: registry.update(reg(M1)),
                    lambda: registry.deregister(M1)):
        with pytest.raises(RedirectError) as caught:
            attempt()
        assert caught.value.conflict
    assert registry.entries()[M1]["account"] == "someone-else"
    registry.register(reg(M1, steal=True))
    assert registry.lookup([M1]) == {M1: Remote(M1, "us", U1)}


def test_writes_are_atomic_and_a_corrupt_file_is_an_error(registry):
    registry.register(reg(M1))
    registry.register(reg(M2))
    assert sorted(p.name for p in registry.path.parent.iterdir()) == ["redirect.json"]
    registry.path.write_text("[1, 2]")
    with pytest.raises(RedirectError, match="cannot read"):
        registry.lookup([M1])


def secrets(ref: str) -> str:
    return {"env:AK": "ak", "env:SK": "sk", "env:ID": "id", "env:KEY": "key"}[ref]


def test_factory_builds_each_kind(tmp_path: Path):
    local = make_client("default", LocalRedirect(kind="local", path="./out/r.json"), secrets,
                        tmp_path)
    assert isinstance(local, LocalRegistry) and local.path == tmp_path / "out" / "r.json"

    yealink = make_client("y", YealinkRps(kind="yealink-rps", access_key="env:AK",
                                          secret="env:SK", server_name="fleet-1"),
                          secrets, tmp_path)
    assert isinstance(yealink, YealinkRpsClient) and yealink.server_name == "fleet-1"
    assert yealink.http.base_url == "https://api-dm.yealink.com:8443"

    grape = make_client("g", SnomSraps(kind="gigaset-grape", key_id="env:ID", secret="env:SK",
                                       base_url="http://127.0.0.1:9/api/v1/"),
                        secrets, tmp_path)
    assert isinstance(grape, SrapsClient) and grape.flavour is GRAPE

    poly = make_client("p", PolyZtp(kind="poly-ztp", api_key="env:KEY"), secrets, tmp_path)
    assert isinstance(poly, PolyZtpClient)
    for client in (local, yealink, grape, poly):
        client.close()


def test_factory_refuses_a_server_name_yealink_would_refuse(tmp_path):
    with pytest.raises(RedirectError, match="server_name"):
        make_client("y", YealinkRps(kind="yealink-rps", access_key="env:AK", secret="env:SK",
                                    server_name="x" * 21), secrets, tmp_path)
