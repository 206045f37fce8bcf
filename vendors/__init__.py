"""Vendor modules, one package per vendor; `get(name)` returns its `VENDOR` object."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

from vendors.base import UserAgent, Vendor

# Vendors with a complete module. Adding one: docs/adding-a-vendor.md.
KNOWN = ("yealink", "snom", "poly", "grandstream", "cisco", "fanvil", "gigaset", "panasonic")

# The repository's top-level templates/ (a checkout, an editable install); a wheel ships them as
# vendors/templates/ (setup.py), looked for first.
_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "templates" if (_HERE / "templates").is_dir() else _HERE.parent / "templates"


@cache
def get(name: str) -> Vendor:
    if name not in KNOWN:
        raise KeyError(name)
    module = importlib.import_module(f"vendors.{name}")
    vendor: Vendor = module.VENDOR
    return vendor


def all_vendors() -> list[Vendor]:
    return [get(name) for name in KNOWN]


@cache
def _ua_parsers() -> tuple[Callable[[str], UserAgent | None], ...]:
    return tuple(importlib.import_module(f"vendors.{name}").parse_user_agent for name in KNOWN)


@lru_cache(maxsize=4096)  # a fleet sends few distinct User-Agents; logs repeat them endlessly
def identify_user_agent(text: str) -> UserAgent | None:
    """The phone behind a User-Agent, asking every vendor module; None if none knows it."""
    for parse in _ua_parsers():
        found = parse(text)
        if found is not None:
            return found
    return None
