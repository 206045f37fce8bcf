"""Publish N rendered provisioning files to a loopback sshd; compare with `rsync -a` over ssh.

    python bench/sftp_bench.py [--files 10000] [--sessions 8] [--changed 100] [--repeat 3]

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sshd import SshServer, sshd_missing_reason  # noqa: E402

from reconciler.targets import manifest  # noqa: E402
from reconciler.targets.base import Put  # noqa: E402
from reconciler.targets.manifest import Manifest, ManifestEntry  # noqa: E402
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
        current = manifest.read(target)
        if scan:
            target.scan({path.rsplit("/", 1)[0] for path in current.files})
        entries = dict(current.files)
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
            manifest.write(target, Manifest(entries, revision=f"bench-{time.time()}"))
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


def one_run(server: SshServer, files: dict[str, bytes], run: int, args: argparse.Namespace
            ) -> dict[str, tuple[float, float]]:
    """The three scenarios once, in fresh directories; {scenario: (provctl s, rsync s)}."""
    files = dict(files)
    src = server.dir / f"rendered-{run}"
    write_tree(src, files)
    pv_root = server.root / f"provctl-{run}"
    rs_root = server.root / f"rsync-{run}"
    pv_root.mkdir()
    rows: dict[str, tuple[float, float]] = {}

    def both(name: str, expect: int, scan: bool = False) -> None:
        # Alternate who goes first, so that neither always gets the warmer caches.
        if run % 2:
            rs = rsync(server, src, str(rs_root))
        pv, n = provctl_publish(server, str(pv_root), files, args.sessions, scan=scan)
        if not run % 2:
            rs = rsync(server, src, str(rs_root))
        assert n == expect, (name, n, expect)
        rows[name] = (pv, rs)

    both("first publish", len(files))
    both("no-op", 0)
    both("no-op + scan", 0, scan=True)
    rnd = random.Random(2 + run)
    changed = rnd.sample(sorted(files), min(args.changed, len(files)))
    for path in changed:
        files[path] = render(rnd, rnd.randint(1024, 6 * 1024), salt=f"changed {run}")
    write_tree(src, {path: files[path] for path in changed})
    both(f"{len(changed)} changed", len(changed))

    for path in files:  # both copies are complete and equal
        assert (pv_root / path).read_bytes() == (rs_root / path).read_bytes() == files[path]
    # (provctl's records live beside its root, in meta_root)
    for tree in (src, pv_root, rs_root, server.root / f".provctl-provctl-{run}"):
        shutil.rmtree(tree)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are reported")
    args = parser.parse_args()
    reason = sshd_missing_reason()
    if reason or not shutil.which("rsync") or not shutil.which("ssh"):
        print(f"cannot run: {reason or 'rsync and ssh are needed'}", file=sys.stderr)
        return 1

    files = fleet(args.files)
    size = sum(map(len, files.values()))
    print(f"{len(files)} files in {len({p.split('/')[0] for p in files})} directories, "
          f"{size / 1e6:.1f} MB; {args.sessions} SFTP sessions; {args.repeat} runs, medians; "
          f"document roots under {tempfile.gettempdir()}")
    runs = []
    with SshServer() as server:
        for run in range(args.repeat):
            runs.append(one_run(server, files, run, args))

    goals = {"first publish": 1.5, "no-op": 1.0, f"{min(args.changed, len(files))} changed": 1.0}
    print(f"\n{'scenario':<16}{'provctl s':>11}{'rsync s':>10}{'provctl/rsync':>15}"
          f"{'ratio per run':>22}  target")
    for name in runs[0]:
        pv = statistics.median(r[name][0] for r in runs)
        rs = statistics.median(r[name][1] for r in runs)
        per_run = " ".join(f"{r[name][0] / r[name][1]:.2f}" for r in runs)
        goal = goals.get(name)
        if goal is None:
            verdict = "(reads every managed directory, as a drift check does)"
        elif pv / rs <= goal:
            verdict = f"<= {goal} ok"
        else:
            verdict = f"<= {goal} MISSED"
        print(f"{name:<16}{pv:>11.2f}{rs:>10.2f}{pv / rs:>15.2f}{per_run:>22}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
