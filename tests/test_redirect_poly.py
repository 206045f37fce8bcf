"""Poly ZTP (API-KEY, profiles): the client against the faithful fake, over loopback."""

from __future__ import annotations

import httpx
import pytest
from fakes import FakePolyZtp

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.clients.poly import PolyZtpClient, profile_name
from reconciler.redirect.http import RetryPolicy

pytestmark = pytest.mark.integration

KEY = "poly-key-1"
MAC1, MAC2, MAC3 = "0004f2aabb01", "0004f2aabb02", "0004f2aabb03"
URL1 = "https://prov.example.net/t0k3n1/"
URL2 = "https://prov.example.net/t0k3n2/"


def no_sleep(_: float) -> None:
    pass


def reg(mac: str, url: str = URL1, steal: bool = False) -> DesiredRegistration:
    return DesiredRegistration(mac=mac, service="poly", url=url, model="poly/VVX450",
                               steal=steal)


@pytest.fixture
def fake():
    with FakePolyZtp({KEY: "acct-us", "poly-key-2": "acct-other"}) as server:
        yield server


def make_client(fake, **kwargs) -> PolyZtpClient:
    options = {"timeout": 2.0, "retry": RetryPolicy(attempts=3, base_delay=0.01),
               "sleep": no_sleep, "rate_per_second": 1000.0}
    options.update(kwargs)
    return PolyZtpClient("poly", KEY, base_url=fake.url + "/preview", **options)


@pytest.fixture
def client(fake):
    c = make_client(fake)
    yield c
    c.close()


def test_fake_requires_the_api_key(fake):
    assert httpx.get(fake.url + "/preview/devices").status_code == 401
    answer = httpx.get(fake.url + "/preview/devices", headers={"API-KEY": "nope"})
    assert answer.status_code == 401 and answer.json() == {"message": "Unauthorized"}


def test_fake_validates_mac_and_profile(fake):
    headers = {"API-KEY": KEY}
    bad_mac = httpx.post(fake.url + "/preview/devices", json={"id": "xyz", "profile": "p"},
                         headers=headers)
    assert bad_mac.status_code == 400
    no_profile = httpx.post(fake.url + "/preview/devices", json={"id": MAC1, "profile": "p"},
                            headers=headers)
    assert no_profile.status_code == 400 and fake.devices == {}


def test_wrong_key_is_a_permanent_error(fake):
    client = PolyZtpClient("poly", "nope", base_url=fake.url + "/preview", sleep=no_sleep)
    with pytest.raises(RedirectError, match="authentication refused") as caught:
        client.lookup([MAC1])
    assert not caught.value.transient and "nope" not in str(caught.value)


def test_register_lookup_update_deregister(fake, client):
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}
    client.register(reg(MAC1))
    assert fake.device_url(MAC1) == URL1
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "us", URL1)}
    [profile] = fake.profiles_of("acct-us")
    assert profile["name"] == profile_name(URL1) and "t0k3n" not in profile["name"]

    client.update(reg(MAC1, URL2))
    assert fake.device_url(MAC1) == URL2
    assert [p["name"] for p in fake.profiles_of("acct-us")] == [profile_name(URL2)]  # old gone

    client.deregister(MAC1)
    assert fake.devices == {} and fake.profiles_of("acct-us") == []
    client.deregister(MAC1)  # 404: already gone
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}


def test_devices_with_the_same_url_share_a_profile(fake, client):
    client.register(reg(MAC1, URL1))
    client.register(reg(MAC2, URL1))
    assert len(fake.profiles_of("acct-us")) == 1
    client.deregister(MAC1)
    assert len(fake.profiles_of("acct-us")) == 1  # MAC2 still uses it
    assert fake.device_url(MAC2) == URL1


def test_register_of_an_own_mac_repoints_it(fake, client):
    client.register(reg(MAC1, URL1))
    client.register(reg(MAC1, URL2))  # 409 "already exists" -> ours -> delete + post
    assert fake.device_url(MAC1) == URL2


def test_profiles_not_made_by_provctl_are_left_alone(fake, client):
    fake.seed_device(MAC1, URL1, "acct-us")  # an operator's own profile
    client.update(reg(MAC1, URL2))
    assert fake.device_url(MAC1) == URL2
    assert any(p["name"] == f"seed-{MAC1}" for p in fake.profiles_of("acct-us"))


