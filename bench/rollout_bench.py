"""What rollouts cost on a generated fleet, beside the same run without them.

    python bench/rollout_bench.py [--devices 10000]

On the fleet of bench/fleet_bench.py: an up-to-date plan (the floor); a firmware pin in waves
over every Yealink T46U (the first apply starts wave 1, then an up-to-date plan and the apply
that publishes wave 2, which renders those phones again); `policy.rollout` staging a change to
every phone (its first plan holds most of them back).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_bench import generate, timed  # noqa: E402

from reconciler.pipeline.run import Options, apply, plan  # noqa: E402

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10_000)
    args = ap.parse_args()
    os.environ["BENCH_FLEET_SECRET"] = "bench-secret"
    work = Path(tempfile.mkdtemp(prefix="provctl-rollout-bench-"))
    try:
        repo = work / "fleet"
        generate(repo, args.devices)
        t: dict[str, float] = {}
        apply(Options(repo=repo, now=T0))
        plan(Options(repo=repo, now=T0))  # the first plan after an apply warms the page cache
        timed("plan, no rollout", lambda: plan(Options(repo=repo, now=T0)), t)

        (repo / "firmware").mkdir()
        (repo / "store").mkdir()
        blob = repo / "store" / "T46U-108.86.0.95.rom"
        blob.write_bytes(b"firmware\n" * 1000)
        sha = hashlib.sha256(blob.read_bytes()).hexdigest()
        (repo / "firmware" / "yealink.yaml").write_text(
            f"catalog:\n  - {{vendor: yealink, models: [T46U], version: 108.86.0.95, file: "
            f"T46U-108.86.0.95.rom, sha256: '{sha}', source: store/T46U-108.86.0.95.rom}}\n"
            "pins:\n  - {models: [yealink/T46U], version: 108.86.0.95, rollout: "
            "{waves: [10%, 50%, 100%], soak: 1h, gate: {}}}\n")
        start = timed("firmware: apply wave 1", lambda: apply(Options(repo=repo, now=T0)), t)
        report = start.plan.rollouts[0]
        timed("firmware: plan, soaking",
              lambda: plan(Options(repo=repo, now=T0 + timedelta(minutes=30))), t)
        wave2 = timed("firmware: apply wave 2",
                      lambda: apply(Options(repo=repo, now=T0 + timedelta(hours=2))), t)

        (repo / "firmware" / "yealink.yaml").unlink()
        apply(Options(repo=repo, now=T0 + timedelta(hours=3)))
        prov = repo / "provisioning.yaml"
        prov.write_text(prov.read_text().replace(
            "policy: {max_delete_percent: 10}",
            "policy: {max_delete_percent: 10, rollout: {above: 500, waves: [10%, 100%], "
            "soak: 1h, gate: {}}}"))
        defaults = repo / "defaults.yaml"
        defaults.write_text(defaults.read_text().replace("pool.ntp.org", "ntp.example.net"))
        staged = timed("policy: plan, staged",
                       lambda: plan(Options(repo=repo, now=T0 + timedelta(hours=4))), t)
        p = staged.plan

        print(f"devices: {args.devices}, cores: {os.cpu_count()}")
        for label in ("plan, no rollout", "firmware: apply wave 1", "firmware: plan, soaking",
                      "firmware: apply wave 2", "policy: plan, staged"):
            print(f"  {label:<26} {t[label]:8.2f} s")
        print(f"  firmware rollout: {report.phones} phones, per wave {report.per_wave}; wave 1 "
              f"wrote {sum(len(r.done) for r in start.results.values())} files, wave 2 "
              f"{sum(len(r.done) for r in wave2.results.values())}")
        print(f"  policy rollout: {len(p.changes)} changes now, {len(p.held)} held back "
              f"({p.rollouts[0].held} phones)")
        floor = t["plan, no rollout"]
        print(f"  soaking plan vs floor: {t['firmware: plan, soaking'] / floor:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
