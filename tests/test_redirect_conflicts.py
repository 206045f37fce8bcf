"""Conflicts that are reported, not fought over: two environments of one fleet sharing a
vendor account, and `steal: true` at a service whose API cannot take a MAC over."""

from __future__ import annotations

import shutil

import pytest
from fakes import FakeYealinkRps
from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.redirect.clients.local import LocalRegistry
from reconciler.render.addressing import url_token

MAC = "001565aabb01"  # redirect: true in the example fleet
TOKEN = url_token(FLEET_SECRET, MAC)
MAIN_URL = f"http://localhost:8080/{TOKEN}/"
STAGING_URL = f"http://staging.localhost:8081/{TOKEN}/"


@pytest.fixture
def staging(fleet, tmp_path):
    """A second environment of the same fleet: its own targets, the same redirect account."""
    repo = tmp_path / "staging"
    shutil.copytree(fleet, repo)
    edit(repo / "provisioning.yaml", 'base_url: "http://localhost:8080/"',
         'base_url: "http://staging.localhost:8081/"')
    edit(repo / "provisioning.yaml", "path: ./out/redirect.json",
         f"path: {fleet / 'out' / 'redirect.json'}")
    return repo


def registered(fleet) -> str | None:
    entry = LocalRegistry("default", fleet / "out" / "redirect.json").entries().get(MAC)
    return entry["url"] if entry else None


def test_two_environments_do_not_fight_over_one_registration(fleet, staging, capsys):
    assert run(fleet, "apply") == 2
    assert registered(fleet) == MAIN_URL
    capsys.readouterr()
    # staging publishes its files but leaves main's registration alone: a conflict, exit 3
    assert run(staging, "apply") == 3
    out = capsys.readouterr().out
    assert "another environment of the fleet" in out
    assert TOKEN not in out  # the other environment's URL is shown shortened
    assert registered(fleet) == MAIN_URL
    assert (staging / "out" / "www" / TOKEN / f"{MAC}.cfg").exists()
    # ... and main has nothing to do: no rewrite war, run after run
    for _ in range(2):
        assert run(fleet, "apply") == 0
        assert run(staging, "plan") == 3
        assert registered(fleet) == MAIN_URL
    # Unless the device says so in staging: then staging holds it, and main reports the conflict.
    edit(staging / "devices" / "acme.yaml", "  redirect: true\n", "  redirect: {steal: true}\n")
    assert run(staging, "apply") == 2
    assert registered(fleet) == STAGING_URL
    assert run(fleet, "apply") == 3
    assert registered(fleet) == STAGING_URL


def test_an_environment_does_not_deregister_another_ones_registration(fleet, staging):
    assert run(staging, "apply") == 2
    edit(staging / "devices" / "acme.yaml", "  redirect: true\n", "  redirect: {steal: true}\n")
    edit(fleet / "devices" / "acme.yaml", "  redirect: true\n", "  redirect: {steal: true}\n")
    assert run(fleet, "apply") == 2  # main takes it over (steal within the account)
    edit(staging / "devices" / "acme.yaml", "  redirect: {steal: true}\n", "")
    assert run(staging, "apply", "--force") == 0  # not ours any more: nothing to deregister
    assert registered(fleet) == MAIN_URL


@pytest.mark.integration
def test_steal_at_yealink_is_a_conflict_that_says_it_cannot_be_done(fleet, monkeypatch, capsys):
    with FakeYealinkRps({"ak": "sk", "other": "x"}) as fake:
        monkeypatch.setenv("YEALINK_AK", "ak")
        monkeypatch.setenv("YEALINK_SK", "sk")
        edit(fleet / "provisioning.yaml", "redirect:\n",
             "redirect:\n  yealink: {kind: yealink-rps, access_key: env:YEALINK_AK, "
             f"secret: env:YEALINK_SK, base_url: '{fake.url}'}}\n")
        edit(fleet / "devices" / "acme.yaml", "  redirect: true\n", "  redirect: {steal: true}\n")
        fake.seed_device(MAC, "https://elsewhere.example/", fake.account_of("other"))
        for command in ("plan", "apply", "plan", "apply"):
            capsys.readouterr()
            assert run(fleet, command) == 3
            out = capsys.readouterr().out
            assert "cannot take a MAC over from another account" in out
            assert "set steal: true" not in out and "{steal: true}" not in out
        assert fake.count("POST", "device/add") == 0  # nothing attempted that must fail
        assert fake.effective_url(MAC) == "https://elsewhere.example/"
        assert (fleet / "out" / "www" / TOKEN / f"{MAC}.cfg").exists()  # files still published
