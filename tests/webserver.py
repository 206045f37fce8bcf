"""What the real web servers of the tests share (nginx.py, apache.py): a free loopback port, a
temporary directory, a configuration block with `{port}`, `{root}` and `{access_log}` filled in,
a process started in the foreground and waited for until it listens, and stopped."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sshd import HOST, free_port


class LoopbackServer:
    name = "server"  # for errors

    def __init__(self, root: Path, block: str, access_log: Path | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix=f"provctl-{self.name}-"))
        self.root = Path(root)
        self.port = free_port()
        self.access_log = access_log or self.dir / "access.log"
        for key, value in (("{port}", str(self.port)), ("{root}", str(self.root)),
                           ("{access_log}", str(self.access_log))):
            block = block.replace(key, value)
        self.block = block
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def details(self) -> str:
        """What to add to a start failure (e.g. the server's error log)."""
        return ""

    def launch(self, command: list[str]) -> None:
        """Run `command` and wait until the port accepts connections (10 s at most)."""
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"{self.name} exited: {err}{self.details()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start listening: {self.details()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
