"""The redirect-service seam: MAC registrations at a vendor's redirect (zero-touch) service.

A client speaks one vendor API. It observes (read-only `lookup`) and changes one MAC at a time
(`register`, `update`, `deregister`); it never decides anything — planning is pure and lives in
`redirect/plan.py`. Clients take an HTTP transport (httpx) so tests can hand them a real
loopback server of a faithful fake.

Errors: `RedirectError(transient=True)` for throttling / 5xx / timeouts (retry with backoff),
`RedirectError(conflict=True)` when another account holds the MAC (never retried blindly),
other `RedirectError`s are permanent for that device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

# Per-device redirect states, as shown by `provctl status` and in plans.
State = Literal["active", "disabled", "provision", "deprovision", "conflict"]


@dataclass(frozen=True)
class Remote:
    """What the vendor says about one MAC."""

    mac: str  # 12 lowercase hex
    holder: Literal["us", "nobody", "other"]
    url: str | None = None  # the registered provisioning URL when holder == "us"


@dataclass(frozen=True)
class DesiredRegistration:
    mac: str
    service: str  # name of the redirect service in provisioning.yaml
    url: str  # the phone's provisioning URL (with its token)
    model: str  # "yealink/T46U"
    serial: str | None = None
    until: str | None = None  # ISO date from the device's `redirect: {until: ...}`
    steal: bool = False
    opened: str = ""  # fingerprint of the git value that opened the window (new value = new window)


class RedirectClient(Protocol):
    name: str
    # Whether the API can take a MAC over from another account (`steal: true`). When it cannot,
    # the planner reports a conflict instead of planning a registration that must fail.
    can_steal: bool

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        """Observe these MACs; read-only."""
        ...

    def register(self, reg: DesiredRegistration) -> None:
        ...

    def update(self, reg: DesiredRegistration) -> None:
        ...

    def deregister(self, mac: str) -> None:
        ...

    def close(self) -> None:
        ...
