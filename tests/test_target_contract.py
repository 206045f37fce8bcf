"""One contract, three targets: memory, a local directory, and SFTP to a real sshd.

Whatever the reconciler relies on from a target is asserted here once, against each of them:
the primitives (publish, read, stat, scan, delete, exclusive create; replacing a file leaves no
temporary file), and the policies written once on top of them (targets/lock.py, manifest.py,
meta.py): the manifest comes back as written and a malformed one is an error; the records live
outside the served tree (meta_root, 0700), are moved there from `<root>/.provctl/`, or fall back
to `<root>/.provctl` (0700) when the account may not write beside the root; the lock is
exclusive, names its holder and the unlock command, is taken over when expired or when its
holder's process is gone from this host, never while it is being written, and by one run only.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets import lock, manifest, meta
from reconciler.targets.base import TMP_PREFIX, Delete, Put, Target
from reconciler.targets.local import LocalTarget
from reconciler.targets.manifest import MANIFEST, Manifest, ManifestEntry
from reconciler.targets.memory import MemoryHost, MemoryTarget

HERE = socket.gethostname()


@dataclass
class Subject:
    """A target under test, a way to make a second client of the same place, and its files.

    `places` maps "root", "meta" and "legacy" (<root>/.provctl) to where they are: a Path on
    this machine (local, SFTP to the loopback sshd) or a path on the memory target's host.
    """

    target: Target
    again: Callable[[], Target]  # another client of the same target (another process)
    places: dict[str, Path | str]
    memory: MemoryHost | None = None
    opened: list[Target] = field(default_factory=list)

    def other(self) -> Target:
        target = self.again()
        self.opened.append(target)
        return target

    @property
    def disk(self) -> Path | None:
        root = self.places["root"]
        return root if isinstance(root, Path) else None

    def plant(self, where: str, rel: str, data: bytes, age: float = 0.0) -> None:
        """Put a file there behind provctl's back (as a killed run or an older version did)."""
        mtime = time.time() - age
        base = self.places[where]
        if isinstance(base, Path):
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (mtime, mtime))
            return
        assert self.memory is not None
        self.memory.makedirs(os.path.dirname(f"{base}/{rel}"), 0o755)
        self.memory.files[f"{base}/{rel}"] = (data, mtime)

    def has(self, where: str, rel: str = "") -> bool:
        base = self.places[where]
        if isinstance(base, Path):
            return (base / rel).exists() if rel else base.is_dir()
        assert self.memory is not None
        path = f"{base}/{rel}" if rel else base
        return path in self.memory.files or path in self.memory.dirs

    def mode(self, where: str, rel: str = "") -> int:
        base = self.places[where]
        if isinstance(base, Path):
            return stat.S_IMODE((base / rel).stat().st_mode)
        assert self.memory is not None and not rel
        return self.memory.dirs[base]

    def names(self, where: str) -> list[str]:
        base = self.places[where]
        if isinstance(base, Path):
            return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
        assert self.memory is not None
        return sorted(p[len(base) + 1 :] for p in self.memory.files if p.startswith(f"{base}/"))


def _meta_places(root: Path) -> dict[str, Path | str]:
    return {
        "root": root,
        "meta": root.parent / f".provctl-{root.name}",
        "legacy": root / ".provctl",
    }


