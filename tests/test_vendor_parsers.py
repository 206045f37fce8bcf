"""The strict parsers read a file the way the phone does (issue 15): hand-written files that
provctl itself never writes, so the rules are pinned down independently of the vendor modules."""

from __future__ import annotations

import pytest
from vendor_parsers import (
    FormatError,
    parse_cisco,
    parse_fanvil,
    parse_panasonic,
    parse_yealink_cfg,
    poly_phone,
    yealink_phone,
)

POLY = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
MASTER = (POLY + '<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="{files}" MISC_FILES="" '
          'LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY="" '
          'LICENSE_DIRECTORY=""/>\n')


def test_yealink_takes_the_last_value_of_a_key_and_the_later_file() -> None:
    duplicates: list[str] = []
    keys = parse_yealink_cfg("#!version:1.0.0.1\na = 1\nb = 2\na = 3\n", duplicates)
    assert keys == {"b": "2", "a": "3"} and duplicates == ["a"]
    boot = '#!version:1.0.0.1\ninclude:config "one.cfg"\ninclude:config "two.cfg"\n'
    files = {"one.cfg": "#!version:1.0.0.1\na = 1\nb = 1\n",
             "two.cfg": "#!version:1.0.0.1\na = 2\n"}
    assert yealink_phone(boot, files) == {"a": "2", "b": "1"}


def test_panasonic_takes_the_first_value_of_a_name() -> None:
    text = ('# Panasonic SIP Phone Standard Format File #\r\nA="1"\r\nB="2"\r\nA="3"\r\n\r\n')
    duplicates: list[str] = []
    assert parse_panasonic(text.encode(), duplicates)[1] == {"A": "1", "B": "2"}
    assert duplicates == ["A"]


def test_poly_takes_a_parameter_from_the_first_listed_file_that_sets_it() -> None:
    first = POLY + '<polycomConfig a="first" b="only-here"/>\n'
    second = POLY + '<polycomConfig a="second" c="later"/>\n'
    files = {"one.cfg": first, "two.cfg": second}
    phone = poly_phone(MASTER.format(files="one.cfg, two.cfg, missing.cfg"), files)
    assert phone == {"a": "first", "b": "only-here", "c": "later"}
    assert poly_phone(MASTER.format(files="two.cfg,one.cfg"), files)["a"] == "second"


def test_cisco_takes_the_last_element_and_does_not_trust_a_self_closing_one() -> None:
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n<flat-profile>\n'
            '  <A ua="na">1</A>\n  <B ua="na"/>\n  <C ua="ro"></C>\n  <A ua="na">2</A>\n'
            '</flat-profile>\n')
    duplicates: list[str] = []
    unset: list[str] = []
    assert parse_cisco(text, duplicates, unset) == {"A": ("2", "na"), "C": ("", "ro")}
    assert duplicates == ["A"] and unset == ["B"]


def test_formats_without_a_rule_for_repeated_keys_refuse_them() -> None:
    with pytest.raises(FormatError, match="duplicate"):
        parse_fanvil("<<VOIP CONFIG FILE>>Version:2.0000000000\n<SIP CONFIG MODULE>\n"
                     "A :1\nA :2\n<<END OF FILE>>\n")
