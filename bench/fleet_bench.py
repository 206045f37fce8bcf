"""Benchmark provctl on a generated fleet, each figure beside a floor measured in the same run.

    python bench/fleet_bench.py [--devices 10000] [--work DIR] [--no-fsync-floor]

The fleet: half Yealink T46U, half Snom D785 (1.5 files per phone, about 3 KB each), 100
profiles, 50 customers, accounts of two phones each, one secret per account (a 50,000-entry
secrets file at 100,000 phones, kept outside the repository), a local target; the desired
state is a git repository.

Every row runs provctl in its own process (`python -m reconciler.cli ...`) and reports the
wall time, the CPU time (the process and its render workers) and the peak RSS (the largest of
them), as the kernel counts them (wait4):

- first apply: empty target, empty state directory;
- no-op plan: nothing changed (the plan trusts the manifest; `--scan` is the next row);
- no-op plan --scan: the same, with the full scan of the target (drift check);
- one device changed, apply: one device given a parameter of its own, in the working tree;
- commit → published, one device: another device edited and committed, then
  `provctl daemon --repo R --once` (reads the revision from git, applies it, writes the note).

Floors, measured by plain loops in their own processes:

- write: every published file written again with its bytes (temporary name + rename), without
  and with one fsync per file;
- read: os.stat of every published file plus reading every YAML file of the desired state.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GOALS = {"first apply": (150.0, 1024), "no-op plan": (10.0, None),  # the issue's, at 100,000
         "one device changed, apply": (5.0, None),
         "commit → published (daemon --once)": (10.0, None)}


# --- the fleet ---------------------------------------------------------------------------------


def generate(repo: Path, n: int) -> None:
    for sub in ("profiles", "customers", "devices", "assignments"):
        (repo / sub).mkdir(parents=True)
    (repo / "provisioning.yaml").write_text(
        "fleet: {name: bench, secret: env:BENCH_FLEET_SECRET}\n"
        "secrets: {file: env:BENCH_SECRETS_FILE}\n"
        "targets:\n  local: {kind: local, root: ./out/www, base_url: 'https://prov.example/'}\n"
        "policy: {max_delete_percent: 10}\n")
    (repo / "defaults.yaml").write_text(
        "params:\n  codecs: [g722, pcma, pcmu]\n  ntp: {server: pool.ntp.org}\n"
        "  timezone: Europe/Berlin\n  language: en\n  admin_password: secret:admin\n"
        "  sip: {port: 5060, transport: udp}\n")
    for p in range(100):
        vendor, model = ("yealink", "T46U") if p % 2 == 0 else ("snom", "D785")
        (repo / "profiles" / f"p{p:03}.yaml").write_text(
            f"name: p{p:03}\nvendor: {vendor}\nmodels: [{model}]\n"
            f"params: {{language: {'de' if p % 3 else 'it'}}}\n")
    for c in range(50):
        (repo / "customers" / f"c{c:02}.yaml").write_text(
            f"id: c{c:02}\nname: Customer {c}\nsip: {{domain: pbx{c}.example.net}}\n")
    devices: dict[int, list[str]] = {}
    macs: dict[int, list[str]] = {}
    for i in range(n):
        p = i % 100
        c = (i // 100) % 50
        vendor, model, oui = (("yealink", "T46U", "001565") if p % 2 == 0
                              else ("snom", "D785", "000413"))
        mac = f"{oui}{i:06x}"
        devices.setdefault(c, []).append(
            f"- {{mac: '{mac}', model: {vendor}/{model}, profile: p{p:03}, customer: c{c:02}, "
            f"name: phone-{i}}}\n")
        macs.setdefault(c, []).append(mac)
    secrets = ["admin: Adm1n-bench\n"]
    for c, items in devices.items():
        (repo / "devices" / f"c{c:02}.yaml").write_text("".join(items))
    for c, phones in macs.items():
        accounts = []
        for k in range(0, len(phones), 2):  # two phones per account: 201 and 91201
            ext = 1000 + k // 2
            listed = ", ".join(repr(m) for m in phones[k:k + 2])
            accounts.append(f"- account: c{c:02}/{ext}\n  display_name: User {ext}\n"
                            f"  password: secret:c{c:02}/{ext}\n  devices: [{listed}]\n")
            secrets.append(f"c{c:02}/{ext}: Pw-{c}-{ext}-x\n")
        (repo / "assignments" / f"c{c:02}.yaml").write_text("".join(accounts))
    (repo.parent / "secrets.yaml").write_text("".join(secrets))  # kept outside the repository
    (repo / ".gitignore").write_text("out/\n.provctl/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "generated fleet")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=bench", "-c",
                    "user.email=bench@example.invalid", *args], check=True)


def change_device(repo: Path, customer: int, name: str) -> None:
    """Give one device a parameter of its own (its config file changes)."""
    path = repo / "devices" / f"c{customer:02}.yaml"
    text = path.read_text()
    assert f"name: {name}}}" in text, name
    path.write_text(text.replace(f"name: {name}}}",
                                 f"name: {name}, params: {{timezone: Europe/Rome}}}}", 1))


# --- measuring ---------------------------------------------------------------------------------


class Row:
    def __init__(self, label: str, wall: float, cpu: float, rss_mb: float | None, code: int):
        self.label, self.wall, self.cpu, self.rss_mb, self.code = label, wall, cpu, rss_mb, code


def measure(label: str, argv: list[str], env: dict[str, str], expect: set[int]) -> Row:
    """Run argv in a child; wall, CPU (child + its waited-for children), peak RSS (wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=ROOT)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in expect:
        sys.stdout.write(output.decode(errors="replace")[-3000:])
        raise SystemExit(f"{label}: exit {proc.returncode}, expected {sorted(expect)}")
    return Row(label, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
               proc.returncode)


