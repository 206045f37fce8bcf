"""Count redirect-service HTTP requests per 1,000 MACs against the loopback fakes.

    python bench/redirect_bench.py [--macs 1000] [--baseline /work/main] [--json]

For each service (Yealink RPS JSON `yealink`, Yealink YMCS v2 `ymcs`, Snom SRAPS, Gigaset GRAPE,
Poly ZTP) and each URL token mode (`per-device`: every phone its own URL; `per-customer`: 9
URLs), a fleet is generated whose phones all ask for a redirect registration (at the vendor's
service, `redirect.<vendor>`), and `provctl apply` runs through the whole pipeline
against the service's fake (tests/fakes: real HTTP on 127.0.0.1, signatures, ownership and
listing enforced), three times:

- first:  first registration of every MAC (the service is empty);
- no-op:  the same desired state again;
- 1%:     1% of the phones move to another target (their provisioning URL changes).

It prints the requests the fake received in each run (every attempt counts), per 1,000 MACs,
and the time they take at the default client limit (`rate_per_second: 5`). The clients run
with a limit high enough never to wait, so the run itself is quick.

`--baseline DIR` runs the same scenarios with the provctl code in DIR (e.g. the main worktree,
before this change) against the same fakes, in a child process, and prints its counts beside.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RATE = 5.0  # requests/s: the schema's default rate_per_second

AK, SK = "bench-access-key", "bench-secret"
SERVICES = {
    # service: (vendor, model, kind, OUI)
    "yealink": ("yealink", "T46U", "yealink-rps", "001565"),
    "ymcs": ("yealink", "T46U", "yealink-ymcs", "001565"),
    "snom": ("snom", "D785", "snom-sraps", "000413"),
    "gigaset": ("gigaset", "N670", "gigaset-grape", "589ec6"),
    "poly": ("poly", "VVX450", "poly-ztp", "0004f2"),
}
TOKENS = ("per-device", "per-customer")
CUSTOMERS = [f"c{i}" for i in range(9)]  # served by target a; "moved" is served by target b


@dataclass
class Row:
    service: str
    tokens: str
    scenario: str
    macs: int
    requests: int
    exit_code: int
    seconds: float  # wall time of the run (render + publish + redirect)

    @property
    def per_1000(self) -> float:
        return self.requests * 1000 / self.macs


# -- the fleet ------------------------------------------------------------------------------


def generate(repo: Path, service: str, tokens: str, n: int, base_url: str) -> list[str]:
    vendor, model, kind, oui = SERVICES[service]
    for sub in ("profiles", "customers", "devices"):
        (repo / sub).mkdir(parents=True)
    if kind == "yealink-rps":
        creds = "access_key: env:BENCH_AK, secret: env:BENCH_SK"
    elif kind == "yealink-ymcs":
        creds = "client_id: env:BENCH_AK, client_secret: env:BENCH_SK"
    elif kind == "poly-ztp":
        creds = "api_key: env:BENCH_AK"
    else:
        creds = "key_id: env:BENCH_AK, secret: env:BENCH_SK"
    (repo / "provisioning.yaml").write_text(
        "fleet: {name: bench, secret: env:BENCH_FLEET_SECRET}\n"
        f"url_tokens: {tokens}\n"
        "targets:\n"
        f"  a: {{kind: local, root: ./out/a, base_url: 'https://a.prov.example/', "
        f"customers: [{', '.join(CUSTOMERS)}]}}\n"
        "  b: {kind: local, root: ./out/b, base_url: 'https://b.prov.example/', "
        "customers: [moved]}\n"
        f"redirect:\n  {vendor}: {{kind: {kind}, {creds}, base_url: '{base_url}', "
        "rate_per_second: 1000000}\n"
        "policy: {max_delete_percent: 10}\n")
    (repo / "defaults.yaml").write_text("params: {ntp: {server: pool.ntp.org}}\n")
    (repo / "profiles" / "p.yaml").write_text(
        f"name: p\nvendor: {vendor}\nmodels: [{model}]\nparams: {{}}\n")
    for c in [*CUSTOMERS, "moved"]:
        (repo / "customers" / f"{c}.yaml").write_text(
            f"id: {c}\nname: Customer {c}\nsip: {{domain: {c}.pbx.example.net}}\n")
    macs = [f"{oui}{i:06x}" for i in range(n)]
    write_devices(repo, vendor, model, macs, moved=set())
    return macs


def write_devices(repo: Path, vendor: str, model: str, macs: list[str], moved: set[str]) -> None:
    (repo / "devices" / "all.yaml").write_text("".join(
        f"- {{mac: '{m}', model: {vendor}/{model}, profile: p, name: phone-{i}, "
        f"customer: {'moved' if m in moved else CUSTOMERS[i % len(CUSTOMERS)]}, "
        "redirect: true}\n"
        for i, m in enumerate(macs)))


# -- one service ----------------------------------------------------------------------------


def start_fake(service: str) -> tuple[Any, str]:
    sys.path.insert(0, str(ROOT / "tests"))  # the fakes of THIS tree, whatever code runs
    from fakes import FakePolyZtp, FakeSraps, FakeYealinkRps, FakeYmcs

    kind = SERVICES[service][2]
    fake: Any
    if kind in ("yealink-rps", "yealink-ymcs"):
        fake = (FakeYealinkRps if kind == "yealink-rps" else FakeYmcs)({AK: SK}).start()
        return fake, fake.url
    if kind == "poly-ztp":
        fake = FakePolyZtp({AK: "bench-account"}).start()
        return fake, fake.url + "/preview"
    fake = FakeSraps({AK: SK}, flavour="grape" if kind == "gigaset-grape" else "snom").start()
    return fake, fake.url + "/api/v1/"


def bench_service(service: str, tokens: str, n: int) -> list[Row]:
    from reconciler.pipeline.run import Options, apply

    vendor, model, _, _ = SERVICES[service]
    env = {"BENCH_AK": AK, "BENCH_SK": SK, "BENCH_FLEET_SECRET": "bench-fleet-secret"}
    rows: list[Row] = []
    fake, url = start_fake(service)
    try:
        with tempfile.TemporaryDirectory(prefix="redirect-bench-") as tmp:
            repo = Path(tmp) / "fleet"
            macs = generate(repo, service, tokens, n, url)

            def run(scenario: str, expect: int) -> None:
                mark = fake.mark()
                started = time.perf_counter()
                result = apply(Options(repo=repo, environ=env))
                seconds = time.perf_counter() - started
                requests = len(fake.since(mark))
                rows.append(Row(service, tokens, scenario, n, requests, result.exit_code,
                                round(seconds, 2)))
                if result.exit_code != expect:
                    raise SystemExit(f"{service}/{tokens}/{scenario}: exit {result.exit_code}, "
                                     f"expected {expect}")

            run("first", 2)
            check(fake, service, macs)
            run("no-op", 0)
            moved = set(macs[:: 100][: max(1, n // 100)])
            write_devices(repo, vendor, model, macs, moved)
            run("1%", 2)
            check(fake, service, macs, moved)
    finally:
        fake.stop()
    return rows


def check(fake: Any, service: str, macs: list[str], moved: frozenset[str] | set[str] = frozenset()
          ) -> None:
    """Every MAC is registered at the fake, the moved ones at target b."""
    kind = SERVICES[service][2]
    for mac in macs:
        got = fake.device_url(mac) if kind == "poly-ztp" else fake.effective_url(mac)
        host = "b" if mac in moved else "a"
        if not got or not got.startswith(f"https://{host}.prov.example/"):
            raise SystemExit(f"{service}: {mac} registered as {got!r}, expected target {host}")


# -- output ---------------------------------------------------------------------------------


def at_rate(requests: int) -> str:
    seconds = requests / DEFAULT_RATE
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def table(rows: list[Row], before: dict[tuple[str, str, str], int]) -> str:
    head = f"{'service':<9} {'tokens':<13} {'scenario':<8} {'requests':>8} {'per 1k MACs':>11}"
    if before:
        head += f" {'before':>8} {'ratio':>6}"
    head += f" {'at 5 req/s':>11} {'run':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r.service:<9} {r.tokens:<13} {r.scenario:<8} {r.requests:>8} "
                f"{r.per_1000:>11.1f}")
        if before:
            old = before.get((r.service, r.tokens, r.scenario))
            line += (f" {old:>8} {old / max(r.requests, 1):>5.1f}x" if old is not None
                     else f" {'-':>8} {'-':>6}")
        line += f" {at_rate(r.requests):>11} {r.seconds:>6.1f}s"
        lines.append(line)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--macs", type=int, default=1000)
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--tokens", default=",".join(TOKENS))
    parser.add_argument("--baseline", type=Path, help="provctl code to measure the old way")
    parser.add_argument("--code", type=Path, help=argparse.SUPPRESS)  # the child's code root
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    args = parser.parse_args(argv)
    sys.path.insert(0, str((args.code or ROOT).resolve()))
    services = [s for s in args.services.split(",") if s]
    tokens = [t for t in args.tokens.split(",") if t]
    rows = []
    for s in services:
        for t in tokens:
            try:
                rows += bench_service(s, t, args.macs)
            except Exception:  # the baseline's code may not have this service's client
                if args.code is None:
                    raise
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return 0
    before: dict[tuple[str, str, str], int] = {}
    if args.baseline:
        child = subprocess.run(
            [sys.executable, __file__, "--code", str(args.baseline), "--json",
             "--macs", str(args.macs), "--services", args.services, "--tokens", args.tokens],
            check=True, capture_output=True, text=True)
        before = {(r["service"], r["tokens"], r["scenario"]): r["requests"]
                  for r in json.loads(child.stdout.splitlines()[-1])}
    print(f"redirect requests, {args.macs} MACs per service, through `provctl apply` against "
          "the loopback fakes")
    sys.stdout.write(table(rows, before))
    if not before:
        print("before (issue 17, Yealink RPS, measured at the landed commit): 200,003 requests "
              "for a first registration of 100,000 MACs = 2,000 per 1,000")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
