"""Shared pytest fixtures."""

pytest_plugins = ["fleet_fixtures"]


# --- a real OpenSSH sshd on 127.0.0.1 (integration tests of the SFTP target) ---------------

import os  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sshd import SshServer, sshd_missing_reason  # noqa: E402


def _need_sshd() -> None:
    reason = sshd_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI must run the SFTP integration tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One sshd shared by the session; do not stop it (use `fresh_sshd` for that)."""
    _need_sshd()
    with SshServer() as server:
        yield server


@pytest.fixture
def fresh_sshd() -> Iterator[SshServer]:
    """An sshd of this test's own, free to stop() and start()."""
    _need_sshd()
    with SshServer() as server:
        yield server


@pytest.fixture
def sftp_root(sshd: SshServer, request: pytest.FixtureRequest) -> Path:
    """An empty document root on the shared sshd."""
    root = sshd.root / f"{request.node.name[:60]}-{os.urandom(3).hex()}"
    root.mkdir()
    return root


@pytest.fixture
def nginx_factory(tmp_path):
    """Start real nginx servers (tests/nginx.py) on 127.0.0.1; all stopped at the end."""
    from nginx import NginxServer, nginx_missing_reason

    reason = nginx_missing_reason()
    if reason and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI must run the nginx tests: {reason} (scripts/system-deps installs it)")
    if reason:
        pytest.skip(reason)
    servers: list[NginxServer] = []

    def start(root, server_block=None, access_log=None):
        server = NginxServer(root, server_block, access_log).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.cleanup()