def floor(kind: str, *args: str) -> dict[str, float]:
    """A floor loop in its own process; it reports the time of the loop itself."""
    out = subprocess.run([PYTHON, __file__, "--floor", kind, *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def _floor_main(kind: str, args: list[str]) -> None:
    if kind == "read":
        www, repo = Path(args[0]), Path(args[1])
        paths = [os.path.join(d, f) for d, _, fs in os.walk(www) for f in fs]
        yamls = [os.path.join(d, f) for d, _, fs in os.walk(repo)
                 if "/out" not in d and "/.provctl" not in d and "/.git" not in d
                 for f in fs if f.endswith(".yaml")]
        t0, c0 = time.perf_counter(), time.process_time()
        for path in paths:
            os.stat(path)
        for path in yamls:
            with open(path, "rb") as fh:
                fh.read()
    else:  # write, write-fsync: the published files' bytes, written again by a plain loop
        www, dest = Path(args[0]), Path(args[1])
        files = [(os.path.relpath(os.path.join(d, f), www), Path(d, f).read_bytes())
                 for d, _, fs in os.walk(www) if ".provctl" not in d for f in fs]
        fsync = kind == "write-fsync"
        t0, c0 = time.perf_counter(), time.process_time()
        made = set()
        for rel, data in files:
            path = dest / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                if fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}))


def receipt_count(repo: Path) -> int:
    lines = (repo / ".provctl" / "receipts.jsonl").read_text().splitlines()
    body = json.loads(lines[-1])
    return sum(len(t["items"]) for t in body["targets"].values())


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--work", type=Path, help="keep the fleet here (default: a temporary dir)")
    ap.add_argument("--no-fsync-floor", action="store_true",
                    help="skip the fsync-per-file floor (slow at 100,000 phones)")
    ap.add_argument("--floor", help=argparse.SUPPRESS)
    args, rest = ap.parse_known_args()
    if args.floor:
        _floor_main(args.floor, rest)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="provctl-bench-"))
    env = {**os.environ, "BENCH_FLEET_SECRET": "bench-secret", "PYTHONPATH": str(ROOT),
           "BENCH_SECRETS_FILE": str(work / "secrets.yaml")}
    env.pop("PROVCTL_STATE_DIR", None)
    cli = [PYTHON, "-m", "reconciler.cli"]
    try:
        repo = work / "fleet"
        if repo.exists():
            shutil.rmtree(repo)
        t = time.perf_counter()
        generate(repo, args.devices)
        print(f"generated {args.devices} devices in {time.perf_counter() - t:.1f} s "
              f"({work}); cores: {os.cpu_count()}", flush=True)
        www = repo / "out" / "www"
        rows: list[tuple[Row, str, float | None]] = []

        first = measure("first apply", [*cli, "apply", "--repo", str(repo)], env, {2})
        files = receipt_count(repo)
        w = floor("write", str(www), str(work / "floor-write"))
        note = f"{w['wall']:.1f} s write"
        if not args.no_fsync_floor:
            wf = floor("write-fsync", str(www), str(work / "floor-fsync"))
            note += f", {wf['wall']:.1f} s with fsync per file"
        rows.append((first, note, w["wall"]))
        shutil.rmtree(work / "floor-write", ignore_errors=True)
        shutil.rmtree(work / "floor-fsync", ignore_errors=True)
        print(f"  first apply: {first.wall:.1f} s, {files} files", flush=True)

        r = floor("read", str(www), str(repo))
        read_note = f"{r['wall']:.2f} s stat + read YAML"
        noop = measure("no-op plan", [*cli, "plan", "--repo", str(repo)], env, {0})
        rows.append((noop, read_note, r["wall"]))
        scan = measure("no-op plan --scan", [*cli, "plan", "--scan", "--repo", str(repo)],
                       env, {0})
        rows.append((scan, read_note, r["wall"]))

        change_device(repo, 0, "phone-0")
        one = measure("one device changed, apply", [*cli, "apply", "--repo", str(repo)], env,
                      {2})
        one_files = receipt_count(repo)
        rows.append((one, read_note, r["wall"]))

        git(repo, "commit", "-qam", "phone-0 in Rome")
        change_device(repo, 1, "phone-100")
        git(repo, "commit", "-qam", "phone-100 in Rome")
        daemon = measure("commit → published (daemon --once)",
                         [*cli, "daemon", "--repo", str(repo), "--once"], env, {2})
        daemon_files = receipt_count(repo)
        rows.append((daemon, read_note, r["wall"]))

        print(f"\n{args.devices:,} devices, {files:,} files; one change wrote {one_files} "
              f"file(s), the daemon {daemon_files}\n")
        print("| step | wall | CPU | peak RSS | floor (same run) | wall / floor | goal |")
        print("|---|---|---|---|---|---|---|")
        for row, note, base in rows:
            goal = GOALS.get(row.label)
            verdict = ""
            if goal and args.devices == 100_000:
                ok = row.wall <= goal[0] and (goal[1] is None or (row.rss_mb or 0) <= goal[1])
                verdict = (f"≤ {goal[0]:g} s" + (f", ≤ {goal[1] / 1024:g} GB" if goal[1] else "")
                           + (": met" if ok else ": NOT met"))
            ratio = f"{row.wall / base:.1f}×" if base else "–"
            print(f"| {row.label} | {row.wall:.2f} s | {row.cpu:.2f} s | "
                  f"{row.rss_mb:.0f} MB | {note} | {ratio} | {verdict} |")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
