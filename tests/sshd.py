"""A real OpenSSH sshd on 127.0.0.1, for integration tests and the SFTP benchmark.

`SshServer` generates an ed25519 host key and an ed25519 user key, writes an sshd_config that
allows only that user key (AuthorizedKeysFile in the temporary directory), serves SFTP with
`internal-sftp`, and runs `/usr/sbin/sshd -D -e -f <config>` as the current user on a free
port. `stop()` kills the listener *and* every session process it forked (as a crash or a
reboot of the provisioning host would), `start()` brings it back on the same port and keys.

Needs: the `openssh-server` package (/usr/sbin/sshd) and, when run as root, the privilege
separation directory /run/sshd (created here when missing). `rsync` only for the benchmark.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

if TYPE_CHECKING:
    from reconciler.targets.sftp import SftpTarget

SSHD = Path(os.environ.get("PROVCTL_TEST_SSHD", "/usr/sbin/sshd"))
HOST = "127.0.0.1"


def sshd_missing_reason() -> str | None:
    """Why the fixture cannot run here, or None."""
    if not SSHD.exists():
        return f"{SSHD} not found (install the openssh-server package)"
    return None


def write_ed25519_key(path: Path, passphrase: str | None = None) -> str:
    """Write a new OpenSSH private key; return its public line `ssh-ed25519 AAAA...`."""
    key = Ed25519PrivateKey.generate()
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption,
    ))
    path.chmod(0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def fingerprint(public_line: str) -> str:
    """`SHA256:...` of a public key line, as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class SshServer:
    """One sshd in its own temporary directory; also usable as a context manager.

    `sftp_args` go to internal-sftp (e.g. ("-R",) for a read-only server).
    """

    def __init__(self, base: Path | None = None, sftp_args: tuple[str, ...] = ()):
        self._tmp = None
        if base is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="provctl-sshd-")
            base = Path(self._tmp.name)
        self.dir = base
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = free_port()
        self.user = _current_user()
        self.key = self.dir / "id_ed25519"  # the client's private key
        self.known_hosts = self.dir / "known_hosts"
        self.root = self.dir / "srv"  # make document roots below this
        self.root.mkdir(exist_ok=True)
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"
        self.sftp_args = sftp_args
        self.host_public = write_ed25519_key(self.host_key)
        self.authorized_keys.write_text(write_ed25519_key(self.key) + "\n")
        self.known_hosts.write_text(self.known_hosts_line())
        self.config.write_text(self._config())
        self._proc: subprocess.Popen[bytes] | None = None

    def known_hosts_line(self, public: str | None = None) -> str:
        return f"[{self.host}]:{self.port} {public or self.host_public}\n"

    def authorize(self, public: str) -> None:
        with open(self.authorized_keys, "a") as fh:
            fh.write(public + "\n")

    def target(self, root: Path | str, name: str = "sftp", **kwargs: Any) -> SftpTarget:
        """An SftpTarget for this server (keyword arguments override the defaults)."""
        from reconciler.targets.sftp import SftpTarget

        settings: dict[str, Any] = dict(
            host=self.host, port=self.port, user=self.user, root=str(root),
            known_hosts=self.known_hosts, key_file=self.key, key_passphrase=None,
        )
        settings.update(kwargs)
        return SftpTarget(name, **settings)

    def _config(self) -> str:
        return "\n".join([
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "MaxSessions 64",
            "MaxStartups 200",
            "MaxAuthTries 10",
            "LogLevel ERROR",
            " ".join(["Subsystem sftp internal-sftp", *self.sftp_args]),
            "",
        ])

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if os.geteuid() == 0:
            # sshd refuses to start as root without its privilege separation directory.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited with {self._proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd did not accept connections on {self.host}:{self.port}")

    def stop(self) -> None:
        """Kill sshd and all its session processes at once (SIGKILL: no goodbye to clients)."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            victims = [proc.pid, *_descendants(proc.pid)]
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def drop_connections(self) -> int:
        """Kill every session process, keep the listener: clients must reconnect."""
        assert self._proc is not None
        victims = _descendants(self._proc.pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
