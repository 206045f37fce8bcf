"""The SFTP target: a provisioning host's document root, reached over SSH.

The host may give the account no shell, so everything is plain SFTP (version 3, plus OpenSSH's
`posix-rename` extension). Both trees of the target (the root, and meta_root for its records)
are `SftpTree`s sharing one pool of connections (connection.py).

Publishing many small files fast: `execute()` opens up to `sessions` SSH connections (one SFTP
channel each, so the server works on several CPUs) and drives each from one thread that keeps
many files in flight, packing the requests of all of them into few SSH packets (engine.py,
jobs.py). A dropped connection retries the files that were in flight on a fresh connection,
with backoff; anything else (permission denied, a path component that is a file) is that
file's error alone. `scan()`, `read_many()`, `stat()`, `create()` and `ensure()` use the same
pipeline.
"""

from __future__ import annotations

import itertools
import posixpath
import secrets
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from reconciler.core.errors import TargetError
from reconciler.targets.base import (
    PIPELINED_READS,
    Denied,
    FileOp,
    FileStat,
    OpResult,
    Put,
    Store,
)
from reconciler.targets.meta import META_MODE, RECORD_MODE, Meta, places
from reconciler.targets.sftp import engine
from reconciler.targets.sftp.connection import Pool, Session
from reconciler.targets.sftp.jobs import (
    CreateJob,
    DeleteJob,
    EnsureJob,
    ListJob,
    PutJob,
    ReadJob,
    RemoveJob,
    StatJob,
)
from reconciler.targets.sftp.wire import Attrs

RETRIES = 3  # extra attempts after a dropped connection


class Shared:
    """What the trees of one target share: the connections, and what is known of the host."""

    def __init__(self, name: str, pool: Pool, sessions: int):
        self.name = name
        self.pool = pool
        self.sessions = max(1, sessions)
        self.retries = RETRIES
        self.backoff = 0.2  # seconds before the first retry; doubled each time
        self.dirs: set[str] = set()  # directories known to exist
        self.temporaries: set[str] = set()  # temporary files that may be left on the host
        self.posix_rename = True
        self._tmp_prefix = secrets.token_hex(4)  # this run's temporary names: random + counter
        self._tmp_count = itertools.count()

    @property
    def address(self) -> str:
        return self.pool.address

    def checkout(self) -> Session:
        return self.pool.checkout()

    def checkin(self, session: Session) -> None:
        self.pool.checkin(session)

    def tmp_suffix(self) -> str:
        return f"{self._tmp_prefix}{next(self._tmp_count):x}"


class SftpTree:
    """One directory tree on the host: the primitives of targets/base.py over the pipeline."""

    capabilities = frozenset({PIPELINED_READS})

    def __init__(
        self, shared: Shared, base: str, file_mode: int, dir_mode: int, label: str = "document root"
    ):
        self.shared = shared
        self.name = shared.name
        self.base = posixpath.normpath(str(base)) if str(base) else "."
        self._prefix = "" if self.base == "/" else self.base  # + "/" + a relative path
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.label = label  # what the tree is, in messages
        self.chmod_needed = True  # until a new file shows the umask leaves file_mode alone
        self.dir_chmod_needed = True  # the same for directories and dir_mode
        shared.dirs.add(self.base)

    @property
    def location(self) -> str:
        return self.base

    # --- paths

    def abs(self, rel: str) -> str:
        norm = posixpath.normpath(rel) if rel else "."
        if norm.startswith("/") or norm == ".." or norm.startswith("../"):
            raise TargetError(self.name, f"path escapes the root: {rel}")
        return self.base if norm == "." else f"{self._prefix}/{norm}"

    def rel(self, path: str) -> str:
        return "." if path == self.base else path[len(self._prefix) + 1 :]

    def all_dirs(self, directory: str) -> list[str]:
        """Every directory from just below the base down to `directory`, shallowest first."""
        if directory == self.base:
            return []
        parts = self.rel(directory).split("/")
        return [f"{self._prefix}/{'/'.join(parts[:i])}" for i in range(1, len(parts) + 1)]

    def missing_dirs(self, directory: str) -> list[str]:
        levels = self.all_dirs(directory)
        for i in range(len(levels) - 1, -1, -1):
            if levels[i] in self.shared.dirs:
                return levels[i + 1 :]
        return levels

    # --- the primitives

    def execute(self, ops: Sequence[FileOp]) -> list[OpResult]:
        """Publish and delete; also remove the temporary files interrupted puts left behind
        (ours, or found by scan), even when `ops` is empty."""
        for op in ops:
            self.abs(op.path)  # refuse a path outside the tree before writing anything
        shared = self.shared
        results: list[OpResult | None] = [None] * len(ops)
        # Sorted by path, so that the files of one directory go to the same session.
        order = sorted(range(len(ops)), key=lambda i: ops[i].path)
        factories: list[engine.Factory] = []
        for i in order:
            op = ops[i]
            if isinstance(op, Put):
                factories.append(partial(PutJob, tree=self, index=i, op=op, results=results))
            else:
                factories.append(partial(DeleteJob, tree=self, index=i, op=op, results=results))
        factories.extend(partial(RemoveJob, tree=self, path=p) for p in sorted(shared.temporaries))
        failures = engine.run(shared, factories)
        if shared.temporaries and not all(failures):
            # Uploads interrupted by a dropped connection (and retried) left these behind.
            try:
                engine.run(
                    shared,
                    [partial(RemoveJob, tree=self, path=p) for p in sorted(shared.temporaries)],
                    retry_connect=False,
                )
            except TargetError:
                pass
        out = []
        for k, i in enumerate(order):
            if results[i] is None:  # never finished: the connection was lost
                results[i] = OpResult(ops[i], error=f"{failures[k]}: {ops[i].path}", transient=True)
        for result in results:
            assert result is not None
            out.append(result)
        return out

    def scan(self, directories: Iterable[str]) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        errors: list[str] = []
        rels = sorted(set(directories))
        self._batch(
            [partial(ListJob, tree=self, rel=r, found=found, errors=errors) for r in rels],
            errors,
            found,
        )
        return found

    def read(self, path: str) -> bytes | None:
        return self.read_many([path])[path]

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes | None]:
        """Several files at once (pipelined), e.g. for --verify; None for a missing file."""
        out: dict[str, bytes | None] = {}
        errors: list[str] = []
        rels = sorted(set(paths))
        self._batch(
            [partial(ReadJob, tree=self, rel=r, out=out, errors=errors) for r in rels], errors, out
        )
        return out

    def stat(self, path: str) -> FileStat | None:
        attrs = self._stat(self.abs(path), follow=False)
        if attrs is None or not attrs.is_file:
            return None
        return FileStat(attrs.size or 0, float(attrs.mtime or 0))

    def _stat(self, path: str, follow: bool) -> Attrs | None:
        out: dict[str, Attrs | None] = {}
        errors: list[str] = []
        self._batch(
            [partial(StatJob, tree=self, path=path, out=out, errors=errors, follow=follow)],
            errors,
            out,
        )
        return out[path]

    def create(self, path: str, data: bytes) -> bool:
        out: dict[str, bool] = {}
        errors: list[str] = []
        self._batch(
            [partial(CreateJob, tree=self, rel=path, data=data, out=out, errors=errors)],
            errors,
            out,
        )
        return out[path]

    def exists(self) -> bool:
        attrs = self._stat(self.base, follow=True)
        return attrs is not None and attrs.is_dir

    def ensure(self, create: bool = True) -> None:
        out: list[str] = []
        self._batch([partial(EnsureJob, tree=self, create=create, out=out)], [], {})
        for problem in out:
            kind, _, message = problem.partition(": ")
            raise (Denied if kind == "denied" else TargetError)(self.name, message)

    def _batch(
        self, factories: list[engine.Factory], errors: list[str], out: dict[str, Any]
    ) -> None:
        """Run jobs; all of them again on a dropped connection; errors raise."""

        def attempt() -> None:
            out.clear()
            errors.clear()
            lost = next(
                (why for why in engine.run(self.shared, factories, retry_connect=False) if why),
                None,
            )
            if lost:
                raise TargetError(self.name, lost, transient=True)

        engine.retrying(self.shared, attempt)
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise TargetError(self.name, "; ".join(errors[:3]) + more)


