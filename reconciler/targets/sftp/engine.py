"""The pipeline: many jobs in flight on each SFTP channel, over a pool of sessions.

An `Engine` drives jobs over one channel from one thread; `run()` spreads a batch of jobs over
up to `sessions` connections (one thread each) and retries, on a fresh connection, the jobs a
dropped connection interrupted.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from reconciler.core.errors import TargetError
from reconciler.targets.sftp.connection import CHANNEL_ERRORS, Lost, Session, is_lost
from reconciler.targets.sftp.wire import Reply, pack

log = logging.getLogger("reconciler.targets.sftp")

DEPTH = 64  # jobs (files, directories) in flight per session
READ_CREDIT = 1 << 20  # bytes of READ replies outstanding per session (< the 2 MB SSH window)
FLUSH = 1 << 15  # send buffered requests once this many bytes are waiting
BATCH = 16  # ops a session takes from the shared queue at a time (keeps a directory together)
OPS_PER_SESSION = 128  # open another session only for this many ops
FIRST_ID = 0x40000000  # the pipeline's request ids; paramiko's SFTPClient counts from 1

OnReply = Callable[[int, Reply], None]
_T = TypeVar("_T")


class Host(Protocol):
    """What the pipeline needs of a target: sessions, and how to retry."""

    name: str
    retries: int
    backoff: float
    sessions: int

    @property
    def address(self) -> str: ...

    def checkout(self) -> Session: ...

    def checkin(self, session: Session) -> None: ...


class Job:
    """One unit of work in a pipeline: sends requests and answers their replies."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def send(self, on_reply: OnReply, cmd: int, *args: object) -> None:
        self.engine.send(self, on_reply, cmd, *args)

    def ignore(self, t: int, reply: Reply) -> None:
        pass

    def finish(self) -> None:
        self.engine.finished(self)

    def start(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        """Called when READ credit is free again (jobs that read)."""


Factory = Callable[["Engine"], Job]


class Engine:
    """Drives jobs over one SFTP channel from one thread, up to DEPTH of them in flight.

    Requests are buffered and sent together just before waiting for replies, so the requests of
    many files share SSH packets; replies are read in large pieces and handed, by request id, to
    the job that asked. The channel's paramiko SFTPClient must be idle meanwhile.
    """

    def __init__(self, session: Session, on_finish: Callable[[Job], None]):
        self.session = session
        self.channel = session.channel
        self.on_finish = on_finish
        self.active: set[Job] = set()
        self.waiting: dict[int, tuple[Job, OnReply]] = {}
        self.out: list[bytes] = []
        self.out_size = 0
        self.next_id = FIRST_ID
        self.credit = READ_CREDIT
        self.starved: collections.deque[Job] = collections.deque()

    def send(self, job: Job, on_reply: OnReply, cmd: int, *args: object) -> None:
        rid = self.next_id
        self.next_id = FIRST_ID if rid == 0xFFFFFFFF else rid + 1
        self.waiting[rid] = (job, on_reply)
        packet = pack(cmd, rid, args)
        self.out.append(packet)
        self.out_size += len(packet)
        if self.out_size >= FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.out_size = 0
            self.channel.sendall(data)

    def run(self, next_job: Callable[[Engine], Job | None]) -> None:
        """Until `next_job` returns None and every job has finished.

        Raises Lost, with `active` still holding the interrupted jobs, when the connection
        goes away.
        """
        more = True
        buf = b""
        try:
            while True:
                while more and len(self.active) < DEPTH:
                    job = next_job(self)
                    if job is None:
                        more = False
                        break
                    self.active.add(job)
                    job.start()
                if not self.active and not self.waiting:
                    return
                self.flush()
                data = self.channel.recv(1 << 18)
                if not data:
                    raise Lost("the server closed the channel")
                buf = buf + data if buf else data
                pos = 0
                while len(buf) - pos >= 4:
                    (size,) = struct.unpack_from(">I", buf, pos)
                    if len(buf) - pos - 4 < size:
                        break
                    t, rid = struct.unpack_from(">BI", buf, pos + 4)
                    reply = Reply(buf, pos + 9)
                    pos += 4 + size
                    if rid not in self.waiting:
                        raise Lost(f"the server answered request {rid}, which was not asked")
                    job, on_reply = self.waiting.pop(rid)
                    on_reply(t, reply)
                buf = buf[pos:]
        except Lost:
            raise
        except struct.error as exc:
            raise Lost(f"malformed reply from the server: {exc}") from exc
        except CHANNEL_ERRORS as exc:
            if is_lost(exc) or not self.session.alive:
                raise Lost(str(exc) or type(exc).__name__) from exc
            raise

    def finished(self, job: Job) -> None:
        self.active.discard(job)
        self.on_finish(job)

    # READ replies are bounded so that they always fit the SSH window (no deadlock).
    def take_credit(self, job: Job, length: int) -> bool:
        if self.credit >= length or self.credit == READ_CREDIT:
            self.credit -= length
            return True
        if job not in self.starved:
            self.starved.append(job)
        return False

    def give_credit(self, length: int) -> None:
        self.credit += length
        for _ in range(len(self.starved)):  # each waiting job once; it queues again if need be
            if self.credit <= 0:
                break
            self.starved.popleft().resume()


def retrying(host: Host, what: Callable[[], _T]) -> _T:
    """Run `what`; retry transient TargetErrors with backoff, `host.retries` times."""
    for attempt in range(host.retries):
        try:
            return what()
        except TargetError as exc:
            if not exc.transient:
                raise
            log.warning("target %s: %s; retrying", host.name, exc)
            time.sleep(host.backoff * 2**attempt)
    return what()


def run(host: Host, factories: Sequence[Factory], retry_connect: bool = True) -> list[str | None]:
    """Run jobs over a pool of sessions; for each job None (it completed) or why not.

    A job is made again by its factory to retry it on a fresh session after the connection
    dropped. The first session is opened before any job starts, so an unreachable host or a
    refused key raises TargetError instead.
    """
    if not factories:
        return []
    first = retrying(host, host.checkout) if retry_connect else host.checkout()
    batch = _Run(host, factories)
    width = max(1, min(host.sessions, -(-len(factories) // OPS_PER_SESSION)))
    threads = [
        threading.Thread(
            target=batch.worker,
            args=(first if i == 0 else None,),
            name=f"provctl-sftp-{host.name}-{i}",
            daemon=True,
        )
        for i in range(width)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if batch.crashed is not None:
        raise batch.crashed
    return [
        None if ok else batch.why.get(i, f"connection to {host.address} lost")
        for i, ok in enumerate(batch.done)
    ]


class _Run:
    """One batch of jobs spread over sessions (one thread each), with retries."""

    def __init__(self, host: Host, factories: Sequence[Factory]):
        self.host = host
        self.factories = factories
        self.queue = collections.deque((i, 0) for i in range(len(factories)))
        self.lock = threading.Lock()
        self.done = [False] * len(factories)
        self.why: dict[int, str] = {}
        self.crashed: BaseException | None = None
        self.ids: dict[Job, tuple[int, int]] = {}

    def worker(self, session: Session | None) -> None:
        try:
            self._work(session)
        except BaseException as exc:  # a bug: report it in the calling thread
            self.crashed = exc

    def _work(self, session: Session | None) -> None:
        h = self.host
        mine: collections.deque[tuple[int, int]] = collections.deque()

        def next_job(engine: Engine) -> Job | None:
            if not mine:
                with self.lock:
                    for _ in range(min(BATCH, len(self.queue))):
                        mine.append(self.queue.popleft())
            if not mine:
                return None
            index, attempt = mine.popleft()
            job = self.factories[index](engine)
            self.ids[job] = (index, attempt)
            return job

        def finished(job: Job) -> None:
            self.done[self.ids.pop(job)[0]] = True

        losses = 0
        while True:
            if session is None:
                if not mine and not self.queue:
                    return  # nothing left to do: no need for a connection
                try:
                    session = h.checkout()
                except TargetError as exc:
                    losses += 1
                    if not exc.transient or losses > h.retries:
                        self._give_up(mine, str(exc))
                        return
                    time.sleep(h.backoff * 2 ** (losses - 1))
                    continue
            engine = Engine(session, finished)
            try:
                engine.run(next_job)
            except Lost as exc:
                session.close()
                session = None
                losses += 1
                reason = f"connection to {h.address} lost: {exc}"
                log.warning("target %s: %s (%d in flight)", h.name, reason, len(engine.active))
                for job in engine.active:
                    index, attempt = self.ids.pop(job)
                    self.why[index] = reason
                    if attempt < h.retries:
                        mine.appendleft((index, attempt + 1))
                if losses > h.retries:
                    self._give_up(mine, reason)
                    return
                time.sleep(h.backoff * 2 ** (losses - 1))
                continue
            h.checkin(session)
            return

    def _give_up(self, mine: collections.deque[tuple[int, int]], reason: str) -> None:
        """Hand this worker's jobs back to the others; whatever nobody takes keeps `reason`."""
        with self.lock:
            self.queue.extendleft(reversed(mine))
            for index, _ in self.queue:
                self.why.setdefault(index, reason)
