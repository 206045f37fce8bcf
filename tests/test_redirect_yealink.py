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


def test_lookup_many_uses_the_paged_listing_and_no_check_per_mac(fake):
    client = make_client(fake, page_size=7)
    account = fake.account_of(AK)
    macs = [f"0015650000{i:02x}" for i in range(20)]
    for mac in macs:
        fake.seed_device(mac, f"https://prov.example.net/{mac}/", account)
    fake.seed_device("001565ffff01", "https://x.example/", fake.account_of("other-key"))
    found = client.lookup([*macs, "001565ffff01", "001565ffff02"])
    assert all(found[m] == Remote(m, "us", f"https://prov.example.net/{m}/") for m in macs)
    # Not ours: whether another enterprise holds it is learnt by adding it (never taken).
    assert found["001565ffff01"].holder == "nobody"
    assert found["001565ffff02"].holder == "nobody"
    assert fake.count("POST", "device/list") == 3  # 7 + 7 + 6
    assert fake.count("GET", "checkMac") == 0
    outcomes = client.register_many([reg("001565ffff01"), reg("001565ffff02")])
    assert outcomes["001565ffff01"].conflict and outcomes["001565ffff02"] is None
    assert fake.device("001565ffff01")["uniqueServerUrl"] == "https://x.example/"
    assert sorted(client.list_devices()) == [*macs, "001565ffff02"]


# -- batches --------------------------------------------------------------------------------


def many(n: int, prefix: str = "00156510") -> list[str]:
    return [f"{prefix}{i:04x}" for i in range(n)]


def test_first_registration_sharing_a_url_takes_one_request_per_hundred_macs(fake, client):
    macs = many(250)
    assert set(client.lookup(macs).values()) == {Remote(m, "nobody") for m in macs}
    mark = fake.mark()
    outcomes = client.register_many([reg(m) for m in macs])
    assert outcomes == dict.fromkeys(macs)
    sent = [r.path.rsplit("/v1/", 1)[1] for r in fake.since(mark)]
    assert sent.count("device/add") == 3  # 100 + 100 + 50
    assert len(sent) == 5  # + server/list, server/add
    assert all(fake.effective_url(m) == URL1 for m in macs)
    assert len(sent) + 3 <= len(macs) / 10  # with the lookup's 3 pages: ≤ 1 per 10 MACs


def test_registrations_with_different_urls_are_grouped_by_url(fake, client):
    regs = [reg(m, URL1 if i % 2 else URL1B) for i, m in enumerate(many(40))]
    mark = fake.mark()
    assert set(client.register_many(regs).values()) == {None}
    assert [r.path for r in fake.since(mark)].count("/api/open/v1/device/add") == 2
    assert all(fake.effective_url(r.mac) == r.url for r in regs)


@pytest.mark.parametrize("mode", ["atomic", "partial"])
def test_a_batch_with_a_mac_of_another_enterprise_registers_the_others(mode):
    """The batch's answer names the foreign MAC: a conflict for that MAC only; an own MAC
    with an old URL is edited; the rest is registered; the foreign MAC is never touched."""
    with FakeYealinkRps({AK: SK, "other-key": "other-secret"}, batch=mode) as fake:
        client = make_client(fake)
        macs = many(30)
        foreign, own = macs[7], macs[19]
        fake.seed_device(foreign, "https://elsewhere.example/", fake.account_of("other-key"))
        fake.seed_device(own, "https://prov.example.net/old/", fake.account_of(AK))
        outcomes = client.register_many([reg(m, steal=(m == foreign)) for m in macs])
        assert outcomes[foreign].conflict and not outcomes[foreign].transient
        assert "steal is not possible" in str(outcomes[foreign])
        assert {m: e for m, e in outcomes.items() if m != foreign} == dict.fromkeys(
            m for m in macs if m != foreign)
        held = fake.device(foreign)
        assert held["account"] == fake.account_of("other-key")
        assert held["uniqueServerUrl"] == "https://elsewhere.example/"
        assert all(fake.effective_url(m) == URL1 for m in macs if m != foreign)
        assert fake.count("POST", "device/edit") == 1  # the own MAC only
        assert fake.count("POST", "device/add") <= 4


def test_a_mac_our_account_registered_since_the_lookup_is_left_alone(fake, client):
    """Between lookup and apply someone (another environment of the fleet, or a person in the
    portal) registered the MAC at our own account with another URL: the plan never judged that
    registration, so the add does not overwrite it."""
    macs = many(10)
    client.lookup(macs)
    elsewhere = "https://staging.prov.example.net/t0k3n/"
    fake.seed_device(macs[3], elsewhere, fake.account_of(AK))
    outcomes = client.register_many([reg(m) for m in macs])
    assert "left alone" in str(outcomes[macs[3]]) and not outcomes[macs[3]].conflict
    assert fake.effective_url(macs[3]) == elsewhere and fake.count("POST", "device/edit") == 0
    assert all(outcomes[m] is None and fake.effective_url(m) == URL1 for m in macs if m != macs[3])


