"""A redirect API that answers nonsense gets one clear message naming the service (exit 1),
never a traceback: the client against the Yealink fake, and the CLI end to end."""

from __future__ import annotations

import pytest
from fakes import FakeYealinkRps
from fleet_fixtures import edit, run

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration
from reconciler.redirect.clients.yealink import YealinkRpsClient
from reconciler.redirect.http import RetryPolicy

pytestmark = pytest.mark.integration

MAC = "001565aabb01"  # redirect: true in the example fleet
NONSENSE = [
    {"ret": 1, "data": "x"},  # the review's answer
    {"ret": "1", "data": {}},
    {"ret": 1, "data": {"data": "x"}},
    {"ret": 1, "data": {"data": ["x"]}},
    {"ret": 1, "data": [1, 2]},
]


@pytest.fixture
def fake():
    with FakeYealinkRps({"ak": "sk"}) as server:
        yield server


@pytest.fixture
def client(fake):
    c = YealinkRpsClient("yealink", "ak", "sk", base_url=fake.url, rate_per_second=1000,
                         retry=RetryPolicy(attempts=1, base_delay=0), sleep=lambda s: None)
    yield c
    c.close()


@pytest.mark.parametrize("body", NONSENSE, ids=[str(b) for b in NONSENSE])
@pytest.mark.parametrize("after", [0, 1], ids=["listing", "checkMac"])
def test_lookup_of_a_nonsense_answer_is_a_redirect_error(fake, client, body, after):
    fake.answer_next(5, body, after=after)
    with pytest.raises(RedirectError, match=r"^redirect yealink: device/(list|checkMac)"):
        client.lookup([MAC])


@pytest.mark.parametrize("body", NONSENSE, ids=[str(b) for b in NONSENSE])
def test_register_with_a_nonsense_answer_is_a_redirect_error(fake, client, body):
    fake.answer_next(5, body)
    reg = DesiredRegistration(MAC, "yealink", "https://prov.example.net/t/", "yealink/T46U")
    with pytest.raises(RedirectError, match=r"^redirect yealink: "):
        client.register(reg)


def test_plan_and_apply_name_the_service_and_exit_1(fleet, fake, monkeypatch, capsys):
    monkeypatch.setenv("YEALINK_AK", "ak")
    monkeypatch.setenv("YEALINK_SK", "sk")
    edit(fleet / "provisioning.yaml", "redirect:\n",
         "redirect:\n  yealink: {kind: yealink-rps, access_key: env:YEALINK_AK, "
         f"secret: env:YEALINK_SK, base_url: '{fake.url}'}}\n")
    fake.answer_next(50, {"ret": 1, "data": "x"})
    assert run(fleet, "plan") == 1
    out = capsys.readouterr().out
    assert "redirect:yealink" in out and "unexpected answer" in out
    assert run(fleet, "apply") == 1
    out = capsys.readouterr().out
    assert "redirect:yealink" in out and "unexpected answer" in out
    assert fake.device(MAC) is None