class SftpTarget(SftpTree):
    """A document root on a host reached over SFTP; see the module docstring."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        user: str,
        root: str,
        known_hosts: Path,
        key_file: Path | None,
        key_passphrase: str | None,
        sessions: int = 8,
        file_mode: int = 0o644,
        dir_mode: int = 0o711,
        timeout: float = 15.0,
        meta_root: str | None = None,
    ):
        pool = Pool(name, host, port, user, known_hosts, key_file, key_passphrase, timeout)
        super().__init__(Shared(name, pool, sessions), str(root), file_mode, dir_mode)
        self.host = host
        self.port = port
        self.user = user
        self.root = self.base
        self.known_hosts = pool.known_hosts
        self.key_file = pool.key_file
        self.timeout = timeout
        choices, legacy = places(self.base, meta_root)
        trees = [SftpTree(self.shared, p, RECORD_MODE, META_MODE, "meta_root") for p in choices]
        old = next(
            (t for t in trees if t.location == legacy),
            SftpTree(self.shared, legacy, RECORD_MODE, META_MODE, "meta_root"),
        )
        self.meta: Store = Meta(name, trees, old)

    @property
    def sessions(self) -> int:
        return self.shared.sessions

    @property
    def address(self) -> str:
        return self.shared.address

    @property
    def retries(self) -> int:
        return self.shared.retries

    @retries.setter
    def retries(self, value: int) -> None:
        self.shared.retries = value

    @property
    def backoff(self) -> float:
        return self.shared.backoff

    @backoff.setter
    def backoff(self, value: float) -> None:
        self.shared.backoff = value

    def __repr__(self) -> str:
        return f"SftpTarget({self.name!r}, {self.user}@{self.address}:{self.root})"

    # --- files outside the trees, read-only (access logs), by absolute path on the host

    def stat_file(self, path: str) -> FileStat | None:
        try:
            attrs = self._stat(path, follow=True)
        except TargetError as exc:
            if exc.transient:
                raise
            raise TargetError(self.name, f"cannot stat {path} on {self.address}") from exc
        return None if attrs is None else FileStat(attrs.size or 0, float(attrs.mtime or 0))

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        def read() -> bytes:
            session = self.shared.checkout()
            try:
                with session.sftp.open(path, "rb") as fh:
                    n = max(0, min(length, (fh.stat().st_size or 0) - offset))
                    # readv pipelines the READ requests (one round trip, not one per 32 KB)
                    data = b"".join(fh.readv([(offset, n)])) if n else b""
            except Exception as exc:
                if not session.alive:
                    session.close()
                    raise TargetError(self.name, f"connection to {self.address} lost: {exc}",
                                      transient=True) from exc
                self.shared.checkin(session)
                if isinstance(exc, OSError | EOFError):
                    raise TargetError(self.name,
                                      f"cannot read {path} on {self.address}: {exc}") from exc
                raise
            self.shared.checkin(session)
            return data

        return engine.retrying(self.shared, read)

    def close(self) -> None:
        self.shared.pool.close()
