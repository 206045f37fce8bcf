"""The redirect-service seam: MAC registrations at a vendor's redirect (zero-touch) service.

A client speaks one vendor API. It observes (read-only `lookup`) and changes MACs (`register`,
`update`, `deregister`, and their batch forms `*_many`); it never decides anything — planning
is pure and lives in `redirect/plan.py`. Clients take an HTTP transport (httpx) so tests can
hand them a real loopback server of a faithful fake.

Batches: `register_many` / `update_many` / `deregister_many` take many MACs of one service and
return one outcome per MAC (`None` = done, else the `RedirectError` for that MAC only), so one
MAC held by another account never fails its neighbours. A client sends as few requests as its
API allows (lists where the API takes lists) and reuses what its last `lookup` saw instead of
observing again. The batch methods are optional: `register_many(client, ...)` and its
siblings here fall back to one call per MAC (`each()`) for a client without them.

Rate: every HTTP client has `stats` (`RateStats`): requests sent, throttled answers, the token
bucket's current limit and the measured rate, for a progress line (`stats.snapshot()`, or a
`stats.listener` called after each request).

Errors: `RedirectError(transient=True)` for throttling / 5xx / timeouts (retry with backoff),
`RedirectError(conflict=True)` when another account holds the MAC (never retried blindly),
other `RedirectError`s are permanent for that device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from reconciler.core.errors import RedirectError

log = logging.getLogger(__name__)

# Per-device redirect states, as shown by `provctl status` and in plans.
State = Literal["active", "disabled", "provision", "deprovision", "conflict"]

# One outcome per MAC of a batch: None when done, else why not (that MAC only).
Outcomes = dict[str, RedirectError | None]


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


T = TypeVar("T")


class Breaker:
    """Ends a batch once the service failed transiently `limit` times in a row (it is down, or
    throttling past every retry): the rest is not sent and fails transient too, so the next
    run retries it — instead of every remaining MAC spending its own retries on a dead
    service."""

    def __init__(self, limit: int = 3):
        self.limit = limit
        self._row = 0
        self._last: RedirectError | None = None

    def record(self, outcomes: Mapping[str, RedirectError | None]) -> None:
        for error in outcomes.values():
            if error is not None and error.transient:
                self._row += 1
                self._last = error
            else:
                self._row = 0

    def tripped(self) -> RedirectError | None:
        """The error for what is not sent any more, once tripped."""
        if self._row < self.limit or self._last is None:
            return None
        return RedirectError(self._last.service, f"not sent: {self._row} transient failures "
                             f"in a row ({self._last})", transient=True)


def each(items: Iterable[T], key: Callable[[T], str], run: Callable[[T], None]) -> Outcomes:
    """Run `run` per item; a RedirectError is that item's outcome, never its neighbours' (but
    after three transient failures in a row the rest is not tried: see Breaker)."""
    out: Outcomes = {}
    breaker = Breaker()
    for item in items:
        stop = breaker.tripped()
        if stop is not None:
            out[key(item)] = stop
            continue
        try:
            run(item)
        except RedirectError as exc:
            out[key(item)] = exc
        else:
            out[key(item)] = None
        breaker.record({key(item): out[key(item)]})
    return out


def register_many(client: RedirectClient, regs: Sequence[DesiredRegistration]) -> Outcomes:
    batch = getattr(client, "register_many", None)
    if batch is not None:
        return dict(batch(regs))
    return each(regs, lambda r: r.mac, client.register)


def update_many(client: RedirectClient, regs: Sequence[DesiredRegistration]) -> Outcomes:
    batch = getattr(client, "update_many", None)
    if batch is not None:
        return dict(batch(regs))
    return each(regs, lambda r: r.mac, client.update)


def deregister_many(client: RedirectClient, macs: Sequence[str]) -> Outcomes:
    batch = getattr(client, "deregister_many", None)
    if batch is not None:
        return dict(batch(macs))
    return each(macs, lambda m: m, client.deregister)


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + max(1, size)]


# -- pieces the batching clients share -------------------------------------------------------


def batched(items: Sequence[T], size: int, key: Callable[[T], str],
            send: Callable[[Sequence[T]], Outcomes],
            group: Callable[[T], str] | None = None) -> Outcomes:
    """`send` the items `size` at a time (one request per chunk; with `group`, a chunk holds
    items of one group only, in order); `key` is an item's MAC. Once the Breaker trips, the
    rest is not sent and fails transient."""
    out: Outcomes = {}
    breaker = Breaker()
    runs: list[list[T]] = []
    for item in items:
        if not runs or (group is not None and group(runs[-1][0]) != group(item)):
            runs.append([])
        runs[-1].append(item)
    for chunk in (c for run in runs for c in chunks(run, size)):
        stop = breaker.tripped()
        done = dict.fromkeys((key(i) for i in chunk), stop) if stop is not None else send(chunk)
        breaker.record(done)
        out.update(done)
    return out


def skip_pages(fetch: Callable[[int], Mapping[str, Any]], page_size: int,
               fail: Callable[[str], Exception]) -> Iterator[Mapping[str, Any]]:
    """Every item of a `{skip, limit, total, data: [...]}` listing (Yealink's RPS JSON and
    YMCS): `fetch(skip)` answers one page; stops at a short page or at `total`."""
    skip = 0
    while True:
        page = fetch(skip)
        items = page.get("data") or []
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise fail("unexpected answer: data is not a list of objects")
        yield from items
        skip += len(items)
        total = page.get("total")
        if not items or len(items) < page_size or (isinstance(total, int) and skip >= total):
            return


def shown(macs: Sequence[str]) -> str:
    """MACs for a log line: all of a few, else the count and the ends."""
    return ", ".join(macs) if len(macs) <= 5 else f"{len(macs)} MACs ({macs[0]} … {macs[-1]})"


def raise_for(outcomes: Outcomes, mac: str) -> None:
    """The one-MAC form of a batch method: raise that MAC's error, if any."""
    error = outcomes.get(mac)
    if error is not None:
        raise error


