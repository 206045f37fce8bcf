"""Vendor modules, one package per vendor; `get(name)` returns its `VENDOR` object."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from vendors.base import Vendor

# Vendors with a complete module. A new vendor is added here and in templates/<name>/.
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
