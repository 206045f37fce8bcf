"""The redirect planner: desired + observed + records in, the exact changes out (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.errors import UnsafePlan
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.plan import (
    Environment,
    Record,
    RedirectChange,
    device_states,
    plan_redirects,
    raise_if_unsafe,
    window_end,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = 7
M = "001565aabb01"
U1, U2 = "https://prov.example.net/a/", "https://prov.example.net/b/"
# This environment publishes under prov.example.net; in these tables every service can steal
# (the services that cannot are tested below).
ENV = Environment.of(["https://prov.example.net/"], {"rps", "rps-eu", "a", "b"})
STAGING = "https://staging.example.net/0123456789abcdef0123456789abcdef/"
OLD = "https://old-prov.example.net/a/"


def want(url=U1, opened="o1", until=None, steal=False, service="rps", mac=M):
    return DesiredRegistration(mac=mac, service=service, url=url, model="yealink/T46U",
                               until=until, steal=steal, opened=opened)


def seen(holder, url=None, mac=M):
    return Remote(mac, holder, url)


def rec(state, days_ago=1.0, opened="o1", url=U1, blind=False, service="rps", mac=M):
    at = None if days_ago is None else (NOW - timedelta(days=days_ago)).isoformat()
    return Record(mac=mac, service=service, url=url, registered_at=at, opened=opened,
                  state=state, conflict_blind=blind)


YESTERDAY = (NOW - timedelta(days=1)).date().isoformat()
TODAY = NOW.date().isoformat()

# (id, desired, remote, record, expected [(action, service, cause, steal)])
CASES = [
    ("new", want(), seen("nobody"), None, [("register", "rps", "new", False)]),
    ("until inclusive today", want(until=TODAY), seen("nobody"), None,
     [("register", "rps", "new", False)]),
    ("until passed before registering", want(until=YESTERDAY), seen("nobody"), None, []),
    ("window elapsed, already deregistered", want(), seen("nobody"), rec("disabled", 8), []),
    ("window elapsed, still held", want(), seen("us", U1), rec("active", 7),
     [("deregister", "rps", "window-elapsed", False)]),
    ("window elapsed, deregistration failed before", want(), seen("us", U1),
     rec("deprovision", 9), [("deregister", "rps", "window-elapsed", False)]),
    ("window elapsed, someone re-registered by hand", want(), seen("us", U1),
     rec("disabled", 9), []),
    ("until cuts the window short", want(until=YESTERDAY), seen("us", U1), rec("active", 3),
     [("deregister", "rps", "until-passed", False)]),
    ("window open, same URL", want(), seen("us", U1), rec("active", 2), []),
    ("window open, other URL", want(url=U2), seen("us", U1), rec("active", 2),
     [("update", "rps", "url-changed", False)]),
    ("held by another account", want(), seen("other"), None,
     [("conflict", "rps", "held-by-other", False)]),
    ("held by another account, steal", want(steal=True), seen("other"), None,
     [("register", "rps", "steal", True)]),
    ("released by the other account", want(), seen("nobody"), rec("conflict", None),
     [("register", "rps", "new", False)]),
    ("blind conflict is not retried in the same window", want(), seen("nobody"),
     rec("conflict", None, blind=True), [("conflict", "rps", "held-by-other", False)]),
    ("blind conflict, new git value", want(opened="o2"), seen("nobody"),
     rec("conflict", None, blind=True), [("register", "rps", "new", False)]),
    ("blind conflict, steal", want(steal=True), seen("nobody"),
     rec("conflict", None, blind=True), [("register", "rps", "steal", True)]),
    ("failed registration is retried", want(), seen("nobody"), rec("provision", None),
     [("register", "rps", "retry", False)]),
    ("registered in this window but gone", want(), seen("nobody"), rec("active", 2),
     [("register", "rps", "missing", False)]),
    ("new git value reopens the window", want(opened="o2"), seen("us", U1), rec("active", 8),
     [("update", "rps", "window-reopened", False)]),
    ("new git value after the old window", want(opened="o2"), seen("nobody"),
     rec("disabled", 20), [("register", "rps", "new", False)]),
    ("held by us without a record: adopt", want(), seen("us", U1), None,
     [("update", "rps", "adopt", False)]),
    ("failed registration that actually happened", want(), seen("us", U1),
     rec("provision", None), [("update", "rps", "retry", False)]),
    ("not observed: nothing", want(), None, None, []),
    ("not desired, we registered it", None, seen("us", U1), rec("active", 2),
     [("deregister", "rps", "not-desired", False)]),
    ("not desired, deregistration failed before", None, seen("us", U1), rec("deprovision"),
     [("deregister", "rps", "not-desired", False)]),
    ("not desired, already gone", None, seen("nobody"), rec("deprovision"), []),
    ("not desired, no record: never touched", None, seen("us", U1), None, []),
    ("not desired, record says not ours", None, seen("us", U1), rec("conflict"), []),
    ("not desired, not observed", None, None, rec("active"), []),
    ("moved to another service", want(service="rps-eu"), seen("nobody"),
     rec("active", 1, service="rps"),
     [("deregister", "rps", "moved", False), ("register", "rps-eu", "new", False)]),
    # a service whose API cannot take a MAC over says so, instead of planning what must fail
    ("held by another account, steal, the service cannot", want(steal=True, service="plain"),
     seen("other"), None, [("conflict", "plain", "cannot-steal", False)]),
    ("blind conflict, steal, the service cannot", want(steal=True, service="plain"),
     seen("nobody"), rec("conflict", None, blind=True, service="plain"),
     [("conflict", "plain", "cannot-steal", False)]),
    # our account, another environment of the fleet (its URL is not under our base URLs)
    ("another environment's URL", want(), seen("us", STAGING), rec("active", 2),
     [("conflict", "rps", "other-environment", False)]),
    ("another environment's URL, no record", want(), seen("us", STAGING), None,
     [("conflict", "rps", "other-environment", False)]),
    ("another environment's URL, steal", want(steal=True), seen("us", STAGING), rec("active", 2),
     [("update", "rps", "steal", True)]),
    ("another environment's URL, our window over", want(), seen("us", STAGING),
     rec("active", 8), []),
    ("another environment's URL, not desired here", None, seen("us", STAGING),
     rec("active", 2), []),
    ("another environment's URL, conflict recorded", want(), seen("us", STAGING),
     rec("conflict", 2), [("conflict", "rps", "other-environment", False)]),
    ("the URL our record registered, outside today's base URLs", want(), seen("us", OLD),
     rec("active", 2, url=OLD), [("update", "rps", "url-changed", False)]),
    ("the URL our record registered, not desired", None, seen("us", OLD), rec("active", 2, url=OLD),
     [("deregister", "rps", "not-desired", False)]),
    ("another environment released it", want(), seen("nobody"), rec("conflict", 2),
     [("register", "rps", "missing", False)]),
]


@pytest.mark.parametrize(("desired", "remote", "record", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_table(desired, remote, record, expected):
    changes = plan_redirects(
        {M: desired} if desired else {},
        {M: remote} if remote else {},
        {M: record} if record else {},
        NOW,
        WINDOW,
        env=ENV,
    )
    assert [(c.action, c.service, c.cause, c.steal) for c in changes] == expected
    for change in changes:
        assert change.mac == M and change.reason
        if change.action in ("register", "update"):
            assert change.url == desired.url and change.opened == desired.opened


def test_changes_carry_the_url_to_register_and_the_url_held():
    [update] = plan_redirects({M: want(url=U2)}, {M: seen("us", U1)}, {M: rec("active")},
                              NOW, WINDOW, env=ENV)
    assert update == RedirectChange("update", M, "rps", U2, "registered with another URL",
                                    "url-changed", False, "o1")
    [dereg] = plan_redirects({}, {M: seen("us", U2)}, {M: rec("active")}, NOW, WINDOW, env=ENV)
    assert dereg.url == U2


def test_order_is_stable_deregister_update_register_conflict_then_service_then_mac():
    macs = [f"001565aabb{i:02x}" for i in range(6)]
    desired = {
        macs[0]: want(mac=macs[0], service="b"),  # register
        macs[1]: want(mac=macs[1], service="a"),  # register
        macs[2]: want(mac=macs[2], service="a"),  # conflict
        macs[3]: want(mac=macs[3], service="a", url=U2),  # update
    }
    remote = {
        macs[0]: seen("nobody", mac=macs[0]),
        macs[1]: seen("nobody", mac=macs[1]),
        macs[2]: seen("other", mac=macs[2]),
        macs[3]: seen("us", U1, mac=macs[3]),
        macs[4]: seen("us", U1, mac=macs[4]),
        macs[5]: seen("us", U1, mac=macs[5]),
    }
    records = {
        macs[3]: rec("active", mac=macs[3], service="a"),
        macs[4]: rec("active", mac=macs[4], service="b"),
        macs[5]: rec("active", mac=macs[5], service="a"),
    }
    changes = plan_redirects(desired, remote, records, NOW, WINDOW, env=ENV)
    assert [(c.action, c.service, c.mac[-2:]) for c in changes] == [
        ("deregister", "a", "05"),
        ("deregister", "b", "04"),
        ("update", "a", "03"),
        ("register", "a", "01"),
        ("register", "b", "00"),
        ("conflict", "a", "02"),
    ]
    # deterministic
    assert changes == plan_redirects(desired, remote, records, NOW, WINDOW, env=ENV)


def test_plan_is_pure_and_needs_an_aware_now():
    with pytest.raises(ValueError):
        plan_redirects({}, {}, {}, datetime(2026, 1, 1), WINDOW, env=ENV)


def test_window_end_is_the_earlier_of_window_and_until():
    start = "2026-03-01T10:00:00+00:00"
    assert window_end(start, 7) == datetime(2026, 3, 8, 10, tzinfo=UTC)
    assert window_end(start, 7, "2026-03-03") == datetime(2026, 3, 4, tzinfo=UTC)
    assert window_end(start, 7, "2026-04-01") == datetime(2026, 3, 8, 10, tzinfo=UTC)


# (id, desired, remote, record, expected state)
STATES = [
    ("registered in window", want(), seen("us", U1), rec("active"), "active"),
    ("waiting to register", want(), seen("nobody"), None, "disabled"),
    ("registration failed", want(), seen("nobody"), rec("provision", None), "provision"),
    ("deregistration failed", None, seen("us", U1), rec("deprovision"), "deprovision"),
    ("window over, still registered", want(), seen("us", U1), rec("active", 8), "active"),
    ("window over, deregistration failed", want(), seen("us", U1), rec("deprovision", 8),
     "deprovision"),
    ("window over, gone", want(), seen("nobody"), rec("disabled", 8), "disabled"),
    ("held by another, wanted", want(), seen("other"), None, "conflict"),
    ("held by another, not wanted", None, seen("other"), rec("conflict"), "disabled"),
    ("blind conflict", want(), seen("nobody"), rec("conflict", None, blind=True), "conflict"),
    ("not observed: last recorded", want(), None, rec("provision", None), "provision"),
    ("another environment holds it, wanted", want(), seen("us", STAGING), rec("active"),
     "conflict"),
    ("another environment holds it, not wanted", None, seen("us", STAGING), rec("active"),
     "disabled"),
]


@pytest.mark.parametrize(("desired", "remote", "record", "expected"),
                         [c[1:] for c in STATES], ids=[c[0] for c in STATES])
def test_device_states(desired, remote, record, expected):
    states = device_states(
        {M: desired} if desired else {},
        {M: remote} if remote else {},
        {M: record} if record else {},
        NOW,
        WINDOW,
        env=ENV,
    )
    assert states == {M: expected}


def _records(n):
    return {f"m{i}": rec("active", mac=f"m{i}") for i in range(n)}


def test_unsafe_deregistration_is_refused_unless_forced():
    records = _records(10)
    changes = plan_redirects({}, {m: seen("us", U1, mac=m) for m in records}, records, NOW,
                             WINDOW, env=ENV)
    assert len(changes) == 10
    with pytest.raises(UnsafePlan, match="10 of 10"):
        raise_if_unsafe(changes, records, 10)
    raise_if_unsafe(changes, records, 10, force=True)
    raise_if_unsafe(changes[:1], records, 10)  # 1 of 10 is within 10 %


def test_window_expiry_does_not_count_against_the_limit():
    records = {m: rec("active", 8, mac=m) for m in ("m1", "m2", "m3")}
    desired = {m: want(mac=m) for m in records}
    changes = plan_redirects(desired, {m: seen("us", U1, mac=m) for m in records}, records,
                             NOW, WINDOW, env=ENV)
    assert {c.cause for c in changes} == {"window-elapsed"}
    raise_if_unsafe(changes, records, 0)


def test_conflict_reasons_say_why_and_never_carry_a_whole_token():
    [steal] = plan_redirects({M: want(steal=True, service="plain")}, {M: seen("other")}, {},
                             NOW, WINDOW, env=ENV)
    assert "cannot take a MAC over from another account" in steal.reason
    assert "set steal: true" not in steal.reason  # it is set already
    [other] = plan_redirects({M: want()}, {M: seen("us", STAGING)}, {}, NOW, WINDOW, env=ENV)
    assert "https://staging.example.net/012345…/" in other.reason
    assert STAGING not in other.reason


def test_environment_base_urls_are_directories():
    env = Environment.of(["https://prov.example.net/eu"])
    assert env.owns("https://prov.example.net/eu/t/", None)
    assert not env.owns("https://prov.example.net/eu-staging/t/", None)
    assert env.owns(None, None)  # a service that does not show URLs: the record decides
