"""Snom beyond the contract data (tests/vendor_cases/snom.yaml): the time-zone code table."""

from __future__ import annotations

import re

from vendors import timezones


def test_snom_codes_in_the_table_match_the_zones_standard_offset() -> None:
    for zone, (_, code) in timezones.table().items():
        if code is None:
            continue
        match = re.fullmatch(r"[A-Z]+\d?([+-])([\d.]+)", code)
        assert match, code
        sign, number = match.groups()
        minutes = round(float(number) * 60) * (1 if sign == "+" else -1)
        assert timezones.clock(zone).standard_minutes == minutes, zone
