"""Grandstream beyond the contract data (tests/vendor_cases/grandstream.yaml): P-value tables."""

from __future__ import annotations

from vendors.grandstream import account_pvalues


def test_accounts_two_to_six_follow_their_own_numbering() -> None:
    assert account_pvalues(1)["password"] == 34
    assert account_pvalues(2)["password"] == 406
    assert account_pvalues(5)["server"] == 1702
