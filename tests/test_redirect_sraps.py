"""Snom SRAPS and Gigaset GRAPE (Hawk): the client against the faithful fake, over loopback."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest
from fakes import FakeSraps
from fakes.sraps import GLOBAL_SERVER_URL, PHONE_SETTING_SERVER, PROVISIONING_SERVER

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.clients.sraps import GRAPE, SNOM, SrapsClient, hawk_header, pick_setting
from reconciler.redirect.http import RetryPolicy, SignInput

pytestmark = pytest.mark.integration

KEY_ID, SECRET = "key-1", "s3cret-1"
MAC1, MAC2 = "000413aabb01", "000413aabb02"
URL1 = "https://prov.example.net/t0k3n1/{mac}.xml"
URL2 = "https://prov.example.net/t0k3n2/{mac}.xml"


def no_sleep(_: float) -> None:
    pass


def reg(mac: str, url: str = URL1, steal: bool = False) -> DesiredRegistration:
    return DesiredRegistration(mac=mac, service="snom", url=url, model="snom/D785", steal=steal)


def make_client(fake: FakeSraps, flavour=SNOM, **kwargs) -> SrapsClient:
    options = {"timeout": 2.0, "retry": RetryPolicy(attempts=3, base_delay=0.01),
               "sleep": no_sleep, "rate_per_second": 1000.0}
    options.update(kwargs)
    return SrapsClient("snom", KEY_ID, SECRET, flavour=flavour,
                       base_url=fake.url + "/api/v1/", **options)


@pytest.fixture
def fake():
    with FakeSraps({KEY_ID: SECRET, "key-2": "s3cret-2"}) as server:
        yield server


@pytest.fixture
def client(fake):
    c = make_client(fake)
    yield c
    c.close()


def raw_get(fake: FakeSraps, path: str, *, ts: int | None = None, nonce: str = "n0nce",
            secret: str = SECRET) -> httpx.Response:
    url = fake.url + path
    parts = urlsplit(url)
    signed = SignInput("GET", "http", "127.0.0.1", fake.port, parts.path, path, (), b"", "")
    header = hawk_header(KEY_ID, secret, signed, int(time.time()) if ts is None else ts, nonce)
    return httpx.get(url, headers={"Authorization": header})


# -- the fake is strict ---------------------------------------------------------------------


def test_fake_accepts_a_correctly_signed_request(fake):
    assert raw_get(fake, f"/api/v1/tokens/{KEY_ID}").status_code == 200


def test_fake_rejects_a_bad_mac(fake):
    answer = raw_get(fake, f"/api/v1/tokens/{KEY_ID}", secret="wrong")
    assert answer.status_code == 401 and 'error="Bad mac"' in answer.headers["www-authenticate"]


def test_fake_rejects_a_stale_timestamp_and_says_its_time(fake):
    answer = raw_get(fake, f"/api/v1/tokens/{KEY_ID}", ts=int(time.time()) - 120)
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert 'error="Stale timestamp"' in challenge and "tsm=" in challenge


def test_fake_rejects_a_reused_nonce(fake):
    assert raw_get(fake, f"/api/v1/tokens/{KEY_ID}", nonce="same").status_code == 200
    answer = raw_get(fake, f"/api/v1/tokens/{KEY_ID}", nonce="same")
    assert answer.status_code == 401 and "Invalid nonce" in answer.headers["www-authenticate"]


def test_fake_rejects_a_wrong_payload_hash(fake):
    url = f"{fake.url}/api/v1/companies/{fake.company_of(KEY_ID)}/endpoints/{MAC1}"
    path = urlsplit(url).path
    body = b'{"mac":"000413aabb01"}'
    signed = SignInput("PUT", "http", "127.0.0.1", fake.port, path, path, (), b"{}",
                       "application/json")  # hash of another body
    header = hawk_header(KEY_ID, SECRET, signed, int(time.time()), "n1")
    answer = httpx.put(url, content=body, headers={"Authorization": header,
                                                   "Content-Type": "application/json"})
    assert answer.status_code == 401 and "Bad payload hash" in answer.headers["www-authenticate"]
    assert fake.endpoint(MAC1) is None


# -- the setting trap -----------------------------------------------------------------------


def test_pick_setting_takes_the_phone_settings_setting_server_not_the_first_match(fake):
    assert pick_setting(fake.settings, SNOM)["uuid"] == PHONE_SETTING_SERVER
    assert pick_setting(fake.settings, GRAPE)["uuid"] == PROVISIONING_SERVER
    first = next(s for s in fake.settings if s["param_name"] == "setting_server")
    assert first["uuid"] == GLOBAL_SERVER_URL  # the trap a naive client falls into


def test_registered_url_is_what_the_phone_gets(fake, client):
    client.register(reg(MAC1))
    endpoint = fake.endpoint(MAC1)
    assert set(endpoint["settings_manager"]) == {PHONE_SETTING_SERVER}
    assert endpoint["autoprovisioning_enabled"] is True
    assert fake.effective_url(MAC1) == URL1


def test_settings_are_read_across_pages(fake):
    fake.max_page_size = 20  # the right setting sits on page 2
    client = make_client(fake)
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1
    assert fake.count("GET", "/settings") >= 3


def test_gigaset_grape_uses_provisioning_server():
    with FakeSraps({KEY_ID: SECRET}, flavour="grape") as grape:
        client = make_client(grape, flavour=GRAPE)
        client.register(reg(MAC1))
        assert set(grape.endpoint(MAC1)["settings_manager"]) == {PROVISIONING_SERVER}
        assert grape.effective_url(MAC1) == URL1
        assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "us", URL1)}


# -- behaviour ------------------------------------------------------------------------------


def test_register_lookup_update_deregister(fake, client):
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}
    client.register(reg(MAC1))
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "us", URL1)}
    client.update(reg(MAC1, URL2))
    assert fake.effective_url(MAC1) == URL2
    client.deregister(MAC1)
    assert fake.endpoint(MAC1) is None
    client.deregister(MAC1)  # already gone: 404 is fine
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}


def test_full_replace_put_keeps_what_someone_else_set(fake, client):
    company = fake.company_of(KEY_ID)
    profile = client._json("POST", f"companies/{company}/provisioning-profiles/",
                           body={"name": "office", "autoprovisioning_enabled": "true"})["uuid"]
    fake.seed_endpoint(MAC1, URL1, company, provisioning_profile=profile)
    fake.endpoints[MAC1]["settings_manager"]["1" * 32] = {"value": "x", "attrs": {}}
    fake.settings.append({"uuid": "1" * 32, "param_name": "language", "section": "global"})
    client.update(reg(MAC1, URL2))
    endpoint = fake.endpoint(MAC1)
    assert endpoint["provisioning_profile"] == profile
    assert endpoint["settings_manager"]["1" * 32]["value"] == "x"
    assert endpoint["warranty_exp_warning_period"] == 3  # never sent, never reset to null
    assert fake.effective_url(MAC1) == URL2


def test_another_companys_mac_is_a_conflict_and_nothing_changes(fake, client):
    fake.seed_endpoint(MAC1, "https://elsewhere.example/", fake.company_of("key-2"))
    before = fake.endpoint(MAC1)
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "other")}
    with pytest.raises(RedirectError) as caught:
        client.register(reg(MAC1, steal=True))
    assert caught.value.conflict
    with pytest.raises(RedirectError) as caught:
        client.deregister(MAC1)
    assert caught.value.conflict
    assert fake.endpoint(MAC1) == before
    assert fake.count("PUT") == 0 and fake.count("DELETE") == 1


def test_conflict_found_by_put_when_get_hides_the_mac(fake, client):
    fake.seed_endpoint(MAC1, "https://elsewhere.example/", fake.company_of("key-2"))
    client._discover()
    original = fake._endpoint

    def hiding(request, company, mac, here):  # GET answers 404 for a foreign MAC
        if request.method == "GET" and fake.endpoints.get(mac, {}).get("company") != company:
            from fakes.server import Reply
            return Reply(404, {"detail": "Not found."})
        return original(request, company, mac, here)

    fake._endpoint = hiding
    assert client.lookup([MAC1])[MAC1].holder == "nobody"
    with pytest.raises(RedirectError) as caught:
        client.register(reg(MAC1))
    assert caught.value.conflict
    assert fake.effective_url(MAC1) == "https://elsewhere.example/"


def test_endpoint_list_is_paginated(fake, client):
    company = fake.company_of(KEY_ID)
    macs = [f"0004130000{i:02x}" for i in range(45)]
    for mac in macs:
        fake.seed_endpoint(mac, URL1, company)
    fake.seed_endpoint(MAC2, URL1, fake.company_of("key-2"))
    fake.max_page_size = 20
    assert client.list_macs() == macs
    assert fake.count("GET", "/endpoints") == 3


def test_clock_skew_is_corrected_from_a_verified_tsm(fake):
    client = make_client(fake, clock=lambda: time.time() - 300)
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1
    assert abs(client._offset - 300) <= 2
    assert fake.count("GET", "/tokens/") == 2  # one stale, one resynced


def test_wrong_secret_is_a_permanent_error(fake):
    client = SrapsClient("snom", KEY_ID, "wrong", base_url=fake.url + "/api/v1/",
                         sleep=no_sleep)
    with pytest.raises(RedirectError, match="authentication refused") as caught:
        client.lookup([MAC1])
    assert not caught.value.transient and "wrong" not in str(caught.value)


def test_throttling_is_survived(fake, client):
    fake.throttle_next(2)
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1


def test_persistent_503_is_transient(fake, client):
    client._discover()
    fake.fail_next(5, status=503)
    with pytest.raises(RedirectError) as caught:
        client.register(reg(MAC1))
    assert caught.value.transient
    assert fake.endpoint(MAC1) is None


def test_timeout_then_success(fake):
    client = make_client(fake, timeout=0.2)
    fake.slow_next(1, delay=0.5)
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1


def test_links_to_another_host_are_refused(fake, client):
    original = fake.handle

    def evil(request):
        reply = original(request)
        if request.path.endswith(f"tokens/{KEY_ID}"):
            reply.body["links"]["company"] = "http://localhost:1/api/v1/companies/x"
        return reply

    fake.handle = evil
    with pytest.raises(RedirectError, match="refusing"):
        client.lookup([MAC1])


# -- at scale -------------------------------------------------------------------------------


def macs(n: int) -> list[str]:
    return [f"00041310{i:04x}" for i in range(n)]


def test_lookup_of_many_reads_the_list_and_put_reuses_it(fake, client):
    company = fake.company_of(KEY_ID)
    ours = macs(40)
    for mac in ours[:30]:
        fake.seed_endpoint(mac, URL1, company)
    foreign = "000413ffff01"
    fake.seed_endpoint(foreign, "https://elsewhere.example/", fake.company_of("key-2"))
    client._discover()
    mark = fake.mark()
    found = client.lookup([*ours, foreign])
    assert [r.path for r in fake.since(mark)] == [f"/api/v1/companies/{company}/endpoints/"]
    assert found[ours[0]] == Remote(ours[0], "us", URL1)
    assert found[ours[35]].holder == "nobody"
    assert found[foreign].holder == "nobody"  # the PUT will say whose it is

    mark = fake.mark()
    regs = [reg(m, URL2) for m in ours[:3]] + [reg(m) for m in ours[30:]]
    outcomes = client.update_many(regs[:3])
    outcomes.update(client.register_many([*regs[3:], reg(foreign, steal=True)]))
    assert outcomes[foreign].conflict and "steal is not possible" in str(outcomes[foreign])
    assert {m: e for m, e in outcomes.items() if m != foreign} == dict.fromkeys(
        r.mac for r in regs)
    sent = fake.since(mark)
    assert {r.method for r in sent} == {"PUT"} and len(sent) == len(regs) + 1  # no GET
    assert fake.effective_url(foreign) == "https://elsewhere.example/"
    assert all(fake.effective_url(r.mac) == r.url for r in regs)


def test_a_list_without_settings_is_never_the_base_of_a_full_replace(fake, client):
    """If the real list returns summaries, the PUT reads the endpoint first: nothing reset."""
    company = fake.company_of(KEY_ID)
    profile = client._json("POST", f"companies/{company}/provisioning-profiles/",
                           body={"name": "office"})["uuid"]
    for mac in macs(5):
        fake.seed_endpoint(mac, URL1, company, provisioning_profile=profile)
    original = fake._page

    def summaries(request, items, url):
        reply = original(request, items, url)
        if "/endpoints/" in url:
            reply.body = [{"mac": e["mac"], "links": e["links"]} for e in reply.body]
        return reply

    fake._page = summaries
    assert client.lookup(macs(5))[macs(5)[0]] == Remote(macs(5)[0], "us", None)
    mark = fake.mark()
    assert client.update_many([reg(macs(5)[0], URL2)]) == {macs(5)[0]: None}
    assert [r.method for r in fake.since(mark)] == ["GET", "PUT"]
    assert fake.endpoint(macs(5)[0])["provisioning_profile"] == profile


def test_retry_after_on_sraps_is_waited_as_asked(fake):
    slept: list[float] = []
    client = make_client(fake, sleep=slept.append)
    client._discover()
    fake.fail_next(1, status=429, headers={"Retry-After": "3"})
    client.register(reg(MAC1))
    assert fake.effective_url(MAC1) == URL1
    assert max(slept) == pytest.approx(3.0, abs=0.05)
    assert client.stats.snapshot().throttled == 1


def test_a_service_that_stays_down_is_not_asked_once_per_mac(fake, client):
    client._discover()
    fake.fail_next(1000, status=502)
    mark = fake.mark()
    outcomes = client.register_many([reg(m) for m in macs(50)])
    assert all(e is not None and e.transient for e in outcomes.values())
    assert len(fake.since(mark)) == 3 * 3  # three MACs, 3 attempts each; the rest not sent
    assert all(fake.endpoint(m) is None for m in macs(50))


def test_gigaset_grape_batches_like_sraps():
    with FakeSraps({KEY_ID: SECRET, "key-2": "s3cret-2"}, flavour="grape") as grape:
        client = make_client(grape, flavour=GRAPE)
        grape.seed_endpoint(MAC2, "https://elsewhere.example/", grape.company_of("key-2"))
        wanted = [*macs(10), MAC2]
        client.lookup(wanted)
        mark = grape.mark()
        outcomes = client.register_many([reg(m) for m in wanted])
        assert outcomes[MAC2].conflict and all(outcomes[m] is None for m in macs(10))
        assert len(grape.since(mark)) == 11
        assert all(grape.effective_url(m) == URL1 for m in macs(10))
        assert grape.effective_url(MAC2) == "https://elsewhere.example/"
