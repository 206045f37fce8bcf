"""Yealink YMCS v2: the client against the faithful fake over loopback HTTP, and through
`provctl apply`."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from fakes import FakeYmcs

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.clients.ymcs import YmcsClient, item_code
from reconciler.redirect.http import RetryPolicy

pytestmark = pytest.mark.integration

CID, SECRET = "client-1", "secret-1"
MAC1, MAC2 = "001565aabb01", "001565aabb02"
URL1, URL1B = "https://prov.example.net/t0k3n1/", "https://prov.example.net/t0k3n1-rotated/"
# short timeouts, 3 quick attempts, no waiting, no client-side limit
QUICK = {"timeout": 2.0, "retry": RetryPolicy(attempts=3, base_delay=0.01),
         "sleep": lambda _: None, "rate_per_second": 1000.0}


def reg(mac: str, url: str | None = None, steal: bool = False) -> DesiredRegistration:
    return DesiredRegistration(mac=mac, service="ymcs", url=url or f"https://prov.example.net/"
                               f"{mac}/", model="yealink/T46U", steal=steal)


def many(n: int, prefix: str = "00156530") -> list[str]:
    return [f"{prefix}{i:04x}" for i in range(n)]


def make_client(fake: FakeYmcs, secret: str = SECRET, **kwargs) -> YmcsClient:
    return YmcsClient("ymcs", CID, secret, base_url=fake.url, **{**QUICK, **kwargs})


@pytest.fixture
def fake():
    server = FakeYmcs({CID: SECRET, "other-client": "other-secret"}).start()
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    c = make_client(fake)
    yield c
    c.close()


def other(fake: FakeYmcs) -> str:
    return fake.account_of("other-client")


def paths(fake: FakeYmcs, mark: int = 0) -> list[str]:
    return [r.path for r in fake.since(mark)]


# -- the fake is strict ---------------------------------------------------------------------


def stamp(nonce: str | None = None) -> dict[str, str]:
    return {"timestamp": str(int(time.time() * 1000)), "nonce": nonce or f"{time.time_ns():x}"}


def token(fake: FakeYmcs, secret: str = SECRET, grant: str = "client_credentials"):
    basic = base64.b64encode(f"{CID}:{secret}".encode()).decode()
    return httpx.post(fake.url + "/v2/token", json={"grant_type": grant},
                      headers={"Authorization": "Basic " + basic, **stamp()})


def test_fake_token_endpoint_checks_basic_credentials_and_grant(fake):
    assert token(fake, secret="wrong").status_code == 401
    refused = token(fake, grant="password")
    assert refused.status_code == 400 and refused.json()["code"] == "70011"
    good = token(fake).json()
    assert good["token_type"] == "Bearer" and good["expires_in"] == 7200


def test_fake_requires_bearer_timestamp_and_a_fresh_nonce(fake):
    bearer = {"Authorization": "Bearer " + token(fake).json()["access_token"]}
    url = fake.url + "/v2/rps/listDevices"
    body = {"skip": 0, "limit": 10}
    missing = httpx.post(url, json=body, headers=bearer)
    assert missing.status_code == 400 and missing.json()["code"] == "900400"
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer nope",
                                               **stamp()}).status_code == 401
    assert httpx.post(url, json=body, headers={**bearer, **stamp("n-1")}).status_code == 200
    replay = httpx.post(url, json=body, headers={**bearer, **stamp("n-1")})
    assert replay.status_code == 400 and "nonce" in replay.json()["message"]
    fake.expire_tokens()
    expired = httpx.post(url, json=body, headers={**bearer, **stamp()})
    assert expired.status_code == 401 and expired.json()["code"] == "900401"


def test_fake_batch_rules(fake):
    bearer = {"Authorization": "Bearer " + token(fake).json()["access_token"]}
    add = fake.url + "/v2/rps/addDevicesByMac"
    obj = httpx.post(add, json={"mac": MAC1}, headers={**bearer, **stamp()})
    assert obj.status_code == 412
    big = httpx.post(add, json=[{"mac": m} for m in many(101)], headers={**bearer, **stamp()})
    assert big.status_code == 400 and big.json()["code"] == "800006"
    unknown = httpx.patch(fake.url + "/v2/rps/devices/nope", json={"remark": "x"},
                          headers={**bearer, **stamp()})
    assert unknown.status_code == 400 and unknown.json()["code"] == "900400"


@pytest.mark.parametrize("info, code", [
    ("800004", "800004"), ("Device already managed by another organization", "800004"),
    ("Resource already exists", "800003"), ("error 900404: Resource not found", "900404"),
    ("device.mac.invalid", "")])
def test_item_codes_from_codes_and_messages(info, code):
    assert item_code(info) == code


# -- authentication -------------------------------------------------------------------------


def test_one_token_serves_many_calls_and_an_expired_one_is_renewed_once(fake, client):
    client.lookup(many(10))
    client.register_many([reg(m) for m in many(10)])
    assert fake.count("POST", "/v2/token") == 1
    fake.expire_tokens()  # the service ends the token early (revoked, or its clock)
    mark = fake.mark()
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}
    assert paths(fake, mark) == ["/v2/rps/listDevices", "/v2/token", "/v2/rps/listDevices"]
    assert [r.status for r in fake.since(mark)] == [401, 200, 200]


def test_a_token_is_renewed_before_it_expires(fake):
    clock = [time.time()]
    fake.clock = lambda: clock[0]
    c = make_client(fake, clock=lambda: clock[0])
    c.lookup([MAC1])
    clock[0] += 7200 - 30  # within a minute of expiry: renewed, never sent stale
    mark = fake.mark()
    c.lookup([MAC1])
    assert [(r.path, r.status) for r in fake.since(mark)] == [
        ("/v2/token", 200), ("/v2/rps/listDevices", 200)]


def test_wrong_credentials_are_a_permanent_error_without_the_secret(fake):
    c = make_client(fake, secret="wrong-secret")
    with pytest.raises(RedirectError, match="authentication refused") as caught:
        c.lookup([MAC1])
    assert not caught.value.transient and "wrong-secret" not in str(caught.value)
    assert fake.count("POST", "/v2/token") == 1  # not retried


# -- registration ---------------------------------------------------------------------------


def test_register_lookup_update_deregister(fake, client):
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}
    client.register(reg(MAC1, URL1))
    assert fake.effective_url(MAC1) == URL1
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "us", URL1)}
    client.update(reg(MAC1, URL1B))
    assert fake.effective_url(MAC1) == URL1B and fake.count("PATCH") == 1
    client.deregister(MAC1)
    assert fake.device(MAC1) is None
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}


def test_first_registration_with_a_url_per_device_is_one_request_per_hundred(fake, client):
    macs = many(250)
    client.lookup(macs)
    mark = fake.mark()
    assert client.register_many([reg(m) for m in macs]) == dict.fromkeys(macs)
    assert paths(fake, mark) == ["/v2/rps/addDevicesByMac"] * 3  # 100 + 100 + 50
    assert all(fake.effective_url(m) == f"https://prov.example.net/{m}/" for m in macs)
    assert len(fake.requests) <= len(macs) / 10  # token, listing, adds: ≤ 1 per 10 MACs


def test_a_batch_larger_than_the_account_takes_is_split(fake):
    fake.max_batch = 40  # this account takes fewer than the documented 100
    c = make_client(fake)
    assert c.register_many([reg(m) for m in many(100)]) == dict.fromkeys(many(100))
    adds = [r.status for r in fake.requests if r.path.endswith("addDevicesByMac")]
    assert adds.count(400) == 3 and adds.count(200) == 4  # 100 → 50 → 25: 4 accepted
    assert all(fake.effective_url(m) for m in many(100))


@pytest.mark.parametrize("error_info", ["code", "message"])
def test_another_organisations_mac_is_a_conflict_and_never_taken(error_info):
    with FakeYmcs({CID: SECRET, "other-client": "other-secret"},
                  error_info=error_info) as fake:
        c = make_client(fake)
        macs = many(30)
        foreign = macs[7]
        held = dict(fake.seed_device(foreign, "https://elsewhere.example/", other(fake)))
        assert c.lookup(macs)[foreign] == Remote(foreign, "nobody")  # invisible to us
        outcomes = c.register_many([reg(m, steal=(m == foreign)) for m in macs])
        refused = {m: e for m, e in outcomes.items() if e is not None}
        assert list(refused) == [foreign]
        assert refused[foreign].conflict and not refused[foreign].transient
        assert "steal is not possible" in str(refused[foreign])
        assert fake.device(foreign) == held  # never taken, never changed
        assert fake.count("POST", "addDevicesByMac") == 1 and fake.count("PATCH") == 0
        c.deregister(foreign)  # not ours: nothing sent, nothing touched
        assert fake.count("POST", "delDevices") == 0 and fake.device(foreign) == held


def test_an_own_mac_registered_since_the_lookup_is_left_alone(fake, client):
    macs = many(10)
    client.lookup(macs)
    staging = "https://staging.prov.example.net/t0k3n/"
    fake.seed_device(macs[3], staging, fake.account_of(CID))
    fake.seed_device(macs[4], reg(macs[4]).url, fake.account_of(CID))  # the same URL
    outcomes = client.register_many([reg(m) for m in macs])
    assert "left alone" in str(outcomes[macs[3]]) and not outcomes[macs[3]].conflict
    assert outcomes[macs[4]] is None
    assert fake.effective_url(macs[3]) == staging and fake.count("PATCH") == 0


def test_a_mac_registered_by_this_client_is_read_back_before_it_is_changed(fake, client):
    client.lookup([MAC1, MAC2])
    client.register(reg(MAC1, URL1))  # the add answers no id
    client.update(reg(MAC1, URL1B))
    assert fake.effective_url(MAC1) == URL1B
    client.deregister(MAC1)
    assert fake.device(MAC1) is None


def test_register_without_a_lookup_edits_an_own_mac(fake, client):
    fake.seed_device(MAC1, "https://prov.example.net/old/", fake.account_of(CID))
    client.register(reg(MAC1, URL1))  # 800003 → read back → PATCH
    assert fake.effective_url(MAC1) == URL1 and fake.count("PATCH") == 1


def test_add_by_mac_not_enabled_is_one_clear_error_and_no_loop(fake, client):
    fake.disable_add_by_mac(fake.account_of(CID))
    macs = many(350)
    client.lookup(macs)
    mark = fake.mark()
    outcomes = client.register_many([reg(m) for m in macs])
    assert paths(fake, mark) == ["/v2/rps/addDevicesByMac"]  # once, not per batch or MAC
    errors = set(map(str, outcomes.values()))
    assert len(errors) == 1
    (message,) = errors
    assert message.startswith("redirect ymcs: ") and "addDevicesByMac" in message
    assert "Yealink must enable" in message and "403" in message
    assert not any(e.transient or e.conflict for e in outcomes.values())
    assert client.register_many([reg(MAC1)])[MAC1] is outcomes[macs[0]]  # still not sent
    assert len(fake.since(mark)) == 1 and not fake.devices


# -- edits and deletions --------------------------------------------------------------------


def test_edits_and_deletions_reuse_the_lookup_and_batch_deletions(fake, client):
    macs = many(150)
    client.register_many([reg(m) for m in macs])
    client.lookup(macs)
    mark = fake.mark()
    changed = macs[:5]
    assert client.update_many([reg(m, URL1B) for m in changed]) == dict.fromkeys(changed)
    assert client.update_many([reg(macs[9])]) == {macs[9]: None}  # already right: no write
    gone = macs[20:]
    fake.devices.pop(gone[3])  # deleted meanwhile by someone in the portal
    assert client.deregister_many(gone) == dict.fromkeys(gone)
    sent = paths(fake, mark)
    assert sent.count("/v2/rps/listDevices") == 0
    assert sum(p.startswith("/v2/rps/devices/") for p in sent) == 5
    assert sent.count("/v2/rps/delDevices") == 2  # 130 ids: 100 + 30
    assert all(fake.effective_url(m) == URL1B for m in changed)
    assert all(fake.device(m) is None for m in gone)
    assert all(fake.device(m) for m in macs[5:20])


def test_an_edit_of_a_device_deleted_since_the_lookup_adds_it_again(fake, client):
    client.register(reg(MAC1, URL1))
    client.lookup([MAC1, MAC2])
    fake.devices.pop(MAC1)  # its id is unknown now: 400 / 900400
    assert client.update_many([reg(MAC1, URL1B)]) == {MAC1: None}
    assert fake.effective_url(MAC1) == URL1B


def test_a_device_that_changed_hands_is_never_deleted(fake, client):
    macs = many(12)
    client.register_many([reg(m) for m in macs])
    client.lookup(macs)
    fake.devices[macs[4]]["account"] = other(fake)  # taken over between lookup and apply
    outcomes = client.deregister_many(macs)
    assert outcomes[macs[4]].conflict
    assert [m for m in macs if fake.device(m) is not None] == [macs[4]]


# -- throttling and failures ----------------------------------------------------------------


def test_429_with_retry_after_is_waited_as_asked(fake):
    slept: list[float] = []
    c = make_client(fake, sleep=slept.append)
    fake.throttle_next(1, retry_after="2")  # 429 {code: 900429} + Retry-After
    c.register(reg(MAC1, URL1))
    assert fake.effective_url(MAC1) == URL1
    assert max(slept) == pytest.approx(2.0, abs=0.05)
    assert c.stats.snapshot().throttled == 1


def test_900429_under_another_status_is_throttling_too(fake, client):
    original = fake.add_by_mac
    calls = []

    def busy_then_ok(enterprise, body):
        calls.append(1)
        if len(calls) == 1:
            from fakes.ymcs import fail
            return fail(400, "900429")  # in-band code, not HTTP 429
        return original(enterprise, body)

    fake.add_by_mac = busy_then_ok
    assert client.register_many([reg(m) for m in many(3)]) == dict.fromkeys(many(3))
    assert client.stats.snapshot().throttled == 1 and len(calls) == 2


def test_a_server_side_rate_limit_is_honoured(fake):
    c = make_client(fake, sleep=time.sleep, rate_per_second=60.0,
                    retry=RetryPolicy(attempts=6, base_delay=0.01))
    fake.rate_limit(50, burst=2)
    macs = many(400)
    started = time.monotonic()
    c.lookup(macs)
    assert c.register_many([reg(m) for m in macs]) == dict.fromkeys(macs)
    refused = sum(1 for r in fake.requests if r.status == 429)
    assert refused >= 1 and c.stats.snapshot().throttled == refused
    assert all(fake.effective_url(m) for m in macs)
    assert time.monotonic() - started >= 1.0  # the Retry-After (1 s) was waited


def test_persistent_500_is_a_clear_transient_error_and_the_breaker_stops(fake, client):
    client.lookup(many(500))
    fake.fail_next(1000, status=500)
    mark = fake.mark()
    outcomes = client.register_many([reg(m) for m in many(500)])
    assert all(e is not None and e.transient for e in outcomes.values())
    assert "HTTP 500 after 3 attempts" in str(outcomes[many(500)[0]])
    assert str(outcomes[many(500)[0]]).startswith("redirect ymcs: POST /v2/rps/addDevicesByMac")
    assert len(fake.since(mark)) == 3  # one batch, 3 attempts: 100 transient failures in a
    # row trip the breaker (base.Breaker counts MACs), the other 400 MACs are not sent
    assert "not sent" in str(outcomes[many(500)[-1]])
    assert not fake.devices


# -- through the reconciler -----------------------------------------------------------------


def _fleet(fleet, fake, n: int, tokens: str = "per-device") -> list[str]:
    from fleet_fixtures import yealink_fleet

    return yealink_fleet(fleet, "kind: yealink-ymcs, client_id: env:YMCS_ID, client_secret: "
                         f"env:YMCS_SECRET, base_url: '{fake.url}', rate_per_second: 1000",
                         tokens, many(n, "00156540"))


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("YMCS_ID", CID)
    monkeypatch.setenv("YMCS_SECRET", SECRET)


def test_apply_registers_in_batches_and_a_no_op_only_lists(fleet, fake, creds, capsys):
    from fleet_fixtures import run

    added = _fleet(fleet, fake, 250)
    foreign = added[17]
    fake.seed_device(foreign, "https://elsewhere.example/", other(fake))
    assert run(fleet, "apply") == 3  # published and registered; one conflict
    out = capsys.readouterr().out
    assert "held by another account" in out and SECRET not in out
    sent = paths(fake)
    assert sent.count("/v2/rps/addDevicesByMac") == 3  # 251 MACs, one URL each
    assert sent.count("/v2/rps/listDevices") == 1 and sent.count("/v2/token") == 1
    assert len(sent) == 5
    assert all(fake.effective_url(m) for m in [*added, "001565aabb01"])
    assert fake.device(foreign)["account"] == other(fake)
    mark = fake.mark()
    assert run(fleet, "apply") == 3  # still the conflict, nothing sent again for it
    assert paths(fake, mark) == ["/v2/token", "/v2/rps/listDevices", "/v2/rps/listDevices",
                                 "/v2/rps/listDevices"]


def test_a_failed_run_records_what_it_applied(fleet, fake, creds, capsys):
    """The service answers 500 from the second batch on: the first batch is registered and
    recorded, the rest fails transient with one clear message (exit 1) and is retried — and
    only the rest — on the next run."""
    from fleet_fixtures import run

    from reconciler.redirect.state import load_records, records_path

    added = _fleet(fleet, fake, 199)  # + the fleet's own 001565aabb01: 200, two batches
    original = fake.add_by_mac
    batches = []

    def second_fails(enterprise, body):
        batches.append(len(body))
        if len(batches) > 1:
            from fakes.ymcs import fail
            return fail(500, "900500", "Server busy")
        return original(enterprise, body)

    fake.add_by_mac = second_fails
    assert run(fleet, "apply") == 1
    out = capsys.readouterr().out
    assert "redirect: 100 change(s) applied, 100 failed" in out
    assert "HTTP 500 after 5 attempts" in out and "redirect yealink: POST /v2/rps/addDevices" in out
    records = load_records(records_path(fleet / ".provctl"))
    registered = sorted(m for m, r in records.items() if r.registered_at)
    assert len(registered) == 100 and all(fake.effective_url(m) for m in registered)
    assert not any(fake.device(m) for m in [*added, "001565aabb01"] if m not in registered)
    fake.add_by_mac = original
    mark = fake.mark()
    assert run(fleet, "apply") == 2
    assert paths(fake, mark).count("/v2/rps/addDevicesByMac") == 1  # the 100 left, once
    assert all(fake.effective_url(m) for m in [*added, "001565aabb01"])


def test_apply_with_add_by_mac_disabled_names_the_service_once(fleet, fake, creds, capsys):
    from fleet_fixtures import run

    _fleet(fleet, fake, 150)
    fake.disable_add_by_mac(fake.account_of(CID))
    assert run(fleet, "apply") == 1
    out = capsys.readouterr().out
    assert fake.count("POST", "addDevicesByMac") == 1
    assert "redirect yealink: registering by MAC" in out and "Yealink must enable" in out
    assert out.count("Yealink must enable") == 1  # one line, not one per MAC
    assert "register of 151 MACs (001565400000 … 001565aabb01) at yealink" in out


# -- configuration --------------------------------------------------------------------------


def test_the_kind_is_configured_by_region_or_base_url_with_secret_references(tmp_path):
    from pydantic import ValidationError

    from reconciler.desired.schema import YealinkYmcs
    from reconciler.redirect import make_client as build

    secrets = {"env:ID": CID, "env:SECRET": SECRET}.__getitem__
    spec = YealinkYmcs(kind="yealink-ymcs", client_id="env:ID", client_secret="env:SECRET")
    assert (spec.region, spec.batch_size, spec.rate_per_second) == ("eu", 100, 5.0)
    c = build("ymcs", spec, secrets, tmp_path)
    assert isinstance(c, YmcsClient) and c.http.base_url == "https://eu-api.ymcs.yealink.com"
    assert c.batch_size == 100
    us = build("ymcs", spec.model_copy(update={"region": "us", "batch_size": 25}), secrets,
               tmp_path)
    assert us.http.base_url == "https://us-api.ymcs.yealink.com" and us.batch_size == 25
    for bad in ({"batch_size": 101}, {"batch_size": 0}, {"region": "cn"}, {"secret": "x"}):
        with pytest.raises(ValidationError):
            YealinkYmcs(**{"kind": "yealink-ymcs", "client_id": "env:ID",
                           "client_secret": "env:SECRET", **bad})
    for client in (c, us):
        client.close()
