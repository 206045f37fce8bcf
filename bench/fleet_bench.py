"""Benchmark the core pipeline on a generated fleet and print the figures.

    python bench/fleet_bench.py [--devices 10000]

Generates N devices (Yealink and Snom, 50 customers, 100 profiles, multi-line phones, accounts
with several phones), then times: validate, render, apply to an empty local target, plan against
the up-to-date target, and apply of one profile parameter change that touches 1% of the devices
(printing how many files were written and how many were expected).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.pipeline.run import Options, apply, load_desired, plan  # noqa: E402

YEALINK = ["T46U", "T54W", "T43U", "T48U"]
SNOM = ["D785", "D735", "D715"]


def generate(repo: Path, n: int) -> None:
    for sub in ("profiles", "customers", "devices", "assignments"):
        (repo / sub).mkdir(parents=True)
    (repo / "provisioning.yaml").write_text(
        "fleet: {name: bench, secret: env:BENCH_FLEET_SECRET}\n"
        "secrets: {file: ./secrets.yaml}\n"
        "targets:\n  local: {kind: local, root: ./out/www, base_url: 'https://prov.example/'}\n"
        "policy: {max_delete_percent: 10}\n")
    (repo / "secrets.yaml").write_text("admin: Adm1n\nsip: S3cr&t\n")
    (repo / "defaults.yaml").write_text(
        "params:\n  codecs: [g722, pcma, pcmu]\n  ntp: {server: pool.ntp.org}\n"
        "  timezone: Europe/Berlin\n  language: en\n  admin_password: secret:admin\n"
        "  sip: {port: 5060, transport: udp}\n")
    for p in range(100):
        vendor, models = ("yealink", YEALINK) if p % 2 == 0 else ("snom", SNOM)
        (repo / "profiles" / f"p{p:03}.yaml").write_text(
            f"name: p{p:03}\nvendor: {vendor}\nmodels: [{', '.join(models)}]\n"
            f"params: {{language: {'de' if p % 3 else 'it'}}}\n")
    for c in range(50):
        (repo / "customers" / f"c{c:02}.yaml").write_text(
            f"id: c{c:02}\nname: Customer {c}\nsip: {{domain: pbx{c}.example.net}}\n")
    per_customer: dict[int, list[str]] = {}
    devices: dict[int, list[str]] = {}
    for i in range(n):
        p = i % 100
        c = (i // 100) % 50
        vendor, models = ("yealink", YEALINK) if p % 2 == 0 else ("snom", SNOM)
        oui = "001565" if vendor == "yealink" else "000413"
        mac = f"{oui}{i:06x}"
        model = models[(i // 200) % len(models)]
        devices.setdefault(c, []).append(
            f"- {{mac: '{mac}', model: {vendor}/{model}, profile: p{p:03}, customer: c{c:02}, "
            f"name: phone-{i}}}\n")
        per_customer.setdefault(c, []).append(mac)
    for c, items in devices.items():
        (repo / "devices" / f"c{c:02}.yaml").write_text("".join(items))
    for c, macs in per_customer.items():
        lines = []
        ext = 100
        k = 0
        while k < len(macs):
            # every 10th account has three phones (ext, 91ext, 92ext), others one
            group = macs[k:k + (3 if ext % 10 == 0 else 1)]
            k += len(group)
            listed = ", ".join(repr(m) for m in group)
            lines.append(f"- account: c{c:02}/{ext}\n  display_name: User {ext}\n"
                         f"  password: secret:sip\n  devices: [{listed}]\n")
            ext += 1
        (repo / "assignments" / f"c{c:02}.yaml").write_text("".join(lines))


def timed(label: str, fn, results: dict[str, float]):
    start = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - start
    return value


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    args = ap.parse_args()
    os.environ["BENCH_FLEET_SECRET"] = "bench-secret"
    work = Path(tempfile.mkdtemp(prefix="provctl-bench-"))
    try:
        repo = work / "fleet"
        generate(repo, args.devices)
        opts = Options(repo=repo)
        t: dict[str, float] = {}
        desired = timed("validate+render", lambda: load_desired(opts), t)
        n_files = sum(len(a) for a in desired.artifacts.values())
        first = timed("first apply", lambda: apply(opts), t)
        timed("plan (up to date)", lambda: plan(opts), t)
        # Touch 1% of the devices: profile p000 holds every 100th device.
        prof = repo / "profiles" / "p000.yaml"
        prof.write_text(prof.read_text().replace("language: it", "language: fr"))
        changed = timed("apply 1% change", lambda: apply(opts), t)
        written = sum(len(r.done) for r in changed.results.values())
        expected = len([i for i in range(args.devices) if i % 100 == 0])

        # validate alone, for the record
        from reconciler.desired.load import read_source
        from reconciler.desired.validate import load_state
        from reconciler.render.renderer import render_processes
        timed("validate", lambda: load_state(read_source(repo)), t)
        # a cold render (no cache: first run, or a template change), one process vs all cores
        cold = Options(repo=repo, use_cache=False)
        workers = render_processes()
        os.environ["PROVCTL_RENDER_PROCESSES"] = "1"
        timed("cold render, 1 process", lambda: load_desired(cold), t)
        os.environ["PROVCTL_RENDER_PROCESSES"] = str(workers)
        timed(f"cold render, {workers} processes", lambda: load_desired(cold), t)

        print(f"devices: {args.devices}, files: {n_files}, cores: {os.cpu_count()}")
        for label in ("validate", "validate+render", "first apply", "plan (up to date)",
                      "apply 1% change", "cold render, 1 process",
                      f"cold render, {workers} processes"):
            print(f"  {label:<20} {t[label]:8.2f} s")
        print(f"  first apply wrote {sum(len(r.done) for r in first.results.values())} files")
        print(f"  1% change wrote {written} files; expected {expected} "
              f"({'exact' if written == expected else 'MISMATCH'})")
        if args.devices == 10_000:  # the target is stated for 10,000 devices
            verdict = "met" if t["plan (up to date)"] < 10.0 else "NOT met"
            print(f"  target: up-to-date plan of 10,000 devices under 10 s: {verdict}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
