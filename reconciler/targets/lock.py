"""The target lock: one policy, on top of the primitives, for every target.

The lock is `<meta_root>/lock.json` (owner, pid, host, start, expiry), created exclusively. A
lock found in place is respected unless it is stale (`stale()`, pure but for asking whether a
pid is alive):

- it has expired (its TTL passed);
- its holder ran on this host and its pid is gone (a run killed with SIGKILL, a daemon that
  crashed): no need to wait for the TTL;
- it cannot be parsed and is older than YOUNG_LOCK. A younger one is being written by another
  run right now (creating a file and writing it are two steps on most targets), so it is held.

A lock of another host is never taken over before it expires; the refusal prints the exact
`provctl unlock` command. Taking over goes through a second exclusive file (TAKEOVER), so that
two runs that find the same stale lock cannot both remove it and both win: only the run that
created TAKEOVER removes the stale lock, and only after reading it again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets.base import Delete, Store, Target

log = logging.getLogger(__name__)

LOCK = "lock.json"
TAKEOVER = "lock.json.takeover"
YOUNG_LOCK = 60.0  # seconds: an unparsable lock younger than this is being written


@dataclass(frozen=True)
class LockInfo:
    id: str
    owner: str
    pid: int
    host: str
    started: float
    expires: float

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockInfo:
        """Parse; a ValueError for anything else. Keys a later version adds are ignored."""
        try:
            body = json.loads(data)
            return cls(
                id=str(body["id"]),
                owner=str(body["owner"]),
                pid=int(body["pid"]),
                host=str(body["host"]),
                started=float(body["started"]),
                expires=float(body["expires"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a lock: {exc}") from None

    @classmethod
    def new(cls, owner: str, ttl: float, now: float | None = None) -> LockInfo:
        now = time.time() if now is None else now
        return cls(
            id=uuid.uuid4().hex[:12],
            owner=owner,
            pid=os.getpid(),
            host=this_host(),
            started=now,
            expires=now + ttl,
        )

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires))
        return (
            f"lock {self.id} held by {self.owner} (pid {self.pid} on {self.host}, "
            f"since {started}, expires {expires})"
        )


@dataclass(frozen=True)
class Seen:
    """A lock file as found: its bytes, parsed, or unparsable and this old (seconds)."""

    data: bytes
    info: LockInfo | None
    age: float


@dataclass(frozen=True)
class Acquired:
    info: LockInfo
    took_over: str | None = None  # what was taken over and why, to be recorded


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (another user's counts: it may be ours)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(seen: Seen, now: float, here: str, alive: Callable[[int], bool]) -> str | None:
    """Why this lock may be taken over, or None while it must be respected."""
    held = seen.info
    if held is None:
        return None if seen.age < YOUNG_LOCK else f"an unreadable lock file {seen.age:.0f}s old"
    if held.expires <= now:
        return f"{held.describe()}, expired"
    if held.host == here and not alive(held.pid):
        return f"{held.describe()}, whose process {held.pid} is gone from this host"
    return None


def refusal(target: str, seen: Seen, here: str) -> str:
    """The message of a LockHeld for a lock that is respected."""
    held = seen.info
    if held is None:
        return (
            f"target {target}: the lock is being written by another run (or is unreadable, "
            f"{seen.age:.0f}s old; taken over once it is {YOUNG_LOCK:.0f}s old)"
        )
    running = " (that process is running on this host)" if held.host == here else ""
    return (
        f"target {target}: {held.describe()}{running}; if that run is gone, remove the "
        f"lock with: provctl unlock --target {target} --id {held.id}"
    )


def look(store: Store, path: str = LOCK, now: float | None = None) -> Seen | None:
    """The lock file at `path` in `store`, or None when there is none."""
    data = store.read(path)
    if data is None:
        return None
    try:
        return Seen(data, LockInfo.from_bytes(data), 0.0)
    except ValueError:
        st = store.stat(path)
        now = time.time() if now is None else now
        return Seen(data, None, max(0.0, now - st.mtime) if st else 0.0)


def acquire(
    target: Target,
    owner: str,
    ttl: float,
    *,
    clock: Callable[[], float] = time.time,
    alive: Callable[[int], bool] = pid_alive,
) -> Acquired:
    """Take the lock; take over a stale one (see the module docstring); else raise LockHeld."""
    meta = target.meta
    here = this_host()
    lock = LockInfo.new(owner, ttl, clock())
    took_over: str | None = None
    for _ in range(4):
        if meta.create(LOCK, lock.to_bytes()):
            if took_over:
                log.warning("target %s: took over %s", target.name, took_over)
            return Acquired(lock, took_over)
        seen = look(meta, now=clock())
        if seen is None:
            continue  # released meanwhile: try again
        if seen.info is not None and seen.info.id == lock.id:
            return Acquired(lock, took_over)  # ours: created before a dropped connection
        why = stale(seen, clock(), here, alive)
        if why is None:
            raise LockHeld(refusal(target.name, seen, here))
        _take_over(target, seen, lock, clock)
        took_over = why
    raise LockHeld(f"target {target.name}: the lock {meta.location}/{LOCK} keeps reappearing")


def _take_over(target: Target, seen: Seen, lock: LockInfo, clock: Callable[[], float]) -> None:
    """Remove the stale lock `seen`, unless another run is doing so or already did."""
    meta = target.meta
    if not meta.create(TAKEOVER, lock.id.encode()):
        st = meta.stat(TAKEOVER)
        if st is not None and clock() - st.mtime < YOUNG_LOCK:
            raise LockHeld(f"target {target.name}: another run is taking over a stale lock")
        _delete(meta, TAKEOVER)  # left by a run that died while taking over
        return
    try:
        again = look(meta, now=clock())
        if again is not None and again.data == seen.data:  # still the one judged stale
            _delete(meta, LOCK)
    finally:
        _delete(meta, TAKEOVER)


def _delete(store: Store, path: str) -> None:
    [result] = store.execute([Delete(path)])
    if result.error:
        raise TargetError(
            store.name,
            f"cannot remove {store.location}/{path}: {result.error}",
            transient=result.transient,
        )


def release(target: Target, lock: LockInfo) -> None:
    """Remove the lock if it is still ours (a run that was taken over must not unlock)."""
    seen = look(target.meta)
    if seen is not None and seen.info is not None and seen.info.id == lock.id:
        _delete(target.meta, LOCK)


def holder(target: Target) -> str | None:
    """Who holds the lock, for people (`status --live`); None when it is free."""
    seen = look(target.meta)
    if seen is None:
        return None
    return seen.info.describe() if seen.info else f"unreadable lock file ({seen.age:.0f}s old)"


def break_lock(target: Target, lock_id: str) -> LockInfo:
    """Remove a lock by its id (`provctl unlock`); LockHeld when the id is another's."""
    seen = look(target.meta)
    if seen is None:
        raise TargetError(target.name, "no lock is held")
    if seen.info is None:
        raise TargetError(
            target.name,
            f"the lock file {target.meta.location}/{LOCK} cannot be "
            f"read; it is taken over once it is {YOUNG_LOCK:.0f}s old",
        )
    if seen.info.id != lock_id:
        raise LockHeld(f"target {target.name}: {seen.info.describe()}, not {lock_id}")
    _delete(target.meta, LOCK)
    log.info("target %s: removed %s", target.name, seen.info.describe())
    return seen.info
