"""How a target fared as a whole in one run, as a type rather than a string to be parsed.

    None       the target ran (its items may still have failed one by one)
    Failure    it failed: unreachable, manifest unreadable, stopped by SIGTERM → exit 1, retry
    Refusal    a safety rule or someone else's lock said no → exit 3

`str()` gives the text shown to people and written to receipts and status ("refused: …" for a
refusal, as before), so nothing downstream has to recognise a refusal by its wording.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Refusal(Failure):
    def __str__(self) -> str:
        return f"refused: {self.message}"


def exit_code(error: Failure | None) -> int:
    """0 ran, 1 failed, 3 refused (the contract's codes for a target's outcome)."""
    if error is None:
        return 0
    return 3 if isinstance(error, Refusal) else 1
