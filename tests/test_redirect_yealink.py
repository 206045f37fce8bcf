"""Yealink RPS JSON Open API: the client against the faithful fake, over loopback HTTP."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from fakes import FakeYealinkRps

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.clients.yealink import YealinkRpsClient, content_md5, sign_headers
from reconciler.redirect.http import RetryPolicy

AK, SK = "2df23f2d9c255e7138dc603b3847b58a", "d4a4be460a8d43609d8e8a5e7d0d4ad1"
pytestmark = pytest.mark.integration

MAC1, MAC2, MAC3 = "001565aabb01", "001565aabb02", "001565aabb03"
URL1 = "https://prov.example.net/t0k3n1/"
URL1B = "https://prov.example.net/t0k3n1-rotated/"


def no_sleep(_: float) -> None:
    pass


def reg(mac: str, url: str = URL1, steal: bool = False) -> DesiredRegistration:
    return DesiredRegistration(mac=mac, service="yealink", url=url, model="yealink/T46U",
                               steal=steal)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeYealinkRps({AK: SK, "other-key": "other-secret"}) as server:
        yield server


def make_client(fake: FakeYealinkRps, **kwargs) -> YealinkRpsClient:
    options = {"timeout": 2.0, "retry": RetryPolicy(attempts=3, base_delay=0.01),
               "sleep": no_sleep, "rate_per_second": 1000.0}
    options.update(kwargs)
    return YealinkRpsClient("yealink", AK, SK, base_url=fake.url, **options)


@pytest.fixture
def client(fake):
    c = make_client(fake)
    yield c
    c.close()


def raw_post(fake, path: str, body: bytes, **overrides) -> dict:
    """A hand-signed request, to prove the fake is strict."""
    headers = sign_headers(
        "POST", path, (), body, access_key=AK, secret=SK,
        timestamp_ms=overrides.pop("timestamp_ms", int(time.time() * 1000)),
        nonce=overrides.pop("nonce", uuid.uuid4().hex),
    )
    headers.update(overrides)
    headers["Content-Type"] = "application/json"
    return httpx.post(fake.url + path, content=body, headers=headers).json()


# -- the fake is strict ---------------------------------------------------------------------

LIST = "/api/open/v1/device/list"
BODY = b'{"skip":0,"limit":10}'


def test_fake_accepts_a_correctly_signed_request(fake):
    assert raw_post(fake, LIST, BODY)["ret"] >= 0


def test_fake_accepts_the_vendor_documents_worked_examples():
    with FakeYealinkRps({AK: SK}) as fake:
        fake.clock = lambda: 1544008291.631
        post = httpx.post(fake.url + "/api/open/v1/server/list",
                          content=b'{"key":"TestServer","skip":0}', headers={
                              "X-Ca-Key": AK, "X-Ca-Nonce": "b681e77450a04d22aaffc914a3379561",
                              "X-Ca-Timestamp": "1544008291631",
                              "Content-MD5": "SsPhq3/DEuS3yHj3kYOV9w==",
                              "X-Ca-Signature": "JVPj8C4CVKbFJW6A33yZcdSsde7Hfxy9EoJiE0epeKM=",
                              "Content-Type": "application/json;charset=UTF-8"})
        assert post.json()["ret"] >= 0
        fake.clock = lambda: 1544094691.0
        get = httpx.get(fake.url + "/api/open/v1/device/checkMac?mac=001565123123", headers={
            "X-Ca-Key": AK, "X-Ca-Nonce": "9e730a223b48433785494801fb016d39",
            "X-Ca-Timestamp": "1544094691000",
            "X-Ca-Signature": "+speRmYv89rutzPc9u5Ij1JrtnrUw7nhJnqQfD1h5AU="})
        assert get.json() == {"ret": 1, "data": {"existed": False, "self": None}, "error": None}


def test_fake_rejects_a_bad_signature(fake):
    answer = raw_post(fake, LIST, BODY, **{"X-Ca-Signature": "AAAA" + "=" * 40})
    assert answer["ret"] < 0 and answer["error"]["msg"] == "auth.signature.invalid"


def test_fake_rejects_a_stale_timestamp(fake):
    stale = int((time.time() - 16 * 60) * 1000)
    answer = raw_post(fake, LIST, BODY, timestamp_ms=stale)
    assert answer["error"]["msg"] == "auth.timestamp.expired"


def test_fake_rejects_a_reused_nonce(fake):
    assert raw_post(fake, LIST, BODY, nonce="once")["ret"] >= 0
    answer = raw_post(fake, LIST, BODY, nonce="once")
    assert answer["error"]["msg"] == "auth.nonce.replayed"


def test_fake_rejects_a_body_that_does_not_match_content_md5(fake):
    answer = raw_post(fake, LIST, BODY, **{"Content-MD5": content_md5(b"{}")})
    assert answer["error"]["msg"] == "auth.contentmd5.invalid"


def test_fake_rejects_an_unknown_key(fake):
    client = YealinkRpsClient("yealink", "nobody", SK, base_url=fake.url, sleep=no_sleep)
    with pytest.raises(RedirectError, match="authentication refused") as caught:
        client.lookup([MAC1])
    assert not caught.value.transient and not caught.value.conflict


# -- behaviour ------------------------------------------------------------------------------


def test_register_lookup_update_deregister(fake, client):
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}

    client.register(reg(MAC1))
    device = fake.device(MAC1)
    assert device["uniqueServerUrl"] == URL1
    assert fake.servers[device["serverId"]]["serverName"] == "provctl"
    assert fake.servers[device["serverId"]]["url"] == "https://prov.example.net/"  # no token
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "us", URL1)}

    client.update(reg(MAC1, URL1B))
    assert fake.effective_url(MAC1) == URL1B

    client.deregister(MAC1)
    assert fake.device(MAC1) is None
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}


def test_one_server_object_is_shared_and_each_device_keeps_its_own_url(fake, client):
    client.register(reg(MAC1, URL1))
    client.register(reg(MAC2, URL1B))
    assert len(fake.servers) == 1
    assert fake.effective_url(MAC1) == URL1 and fake.effective_url(MAC2) == URL1B
    # a second client (a later run) finds the server instead of creating another
    again = make_client(fake)
    again.register(reg(MAC3))
    assert len(fake.servers) == 1


def test_register_of_an_own_mac_edits_it(fake, client):
    client.register(reg(MAC1, URL1))
    client.register(reg(MAC1, URL1B))  # device.mac.existed -> device/edit
    assert fake.effective_url(MAC1) == URL1B
    assert len([d for d in fake.devices.values() if d["mac"] == MAC1]) == 1


def test_another_accounts_mac_is_a_conflict_and_nothing_changes(fake, client):
    other = fake.account_of("other-key")
    fake.seed_device(MAC1, "https://elsewhere.example/", other)
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "other")}
    for attempt in (reg(MAC1), reg(MAC1, steal=True)):
        with pytest.raises(RedirectError) as caught:
            client.register(attempt)
        assert caught.value.conflict and not caught.value.transient
    held = fake.device(MAC1)
    assert held["account"] == other and held["uniqueServerUrl"] == "https://elsewhere.example/"
    client.deregister(MAC1)  # not ours: nothing to do, nothing touched
    assert fake.device(MAC1)["account"] == other


def test_lookup_many_uses_the_paged_listing(fake):
    client = make_client(fake, page_size=7)
    account = fake.account_of(AK)
    macs = [f"0015650000{i:02x}" for i in range(20)]
    for mac in macs:
        fake.seed_device(mac, f"https://prov.example.net/{mac}/", account)
    fake.seed_device("001565ffff01", "https://x.example/", fake.account_of("other-key"))
    found = client.lookup([*macs, "001565ffff01", "001565ffff02"])
    assert all(found[m] == Remote(m, "us", f"https://prov.example.net/{m}/") for m in macs)
    assert found["001565ffff01"].holder == "other"
    assert found["001565ffff02"].holder == "nobody"
    assert fake.count("POST", "device/list") == 3  # 7 + 7 + 6
    assert sorted(client.list_devices()) == macs


def test_throttling_is_survived(fake, client):
    fake.throttle_next(2)  # in-band: ret -1, errorCode 900429
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1


def test_http_429_is_survived(fake, client):
    fake.fail_next(2, status=429)
    assert client.lookup([MAC1])[MAC1].holder == "nobody"


def test_persistent_500_is_a_transient_error(fake, client):
    fake.fail_next(10, status=500)
    with pytest.raises(RedirectError) as caught:
        client.lookup([MAC1])
    assert caught.value.transient and "500" in str(caught.value)
    assert fake.count() == 3  # bounded attempts


def test_a_slow_answer_times_out_and_is_retried(fake):
    client = make_client(fake, timeout=0.2)
    fake.slow_next(1, delay=0.5)
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1


def test_timeouts_on_every_attempt_are_transient(fake):
    client = make_client(fake, timeout=0.1, retry=RetryPolicy(attempts=2, base_delay=0.01))
    fake.slow_next(2, delay=0.3)
    with pytest.raises(RedirectError, match="timed out") as caught:
        client.lookup([MAC1])
    assert caught.value.transient


def test_credentials_never_reach_the_error_text(fake):
    client = YealinkRpsClient("yealink", AK, "wrong-secret", base_url=fake.url, sleep=no_sleep)
    with pytest.raises(RedirectError) as caught:
        client.register(reg(MAC1))
    assert AK not in str(caught.value) and "wrong-secret" not in str(caught.value)
