"""A real HTTP server on 127.0.0.1 (free port, its own thread) that fakes a vendor API.

Subclasses implement `handle(request) -> Reply`. The base class gives every fake:

- a request log (`requests`: method, path, status) so tests can assert what reached the wire
  (`count(...)`, and `mark()` / `since(mark)` to count one phase of a run);
- fault injection, consumed one request at a time before authentication (like a gateway):
  `fail_next(n, status=500, headers=None)`, `throttle_next(n)` (HTTP 429, or the vendor's own
  throttling answer), `slow_next(n, delay)` (sleep past the client's timeout, then answer 503 —
  the request is NOT applied), `answer_next(n, body, after=0)` (HTTP 200 with this body,
  whatever was asked, once `after` requests have been answered normally: a service answering
  nonsense);
- a server-side rate limit like an API gateway's (`rate_limit(rate, burst)`): a token bucket
  on the wall clock; a request beyond it is answered HTTP 429 with `Retry-After` (whole
  seconds, rounded up) and is NOT applied. No vendor documents its limits (reference §6):
  the numbers are the test's;
- `clock` (a callable, default time.time) and `skew` seconds added to it, to test timestamps.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the raw request target as sent: path + "?" + query (percent-encoded)
    path: str  # decoded path
    query: list[tuple[str, str]]  # decoded
    headers: dict[str, str]  # lower-case names
    body: bytes
    host: str  # the Host header the client sent

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


@dataclass
class _Fault:
    kind: str  # "status" | "throttle" | "slow" | "answer" | "none" (answered normally)
    status: int = 500
    delay: float = 0.0
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class _Bucket:
    """The fake gateway's token bucket (wall clock, independent of the signing clock)."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self) -> float:
        """0 when the request may pass, else seconds until a token is due."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    status: int


class FakeServer:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Logged] = []
        self.clock: Callable[[], float] = time.time
        self.skew = 0.0
        self._faults: list[_Fault] = []
        self._bucket: _Bucket | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    target=self.path,
                    path=parts.path,
                    query=parse_qsl(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    host=self.headers.get("Host", ""),
                )
                reply = fake._dispatch(request)
                if reply is None:  # slow fault: the client has gone
                    self.close_connection = True
                    return
                data = reply.encode()
                try:
                    self.send_response(reply.status)
                    if data:
                        self.send_header("Content-Type", "application/json")
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        daemon=True, name=type(self).__name__)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def now(self) -> float:
        return self.clock() + self.skew

    # -- faults --------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500,
                  headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self._faults.extend(_Fault("status", status=status, headers=dict(headers or {}))
                                for _ in range(n))

    def throttle_next(self, n: int = 1, retry_after: str | None = None) -> None:
        with self.lock:
            self._faults.extend(_Fault("throttle", retry_after=retry_after) for _ in range(n))

    def slow_next(self, n: int = 1, delay: float = 1.0) -> None:
        with self.lock:
            self._faults.extend(_Fault("slow", delay=delay) for _ in range(n))

    def rate_limit(self, rate: float | None, burst: float = 1.0) -> None:
        """Answer 429 + Retry-After beyond `rate` requests/s (bursts of `burst`); None: off."""
        with self.lock:
            self._bucket = _Bucket(rate, burst) if rate else None

    def answer_next(self, n: int = 1, body: Any = None, after: int = 0) -> None:
        with self.lock:
            self._faults.extend(_Fault("none") for _ in range(after))
            self._faults.extend(_Fault("answer", status=200, body=body) for _ in range(n))

    def throttle_reply(self, retry_after: str | None) -> Reply:
        """How this vendor says "slow down" (override for an in-band answer)."""
        headers = {"Retry-After": retry_after} if retry_after else {}
        return Reply(429, {"message": "Too Many Requests"}, headers)

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> Reply | None:
        with self.lock:
            fault = self._faults.pop(0) if self._faults else None
            if fault is not None and fault.kind == "none":
                fault = None
            wait = self._bucket.take() if self._bucket is not None and fault is None else 0.0
        if wait:
            reply = Reply(429, {"message": "Too Many Requests"},
                          {"Retry-After": str(max(1, math.ceil(wait)))})
            self._log(request, reply.status)
            return reply
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            self._log(request, 0)
            return None
        if fault is not None and fault.kind == "throttle":
            reply = self.throttle_reply(fault.retry_after)
        elif fault is not None and fault.kind == "answer":
            reply = Reply(fault.status, fault.body)
        elif fault is not None:
            reply = Reply(fault.status, {"message": "Internal Server Error"}, fault.headers)
        else:
            with self.lock:
                try:
                    reply = self.handle(request)
                except Exception as exc:  # a bug in the fake: make it loud, not a hang
                    reply = Reply(599, {"message": f"fake error: {exc!r}"})
        self._log(request, reply.status)
        return reply

    def _log(self, request: Request, status: int) -> None:
        with self.lock:
            self.requests.append(Logged(request.method, request.path, status))

    def mark(self) -> int:
        """A bookmark in the request log (see `since`)."""
        with self.lock:
            return len(self.requests)

    def since(self, mark: int) -> list[Logged]:
        with self.lock:
            return list(self.requests[mark:])

    def count(self, method: str | None = None, contains: str = "") -> int:
        with self.lock:
            return sum(
                1 for r in self.requests
                if (method is None or r.method == method) and contains in r.path
            )

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError


class Accounts:
    """For a fake whose devices each belong to one account: credentials (key -> secret and
    account id), the MAC -> device store (each device with its "account"), seeding and
    inspection. The fake defines `_seeded(mac, account, url)`, a new device of its own shape."""

    prefix = "acct"
    lock: threading.RLock

    def init_accounts(self, credentials: dict[str, str] | None) -> None:
        self.accounts: dict[str, tuple[str, str]] = {}  # key -> (secret, account id)
        self.devices: dict[str, dict[str, Any]] = {}  # mac -> device (with "account")
        for key, secret in (credentials or {}).items():
            self.add_account(key, secret)

    def add_account(self, key: str, secret: str) -> str:
        account = f"{self.prefix}-{len(self.accounts) + 1}"
        self.accounts[key] = (secret, account)
        return account

    def account_of(self, key: str) -> str:
        return self.accounts[key][1]

    def _seeded(self, mac: str, account: str, url: str) -> dict[str, Any]:
        raise NotImplementedError

    def seed_device(self, mac: str, url: str, account: str) -> dict[str, Any]:
        """A device held by `account` (e.g. another enterprise's), with its own URL."""
        with self.lock:
            device = self._seeded(mac.lower(), account, url)
            self.devices[device["mac"]] = device
            return device

    def device(self, mac: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.devices.get(mac)
            return dict(found) if found else None
