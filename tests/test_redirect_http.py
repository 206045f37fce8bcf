"""The redirect transport: rate limiting, bounded retries with backoff, no secrets in logs."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from fakes import FakePolyZtp, FakeYealinkRps

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, RateSnapshot, rate_note, rates
from reconciler.redirect.clients.poly import PolyZtpClient
from reconciler.redirect.clients.yealink import YealinkRpsClient
from reconciler.redirect.http import HttpTransport, RateLimiter, RetryPolicy


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limiter_allows_a_burst_then_paces():
    clock = Clock()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        limiter.acquire()
    assert clock.slept == [0.5, 0.5, 0.5, 0.5]  # burst of 2, then one every 1/2 s
    clock.now += 10  # idle: the bucket refills, up to the burst only
    limiter.acquire()
    limiter.acquire()
    limiter.acquire()
    assert clock.slept[-1] == 0.5 and len(clock.slept) == 5


def test_rate_limiter_with_a_no_op_sleep_never_spins():
    limiter = RateLimiter(1.0, sleep=lambda s: None)
    waits = [limiter.acquire() for _ in range(50)]
    assert waits[0] == 0 and max(waits) > 40  # owed, not busy-waited


def test_backoff_grows_is_jittered_bounded_and_honours_retry_after():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    assert [policy.delay(n, lambda: 1.0, None) for n in range(6)] == [1, 2, 4, 8, 8, 8]
    assert [policy.delay(n, lambda: 0.0, None) for n in range(3)] == [0.5, 1, 2]
    assert policy.delay(0, lambda: 0.5, 3.0) == 3.0
    assert policy.delay(0, lambda: 0.5, 3600.0) == 8.0


def _transport(handler, attempts=4):
    clock = Clock()
    transport = HttpTransport(
        "svc", "https://api.example.test/v1/", rate_per_second=1000,
        retry=RetryPolicy(attempts=attempts, base_delay=1.0, max_delay=30.0),
        transport=httpx.MockTransport(handler), sleep=clock.sleep, rng=lambda: 1.0,
        clock=clock,
    )
    return transport, clock


def test_retries_429_and_5xx_then_returns_the_answer():
    answers = iter([429, 502, 200])
    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx.Response(next(answers), json={"ok": True})

    transport, clock = _transport(handler)
    response = transport.request("GET", "things")
    assert response.status == 200 and response.json() == {"ok": True}
    assert seen == ["/v1/things"] * 3
    assert [s for s in clock.slept if s >= 1] == [1.0, 2.0]


def test_retry_after_header_is_used():
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)])
    transport, clock = _transport(lambda request: next(answers))
    transport.request("GET", "x")
    assert clock.slept == [7.0]  # exactly as asked: no jittered backoff on top


def test_a_429_pauses_the_whole_service_and_lowers_its_rate():
    """Retry-After holds back every later request of the service, not only the retried one;
    the bucket halves its rate and wins it back with each success."""
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"})]
                   + [httpx.Response(200)] * 30)
    clock = Clock()
    transport = HttpTransport(
        "svc", "https://api.example.test/v1/", rate_per_second=10,
        transport=httpx.MockTransport(lambda request: next(answers)), sleep=clock.sleep,
        rng=lambda: 1.0, clock=clock)
    seen = []
    transport.stats.listener = seen.append
    for _ in range(10):  # a burst: the bucket allows 10 at once
        transport.limiter.acquire()
    clock.now += 1.0  # refilled
    transport.request("GET", "x")  # 429 + Retry-After: 3
    snap = transport.stats.snapshot()
    assert snap.throttled == 1 and snap.requests == 2
    assert transport.limiter.configured == 10 and clock.slept[-1] == 3.0
    # after the 429 and one success: half the rate, plus 5 % of it back
    assert snap.limit == pytest.approx(5.5)
    start = clock.now
    for _ in range(10):
        transport.request("GET", "x")
    assert clock.now - start > 10 / 10  # paced below the configured 10/s while recovering
    assert transport.stats.snapshot().limit == 10  # recovered
    assert len(seen) == 12 and seen[-1].requests == 12 and seen[0].paused_for == 0
    assert transport.stats.snapshot().measured > 0


def test_retry_after_beyond_the_limit_ends_the_request_at_once():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "3600"})

    transport, clock = _transport(handler)
    with pytest.raises(RedirectError, match="asks to wait 3600 s") as caught:
        transport.request("GET", "x")
    assert caught.value.transient and len(calls) == 1 and clock.slept == []


def test_a_503_with_retry_after_waits_that_long_without_slowing_the_rate():
    answers = iter([httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(200)])
    transport, clock = _transport(lambda request: next(answers))
    transport.request("GET", "x")
    assert clock.slept == [2.0] and transport.limiter.rate == transport.limiter.configured
    assert transport.stats.snapshot().throttled == 0


def test_4xx_is_not_retried():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(404)

    transport, _ = _transport(handler)
    assert transport.request("GET", "x").status == 404 and len(calls) == 1


def test_every_attempt_failing_is_one_transient_error():
    transport, _ = _transport(lambda request: httpx.Response(500), attempts=3)
    with pytest.raises(RedirectError) as caught:
        transport.request("POST", "x", json_body={"a": 1})
    assert caught.value.transient and "after 3 attempts" in str(caught.value)


def test_the_signer_runs_for_every_attempt():
    answers = iter([503, 200])
    nonces = []

    def handler(request):
        nonces.append(request.headers["X-Nonce"])
        return httpx.Response(next(answers))

    transport, _ = _transport(handler)
    counter = iter(range(100))
    transport.request("GET", "x", signer=lambda s: {"X-Nonce": str(next(counter))})
    assert nonces == ["0", "1"]


@pytest.mark.integration
def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    transport = HttpTransport("svc", f"http://127.0.0.1:{port}/", sleep=lambda s: None,
                              retry=RetryPolicy(attempts=2))
    with pytest.raises(RedirectError, match="connection failed") as caught:
        transport.request("GET", "x")
    assert caught.value.transient


def test_links_off_the_service_origin_are_refused():
    transport, _ = _transport(lambda request: httpx.Response(200))
    with pytest.raises(RedirectError, match="refusing"):
        transport.request("GET", "https://elsewhere.example.test/v1/x")


@pytest.mark.integration
def test_no_credentials_or_signatures_in_logs(caplog):
    caplog.set_level(logging.DEBUG)
    want = DesiredRegistration("001565aabb01", "s", "https://prov.example.net/tok/", "m/x")
    with FakeYealinkRps({"ak-visible": "sk-hidden"}) as fake:
        fake.fail_next(1, status=503)
        client = YealinkRpsClient("y", "ak-visible", "sk-hidden", base_url=fake.url,
                                  sleep=lambda s: None)
        client.register(want)
        client.deregister(want.mac)
    with FakePolyZtp({"api-key-hidden": "acct"}) as fake:
        client = PolyZtpClient("p", "api-key-hidden", base_url=fake.url + "/preview",
                               sleep=lambda s: None)
        client.register(want)
    text = caplog.text
    assert "registered 001565aabb01" in text
    for secret in ("ak-visible", "sk-hidden", "api-key-hidden", "X-Ca-Signature", "/tok/"):
        assert secret not in text


def test_rates_shows_every_http_client_and_skips_the_others(tmp_path):
    from reconciler.redirect.clients.local import LocalRegistry

    transport, _ = _transport(lambda request: httpx.Response(200))
    transport.request("GET", "x")

    class Client:
        stats = transport.stats

    shown = rates({"yealink": Client(), "default": LocalRegistry("default", tmp_path / "r")})
    assert list(shown) == ["yealink"] and isinstance(shown["yealink"], RateSnapshot)
    assert shown["yealink"].requests == 1 and shown["yealink"].limit == 1000


def test_rate_note_names_each_busy_service_its_rate_limit_and_throttling():
    note = rate_note({
        "ymcs": RateSnapshot(requests=40, throttled=3, limit=2.5, measured=2.44, paused_for=1.2),
        "snom": RateSnapshot(requests=7, throttled=0, limit=5.0, measured=4.96, paused_for=0.0),
        "poly": RateSnapshot(requests=0, throttled=0, limit=5.0, measured=0.0, paused_for=0.0),
    })
    assert note == "snom 5.0/5 req/s; ymcs 2.4/2.5 req/s, 3 throttled, paused 1 s"


def test_the_progress_bar_redraws_the_note_while_a_batch_runs():
    """During one long batch the count stands still; each request's note is still shown (at
    most every `refresh` seconds), and the final line keeps the last one."""
    import io

    from reconciler.cli.progress import Progress

    stream = io.StringIO()
    now = [0.0]
    bar = Progress(stream, colour=False, refresh=0.5, clock=lambda: now[0])
    bar("register", 0, 300, "ymcs 0.0/5 req/s")
    for i in range(1, 6):
        now[0] += 0.6
        bar("register", 0, 300, f"ymcs {i}.0/5 req/s")
    bar("register", 300, 300, "ymcs 4.9/5 req/s, 1 throttled")
    bar.close()
    text = stream.getvalue()
    assert "0/300" in text and "ymcs 3.0/5 req/s" in text  # redrawn mid-batch
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert "300/300" in last and last.endswith("ymcs 4.9/5 req/s, 1 throttled]")