def test_a_batch_larger_than_the_service_takes_is_split(fake):
    client = make_client(fake, batch_size=250)  # the fake takes 100 per request
    outcomes = client.register_many([reg(m) for m in many(250)])
    assert outcomes == dict.fromkeys(many(250))
    assert fake.count("POST", "device/add") == 1 + 2 + 4  # refused, halves refused, quarters
    assert all(fake.effective_url(m) == URL1 for m in many(250))


def test_a_batch_error_that_names_no_mac_is_split_until_it_does(fake, client):
    foreign = many(16)[5]
    fake.seed_device(foreign, "https://elsewhere.example/", fake.account_of("other-key"))
    original = fake.op_device_add

    def anonymous(account, body):  # the same refusal, without saying which MAC
        reply = original(account, body)
        if reply.body["ret"] < 0:
            reply.body["data"] = None
        return reply

    fake.op_device_add = anonymous
    outcomes = client.register_many([reg(m) for m in many(16)])
    assert outcomes[foreign].conflict
    assert [m for m, e in outcomes.items() if e is None] == [m for m in many(16) if m != foreign]
    assert fake.device(foreign)["uniqueServerUrl"] == "https://elsewhere.example/"
    assert fake.count("POST", "device/add") <= 2 * 4 + 1  # log2(16) levels of halving


def test_a_success_that_lists_fewer_devices_is_confirmed_one_by_one(fake, client):
    foreign = many(6)[2]
    fake.seed_device(foreign, "https://elsewhere.example/", fake.account_of("other-key"))
    original = fake.op_device_add

    def terse(account, body):  # adds what it can, says nothing of the rest [a shape seen nowhere]
        good = [m for m in body["macs"] if m not in fake.devices]
        reply = original(account, {**body, "macs": good}) if good else None
        return reply if reply is not None else original(account, body)

    fake.op_device_add = terse
    outcomes = client.register_many([reg(m) for m in many(6)])
    assert outcomes[foreign].conflict
    assert all(outcomes[m] is None and fake.effective_url(m) == URL1
               for m in many(6) if m != foreign)
    assert fake.device(foreign)["uniqueServerUrl"] == "https://elsewhere.example/"


def test_a_transient_failure_fails_the_batch_and_nothing_else(fake, client):
    client.register_many([reg(MAC1)])  # the server object exists
    fake.fail_next(3, status=503)  # every attempt of the next request
    outcomes = client.register_many([reg(m) for m in many(5)])
    assert all(e is not None and e.transient for e in outcomes.values())
    assert all(fake.device(m) is None for m in many(5))
    assert client.register_many([reg(m) for m in many(5)]) == dict.fromkeys(many(5))


def test_a_service_that_stays_down_is_not_asked_once_per_url(fake, client):
    client.register_many([reg(MAC1)])  # the server object exists
    fake.fail_next(1000, status=503)
    regs = [reg(m, f"https://prov.example.net/{m}/") for m in many(20)]
    mark = fake.mark()
    outcomes = client.register_many(regs)
    assert all(e is not None and e.transient for e in outcomes.values())
    assert len(fake.since(mark)) == 3 * 3  # three URLs' requests, 3 attempts each; then stop
    assert "not sent: 3 transient failures in a row" in str(outcomes[regs[-1].mac])


def test_updates_and_deregistrations_reuse_what_lookup_saw(fake, client):
    macs = many(150)
    client.register_many([reg(m) for m in macs])
    fake.seed_device("001565ffff01", "https://x.example/", fake.account_of("other-key"))
    client.lookup([*macs, "001565ffff01"])
    mark = fake.mark()
    changed = macs[:5]
    assert client.update_many([reg(m, URL1B) for m in changed]) == dict.fromkeys(changed)
    assert client.update_many([reg(macs[9])]) == {macs[9]: None}  # URL already right
    gone = macs[100:]
    fake.devices.pop(gone[3])  # deleted meanwhile by someone in the portal
    outcomes = client.deregister_many([*gone, "001565ffff01"])
    assert outcomes == dict.fromkeys([*gone, "001565ffff01"])
    sent = [r.path.rsplit("/v1/", 1)[1] for r in fake.since(mark)]
    assert sent.count("device/edit") == 5 and "device/list" not in sent
    # one batch named the vanished id; the rest went again: 2 requests, not 50
    assert sent.count("device/delete") == 2
    assert all(fake.effective_url(m) == URL1B for m in changed)
    assert all(fake.device(m) is None for m in gone)
    assert fake.device("001565ffff01")["account"] == fake.account_of("other-key")


def test_deleting_in_batches_never_touches_another_enterprises_device(fake, client):
    macs = many(12)
    client.register_many([reg(m) for m in macs])
    client.lookup(macs)
    # Between lookup and apply the device changed hands (another enterprise took it over).
    other = fake.account_of("other-key")
    fake.devices[macs[4]]["account"] = other
    outcomes = client.deregister_many(macs)
    assert outcomes[macs[4]].conflict
    assert fake.device(macs[4])["account"] == other
    assert [m for m in macs if fake.device(m) is not None] == [macs[4]]