def own_ids(macs: Sequence[str], device_of: Callable[[str], Mapping[str, Any] | None],
            id_of: Callable[[Mapping[str, Any]], str]) -> tuple[Outcomes, dict[str, str]]:
    """Before a batched deregistration: ({device id: MAC} of this account's devices among
    `macs`, as `device_of` finds them), and the outcomes already settled — a MAC this account
    does not hold needs nothing (and nothing of it is touched); one that could not be read
    fails with that error."""
    out: Outcomes = {}
    ids: dict[str, str] = {}
    for mac in sorted(set(macs)):
        try:
            device = device_of(mac)
            if device is None:
                out[mac] = None
            else:
                ids[id_of(device)] = mac
        except RedirectError as exc:
            out[mac] = exc
    return out, ids


class Seen:
    """What a client's last `lookup` saw: the MACs it covered (`_observed`) and this account's
    devices among them (`_ours`), so a change never observes again what the lookup read."""

    _observed: set[str]
    _ours: dict[str, Mapping[str, Any]]

    def _find(self, mac: str) -> Mapping[str, Any] | None:
        """Read this account's device with this MAC from the service (None: not ours)."""
        raise NotImplementedError

    def _device(self, mac: str) -> Mapping[str, Any] | None:
        """Our device as the last lookup saw it; read only for a MAC it did not cover."""
        if mac in self._observed:
            return self._ours.get(mac)
        return self._find(mac)


def with_mac(devices: Iterable[Mapping[str, Any]], mac: str) -> Mapping[str, Any] | None:
    """The device with exactly this MAC among a search's answers (searches match substrings)."""
    return next((d for d in devices if str(d.get("mac", "")).lower() == mac), None)


class OneByBatch:
    """`register` / `update` / `deregister` of one MAC, for a client whose batch methods do
    the work."""

    def register_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        raise NotImplementedError

    def update_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        raise NotImplementedError

    def deregister_many(self, macs: Sequence[str]) -> Outcomes:
        raise NotImplementedError

    def register(self, reg: DesiredRegistration) -> None:
        raise_for(self.register_many([reg]), reg.mac)

    def update(self, reg: DesiredRegistration) -> None:
        raise_for(self.update_many([reg]), reg.mac)

    def deregister(self, mac: str) -> None:
        raise_for(self.deregister_many([mac]), mac)


# -- rate, for a progress line ---------------------------------------------------------------


@dataclass(frozen=True)
class RateSnapshot:
    """One service's traffic, as a progress line shows it."""

    requests: int  # sent (every attempt counts)
    throttled: int  # answers that said "slow down" (429, or the vendor's in-band code)
    limit: float  # requests per second the token bucket allows now (lowered after a 429)
    measured: float  # requests per second actually sent over the last `window` seconds
    paused_for: float  # seconds until the service's Retry-After has passed (0 when not paused)


class RateStats:
    """Counts the requests of one service and keeps the rate a progress line shows.

    The transport calls `sent()` / `throttled()`; the limiter reports its current limit and
    pause through `limit_source`. `listener`, when set (e.g. by the progress display), is
    called with a fresh snapshot after every request. Thread-safe; no I/O.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self.listener: Callable[[RateSnapshot], None] | None = None
        self.limit_source: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self._requests = 0
        self._throttled = 0

    def sent(self) -> None:
        with self._lock:
            now = self._clock()
            self._requests += 1
            self._recent.append(now)
            self._trim(now)
        self._notify()

    def throttled(self) -> None:
        with self._lock:
            self._throttled += 1

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()

    def snapshot(self) -> RateSnapshot:
        limit, paused = self.limit_source()
        with self._lock:
            now = self._clock()
            self._trim(now)
            recent = len(self._recent)
            span = min(self.window, max(now - self._recent[0], 1e-3)) if recent > 1 else 0.0
            measured = (recent - 1) / span if span else 0.0
            return RateSnapshot(self._requests, self._throttled, limit, measured, paused)

    @property
    def requests(self) -> int:
        return self._requests

    def _notify(self) -> None:
        listener = self.listener
        if listener is not None:
            try:
                listener(self.snapshot())
            except Exception:  # noqa: BLE001 - a progress display never fails a request
                log.debug("rate listener failed", exc_info=True)


def rate_note(snapshots: Mapping[str, RateSnapshot]) -> str:
    """A progress line's note: each service that sent requests, with its measured rate, its
    limit now, and, when it happened, the throttled answers and the pause (pure)."""
    notes = []
    for name, snap in sorted(snapshots.items()):
        if not snap.requests:
            continue
        note = f"{name} {snap.measured:.1f}/{snap.limit:.3g} req/s"
        if snap.throttled:
            note += f", {snap.throttled} throttled"
        if snap.paused_for > 0:
            note += f", paused {snap.paused_for:.0f} s"
        notes.append(note)
    return "; ".join(notes)


def rates(clients: Mapping[str, object]) -> dict[str, RateSnapshot]:
    """The current snapshot of every client that keeps `stats` (service -> snapshot)."""
    out: dict[str, RateSnapshot] = {}
    for name, client in clients.items():
        stats = getattr(client, "stats", None)
        if isinstance(stats, RateStats):
            out[name] = stats.snapshot()
    return out
