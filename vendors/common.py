"""Small helpers every vendor module uses (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def get(params: Mapping[str, Any], *path: str) -> Any:
    """A nested parameter, or None when any level is missing: get(p, "sip", "server")."""
    value: Any = params
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def text(value: Any) -> str:
    """A value as a text-format setting; booleans as 1 / 0."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def language_code(value: str) -> str:
    """"de", "de-DE", "de_CH" -> "de"."""
    return re.split(r"[-_]", value.strip(), maxsplit=1)[0].lower()