def test_another_accounts_mac_is_a_conflict_and_nothing_changes(fake, client):
    fake.seed_device(MAC1, "https://elsewhere.example/", "acct-other")
    assert client.lookup([MAC1]) == {MAC1: Remote(MAC1, "nobody")}  # invisible to us
    with pytest.raises(RedirectError) as caught:
        client.register(reg(MAC1, steal=True))
    assert caught.value.conflict and "steal is not possible" in str(caught.value)
    with pytest.raises(RedirectError) as caught:
        client.deregister(MAC1)
    assert caught.value.conflict
    assert fake.device_url(MAC1) == "https://elsewhere.example/"
    assert fake.devices[MAC1]["account"] == "acct-other"


def test_device_list_uses_cursor_pagination(fake):
    client = make_client(fake, page_size=10)
    macs = [f"0004f20000{i:02x}" for i in range(25)]
    for mac in macs:
        fake.seed_device(mac, URL1, "acct-us")
    fake.seed_device(MAC3, URL1, "acct-other")
    assert client.list_macs() == macs
    assert fake.count("GET", "/devices") == 3


def test_throttling_is_survived(fake, client):
    fake.throttle_next(2)
    client.register(reg(MAC1))
    assert fake.device_url(MAC1) == URL1


def test_persistent_500_is_transient(fake, client):
    fake.fail_next(3, status=500)
    with pytest.raises(RedirectError) as caught:
        client.register(reg(MAC1))
    assert caught.value.transient and fake.devices == {}


def test_timeout_then_success(fake):
    client = make_client(fake, timeout=0.2)
    fake.slow_next(1, delay=0.5)
    client.register(reg(MAC1))
    assert fake.device_url(MAC1) == URL1


# -- at scale -------------------------------------------------------------------------------


def macs(n: int) -> list[str]:
    return [f"0004f210{i:04x}" for i in range(n)]


def test_many_registrations_share_a_profile_per_url_and_never_read_again(fake, client):
    fake.seed_device(MAC3, "https://elsewhere.example/", "acct-other")
    wanted = [*macs(20), MAC3]
    mark = fake.mark()
    assert set(client.lookup(wanted).values()) == {Remote(m, "nobody") for m in wanted}
    looked = [(r.method, r.path) for r in fake.since(mark)]
    assert looked == [("GET", "/preview/devices")]  # one page, no GET per MAC
    mark = fake.mark()
    outcomes = client.register_many([reg(m, URL1 if i < 10 else URL2)
                                     for i, m in enumerate(wanted)])
    assert outcomes[MAC3].conflict  # invisible to us, refused by POST, never changed
    assert all(outcomes[m] is None for m in macs(20))
    sent = [(r.method, r.path) for r in fake.since(mark)]
    assert sent.count(("POST", "/preview/profiles")) == 2  # one per URL
    assert sent.count(("POST", "/preview/devices")) == 21
    assert ("GET", "/preview/devices") not in sent
    assert fake.device_url(MAC3) == "https://elsewhere.example/"


def test_deregistrations_reuse_the_lookup_and_count_profile_users(fake, client):
    client.register_many([reg(m, URL1 if i < 10 else URL2) for i, m in enumerate(macs(20))])
    client.lookup(macs(20))
    mark = fake.mark()
    assert client.deregister_many(macs(15)) == dict.fromkeys(macs(15))
    sent = [(r.method, r.path) for r in fake.since(mark)]
    # 15 device deletes and one profile delete (URL1's last device left); no reads at all
    assert [m for m, _ in sent].count("GET") == 0 and len(sent) == 16
    assert [p["name"] for p in fake.profiles_of("acct-us")] == [profile_name(URL2)]
    assert sorted(fake.devices) == macs(20)[15:]


def test_updates_after_lookup_delete_and_post_without_reading(fake, client):
    client.register_many([reg(m) for m in macs(8)])
    client.lookup(macs(8))
    mark = fake.mark()
    assert client.update_many([reg(m, URL2) for m in macs(8)]) == dict.fromkeys(macs(8))
    sent = [(r.method, r.path.rsplit("/", 1)[0]) for r in fake.since(mark)]
    assert sent.count(("DELETE", "/preview/devices")) == 8
    assert sent.count(("POST", "/preview")) == 9  # one profile + 8 devices
    assert not any(m == "GET" for m, _ in sent)
    assert all(fake.device_url(m) == URL2 for m in macs(8))
    assert [p["name"] for p in fake.profiles_of("acct-us")] == [profile_name(URL2)]


def test_fake_rate_limit_answers_429_with_retry_after_and_applies_nothing(fake):
    fake.rate_limit(0.5, burst=2)
    headers = {"API-KEY": KEY}
    answers = [httpx.get(fake.url + "/preview/devices", headers=headers) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    body = {"name": "p", "template": {"provisioning": {"server": {"address": URL1}}}}
    refused = httpx.post(fake.url + "/preview/profiles", json=body, headers=headers)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert fake.profiles == {} and fake.count(contains="/profiles") == 1
