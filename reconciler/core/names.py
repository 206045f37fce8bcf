"""Names people type: suggest the closest known one when a name is unknown."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest to `name` (case-insensitive), if one is near enough."""
    choices = {k.lower(): k for k in known}
    found = difflib.get_close_matches(name.lower(), list(choices), n=1, cutoff=0.6)
    return choices[found[0]] if found else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' or '' — appended to an 'unknown ...' message."""
    found = closest(name, known)
    return f" (did you mean {found!r}?)" if found else ""
