"""Redirect services: MAC registrations at the vendors' zero-touch redirect services.

    base.py     the seam: Remote, DesiredRegistration, RedirectClient, State
    plan.py     pure planning: plan_redirects, device_states, raise_if_unsafe, Record
    state.py    provctl's records file; record_outcome / apply_change (one change → next record)
    http.py     the transport (the only module importing httpx): rate limit, retries, signing
    local.py    kind: local          a JSON registry file
    yealink.py  kind: yealink-rps    Yealink RPS JSON Open API (X-Ca-* HMAC-SHA256)
    ymcs.py     kind: yealink-ymcs   Yealink YMCS v2 (OAuth2 client credentials, Bearer)
    sraps.py    kind: snom-sraps / gigaset-grape   SRAPS REST (Hawk)
    poly.py     kind: poly-ztp       Poly ZTP (API-KEY, profiles)

`make_client` builds the client for one configured service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reconciler.desired.schema import (
    LocalRedirect,
    PolyZtp,
    RedirectService,
    SnomSraps,
    YealinkRps,
    YealinkYmcs,
)
from reconciler.redirect.base import DesiredRegistration, RedirectClient, Remote, State
from reconciler.redirect.http import BaseTransport, RetryPolicy

__all__ = [
    "DesiredRegistration",
    "RedirectClient",
    "Remote",
    "RetryPolicy",
    "State",
    "make_client",
]


def make_client(
    name: str,
    spec: RedirectService,
    resolve_secret: Callable[[str], str],
    base_dir: Path,
    transport: BaseTransport | None = None,
    *,
    timeout: float = 15.0,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RedirectClient:
    """The client for redirect service `name` configured as `spec`.

    `resolve_secret` turns a secret reference (`env:NAME`, `secret:NAME`, ...) into its value;
    `base_dir` anchors a relative `kind: local` path (the desired-state repository, or the
    working directory); `transport` replaces the network (tests); `sleep` is what backoff and
    rate limiting wait with (tests pass a no-op).
    """
    common = {"timeout": timeout, "retry": retry, "transport": transport, "sleep": sleep}
    if isinstance(spec, LocalRedirect):
        from reconciler.redirect.clients.local import LocalRegistry

        path = Path(spec.path).expanduser()
        return LocalRegistry(name, path if path.is_absolute() else base_dir / path)
    if isinstance(spec, YealinkRps):
        from reconciler.redirect.clients.yealink import YealinkRpsClient

        return YealinkRpsClient(
            name,
            resolve_secret(spec.access_key),
            resolve_secret(spec.secret),
            base_url=spec.base_url,
            server_name=spec.server_name,
            rate_per_second=spec.rate_per_second,
            **common,  # type: ignore[arg-type]
        )
    if isinstance(spec, YealinkYmcs):
        from reconciler.redirect.clients.ymcs import YmcsClient

        options = spec.model_dump(include={"region", "base_url", "batch_size", "rate_per_second"})
        return YmcsClient(name, resolve_secret(spec.client_id), resolve_secret(spec.client_secret),
                          **options, **common)  # type: ignore[arg-type]
    if isinstance(spec, SnomSraps):
        from reconciler.redirect.clients.sraps import FLAVOURS, SrapsClient

        return SrapsClient(
            name,
            resolve_secret(spec.key_id),
            resolve_secret(spec.secret),
            flavour=FLAVOURS[spec.kind],
            base_url=spec.base_url,
            rate_per_second=spec.rate_per_second,
            **common,  # type: ignore[arg-type]
        )
    if isinstance(spec, PolyZtp):
        from reconciler.redirect.clients.poly import PolyZtpClient

        return PolyZtpClient(
            name,
            resolve_secret(spec.api_key),
            base_url=spec.base_url,
            rate_per_second=spec.rate_per_second,
            **common,  # type: ignore[arg-type]
        )
    raise TypeError(f"unknown redirect service kind: {type(spec).__name__}")
