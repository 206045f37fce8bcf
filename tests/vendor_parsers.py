"""Strict parsers of rendered Yealink and Snom files, for the vendor tests.

Strict means: anything a phone might misread is an error here, not silently skipped. A test that
parses a file back with these functions checks the syntax of the whole file as well as the values
it asserts.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

YEALINK_HEADER = "#!version:1.0.0.1"
_YEALINK_LINE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-\[\]]*) = (.*)$")
_INCLUDE = re.compile(r'^include:config "([^"]+)"$')
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


class FormatError(AssertionError):
    """The rendered text is not valid in the vendor's format."""


def _lines(text: str) -> list[str]:
    if "\r" in text:
        raise FormatError("carriage return in a Yealink file")
    if not text.endswith("\n"):
        raise FormatError("file does not end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != YEALINK_HEADER:
        raise FormatError(f"line 1 must be exactly {YEALINK_HEADER!r}, got {lines[0]!r}")
    return lines


def _setting(line: str, number: int, out: dict[str, str]) -> None:
    match = _YEALINK_LINE.match(line)
    if not match:
        raise FormatError(f"line {number}: not 'key = value': {line!r}")
    key, value = match.groups()
    if key in out:
        raise FormatError(f"line {number}: duplicate key {key}")
    out[key] = value


def parse_yealink_cfg(text: str) -> dict[str, str]:
    """`key -> value` of a Yealink cfg file; comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for number, line in enumerate(_lines(text)[1:], start=2):
        if line == "" or line.startswith("#"):
            continue
        _setting(line, number, out)
    return out


def parse_yealink_boot(text: str) -> tuple[list[str], dict[str, str]]:
    """(included cfg files in order, settings) of a Yealink boot file."""
    includes: list[str] = []
    settings: dict[str, str] = {}
    for number, line in enumerate(_lines(text)[1:], start=2):
        if line == "" or line.startswith("#"):
            continue
        match = _INCLUDE.match(line)
        if match:
            includes.append(match.group(1))
        else:
            _setting(line, number, settings)
    return includes, settings


@dataclass
class SnomFile:
    settings: dict[tuple[str, int | None], tuple[str, str]] = field(default_factory=dict)
    fkeys: dict[int, dict[str, str]] = field(default_factory=dict)

    def value(self, name: str, idx: int | None = None) -> str:
        return self.settings[(name, idx)][0]

    def perm(self, name: str, idx: int | None = None) -> str:
        return self.settings[(name, idx)][1]


def _declaration(text: str) -> None:
    first = text.split("\n", 1)[0]
    if first != XML_DECLARATION:
        raise FormatError(f"line 1 must be exactly {XML_DECLARATION!r}, got {first!r}")


def _attributes(element: ET.Element, allowed: set[str], required: set[str]) -> None:
    unknown = set(element.attrib) - allowed
    missing = required - set(element.attrib)
    if unknown or missing:
        raise FormatError(f"<{element.tag}>: unknown attributes {sorted(unknown)}, missing "
                          f"{sorted(missing)}")


def parse_snom(text: str) -> SnomFile:
    """Settings `(name, idx) -> (value, perm)` and function keys `idx -> attributes + value`."""
    _declaration(text)
    root = ET.fromstring(text.encode("utf-8"))
    if root.tag != "settings" or root.attrib or (root.text or "").strip():
        raise FormatError(f"root must be a bare <settings>, got <{root.tag}>")
    out = SnomFile()
    seen: set[str] = set()
    for section in root:
        if section.tag not in ("phone-settings", "functionKeys") or section.tag in seen:
            raise FormatError(f"unexpected or repeated section <{section.tag}>")
        seen.add(section.tag)
        for element in section:
            if len(element):
                raise FormatError(f"<{element.tag}> must hold text only")
            if section.tag == "phone-settings":
                _attributes(element, {"idx", "perm"}, {"perm"})
                idx = element.get("idx")
                key = (element.tag, int(idx) if idx is not None else None)
                if key in out.settings:
                    raise FormatError(f"duplicate setting {key}")
                out.settings[key] = (element.text or "", element.attrib["perm"])
            else:
                if element.tag != "fkey":
                    raise FormatError(f"<functionKeys> holds only <fkey>, got <{element.tag}>")
                _attributes(element, {"idx", "context", "label", "perm"},
                            {"idx", "context", "perm"})
                number = int(element.attrib["idx"])
                if number in out.fkeys:
                    raise FormatError(f"duplicate fkey idx {number}")
                out.fkeys[number] = {**element.attrib, "value": element.text or ""}
    if "phone-settings" not in seen:
        raise FormatError("no <phone-settings>")
    return out


def parse_snom_firmware(text: str) -> str:
    """The firmware URL of a Snom firmware settings file."""
    _declaration(text)
    root = ET.fromstring(text.encode("utf-8"))
    if root.tag != "firmware-settings" or root.attrib or len(root) != 1:
        raise FormatError("expected <firmware-settings> holding exactly one element")
    (child,) = list(root)
    if child.tag != "firmware" or len(child) or child.attrib:
        raise FormatError(f"expected <firmware>URL</firmware>, got <{child.tag}>")
    return child.text or ""
