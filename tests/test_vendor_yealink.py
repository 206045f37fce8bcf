"""Yealink beyond the contract data (tests/vendor_cases/yealink.yaml): the time-zone table."""

from __future__ import annotations

from vendors import timezones


def test_yealink_table_rows_agree_with_zoneinfo() -> None:
    for zone, (name, _) in timezones.table().items():
        if name is not None:
            assert timezones.yealink(zone).time_zone_name == name
