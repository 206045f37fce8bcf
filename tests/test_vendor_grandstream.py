"""Grandstream beyond the contract data (tests/vendor_cases/grandstream.yaml): P-value tables."""

from __future__ import annotations

import pytest

from vendors import timezones
from vendors.grandstream import GRP_ZONES, GXP_ZONES, account_pvalues, time_zone


def test_accounts_two_to_six_follow_their_own_numbering() -> None:
    assert account_pvalues(1)["password"] == 34
    assert account_pvalues(2)["password"] == 406
    assert account_pvalues(5)["server"] == 1702


@pytest.mark.parametrize("listed", sorted(set(GXP_ZONES) | set(GRP_ZONES)))
def test_every_listed_time_zone_reads_as_posix(listed: str) -> None:
    zone = timezones.posix_zone(listed)
    rule_less = zone is None
    assert rule_less == (listed in ("AKST9AKDT", "PST8PDT", "MST7MDT", "CST6CDT", "EST5EDT",
                                    "AST4ADT"))


def test_a_rule_the_firmware_would_have_to_guess_is_never_chosen() -> None:
    # EST5EDT says nothing of when DST starts: New York is written with its own rule
    assert time_zone("America/New_York", "gxp") == (
        "customize", "EST5EDT4,M3.2.0/02:00:00,M11.1.0/02:00:00")
    assert time_zone("America/St_Johns", "gxp")[0].startswith("NST+3:30NDT+2:30,M3.2.0")
    assert time_zone("America/St_Johns", "grp")[0] == "customize"  # the GRP list's rule is old
