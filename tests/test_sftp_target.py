"""The SFTP target against a real OpenSSH sshd on 127.0.0.1: what only SFTP can get wrong.

Host keys (unknown and changed keys refused, nothing written), authentication, an unreachable
host, permission denied, a server killed in the middle of a publish (the rerun converges and no
phone could have fetched half a file), concurrent lock attempts, file and directory modes.

Tests run as root in CI, and root ignores permission bits: "permission denied on the document
root" is made real with the immutable attribute (`chattr +i`, which binds root too) and, on
file systems without it, with a read-only SFTP server (`internal-sftp -R`), which answers every
write with SSH_FX_PERMISSION_DENIED exactly as a server refusing the account does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from sshd import SshServer, fingerprint, write_ed25519_key

from reconciler.core.errors import LockHeld, TargetError
from reconciler.targets import lock, manifest
from reconciler.targets.base import TMP_PREFIX, Delete, Put

pytestmark = pytest.mark.integration


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(f"{TMP_PREFIX}*"))


# --- host keys and authentication: refused before anything is written ----------------------


def test_unknown_host_key_is_refused_naming_host_and_fingerprint(
    sshd: SshServer, sftp_root: Path, tmp_path: Path
):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = sshd.target(sftp_root, known_hosts=empty)

    with pytest.raises(TargetError) as err:
        target.execute([Put("tok/phone.cfg", b"secret")])

    message = str(err.value)
    assert f"{sshd.host}:{sshd.port}" in message
    assert "UNKNOWN" in message
    assert fingerprint(sshd.host_public) in message
    assert not err.value.transient
    assert _files(sftp_root) == []


def test_changed_host_key_is_refused_and_nothing_is_written(
    sshd: SshServer, sftp_root: Path, tmp_path: Path
):
    other = write_ed25519_key(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(other))
    target = sshd.target(sftp_root, known_hosts=known)

    for attempt in (lambda: target.execute([Put("tok/phone.cfg", b"secret")]),
                    lambda: lock.acquire(target, "me", 60), lambda: manifest.read(target)):
        with pytest.raises(TargetError) as err:
            attempt()
        message = str(err.value)
        assert "CHANGED" in message and f"{sshd.host}:{sshd.port}" in message
        assert fingerprint(sshd.host_public) in message  # what the server presented
        assert fingerprint(other) in message  # what we expected
        assert not err.value.transient
    assert _files(sftp_root) == []


def test_host_key_of_another_type_is_a_changed_key(sshd: SshServer, sftp_root: Path,
                                                   tmp_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ecdsa = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(ecdsa))  # the host had an ECDSA key

    with pytest.raises(TargetError, match="CHANGED.* has ecdsa-sha2-nistp256 SHA256:") as err:
        manifest.read(sshd.target(sftp_root, known_hosts=known))
    assert fingerprint(sshd.host_public) in str(err.value)


def test_host_key_known_for_another_port_is_not_trusted(
    sshd: SshServer, sftp_root: Path, tmp_path: Path
):
    known = tmp_path / "known_hosts"
    known.write_text(f"{sshd.host} {sshd.host_public}\n")  # port 22's entry

    with pytest.raises(TargetError, match="UNKNOWN"):
        manifest.read(sshd.target(sftp_root, known_hosts=known))


def test_missing_known_hosts_file_is_a_clear_error(sshd: SshServer, sftp_root: Path,
                                                    tmp_path: Path):
    with pytest.raises(TargetError, match="known_hosts file .* not found"):
        manifest.read(sshd.target(sftp_root, known_hosts=tmp_path / "nope"))


def test_wrong_key_is_a_permanent_authentication_error(
    sshd: SshServer, sftp_root: Path, tmp_path: Path
):
    stranger = tmp_path / "id_stranger"
    write_ed25519_key(stranger)

    with pytest.raises(TargetError, match="authentication") as err:
        manifest.read(sshd.target(sftp_root, key_file=stranger))
    assert not err.value.transient


def test_encrypted_key_with_passphrase(sshd: SshServer, sftp_root: Path, tmp_path: Path):
    key = tmp_path / "id_locked"
    sshd.authorize(write_ed25519_key(key, passphrase="correct horse"))

    with pytest.raises(TargetError, match="encrypted: set key_passphrase"):
        manifest.read(sshd.target(sftp_root, key_file=key))
    with pytest.raises(TargetError, match="cannot load key"):
        manifest.read(sshd.target(sftp_root, key_file=key, key_passphrase="wrong"))
    target = sshd.target(sftp_root, key_file=key, key_passphrase="correct horse")
    assert [r.error for r in target.execute([Put("a.cfg", b"x")])] == [None]
    target.close()


def test_no_key_file_and_no_agent(sshd: SshServer, sftp_root: Path,
                                  monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(TargetError, match="agent") as err:
        manifest.read(sshd.target(sftp_root, key_file=None))
    assert not err.value.transient


def test_connection_refused_is_transient_and_names_host_port(fresh_sshd: SshServer,
                                                             tmp_path: Path):
    fresh_sshd.stop()
    target = fresh_sshd.target(tmp_path)
    target.backoff = 0.01

    with pytest.raises(TargetError) as err:
        target.execute([Put("a.cfg", b"x")])

    assert err.value.transient
    assert f"{fresh_sshd.host}:{fresh_sshd.port}" in str(err.value)


def test_server_that_never_answers_is_a_transient_timeout(sshd: SshServer, tmp_path: Path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    target = sshd.target(tmp_path, port=port, timeout=0.3)
    target.backoff = 0.01
    try:
        with pytest.raises(TargetError) as err:
            manifest.read(target)
    finally:
        silent.close()
    assert err.value.transient
    assert f"127.0.0.1:{port}" in str(err.value)


def test_server_that_closes_before_the_banner_is_a_transient_closed_connection(
    sshd: SshServer, tmp_path: Path
):
    """As when sshd is killed while a dropped connection is being reopened."""
    closing = socket.socket()
    closing.bind(("127.0.0.1", 0))
    closing.listen()
    port = closing.getsockname()[1]

    def accept_and_close() -> None:
        with contextlib.suppress(OSError):  # until the test closes the listener
            while True:
                closing.accept()[0].close()

    target = sshd.target(tmp_path, port=port, timeout=5)
    target.backoff = 0.01
    server = threading.Thread(target=accept_and_close, daemon=True)
    server.start()
    try:
        with pytest.raises(TargetError) as err:
            manifest.read(target)
    finally:
        closing.close()
    assert err.value.transient
    assert f"connection to 127.0.0.1:{port} closed while connecting" in str(err.value)


# --- permission denied, and a path component that is a file --------------------------------


@pytest.fixture
def immutable(sftp_root: Path):
    """Make a directory immutable (binds root too); skip where the file system cannot."""
    made: list[Path] = []

    def make(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i not supported here ({done.stderr.strip()}); "
                        "test_permission_denied_by_a_read_only_server covers it")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_permission_denied_on_the_document_root(sshd: SshServer, sftp_root: Path, immutable):
    (sftp_root / "tok").mkdir()
    (sftp_root / "tok" / "phone.cfg").write_bytes(b"old")
    (sftp_root / "open").mkdir()
    immutable(sftp_root / "tok")
    target = sshd.target(sftp_root)

    results = target.execute([Put("tok/phone.cfg", b"new"), Put("tok/new.cfg", b"x"),
                              Put("open/phone.cfg", b"fine"), Delete("tok/phone.cfg")])

    assert [r.error for r in results] == [
        "permission denied: tok/phone.cfg", "permission denied: tok/new.cfg", None,
        "permission denied: tok/phone.cfg",
    ]
    assert (sftp_root / "tok" / "phone.cfg").read_bytes() == b"old"
    assert (sftp_root / "open" / "phone.cfg").read_bytes() == b"fine"
    assert _leftovers(sftp_root) == []
    target.close()


def test_permission_denied_by_a_read_only_server(tmp_path: Path):
    from conftest import _need_sshd

    _need_sshd()
    with SshServer(tmp_path / "ro", sftp_args=("-R",)) as server:
        root = server.root / "www"
        (root / "tok").mkdir(parents=True)
        (root / "tok" / "phone.cfg").write_bytes(b"old")
        target = server.target(root)

        results = target.execute([Put("tok/phone.cfg", b"new"), Put("new/a.cfg", b"x")])
        assert [r.error for r in results] == [
            "permission denied: tok/phone.cfg", "permission denied: new/a.cfg",
        ]
        assert target.read("tok/phone.cfg") == b"old"  # reading still works
        with pytest.raises(TargetError, match="permission denied"):
            lock.acquire(target, "me", 60)
        with pytest.raises(TargetError, match="permission denied"):
            manifest.write(target, manifest.read(target))
        target.close()
        assert _files(root) == ["tok", "tok/phone.cfg"]


def test_a_file_where_a_directory_is_needed(sshd: SshServer, sftp_root: Path):
    (sftp_root / "tok").write_bytes(b"someone's file")
    target = sshd.target(sftp_root)

    results = target.execute([Put("tok/phone.cfg", b"x"), Put("ok/phone.cfg", b"y")])

    assert results[0].error == "tok exists and is not a directory: tok/phone.cfg"
    assert results[1].error is None
    assert (sftp_root / "tok").read_bytes() == b"someone's file"
    target.close()


def test_missing_document_root_is_named(sshd: SshServer, tmp_path: Path):
    target = sshd.target(tmp_path / "no-such-root")

    [result] = target.execute([Put("tok/phone.cfg", b"x")])

    missing = tmp_path / "no-such-root"
    assert result.error == f"document root {missing} does not exist: tok/phone.cfg"
    target.close()


# --- modes ----------------------------------------------------------------------------------


def test_file_and_directory_modes(sshd: SshServer, sftp_root: Path):
    target = sshd.target(sftp_root, file_mode=0o640, dir_mode=0o750)
    target.execute([Put("a/b/phone.cfg", b"x"), Put("a/c/phone.cfg", b"y")])
    target.execute([Put("a/b/phone.cfg", b"z")])  # the replacement gets the mode too

    assert stat.S_IMODE((sftp_root / "a/b/phone.cfg").stat().st_mode) == 0o640
    assert stat.S_IMODE((sftp_root / "a/c/phone.cfg").stat().st_mode) == 0o640
    for d in ("a", "a/b", "a/c"):
        assert stat.S_IMODE((sftp_root / d).stat().st_mode) == 0o750
    target.close()

    default = sshd.target(sftp_root)
    default.execute([Put("d/phone.cfg", b"x")])
    assert stat.S_IMODE((sftp_root / "d/phone.cfg").stat().st_mode) == 0o644
    # Directories others may enter but not list: no token directory can be found by listing.
    assert stat.S_IMODE((sftp_root / "d").stat().st_mode) == 0o711
    default.close()


# --- many files, and a server killed in the middle ------------------------------------------


def _fleet(n: int, version: str, per_dir: int = 2) -> list[Put]:
    return [Put(f"tok{i // per_dir:05d}/{i:012x}.cfg",
                f"{version}\n".encode() + bytes(1500 + i % 3000)) for i in range(n)]


def test_many_files_scan_and_read_back(sshd: SshServer, sftp_root: Path):
    puts = _fleet(600, "v1")
    target = sshd.target(sftp_root, sessions=4)

    results = target.execute(puts)

    assert [r.error for r in results] == [None] * len(puts)
    dirs = {p.path.split("/")[0] for p in puts}
    found = target.scan(dirs)
    assert {p: s.size for p, s in found.items()} == {p.path: len(p.data) for p in puts}
    assert {p: r.stat for p, r in zip([p.path for p in puts], results, strict=True)} == found
    assert target.read_many(p.path for p in puts) == {p.path: p.data for p in puts}
    results = target.execute([Delete(p.path) for p in puts])
    assert [r.error for r in results] == [None] * len(puts)
    assert _files(sftp_root) == []
    target.close()


def test_read_many_large_files(sshd: SshServer, sftp_root: Path):
    blobs = {f"fw/{i}.rom": os.urandom(700_000 + i) for i in range(4)}  # more than READ_CREDIT
    for path, data in blobs.items():
        (sftp_root / path).parent.mkdir(exist_ok=True)
        (sftp_root / path).write_bytes(data)
    target = sshd.target(sftp_root, sessions=1)

    assert target.read_many([*blobs, "fw/missing.rom"]) == {**blobs, "fw/missing.rom": None}
    target.close()


def test_server_killed_mid_publish_then_rerun_converges(fresh_sshd: SshServer):
    root = fresh_sshd.root / "www"
    root.mkdir()
    old, new = _fleet(1200, "v1", per_dir=12), _fleet(1200, "v2", per_dir=12)
    for put in old:  # as published by an earlier run
        (root / put.path).parent.mkdir(exist_ok=True)
        (root / put.path).write_bytes(put.data)
    target = fresh_sshd.target(root, sessions=4, timeout=5)
    target.backoff = 0.02

    results: list = []
    run = threading.Thread(target=lambda: results.extend(target.execute(new)))
    run.start()
    watch = root / new[len(new) // 5].path  # kill once a fifth is through
    deadline = time.monotonic() + 20
    while watch.read_bytes()[:2] != b"v2" and time.monotonic() < deadline:
        time.sleep(0.001)
    fresh_sshd.stop()
    run.join(30)
    assert not run.is_alive()

    failed = [r for r in results if r.error]
    assert failed, "the server was killed too late to interrupt anything"
    # The kill shows as a lost connection; on a loaded machine a request may time out first.
    transport = ("connection", "timed out", "timeout")
    others = sorted({r.error for r in failed
                     if not any(word in r.error.lower() for word in transport)})
    assert others == [], others[:3]
    for put, result in zip(new, results, strict=True):
        body = (root / put.path).read_bytes()
        assert body in (put.data, old[new.index(put)].data), f"half a file: {put.path}"
        if result.error is None:
            assert body == put.data  # reported published = published

    fresh_sshd.start()
    rerun = target.execute([r.op for r in failed])
    assert [r.error for r in rerun] == [None] * len(failed)
    for put in new:
        assert (root / put.path).read_bytes() == put.data
    assert _leftovers(root) == []  # the interrupted uploads' temporary files are gone
    target.close()


def test_dropped_connections_are_retried_on_fresh_ones(fresh_sshd: SshServer):
    root = fresh_sshd.root / "www"
    root.mkdir()
    puts = _fleet(1200, "v1", per_dir=12)
    target = fresh_sshd.target(root, sessions=4)
    target.backoff = 0.02

    results: list = []
    run = threading.Thread(target=lambda: results.extend(target.execute(puts)))
    run.start()
    watch = root / puts[len(puts) // 5].path
    deadline = time.monotonic() + 20
    while not watch.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    dropped = fresh_sshd.drop_connections()
    run.join(30)

    assert dropped and not run.is_alive()
    assert [r.error for r in results] == [None] * len(puts)
    for put in puts:
        assert (root / put.path).read_bytes() == put.data
    assert _leftovers(root) == []  # what the dropped uploads left behind is gone
    target.close()


def test_a_new_process_cleans_temporary_files_it_scans(sshd: SshServer, sftp_root: Path):
    (sftp_root / "tok").mkdir()
    (sftp_root / "tok" / f"{TMP_PREFIX}phone.cfg.dead1").write_bytes(b"half")
    target = sshd.target(sftp_root)

    assert target.scan(["tok"]) == {}  # never reported as content
    target.execute([Put("tok/phone.cfg", b"x")])

    assert _files(sftp_root) == ["tok", "tok/phone.cfg"]
    target.close()


# --- the lock ---------------------------------------------------------------------------------


def test_concurrent_lock_attempts_one_wins(sshd: SshServer, sftp_root: Path):
    targets = [sshd.target(sftp_root, name="eu-1") for _ in range(2)]
    for t in targets:
        manifest.read(t)  # connected, so both really race on the lock file
    for _ in range(5):
        barrier = threading.Barrier(2)
        outcome: dict[int, object] = {}

        def attempt(i: int, barrier=barrier, outcome=outcome) -> None:
            barrier.wait()
            try:
                outcome[i] = lock.acquire(targets[i], f"run-{i}", ttl=600).info
            except LockHeld as exc:
                outcome[i] = exc

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

        held = [i for i, o in outcome.items() if not isinstance(o, Exception)]
        refused = [o for o in outcome.values() if isinstance(o, LockHeld)]
        assert len(held) == 1 and len(refused) == 1, outcome
        winner = outcome[held[0]]
        assert f"run-{held[0]}" in str(refused[0]) or "being written" in str(refused[0])
        lock.release(targets[held[0]], winner)  # type: ignore[arg-type]
    for t in targets:
        t.close()


def test_lock_survives_a_dropped_connection(fresh_sshd: SshServer, tmp_path: Path):
    root = fresh_sshd.root / "www"
    root.mkdir()
    target = fresh_sshd.target(root)
    target.backoff = 0.01
    held = lock.acquire(target, "daemon", ttl=600).info
    fresh_sshd.stop()
    fresh_sshd.start()

    with pytest.raises(LockHeld, match="daemon"):
        lock.acquire(fresh_sshd.target(root), "other", ttl=600)
    lock.release(target, held)  # reconnects
    assert not (root.parent / ".provctl-www" / "lock.json").exists()
    target.close()
