"""Benchmark observing an access log: 1,000,000 new lines (about 200 MB), generated.

    python bench/log_bench.py [--lines 1000000] [--phones 20000] [--format combined|json]

Generates a log in /tmp of phones fetching their files (200 and 304, with their vendors'
User-Agents), the misses phones make in their own directories, and a scanner guessing tokens;
a receipts timeline of two applies. Then times one observation through a local target — read in
chunks, parse, match to published files and the timeline, record in the state directory — and,
on the same file in the same run, `wc -l` as the floor. The verdict: at most 10 s for 1,000,000
lines. Everything generated is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.targets.local import LocalTarget  # noqa: E402
from reconciler.uptake.match import Index, PathInfo  # noqa: E402
from reconciler.uptake.observe import LogSpec, observe_log  # noqa: E402
from reconciler.uptake.store import Store  # noqa: E402

LIMIT = 10.0  # seconds for 1,000,000 lines
START = 1_796_100_000.0  # 2026-12-01


def phones(n: int) -> list[tuple[str, str, str]]:
    """(token, mac, user agent) per phone; half Yealink, half Snom."""
    rng = random.Random(1)
    out = []
    for i in range(n):
        token = f"{rng.getrandbits(128):032x}"
        if i % 2:
            mac = f"001565{i:06x}"
            colons = ":".join(mac[k:k + 2] for k in range(0, 12, 2))
            agent = f"Yealink SIP-T46U 108.86.0.{i % 90} {colons}"
        else:
            mac = f"000413{i:06x}"
            agent = (f"Mozilla/4.0 (compatible; snomD785-SIP 10.1.54.{i % 20} "
                     f"2010.12-00004-g9ba52f5 {mac.upper()} SXM:0 UXM:0)")
        out.append((token, mac, agent))
    return out


def own_files(token: str, mac: str) -> list[str]:
    if mac.startswith("001565"):
        return [f"{token}/{mac}.boot", f"{token}/{mac}.cfg"]
    return [f"{token}/{mac.upper()}.xml"]


def generate(path: Path, lines: int, fleet: list[tuple[str, str, str]], fmt: str) -> None:
    rng = random.Random(2)
    step = 86400.0 / lines
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as fh:
        for n in range(lines):
            at = START + n * step
            token, mac, agent = fleet[rng.randrange(len(fleet))]
            ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            roll = rng.random()
            if roll < 0.03:  # a scanner
                ip, agent = "203.0.113.9", "Mozilla/5.0 (X11; Linux x86_64)"
                path_, status, size = f"{rng.getrandbits(128):032x}/{mac}.cfg", 404, 153
            elif roll < 0.08:  # the phone's optional files
                path_, status, size = f"{token}/y000000000000.boot", 404, 153
            else:
                path_ = rng.choice(own_files(token, mac))
                status, size = (304, 0) if roll > 0.6 else (200, 4180)
            if fmt == "json":  # the layout of serve-config's log_format
                fh.write(f'{{"msec":{at:.3f},"remote_addr":"{ip}","request":"GET /{path_} '
                         f'HTTP/1.1","status":{status},"body_bytes_sent":{size},'
                         f'"http_user_agent":{json.dumps(agent)},"request_time":0.001,'
                         f'"host":"prov.example.net"}}\n')
            else:
                when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
                fh.write(f'{ip} - - [{when}] "GET /{path_} HTTP/1.1" {status} {size} '
                         f'"-" "{agent}"\n')


def receipts(path: Path, fleet: list[tuple[str, str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for k, (rev, started) in enumerate((("a" * 40, START - 86400), ("b" * 40, START + 40000))):
            items = [{"target": "local", "path": f"{p[:6]}…{p[32:]}", "action": "put",
                      "reason": "update", "error": None, "sha256": f"{k}{i:063x}", "size": 4180}
                     for i, (token, mac, _) in enumerate(fleet) for p in own_files(token, mac)
                     if k == 0 or i % 10 == 0]
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
            fh.write(json.dumps({"id": f"r{k}", "revision": rev, "started": stamp,
                                 "ended": stamp, "targets": {"local": {"items": items}}}) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--phones", type=int, default=20_000)
    ap.add_argument("--format", choices=("combined", "json"), default="combined")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="provctl-log-bench-", dir="/tmp"))
    try:
        fleet = phones(args.phones)
        log = work / "access.log"
        t = time.perf_counter()
        generate(log, args.lines, fleet, args.format)
        size = log.stat().st_size
        print(f"generated {args.lines:,} {args.format} lines, {size / 1e6:.0f} MB, for "
              f"{args.phones:,} phones in {time.perf_counter() - t:.1f}s")
        state = work / "state"
        receipts(work / "receipts.jsonl", fleet)
        index = Index.build({p: PathInfo(mac, True) for token, mac, _ in fleet
                             for p in own_files(token, mac)})
        with Store(state) as store:
            store.ingest_receipts(work / "receipts.jsonl")
            index = Index(index.files, index.tokens, frozenset(store.known_paths("local")))
            target = LocalTarget("local", work / "www")
            t, cpu = time.perf_counter(), time.process_time()
            obs = observe_log(target, LogSpec("local", str(log), args.format), index, store,
                              time.time)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        t = time.perf_counter()
        counted = subprocess.run(["wc", "-l", str(log)], capture_output=True, text=True,
                                 check=True).stdout.split()[0]
        floor = time.perf_counter() - t
        assert int(counted) == args.lines == obs.requests + obs.unparsed, (counted, obs)
        print(f"observed {obs.requests:,} requests ({obs.unparsed} unparsed, {obs.events:,} "
              f"fetch events, {obs.unknown:,} unknown fetches) in {seconds:.2f}s "
              f"({obs.requests / seconds / 1e3:.0f}k lines/s, {size / seconds / 1e6:.0f} MB/s; "
              f"{cpu:.2f}s of CPU)")
        print(f"wc -l on the same file: {floor:.3f}s; observing costs {seconds / floor:.0f}x "
              f"wc -l")
        load = os.getloadavg()[0]
        print(f"load average {load:.1f} on {os.cpu_count()} core(s) while measuring (other "
              "work on the machine slows both figures)")
        budget = LIMIT * args.lines / 1_000_000
        verdict = "OK" if seconds <= budget else "TOO SLOW"
        print(f"verdict: {verdict} ({seconds:.2f}s for {args.lines:,} lines; limit "
              f"{budget:.1f}s)")
        return 0 if seconds <= budget else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
