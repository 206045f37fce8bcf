"""Panasonic beyond the contract data (tests/vendor_cases/panasonic.yaml): byte-level limits."""

from __future__ import annotations

import pytest
from vendor_inputs import load
from vendor_parsers import FormatError, parse_panasonic

from vendors.panasonic import HEADERS, Builder, file_size

FILE = "Config0080F0A1B2C3.cfg"
DATA = load("panasonic")


def test_size_check_counts_the_bytes_the_template_writes() -> None:
    dev = DATA.device({"lines": [{"display_name": "Zoë Ünal"}], "raw": {"SYSLOG_ADDR": "é"}})
    builder = Builder(dev)
    built = builder.build()
    assert built.problems == ()
    assert file_size(HEADERS["hdv"], builder.settings) == len(
        DATA.rendered(built)[FILE].encode("utf-8"))


def test_strict_parser_catches_what_a_phone_would_reject() -> None:
    good = DATA.rendered(DATA.vendor.build(DATA.device({})))[FILE].encode("utf-8")
    for bad in (good.replace(b"\r\n", b"\n"), good[:-2], good.replace(b'="', b' = "', 1),
                b"# nothing\r\nX=\"1\"\r\n\r\n"):
        with pytest.raises(FormatError):
            parse_panasonic(bad)


def test_file_over_120_kb_is_rejected() -> None:
    raw = {f"X_FILLER_{i}": "z" * 480 for i in range(260)}
    problems = DATA.vendor.build(DATA.device({"raw": raw})).problems
    assert len(problems) == 1 and "bytes" in problems[0] and FILE in problems[0]
