"""MAC addresses: accept every usual spelling, keep one canonical form (12 lowercase hex)."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[:\-.\s]")
_HEX12 = re.compile(r"^[0-9a-f]{12}$")
# Accepted shapes: 001565aabbcc, 00:15:65:aa:bb:cc, 00-15-65-aa-bb-cc, 0015.65aa.bbcc,
# 001565-aabbcc (OUI-NIC, as some inventories print it)
_SHAPES = (
    re.compile(r"^[0-9a-fA-F]{12}$"),
    re.compile(r"^[0-9a-fA-F]{6}-[0-9a-fA-F]{6}$"),
    re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"),
    re.compile(r"^([0-9a-fA-F]{2}-){5}[0-9a-fA-F]{2}$"),
    re.compile(r"^([0-9a-fA-F]{4}\.){2}[0-9a-fA-F]{4}$"),
)


def normalize_mac(value: object) -> str:
    """Return the canonical spelling or raise ValueError naming what was given."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads an unquoted 001565000010 as an octal number and 12:30:45:10:20:30 as a
        # base-60 one: the digits are lost, so never guess them back.
        raise ValueError(f"write MAC addresses in quotes (YAML read this one as the number "
                         f"{value})")
    text = str(value).strip()
    if not any(shape.match(text) for shape in _SHAPES):
        raise ValueError(f"not a MAC address: {text!r}")
    mac = _SEPARATORS.sub("", text).lower()
    assert _HEX12.match(mac)
    return mac


def colon_mac(mac: str) -> str:
    return ":".join(mac[i : i + 2] for i in range(0, 12, 2))