def test_a_server_side_rate_limit_is_honoured(fake):
    """A gateway that allows 50 requests/s (bursts of 3) and a client that may send 60/s in
    bursts of 60: the 429 + Retry-After is waited out, the client slows down, and every
    registration lands exactly once."""
    client = make_client(fake, sleep=time.sleep, rate_per_second=60.0,
                         retry=RetryPolicy(attempts=6, base_delay=0.01))
    fake.rate_limit(50, burst=3)
    regs = [reg(m, f"https://prov.example.net/{m}/") for m in many(12)]
    limits: list[float] = []  # what a progress line would show, request by request
    client.stats.listener = lambda snapshot: limits.append(snapshot.limit)
    started = time.monotonic()
    assert client.register_many(regs) == dict.fromkeys(r.mac for r in regs)
    refused = sum(1 for r in fake.requests if r.status == 429)
    assert refused >= 1 and client.stats.snapshot().throttled == refused
    assert min(limits) <= 30 and limits[-1] > min(limits)  # halved, then won back
    assert all(fake.effective_url(r.mac) == r.url for r in regs)
    assert time.monotonic() - started >= 1.0  # the Retry-After (1 s) was waited


def test_throttling_is_survived(fake, client):
    fake.throttle_next(2)  # in-band: ret -1, errorCode 900429
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1


def test_http_429_is_survived(fake, client):
    fake.fail_next(2, status=429)
    assert client.lookup([MAC1])[MAC1].holder == "nobody"


def test_http_429_retry_after_is_waited_as_asked(fake):
    slept: list[float] = []
    client = make_client(fake, sleep=slept.append)
    fake.fail_next(1, status=429, headers={"Retry-After": "2"})
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1
    assert max(slept) == pytest.approx(2.0, abs=0.05)
    assert client.stats.snapshot().throttled == 1


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


# -- through the reconciler: observe once, batch, no-op -------------------------------------


def _fleet_with_many(fleet, fake, n: int, tokens: str = "per-device") -> list[str]:
    from fleet_fixtures import yealink_fleet

    return yealink_fleet(fleet, "kind: yealink-rps, access_key: env:YEALINK_AK, secret: "
                         f"env:YEALINK_SK, base_url: '{fake.url}', rate_per_second: 1000",
                         tokens, many(n, "00156520"))


@pytest.mark.parametrize("tokens, adds", [("per-device", 31), ("per-customer", 2)])
def test_apply_observes_once_batches_and_a_no_op_only_lists(fleet, monkeypatch, tokens, adds):
    from fleet_fixtures import run

    monkeypatch.setenv("YEALINK_AK", AK)
    monkeypatch.setenv("YEALINK_SK", SK)
    with FakeYealinkRps({AK: SK, "other-key": "other-secret"}) as fake:
        added = _fleet_with_many(fleet, fake, 30, tokens)
        assert run(fleet, "apply") == 2
        sent = [r.path.rsplit("/v1/", 1)[1] for r in fake.requests]
        # one listing (the observation), the server object, then the adds: nothing per MAC
        # beyond the add itself — no checkMac, no second device/list before a write
        assert sent.count("device/list") == 1 and "device/checkMac" not in sent
        assert sent.count("device/add") == adds and len(sent) == adds + 3
        assert all(fake.effective_url(m) for m in [*added, "001565aabb01"])
        mark = fake.mark()
        assert run(fleet, "apply") == 0
        assert [r.path for r in fake.since(mark)] == ["/api/open/v1/device/list"]


def test_apply_with_a_foreign_mac_in_the_batch(fleet, monkeypatch, capsys):
    """One MAC held by another enterprise: a conflict for it only (exit 3), every other one
    registered, the foreign one untouched — and the next run does not try it again."""
    from fleet_fixtures import run

    monkeypatch.setenv("YEALINK_AK", AK)
    monkeypatch.setenv("YEALINK_SK", SK)
    with FakeYealinkRps({AK: SK, "other-key": "other-secret"}) as fake:
        added = _fleet_with_many(fleet, fake, 30, "per-customer")
        foreign = added[11]
        fake.seed_device(foreign, "https://elsewhere.example/", fake.account_of("other-key"))
        assert run(fleet, "apply") == 3
        assert "held by another account" in capsys.readouterr().out
        assert fake.device(foreign)["uniqueServerUrl"] == "https://elsewhere.example/"
        assert fake.device(foreign)["account"] == fake.account_of("other-key")
        assert all(fake.effective_url(m) for m in added if m != foreign)
        assert fake.count("POST", "device/add") == 3  # acme's URL, the pool's, the pool's again
        mark = fake.mark()
        assert run(fleet, "plan") == 3  # still reported as a conflict ...
        assert [r.path for r in fake.since(mark)] == ["/api/open/v1/device/list"]  # ... free
