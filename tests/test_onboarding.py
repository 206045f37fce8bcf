"""Onboarding windows, as a pure scenario: settings, a clock and observed fetches in."""

from __future__ import annotations

import json

import pytest

from reconciler.pipeline.onboarding import (
    DAY,
    Arrival,
    remember,
    suspicious_ips,
    value_key,
    window,
)

T0 = 1_800_000_000.0


def test_absent_onboard_opens_a_window_only_for_new_phones_without_a_redirect_client():
    assert value_key(None, is_new=True, has_redirect=False) == "new"
    assert value_key(None, is_new=True, has_redirect=True) is None
    assert value_key(None, is_new=False, has_redirect=False) is None
    assert value_key(False, is_new=True, has_redirect=False) is None
    assert value_key(True, is_new=False, has_redirect=True) == "true"


def test_a_window_waits_then_expires():
    mem = remember(None, "true", T0)
    assert window(mem, True, 7, None, T0 + DAY).state == "waiting"
    w = window(mem, True, 7, None, T0 + 8 * DAY)
    assert w.state == "expired" and not w.open


def test_the_first_fetch_after_opening_closes_it():
    mem = remember(None, "true", T0)
    assert window(mem, True, 7, Arrival(T0 - 5, "10.0.0.9"), T0 + 10).state == "waiting"
    w = window(mem, True, 7, Arrival(T0 + 60, "10.0.0.9"), T0 + 120)
    assert w.state == "arrived" and w.arrival == Arrival(T0 + 60, "10.0.0.9")


def test_an_until_date_overrides_the_policy_days():
    mem = remember(None, '{"until": "2027-03-31"}', T0)
    w = window(mem, {"until": "2027-03-31"}, 7, None, T0 + 30 * DAY)
    assert w.state == "waiting" and w.until is not None and w.until > T0 + 30 * DAY


def test_the_same_value_keeps_its_window_and_a_new_value_reopens_it():
    mem = remember(None, "true", T0)
    assert remember(mem, "true", T0 + 99 * DAY) == mem
    arrived = window(mem, True, 7, Arrival(T0 + 10, "10.0.0.9"), T0 + 20)
    assert arrived.state == "arrived"
    again = remember(mem, '{"until": "2027-06-01"}', T0 + 200 * DAY)
    assert again is not None and again.opened == T0 + 200 * DAY
    w = window(again, {"until": "2027-06-01"}, 7, Arrival(T0 + 10, "10.0.0.9"), T0 + 201 * DAY)
    assert w.state in ("waiting", "expired") and w.arrival is None
    assert remember(mem, None, T0) is None


def test_fetches_from_two_addresses_during_a_window_are_suspicious():
    mem = remember(None, "true", T0)
    windows = {"001565aabb01": window(mem, True, 7, None, T0 + 5),
               "001565aabb02": window(None, None, 7, None, T0 + 5)}
    got = suspicious_ips({"001565aabb01": {"10.0.0.9", "203.0.113.7"},
                          "001565aabb02": {"10.0.0.1", "10.0.0.2"}}, windows)
    assert got == {"001565aabb01": ["10.0.0.9", "203.0.113.7"]}


def test_the_first_run_knows_the_whole_fleet_and_later_ones_tell_a_new_phone():
    from reconciler.pipeline.onboarding import FleetMemory, Setting, fleet_windows

    def nobody(mac, since):
        return None

    dhcp, rps = Setting(None, False), Setting(None, True)
    windows, memory = fleet_windows({"a": dhcp, "b": rps}, FleetMemory(), nobody, 7, T0)
    assert windows == {} and memory.known == frozenset({"a", "b"})
    windows, memory = fleet_windows({"a": dhcp, "b": rps, "c": dhcp, "d": rps}, memory,
                                    nobody, 7, T0 + 60)
    assert set(windows) == {"c"} and windows["c"].opened == T0 + 60
    # known from now on, but it keeps its window (key "new") while onboard stays absent
    windows, memory = fleet_windows({"a": dhcp, "c": dhcp}, memory, nobody, 7, T0 + 120)
    assert set(windows) == {"c"} and windows["c"].opened == T0 + 60
    windows, _ = fleet_windows({"a": dhcp, "c": Setting(False, False)}, memory, nobody, 7,
                               T0 + 180)
    assert windows == {}


def test_the_first_arrival_is_kept_and_the_memory_survives_a_round_trip():
    from reconciler.pipeline.onboarding import (
        FleetMemory,
        Setting,
        fleet_windows,
        memory_from_json,
        memory_to_json,
    )

    seen = {"a": Arrival(T0 + 100, "10.0.0.9")}
    windows, memory = fleet_windows({"a": Setting(True, False)}, FleetMemory(frozenset({"a"})),
                                    lambda mac, since: seen.get(mac), 7, T0 + 200)
    assert windows["a"].state == "waiting"  # opened at T0 + 200: the fetch came before
    seen["a"] = Arrival(T0 + 300, "10.0.0.9")
    windows, memory = fleet_windows({"a": Setting(True, False)}, memory,
                                    lambda mac, since: seen.get(mac), 7, T0 + 400)
    assert windows["a"].arrival == Arrival(T0 + 300, "10.0.0.9")
    seen["a"] = Arrival(T0 + 500, "10.0.0.10")  # a later fetch does not move the arrival
    again = memory_from_json(json.loads(json.dumps(memory_to_json(memory))))
    windows, _ = fleet_windows({"a": Setting(True, False)}, again,
                               lambda mac, since: seen.get(mac), 7, T0 + 600)
    assert windows["a"].state == "arrived" and windows["a"].arrival == Arrival(
        T0 + 300, "10.0.0.9")
    with pytest.raises(ValueError):
        memory_from_json({"version": 2})
