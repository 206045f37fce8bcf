"""Gigaset beyond the contract data (tests/vendor_cases/gigaset.yaml): the zone list."""

from __future__ import annotations

from vendors import timezones


def test_gigaset_zone_list_is_known_to_zoneinfo() -> None:
    known = [z for z in timezones.GIGASET_ZONES if timezones.gigaset(z) == z]
    assert len(known) == len(timezones.GIGASET_ZONES)