@pytest.fixture(params=["memory", "local", pytest.param("sftp", marks=pytest.mark.integration)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_subject(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[Path | None], Subject]]:
    """Build a subject; for local and SFTP optionally with a root of the test's choosing."""
    made: list[Subject] = []

    def make(root: Path | None = None) -> Subject:
        if kind == "memory":
            memory = MemoryTarget("mem")
            host = memory.host
            subject = Subject(
                memory,
                lambda: MemoryTarget("mem", host=host),
                {"root": "/www", "meta": "/.provctl-www", "legacy": "/www/.provctl"},
                host,
            )
        elif kind == "local":
            root = root or tmp_path / "www"
            root.mkdir(parents=True, exist_ok=True)
            subject = Subject(
                LocalTarget("loc", root), lambda: LocalTarget("loc", root), _meta_places(root)
            )
        else:
            server = request.getfixturevalue("sshd")
            root = root or request.getfixturevalue("sftp_root")
            root.mkdir(parents=True, exist_ok=True)
            subject = Subject(
                server.target(root, name="eu-1"),
                lambda: server.target(root, name="eu-1"),
                _meta_places(root),
            )
        made.append(subject)
        return subject

    yield make
    for subject in made:
        for target in [subject.target, *subject.opened]:
            target.close()


@pytest.fixture
def subject(make_subject: Callable[[Path | None], Subject]) -> Subject:
    return make_subject(None)


def _leftovers(subject: Subject) -> list[str]:
    return [
        n
        for where in ("root", "meta")
        if subject.has(where)
        for n in subject.names(where)
        if os.path.basename(n).startswith(TMP_PREFIX)
    ]


# --- the primitives ---------------------------------------------------------------------------


def test_put_read_stat_scan_delete(subject: Subject):
    t = subject.target
    ops = [
        Put("tok1/0015651234ab.cfg", b"a" * 1500),
        Put("tok1/0015651234ab-dir.xml", b"<x/>"),
        Put("common.cfg", b"common\n"),
    ]

    results = t.execute(ops)

    assert [r.op for r in results] == ops
    assert [r.error for r in results] == [None, None, None]
    assert [r.stat.size for r in results] == [1500, 4, 7]
    assert t.read("tok1/0015651234ab.cfg") == b"a" * 1500
    assert t.read("tok1/missing.cfg") is None
    assert t.read("nowhere/missing.cfg") is None
    assert t.stat("tok1/0015651234ab.cfg") == results[0].stat
    assert t.stat("tok1/missing.cfg") is None
    assert t.stat("tok1") is None  # a directory is not a file
    found = t.scan(["tok1", ""])
    assert {p: s.size for p, s in found.items()} == {
        "tok1/0015651234ab.cfg": 1500,
        "tok1/0015651234ab-dir.xml": 4,
        "common.cfg": 7,
    }
    # What execute reported is what a later scan sees: drift detection compares the two.
    assert found["tok1/0015651234ab.cfg"] == results[0].stat
    assert t.scan(["no-such-dir"]) == {}

    results = t.execute(
        [
            Delete("tok1/0015651234ab.cfg"),
            Delete("tok1/0015651234ab-dir.xml"),
            Delete("never/was.cfg"),
        ]
    )

    assert [r.error for r in results] == [None, None, None]
    assert t.read("tok1/0015651234ab.cfg") is None
    assert t.scan(["tok1"]) == {}
    assert t.read("common.cfg") == b"common\n"
    assert not subject.has("root", "tok1")  # the emptied token directory went too ...
    assert subject.has("root")  # ... the root stayed


def test_replace_is_atomic_and_leaves_no_temporary_file(subject: Subject):
    t = subject.target
    t.execute([Put("tok/phone.cfg", b"old" * 1000)])

    [result] = t.execute([Put("tok/phone.cfg", b"new\n")])

    assert result.error is None and result.stat.size == 4
    assert t.read("tok/phone.cfg") == b"new\n"
    assert list(t.scan(["tok"])) == ["tok/phone.cfg"]
    assert subject.names("root") == ["tok/phone.cfg"]


def test_empty_and_large_files(subject: Subject):
    t = subject.target
    big = os.urandom(300_000)  # firmware-sized: many writes and reads

    results = t.execute([Put("empty.cfg", b""), Put("fw/big.rom", big)])

    assert [r.error for r in results] == [None, None]
    assert t.read("empty.cfg") == b""
    assert t.read("fw/big.rom") == big
    assert t.scan(["fw"])["fw/big.rom"].size == 300_000


def test_one_failing_file_does_not_stop_the_others(subject: Subject):
    t = subject.target
    t.execute([Put("blocker", b"a file where a directory is needed")])

    results = t.execute([Put("blocker/phone.cfg", b"x"), Put("fine/phone.cfg", b"y")])

    assert results[0].error is not None and "blocker/phone.cfg" in results[0].error
    assert results[1].error is None
    assert t.read("fine/phone.cfg") == b"y"
    assert t.read("blocker") == b"a file where a directory is needed"
    assert _leftovers(subject) == []


def test_paths_outside_the_root_are_refused(subject: Subject):
    with pytest.raises(TargetError, match="escapes the root"):
        subject.target.execute([Put("../outside.cfg", b"x")])
    if subject.disk is not None:
        assert not (subject.disk.parent / "outside.cfg").exists()


def test_create_is_exclusive(subject: Subject):
    t = subject.target
    assert t.create("once.json", b'{"first": true}\n') is True
    assert subject.other().create("once.json", b'{"second": true}\n') is False
    assert t.read("once.json") == b'{"first": true}\n'


def test_temporary_files_a_killed_run_left_are_removed_by_the_next_write(subject: Subject):
    subject.plant("root", f"tok/{TMP_PREFIX}phone.cfg.dead1", b"half a file")
    t = subject.other()

    assert t.scan(["tok"]) == {}  # never reported as content
    t.execute([])  # even a write of nothing removes what the scan found

    assert _leftovers(subject) == []


# --- the manifest, and where the records live ------------------------------------------------


def test_manifest_round_trip_outside_the_served_tree(subject: Subject):
    t = subject.target
    assert manifest.read(t) == Manifest()
    written = Manifest(
        files={
            "tok/a.cfg": ManifestEntry("ab" * 32, 10, 1700000000.0),
            "fw/T46U.rom": ManifestEntry("cd" * 32, 99, 0.0, firmware="108.86.0.95"),
        },
        revision="0123abc",
    )

    manifest.write(t, written)

    assert manifest.read(t) == written
    assert manifest.read(subject.other()) == written
    manifest.write(t, Manifest(revision="next"))
    assert manifest.read(t) == Manifest(revision="next")
    assert subject.names("meta") == [MANIFEST]
    assert subject.names("root") == []  # one GET of a manifest would list every token
    assert subject.mode("meta") == 0o700
    if subject.disk is not None:
        meta_dir = subject.places["meta"]
        assert isinstance(meta_dir, Path)
        assert (meta_dir / MANIFEST).read_bytes() == Manifest(revision="next").to_bytes()
        assert stat.S_IMODE((meta_dir / MANIFEST).stat().st_mode) == 0o600
    assert _leftovers(subject) == []


def test_unreadable_manifest_is_an_error_not_an_empty_target(subject: Subject):
    subject.plant("meta", MANIFEST, b"{not json")
    with pytest.raises(TargetError, match="manifest"):
        manifest.read(subject.other())


def test_manifest_with_a_malformed_entry_is_a_target_error(subject: Subject):
    # The local target used to let the KeyError of a missing "sha256" escape as a traceback.
    body = {"version": 1, "revision": "r1", "files": {"tok/a.cfg": {"size": 10}}}
    subject.plant("meta", MANIFEST, json.dumps(body).encode())
    with pytest.raises(TargetError, match="manifest .*sha256"):
        manifest.read(subject.other())
    subject.plant("meta", MANIFEST, b'{"version": 1, "files": ["tok/a.cfg"]}')
    with pytest.raises(TargetError, match="manifest"):
        manifest.read(subject.other())


def test_records_in_root_dot_provctl_are_found_then_moved_out(subject: Subject, caplog):
    caplog.set_level(logging.WARNING)
    old = Manifest(files={"tok/a.cfg": ManifestEntry("ab" * 32, 1, 1.0)}, revision="r1")
    subject.plant("root", "tok/a.cfg", b"x")
    subject.plant("legacy", MANIFEST, old.to_bytes())
    subject.plant("legacy", "journal.json", b'{"paths": ["tok/b.cfg"]}')
    subject.plant("legacy", "receipts/2024-01-01T000000Z-abc.json", b"{}\n")
    subject.plant("legacy", f"{TMP_PREFIX}journal.json.dead1", b"half")
    stale = lock.LockInfo("0123456789ab", "old-run", 1, "elsewhere", 0.0, 1.0)
    subject.plant("legacy", "lock.json", stale.to_bytes())
    t = subject.other()

    assert manifest.read(t) == old  # a plan before the first apply sees what was published
    assert manifest.read_journal(t) == {"tok/b.cfg"}
    assert not subject.has("meta")  # reading wrote nothing

    held = lock.acquire(t, "new-run", 600)
    meta.prepare(t)

    assert not subject.has("legacy")  # nothing of provctl's is left in the served tree
    assert subject.names("root") == ["tok/a.cfg"]
    assert subject.names("meta") == [
        "journal.json",
        "lock.json",
        MANIFEST,
        "receipts/2024-01-01T000000Z-abc.json",
    ]
    again = subject.other()
    assert manifest.read(again) == old and manifest.read_journal(again) == {"tok/b.cfg"}
    assert "moved the records" in caplog.text
    lock.release(t, held.info)


def test_a_live_lock_in_root_dot_provctl_is_respected(subject: Subject):
    old_run = lock.LockInfo(
        "0123456789ab", "old-provctl", 1, "elsewhere", time.time(), time.time() + 600
    )
    subject.plant("legacy", "lock.json", old_run.to_bytes())
    subject.plant("legacy", MANIFEST, Manifest(revision="r1").to_bytes())
    t = subject.other()
    held = lock.acquire(t, "new-run", 600)

    with pytest.raises(LockHeld, match="old-provctl"):
        meta.prepare(t)

    lock.release(t, held.info)
    assert subject.has("legacy", MANIFEST)  # not moved from under the older run


def test_temporary_records_a_killed_run_left_are_removed(subject: Subject):
    t = subject.target
    manifest.write(t, Manifest(revision="r1"))
    subject.plant("meta", f"{TMP_PREFIX}journal.json.dead1", b'{"paths": [')
    t2 = subject.other()
    held = lock.acquire(t2, "next-run", 600)

    meta.prepare(t2)

    assert subject.names("meta") == ["lock.json", MANIFEST]
    lock.release(t2, held.info)


def test_prepare_makes_the_root_unlistable(subject: Subject):
    t = subject.target
    t.execute([Put("tok/a.cfg", b"x")])
    if subject.disk is not None:
        subject.disk.chmod(0o755)
    held = lock.acquire(t, "run", 600)

    meta.prepare(t)

    assert subject.mode("root") == 0o711  # others may fetch a file but not list the tokens
    lock.release(t, held.info)


@pytest.fixture
def locked_parent(kind: str, make_subject, tmp_path: Path, request: pytest.FixtureRequest):
    """A subject whose root's parent the account may not create entries in."""
    if kind == "memory":
        subject = make_subject(None)
        assert subject.memory is not None
        subject.memory.read_only.add("/")
        yield subject
        return
    base = request.getfixturevalue("sshd").root if kind == "sftp" else tmp_path
    parent = base / f"jail-{os.urandom(3).hex()}"
    subject = make_subject(parent / "www")
    done = subprocess.run(["chattr", "+i", str(parent)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here ({done.stderr.strip()})")
    yield subject
    subprocess.run(["chattr", "-i", str(parent)], check=True)


def test_records_fall_back_to_a_private_dot_directory_in_the_root(locked_parent: Subject, caplog):
    subject = locked_parent
    caplog.set_level(logging.WARNING)
    t = subject.target

    held = lock.acquire(t, "chrooted-run", 600)
    meta.prepare(t)
    manifest.write(t, Manifest(revision="r1"))

    assert not subject.has("meta")
    assert subject.has("legacy", MANIFEST) and subject.has("legacy", "lock.json")
    assert subject.mode("legacy") == 0o700
    assert "web server must deny dot-paths" in caplog.text
    assert manifest.read(subject.other()) == Manifest(revision="r1")
    lock.release(t, held.info)
    assert not subject.has("legacy", "lock.json")


# --- the lock ---------------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_its_holder_and_the_unlock_command(subject: Subject):
    t = subject.target
    held = lock.acquire(t, "alice@ci", ttl=600)
    assert held.info.owner == "alice@ci" and held.took_over is None

    with pytest.raises(LockHeld) as refused:
        lock.acquire(subject.other(), "bob@laptop", ttl=600)

    message = str(refused.value)
    assert "alice@ci" in message and held.info.id in message and held.info.host in message
    assert f"provctl unlock --target {t.name} --id {held.info.id}" in message
    assert lock.holder(subject.other()) == held.info.describe()
    lock.release(t, held.info)
    assert lock.holder(t) is None
    again = lock.acquire(subject.other(), "bob@laptop", ttl=600)
    assert again.info.id != held.info.id
    lock.release(t, held.info)  # not ours any more: nothing happens
    with pytest.raises(LockHeld, match="bob@laptop"):
        lock.acquire(t, "alice@ci", ttl=600)


def test_expired_lock_is_taken_over_and_the_takeover_recorded(subject: Subject):
    stale = lock.acquire(subject.target, "crashed-run", ttl=-1).info

    taken = lock.acquire(subject.other(), "next-run", ttl=600)

    assert taken.info.owner == "next-run" and taken.info.id != stale.id
    assert taken.took_over is not None and stale.id in taken.took_over
    assert "expired" in taken.took_over
    lock.release(subject.target, stale)  # the old holder comes back: it must not unlock us
    with pytest.raises(LockHeld, match="next-run"):
        lock.acquire(subject.target, "third", ttl=600)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_lock_of_a_process_gone_from_this_host_is_taken_over(subject: Subject):
    # A run killed with SIGKILL: its lock would otherwise block every run for 30 minutes.
    now = time.time()
    killed = lock.LockInfo("deadbeef0001", "daemon@here", _dead_pid(), HERE, now, now + 1800)
    subject.plant("meta", "lock.json", killed.to_bytes())

    taken = lock.acquire(subject.other(), "next-run", ttl=600)

    assert taken.took_over is not None
    assert "deadbeef0001" in taken.took_over and "gone from this host" in taken.took_over
    assert lock.holder(subject.other()) == taken.info.describe()


def test_lock_of_a_running_process_or_another_host_is_respected(subject: Subject):
    now = time.time()
    running = lock.LockInfo("a1a1a1a1a1a1", "apply@here", os.getppid(), HERE, now, now + 1800)
    subject.plant("meta", "lock.json", running.to_bytes())
    with pytest.raises(LockHeld, match="running on this host"):
        lock.acquire(subject.other(), "next-run", ttl=600)

    elsewhere = lock.LockInfo(
        "b2b2b2b2b2b2", "daemon@prov2", _dead_pid(), "prov2.example.net", now, now + 1800
    )
    subject.plant("meta", "lock.json", elsewhere.to_bytes())
    with pytest.raises(LockHeld) as refused:
        lock.acquire(subject.other(), "next-run", ttl=600)
    name = subject.target.name
    assert f"provctl unlock --target {name} --id b2b2b2b2b2b2" in str(refused.value)


def test_a_young_unreadable_lock_is_being_written_and_held(subject: Subject):
    # Creating a lock file and writing it are two steps on some targets: another run may see
    # it empty. The local target used to take such a lock over at once (both runs then won).
    subject.plant("meta", "lock.json", b"")

    with pytest.raises(LockHeld, match="being written"):
        lock.acquire(subject.other(), "second-run", ttl=600)

    subject.plant("meta", "lock.json", b"", age=lock.YOUNG_LOCK + 30)
    taken = lock.acquire(subject.other(), "later-run", ttl=600)
    assert taken.took_over is not None and "unreadable" in taken.took_over


def test_one_run_wins_a_stale_lock(subject: Subject):
    for round_ in range(3):
        now = time.time()
        stale = lock.LockInfo(
            f"stale{round_:07d}", "crashed", 1, "elsewhere", now - 7200, now - 3600
        )
        subject.plant("meta", "lock.json", stale.to_bytes())
        clients = [subject.other() for _ in range(3)]
        barrier = threading.Barrier(len(clients))
        outcome: dict[int, object] = {}

        def attempt(i: int, barrier=barrier, outcome=outcome, clients=clients) -> None:
            barrier.wait()
            try:
                outcome[i] = lock.acquire(clients[i], f"run-{i}", ttl=600)
            except LockHeld as exc:
                outcome[i] = exc

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(clients))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

        winners = [o for o in outcome.values() if isinstance(o, lock.Acquired)]
        assert len(outcome) == len(clients) and len(winners) == 1, outcome
        assert all(isinstance(o, (lock.Acquired, LockHeld)) for o in outcome.values()), outcome
        assert lock.holder(subject.other()) == winners[0].info.describe()
        subject.target.meta.execute([Delete("lock.json")])


def test_break_lock_by_id(subject: Subject):
    t = subject.target
    with pytest.raises(TargetError, match="no lock"):
        lock.break_lock(t, "0123456789ab")
    held = lock.acquire(t, "stuck-run", ttl=3600).info

    with pytest.raises(LockHeld, match=held.id):
        lock.break_lock(subject.other(), "not-the-id")
    broken = lock.break_lock(subject.other(), held.id)

    assert broken == held
    lock.acquire(subject.other(), "operator", ttl=60)


def _outside(subject: Subject, tmp_path: Path, name: str, data: bytes) -> str:
    """A file outside the target's root (an access log): its absolute path on the host."""
    if subject.disk is None:
        path = f"/var/log/nginx/{name}"
        assert subject.memory is not None
        subject.memory.files[path] = (data, 0.0)
        return path
    path = subject.disk.parent / f"{subject.disk.name}-logs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_reads_a_file_outside_the_root_by_range(subject: Subject, tmp_path: Path):
    t = subject.target
    data = os.urandom(200_000)  # several SFTP read requests
    path = _outside(subject, tmp_path, "prov.access.log", data)

    stat = t.stat_file(path)

    assert stat is not None and stat.size == 200_000
    assert t.read_range(path, 0, 10) == data[:10]
    assert t.read_range(path, 1000, 150_000) == data[1000:151_000]
    assert t.read_range(path, 199_990, 4096) == data[199_990:]  # fewer bytes at the end
    assert t.read_range(path, 200_000, 4096) == b""
    assert t.stat_file(path + ".1") is None
    with pytest.raises(TargetError, match="prov.access.log.1"):
        t.read_range(path + ".1", 0, 10)
