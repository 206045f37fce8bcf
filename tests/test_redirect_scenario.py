"""Runs over days: observe → plan → apply → record, against a faithful fake over loopback.

This is the loop the reconciler drives; the records file is re-read every run, as after a
restart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes import FakeYealinkRps

from reconciler.redirect.base import DesiredRegistration, RedirectClient
from reconciler.redirect.clients.local import LocalRegistry
from reconciler.redirect.clients.yealink import YealinkRpsClient
from reconciler.redirect.http import RetryPolicy
from reconciler.redirect.plan import Environment, device_states, plan_redirects
from reconciler.redirect.state import apply_change, load_records, save_records

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A, B, C = "001565aabb0a", "001565aabb0b", "001565aabb0c"


def want(mac, opened="o1", steal=False, service="yealink"):
    return DesiredRegistration(mac, service, f"https://prov.example.net/{mac}/", "yealink/T46U",
                               steal=steal, opened=opened)


def run(client: RedirectClient, desired, path: Path, now: datetime, before_apply=None):
    """One reconcile run; returns (changes as (action, mac, cause), errors, states)."""
    records = load_records(path)
    remote = client.lookup(sorted(set(desired) | set(records)))
    env = Environment.of(["https://prov.example.net/"], {"default"} if client.can_steal else ())
    changes = plan_redirects(desired, remote, records, now, 7, env=env)
    if before_apply:
        before_apply()
    errors = {}
    for change in changes:
        record, error = apply_change(client, change, desired.get(change.mac),
                                     records.get(change.mac), now)
        records[change.mac] = record
        if error is not None:
            errors[change.mac] = error
    save_records(path, records)
    states = device_states(desired, client.lookup(sorted(set(desired) | set(records))),
                           records, now, 7, env=env)
    return [(c.action, c.mac, c.cause) for c in changes], errors, states


def test_windows_partial_failure_and_conflicts_converge(tmp_path):
    path = tmp_path / "state" / "redirect-records.json"
    with FakeYealinkRps({"ak": "sk", "other": "x"}) as fake:
        client = YealinkRpsClient("yealink", "ak", "sk", base_url=fake.url, rate_per_second=1000,
                                  retry=RetryPolicy(attempts=2, base_delay=0), sleep=lambda s: 0)
        fake.seed_device(C, "https://elsewhere/", fake.account_of("other"))
        desired = {m: want(m) for m in (A, B, C)}

        # day 0: A's registration fails (5xx on every attempt), B goes through, C is held
        changes, errors, states = run(client, desired, path, DAY0,
                                      before_apply=lambda: fake.fail_next(2, status=500))
        assert changes == [("register", A, "new"), ("register", B, "new"),
                           ("conflict", C, "held-by-other")]
        assert set(errors) == {A} and errors[A].transient
        assert states == {A: "provision", B: "active", C: "conflict"}

        # day 1: A is retried; nothing else changes; C is left alone
        changes, errors, states = run(client, desired, path, DAY0 + timedelta(days=1))
        assert changes == [("register", A, "retry"), ("conflict", C, "held-by-other")]
        assert errors == {} and states == {A: "active", B: "active", C: "conflict"}
        assert fake.device(C)["uniqueServerUrl"] == "https://elsewhere/"

        # day 7.5: B's window (opened day 0) is over, A's (opened day 1) is not
        changes, _, states = run(client, desired, path, DAY0 + timedelta(days=7.5))
        assert changes == [("deregister", B, "window-elapsed"), ("conflict", C, "held-by-other")]
        assert fake.device(B) is None and states[B] == "disabled" and states[A] == "active"

        # day 8.5: A's window is over too; then nothing more happens for that git value
        changes, _, _ = run(client, desired, path, DAY0 + timedelta(days=8.5))
        assert changes[0] == ("deregister", A, "window-elapsed")
        changes, _, states = run(client, desired, path, DAY0 + timedelta(days=9))
        assert changes == [("conflict", C, "held-by-other")]
        assert states == {A: "disabled", B: "disabled", C: "conflict"}

        # a new git value for B opens a new window
        desired[B] = want(B, opened="o2")
        changes, _, states = run(client, desired, path, DAY0 + timedelta(days=10))
        assert ("register", B, "new") in changes and states[B] == "active"

        # B removed from git: deregistered; A (no longer held) is left alone
        del desired[B]
        del desired[A]
        changes, _, _ = run(client, desired, path, DAY0 + timedelta(days=11))
        assert changes == [("deregister", B, "not-desired"), ("conflict", C, "held-by-other")]
        assert [d["mac"] for d in fake.devices.values()] == [C]


def test_steal_is_opt_in(tmp_path):
    registry = LocalRegistry("default", tmp_path / "redirect.json", clock=lambda: DAY0)
    registry.seed(A, "http://old-provider/", "old-provider")
    path = tmp_path / "records.json"
    desired = {A: want(A, service="default")}
    changes, _, states = run(registry, desired, path, DAY0)
    assert changes == [("conflict", A, "held-by-other")] and states == {A: "conflict"}
    desired = {A: want(A, service="default", steal=True)}
    changes, errors, states = run(registry, desired, path, DAY0)
    assert changes == [("register", A, "steal")] and not errors and states == {A: "active"}
    assert registry.entries()[A]["account"] == "provctl"
