"""The HTTP transport of the redirect clients: the only module that imports httpx.

One `HttpTransport` per redirect service: an `httpx.Client` with a base URL (or a test
`transport=`), a client-side token-bucket rate limiter that slows down when the service says
so (429 or a vendor's in-band code; `Retry-After` pauses the whole service), and retries with
exponential backoff and jitter on what is worth retrying — HTTP 429, 5xx, a vendor's
throttling answer (the caller says which), timeouts and connection errors. `stats` counts the
requests and shows the current rate (for a progress line). After the last attempt it raises
`RedirectError(transient=True)`. Anything else (2xx, 4xx) is handed back as a small frozen
`Response` so the vendor modules never see httpx.

Signing schemes that cover the request (Yealink `X-Ca-*`, Hawk) are a `Signer`: a function of a
`SignInput` (method, URL parts, body) returning headers to add. It runs again for every attempt,
so each retry carries a fresh nonce and timestamp.

Nothing here logs headers, bodies or query strings: credentials and signatures never reach a log.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import RateStats

log = logging.getLogger(__name__)

# Re-exported so the rest of the package can type a test transport without importing httpx.
BaseTransport = httpx.BaseTransport

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class SignInput:
    """What a request signature may cover, exactly as the request is sent."""

    method: str  # upper case
    scheme: str
    host: str  # lower case
    port: int  # explicit, or the scheme's default
    path: str  # decoded path, leading slash
    raw_target: str  # path + "?" + query exactly as sent (percent-encoded)
    query: tuple[tuple[str, str], ...]  # decoded query parameters, in the order sent
    body: bytes
    content_type: str  # as sent, may be ""


Signer = Callable[[SignInput], Mapping[str, str]]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    url: str
    links: Mapping[str, str] = field(default_factory=dict)  # RFC 8288 rel -> absolute URL

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError as exc:
            raise ValueError(f"not JSON (HTTP {self.status})") from exc

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: delay = min(max_delay, base * 2**n), jittered to 50–100 %.

    A `Retry-After` (on a 429, or a 503) is honoured exactly, by pausing the service's whole
    token bucket; one longer than `max_retry_after` ends the request at once (transient).
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, rng: Callable[[], float], retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_delay, max(0.0, retry_after))
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling * (0.5 + 0.5 * rng())


class RateLimiter:
    """Token bucket: `rate` requests per second on average, bursts up to `burst`.

    A caller that finds the bucket empty takes a token on credit and sleeps until it is due,
    so the limiter never spins (an injected no-op sleep just lets every request through).
    Thread-safe: one limiter is shared by every thread talking to the same service.

    It adapts to the service (AIMD): `backoff()` after a "slow down" answer halves the rate
    (not below 1/32 of the configured one) and, given a Retry-After, pauses every caller until
    then; each `success()` wins back 5 % of the configured rate. `rate` is the limit now.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.configured = rate
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._not_before = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token; returns how long the caller waited (seconds)."""
        with self._lock:
            now = self._clock()
            if now > self._stamp:  # no tokens accrue while paused (_stamp in the future)
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
            self._tokens -= 1.0
            wait = max(0.0, self._stamp - now)
            if self._tokens < 0:
                wait += -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait

    def backoff(self, retry_after: float | None, *, slower: bool = True) -> None:
        """The service said "slow down" (`slower`) and/or "not before `retry_after` s"."""
        with self._lock:
            now = self._clock()
            if slower:
                self.rate = max(self.configured / 32, self.rate / 2)
            if retry_after is not None and retry_after > 0:
                self._not_before = max(self._not_before, now + retry_after)
                self._tokens = min(self._tokens, 1.0)  # one request when the pause ends
                self._stamp = max(self._stamp, self._not_before)

    def success(self) -> None:
        if self.rate < self.configured:
            with self._lock:
                self.rate = min(self.configured, self.rate + self.configured * 0.05)

    def current(self) -> tuple[float, float]:
        """(the rate allowed now, seconds until a Retry-After pause ends)."""
        with self._lock:
            return self.rate, max(0.0, self._not_before - self._clock())


class HttpTransport:
    """httpx.Client + rate limiter + retries, for one redirect service.

    `stats` counts every attempt and shows the current rate (for a progress line: set
    `stats.listener`, or read `stats.snapshot()`).
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        rate_per_second: float = 5.0,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        same_origin: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.service = service
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.same_origin = same_origin
        self._sleep = sleep
        self._rng = rng
        self.limiter = RateLimiter(rate_per_second, clock=clock, sleep=sleep)
        self.stats = RateStats(clock=clock)
        self.stats.limit_source = self.limiter.current
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers=dict(headers or {}),
            follow_redirects=False,
            # Proxy and CA settings from the environment apply, except to a service on
            # loopback (a test server), which is never reached through a proxy.
            trust_env=(urlsplit(base_url).hostname or "") not in LOOPBACK,
        )
        self._origin = _origin(str(self._client.base_url))

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        signer: Signer | None = None,
        throttled: Callable[[Response], bool] | None = None,
    ) -> Response:
        """Send with rate limiting and retries; return the final non-retryable response.

        `url` is relative to the base URL or absolute (a link the service returned; it must
        stay on the base URL's origin). `throttled` recognises a vendor's throttling answer
        inside a 200 (Yealink RPS JSON) or under another status (YMCS `900429`): retried like
        a 429.
        """
        content = None
        send_headers = dict(headers or {})
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"), sort_keys=True).encode()
            send_headers.setdefault("Content-Type", "application/json")
        request = self._client.build_request(
            method, url, params=params, content=content, headers=send_headers
        )
        if self.same_origin and _origin(str(request.url)) != self._origin:
            raise RedirectError(
                self.service, f"refusing to send to {_origin(str(request.url))}: not the service"
            )
        what = f"{method.upper()} {request.url.path}"
        last = ""
        paused = False
        for attempt in range(self.retry.attempts):
            if attempt and not paused:  # after a Retry-After the limiter does the waiting
                self._sleep(self.retry.delay(attempt - 1, self._rng, None))
            paused = False
            self.limiter.acquire()
            if signer is not None:
                request.headers.update(signer(_sign_input(request)))
            self.stats.sent()
            try:
                raw = self._client.send(request)
            except httpx.TimeoutException:
                last = "timed out"
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
            else:
                response = _wrap(raw)
                throttle = response.status == 429 or (
                    throttled is not None and throttled(response))
                if not throttle and response.status not in RETRY_STATUS:
                    self.limiter.success()
                    log.debug("%s %s -> %s", self.service, what, response.status)
                    return response
                last = f"HTTP {response.status}" + (" (throttled)" if throttle else "")
                retry_after = _retry_after(response.headers.get("retry-after"))
                if retry_after is not None and retry_after > self.retry.max_retry_after:
                    raise RedirectError(
                        self.service, f"{what}: {last}: the service asks to wait "
                        f"{retry_after:.0f} s (more than {self.retry.max_retry_after:.0f} s); "
                        "try again later", transient=True)
                if throttle:
                    self.stats.throttled()
                if throttle or retry_after is not None:
                    self.limiter.backoff(retry_after, slower=throttle)
                    paused = retry_after is not None
                    rate, _ = self.limiter.current()
                    log.info("%s: %s; %s, now at most %.2g requests/s", self.service, last,
                             f"waiting {retry_after:.3g} s as asked" if paused
                             else "backing off", rate)
            log.debug(
                "%s %s: %s (attempt %d/%d)", self.service, what, last, attempt + 1,
                self.retry.attempts,
            )
        raise RedirectError(
            self.service,
            f"{what}: {last} after {self.retry.attempts} attempts",
            transient=True,
        )

    def close(self) -> None:
        self._client.close()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _sign_input(request: httpx.Request) -> SignInput:
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    return SignInput(
        method=request.method.upper(),
        scheme=url.scheme,
        host=url.host.lower(),
        port=port,
        path=url.path,
        raw_target=url.raw_path.decode("ascii"),
        query=tuple(url.params.multi_items()),
        body=request.content,
        content_type=request.headers.get("content-type", ""),
    )


def _wrap(raw: httpx.Response) -> Response:
    body = raw.read()
    links = {}
    for link in raw.links.values():
        rel, target = link.get("rel"), link.get("url")
        if rel and target:
            links[rel] = str(raw.request.url.join(target))
    return Response(
        status=raw.status_code,
        headers={k.lower(): v for k, v in raw.headers.items()},
        body=body,
        url=str(raw.request.url),
        links=links,
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
