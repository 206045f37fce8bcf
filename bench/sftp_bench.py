"""Publish N rendered provisioning files to a loopback sshd; compare with `rsync -a` over ssh.

    python bench/sftp_bench.py [--files 10000] [--sessions 8]

Starts an OpenSSH sshd on 127.0.0.1 exactly as the test fixture does (tests/sshd.py), builds a
tree of N text config files of 1-6 KB, two per device directory (`<token>/<mac>.cfg` and
`<token>/<mac>-directory.xml`), and times three scenarios, each on fresh connections:

    first publish   provctl: read manifest, hash, compare, publish all, write manifest
                    rsync:   rsync -a of the tree to an empty directory on the same server
    no-op           provctl: read manifest, hash, compare: nothing to publish
                    rsync:   the same rsync again
    100 changed     provctl: read manifest, hash, compare, publish 100 files, write manifest
                    rsync:   rsync again after changing the same 100 files on disk

It also reports (not part of the targets) a no-op that lists every managed directory, as a
drift check does. Targets: first publish within 1.5x of rsync; no-op and 100 changed faster.
Needs /usr/sbin/sshd, ssh and rsync.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sshd import SshServer, sshd_missing_reason  # noqa: E402

from reconciler.targets.base import Manifest, ManifestEntry, Put  # noqa: E402
from reconciler.targets.sftp import SftpTarget  # noqa: E402

WORDS = ["account", "sip", "server", "codec", "line", "key", "timezone", "ntp", "vlan", "label",
         "enable", "transport", "expires", "voicemail", "dial_plan", "programkey", "linekey"]


def render(rnd: random.Random, size: int, salt: str = "") -> bytes:
    """A plausible vendor config file of about `size` bytes."""
    lines = [f"#!version:1.0.0.1 {salt}".rstrip()]
    total = len(lines[0])
    n = 0
    while total < size:
        n += 1
        key = ".".join(rnd.choice(WORDS) for _ in range(3))
        value = rnd.choice([str(rnd.randint(0, 65535)), f"sip{rnd.randint(1, 99)}.example.net",
                            "Europe/Berlin", "%NULL%", f"{rnd.getrandbits(64):x}"])
        line = f"{key}.{n} = {value}"
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:size]


def fleet(count: int, seed: int = 1) -> dict[str, bytes]:
    rnd = random.Random(seed)
    files: dict[str, bytes] = {}
    while len(files) < count:
        token = f"{rnd.getrandbits(96):024x}"
        mac = f"{rnd.getrandbits(48):012x}"
        files[f"{token}/{mac}.cfg"] = render(rnd, rnd.randint(1024, 6 * 1024))
        if len(files) < count:
            files[f"{token}/{mac}-directory.xml"] = render(rnd, rnd.randint(1024, 6 * 1024))
    return files


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def provctl_publish(server: SshServer, root: str, files: dict[str, bytes], sessions: int,
                    scan: bool = False) -> tuple[float, int]:
    """read manifest -> hash + compare -> execute -> write manifest; (seconds, files put)."""
    start = time.perf_counter()
    target = SftpTarget("bench", server.host, server.port, server.user, root,
                        known_hosts=server.known_hosts, key_file=server.key, key_passphrase=None,
                        sessions=sessions)
    try:
        manifest = target.read_manifest()
        if scan:
            target.scan({path.rsplit("/", 1)[0] for path in manifest.files})
        entries = dict(manifest.files)
        ops = []
        for path, data in files.items():
            sha = digest(data)
            old = entries.get(path)
            if old is None or old.sha256 != sha or old.size != len(data):
                ops.append(Put(path, data))
        if ops:
            for result in target.execute(ops):
                if result.error:
                    raise SystemExit(f"publish failed: {result.error}")
                assert result.stat is not None and isinstance(result.op, Put)
                entries[result.op.path] = ManifestEntry(
                    digest(result.op.data), result.stat.size, result.stat.mtime
                )
            target.write_manifest(Manifest(entries, revision=f"bench-{time.time()}"))
    finally:
        target.close()
    return time.perf_counter() - start, len(ops)


def rsync(server: SshServer, src: Path, dest: str) -> float:
    ssh = (f"ssh -p {server.port} -i {server.key} -o IdentitiesOnly=yes -o BatchMode=yes "
           f"-o UserKnownHostsFile={server.known_hosts} -o StrictHostKeyChecking=yes")
    start = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", ssh, f"{src}/", f"{server.user}@{server.host}:{dest}/"],
                   check=True)
    return time.perf_counter() - start


def write_tree(base: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        full = base / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--changed", type=int, default=100)
    args = parser.parse_args()
    reason = sshd_missing_reason()
    if reason or not shutil.which("rsync") or not shutil.which("ssh"):
        print(f"cannot run: {reason or 'rsync and ssh are needed'}", file=sys.stderr)
        return 1

    files = fleet(args.files)
    size = sum(map(len, files.values()))
    print(f"{len(files)} files in {len({p.split('/')[0] for p in files})} directories, "
          f"{size / 1e6:.1f} MB; {args.sessions} SFTP sessions")
    with SshServer() as server:
        src = server.dir / "rendered"
        write_tree(src, files)
        pv_root = str(server.root / "provctl")
        rs_root = str(server.root / "rsync")
        Path(pv_root).mkdir()
        rows = []

        pv, n = provctl_publish(server, pv_root, files, args.sessions)
        assert n == len(files)
        rows.append(("first publish", pv, rsync(server, src, rs_root)))

        pv, n = provctl_publish(server, pv_root, files, args.sessions)
        assert n == 0
        rs = rsync(server, src, rs_root)
        rows.append(("no-op", pv, rs))
        pv_scan, _ = provctl_publish(server, pv_root, files, args.sessions, scan=True)

        rnd = random.Random(2)
        changed = rnd.sample(sorted(files), min(args.changed, len(files)))
        for path in changed:
            files[path] = render(rnd, rnd.randint(1024, 6 * 1024), salt="changed")
        write_tree(src, {path: files[path] for path in changed})
        pv, n = provctl_publish(server, pv_root, files, args.sessions)
        assert n == len(changed)
        rows.append((f"{len(changed)} changed", pv, rsync(server, src, rs_root)))

        for path in files:  # both copies are complete and equal
            assert (Path(pv_root) / path).read_bytes() == (Path(rs_root) / path).read_bytes()

    print(f"\n{'scenario':<16}{'provctl s':>12}{'rsync s':>10}{'provctl/rsync':>15}  target")
    for (name, p, r), goal in zip(rows, (1.5, 1.0, 1.0), strict=True):
        verdict = "ok" if p / r <= goal else "MISSED"
        print(f"{name:<16}{p:>12.2f}{r:>10.2f}{p / r:>15.2f}  <= {goal} {verdict}")
    print(f"{'no-op + scan':<16}{pv_scan:>12.2f}{rows[1][2]:>10.2f}{pv_scan / rows[1][2]:>15.2f}"
          "  (lists every managed directory, as a drift check does)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
