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


MAX_USER_AGENT = 512  # longer is not a phone: refuse before any pattern runs
_HEX12 = re.compile(r"^[0-9a-f]{12}$")


def mac12(raw: str | None) -> str | None:
    """"00:15:65:AA:BB:CC", "001565aabbcc" -> "001565aabbcc"; anything else -> None."""
    if not raw:
        return None
    mac = re.sub(r"[:\-.]", "", raw.strip()).lower()
    return mac if _HEX12.match(mac) else None


def user_agent_text(text: str) -> str | None:
    """The User-Agent stripped of blanks and surrounding quotes, or None when it cannot be a
    phone's (empty, "-" as the combined log format writes a missing one, or too long)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if not text or text == "-" or len(text) > MAX_USER_AGENT:
        return None
    return text


def match_user_agent(text: str, prefix: str, pattern: re.Pattern[str]) -> re.Match[str] | None:
    """`pattern` matched at the start of the User-Agent in `text` (see user_agent_text), or
    None; `prefix` is tested first because most lines of a log are other vendors'."""
    ua = user_agent_text(text)
    if ua is None or not ua.startswith(prefix):
        return None
    return pattern.match(ua)
