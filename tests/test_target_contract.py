"""One contract, three targets: memory, a local directory, and SFTP to a real sshd.

Whatever the reconciler relies on from a target is asserted here once, against each of them:
publish, read, scan, delete; replacing a file leaves no temporary file; the manifest comes back
as written; the lock is exclusive, names its holder, is taken over when expired, and can be
broken by id.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets.base import (
    MANIFEST,
    TMP_PREFIX,
    Delete,
    Manifest,
    ManifestEntry,
    Put,
    Target,
)
from reconciler.targets.local import LocalTarget
from reconciler.targets.memory import MemoryTarget


@dataclass
class Subject:
    """A target under test, a way to make a second client of the same place, and its files."""

    target: Target
    again: object  # () -> Target: another client of the same target (another process)
    disk: Path | None  # where its files are, when they are on this machine

    def other(self) -> Target:
        return self.again()  # type: ignore[operator]


def _leftovers(disk: Path) -> list[str]:
    return sorted(p.name for p in disk.rglob(f"{TMP_PREFIX}*"))


@pytest.fixture(params=["memory", "local", pytest.param("sftp", marks=pytest.mark.integration)])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    opened: list[Target] = []

    def track(target: Target) -> Target:
        opened.append(target)
        return target

    if request.param == "memory":
        memory = MemoryTarget("mem")
        yield Subject(memory, lambda: memory, None)
        return
    if request.param == "local":
        root = tmp_path / "www"
        root.mkdir()
        yield Subject(LocalTarget("loc", root), lambda: LocalTarget("loc", root), root)
        return
    server = request.getfixturevalue("sshd")
    root = request.getfixturevalue("sftp_root")
    first = track(server.target(root))
    yield Subject(first, lambda: track(server.target(root)), root)
    for target in opened:
        target.close()


def test_put_read_scan_delete(subject: Subject):
    t = subject.target
    ops = [Put("tok1/0015651234ab.cfg", b"a" * 1500), Put("tok1/0015651234ab-dir.xml", b"<x/>"),
           Put("common.cfg", b"common\n")]

    results = t.execute(ops)

    assert [r.op for r in results] == ops
    assert [r.error for r in results] == [None, None, None]
    assert [r.stat.size for r in results] == [1500, 4, 7]
    assert t.read("tok1/0015651234ab.cfg") == b"a" * 1500
    assert t.read("tok1/missing.cfg") is None
    assert t.read("nowhere/missing.cfg") is None
    found = t.scan(["tok1", ""])
    assert {p: s.size for p, s in found.items() if not p.startswith(".provctl")} == {
        "tok1/0015651234ab.cfg": 1500, "tok1/0015651234ab-dir.xml": 4, "common.cfg": 7,
    }
    # What execute reported is what a later scan sees: drift detection compares the two.
    assert found["tok1/0015651234ab.cfg"] == results[0].stat
    assert t.scan(["no-such-dir"]) == {}

    results = t.execute([Delete("tok1/0015651234ab.cfg"), Delete("tok1/0015651234ab-dir.xml"),
                         Delete("never/was.cfg")])

    assert [r.error for r in results] == [None, None, None]
    assert t.read("tok1/0015651234ab.cfg") is None
    assert t.scan(["tok1"]) == {}
    assert t.read("common.cfg") == b"common\n"
    if subject.disk is not None:  # the emptied token directory went too, the root stayed
        assert not (subject.disk / "tok1").exists()
        assert subject.disk.is_dir()


def test_replace_is_atomic_and_leaves_no_temporary_file(subject: Subject):
    t = subject.target
    t.execute([Put("tok/phone.cfg", b"old" * 1000)])

    [result] = t.execute([Put("tok/phone.cfg", b"new\n")])

    assert result.error is None and result.stat.size == 4
    assert t.read("tok/phone.cfg") == b"new\n"
    assert list(t.scan(["tok"])) == ["tok/phone.cfg"]
    if subject.disk is not None:
        assert _leftovers(subject.disk) == []
        assert sorted(p.name for p in (subject.disk / "tok").iterdir()) == ["phone.cfg"]


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
    if subject.disk is not None:
        assert _leftovers(subject.disk) == []


def test_paths_outside_the_root_are_refused(subject: Subject):
    with pytest.raises(TargetError, match="escapes the root"):
        subject.target.execute([Put("../outside.cfg", b"x")])
    if subject.disk is not None:
        assert not (subject.disk.parent / "outside.cfg").exists()


def test_manifest_round_trip(subject: Subject):
    t = subject.target
    assert t.read_manifest() == Manifest()
    manifest = Manifest(
        files={"tok/a.cfg": ManifestEntry("ab" * 32, 10, 1700000000.0),
               "fw/T46U.rom": ManifestEntry("cd" * 32, 99, 0.0, firmware="108.86.0.95")},
        revision="0123abc",
    )

    t.write_manifest(manifest)

    assert t.read_manifest() == manifest
    assert subject.other().read_manifest() == manifest
    t.write_manifest(Manifest(revision="next"))
    assert t.read_manifest() == Manifest(revision="next")
    if subject.disk is not None:
        assert (subject.disk / MANIFEST).read_bytes() == Manifest(revision="next").to_bytes()
        assert _leftovers(subject.disk) == []


def test_unreadable_manifest_is_an_error_not_an_empty_target(subject: Subject):
    t = subject.target
    t.execute([Put(MANIFEST, b"{not json")])
    with pytest.raises(TargetError, match="manifest"):
        t.read_manifest()


def test_lock_is_exclusive_and_names_its_holder(subject: Subject):
    t = subject.target
    lock = t.acquire_lock("alice@ci", ttl=600)
    assert lock.owner == "alice@ci"

    with pytest.raises(LockHeld) as held:
        subject.other().acquire_lock("bob@laptop", ttl=600)

    message = str(held.value)
    assert "alice@ci" in message and lock.id in message and lock.host in message
    t.release_lock(lock)
    again = subject.other().acquire_lock("bob@laptop", ttl=600)
    assert again.id != lock.id
    t.release_lock(lock)  # not ours any more: nothing happens
    with pytest.raises(LockHeld, match="bob@laptop"):
        t.acquire_lock("alice@ci", ttl=600)


def test_expired_lock_is_taken_over(subject: Subject):
    stale = subject.target.acquire_lock("crashed-run", ttl=-1)

    lock = subject.other().acquire_lock("next-run", ttl=600)

    assert lock.owner == "next-run" and lock.id != stale.id
    subject.target.release_lock(stale)  # the old holder comes back: it must not unlock us
    with pytest.raises(LockHeld, match="next-run"):
        subject.target.acquire_lock("third", ttl=600)


def test_break_lock_by_id(subject: Subject):
    t = subject.target
    with pytest.raises(TargetError, match="no lock"):
        t.break_lock("0123456789ab")
    lock = t.acquire_lock("stuck-run", ttl=3600)

    with pytest.raises(LockHeld, match=lock.id):
        subject.other().break_lock("not-the-id")
    broken = subject.other().break_lock(lock.id)

    assert broken == lock
    subject.other().acquire_lock("operator", ttl=60)


def _outside(subject: Subject, tmp_path: Path, name: str, data: bytes) -> str:
    """A file outside the target's root (an access log): its absolute path on the host."""
    if subject.disk is None:
        path = f"/var/log/nginx/{name}"
        subject.target.outside[path] = data  # type: ignore[attr-defined]
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
