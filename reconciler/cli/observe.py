"""The loop with the phones on the command line: `serve-config`, `serve`, and the parts of
`status --devices` and `history` that show what the phones fetched (docs/serving.md).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.load import find_repo
from reconciler.pipeline import receipt as record
from reconciler.pipeline.bootstrap import Onboarding, window_text
from reconciler.pipeline.bootstrap import warnings as bootstrap_warnings
from reconciler.pipeline.onboarding import Window
from reconciler.pipeline.phones import FleetUptake, log_specs
from reconciler.render.addressing import show_path
from reconciler.uptake.devices import STATES, Uptake, summary

USAGE = 64
SERVE_HELP = (
    "serve a local target over HTTP for trying phones or curl against it (a development "
    "server: production belongs behind nginx or Apache, see `provctl serve-config`)")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve-config", help="print a web-server block that serves a target "
                       "to phones and logs what provctl reads")
    p.add_argument("server", choices=("nginx", "apache"), help="the web server")
    p.add_argument("--repo", help="desired-state directory (default: . or desired-state/)")
    p.add_argument("--target", required=True, help="the target whose root it serves")
    p.add_argument("--listen", help="address:port or port (default: from the target's "
                   "base_url)")
    p.add_argument("--server-name", help="default: the host of the target's base_url")
    p.add_argument("--root", help="document root on the web server (default: the target's)")
    p.add_argument("--access-log", help="default: the target's access_log.path")
    p.add_argument("--tls-cert", help="certificate file: serve HTTPS")
    p.add_argument("--tls-key", help="its private key file")
    p.add_argument("--limit-misses", default="30r/m",
                   help="rate of requests for missing files per client before 429 "
                        "(nginx limit_req; default 30r/m; 'off' to leave it out)")

    p = sub.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP + ".")
    p.add_argument("--repo", help="desired-state directory (default: . or desired-state/)")
    p.add_argument("--target", required=True, help="a local target")
    p.add_argument("--listen", default="127.0.0.1:8080", help="address:port (default: "
                   "127.0.0.1:8080)")


# --- serve-config ------------------------------------------------------------------------------


def _target(args: argparse.Namespace) -> tuple[Any, Any]:
    from reconciler.desired.load import read_source
    from reconciler.desired.validate import load_state

    state = load_state(read_source(find_repo(args.repo)), redacting=True)
    targets = state.provisioning.value.targets
    if args.target not in targets:
        raise ConfigError([Problem("provisioning.yaml", state.provisioning.line("targets"),
                                   "targets", f"unknown target {args.target!r} (known: "
                                   f"{', '.join(targets)})")])
    return state, targets[args.target]


def cmd_serve_config(args: argparse.Namespace) -> int:
    from reconciler.desired.schema import LocalTarget
    from reconciler.uptake import serving

    state, spec = _target(args)
    logs = log_specs(state, [args.target])
    access_log = args.access_log or (logs[args.target].path if logs else None)
    if access_log is None:
        server, suggested = (("apache2", "combined") if args.server == "apache"
                             else ("nginx", "json"))
        access_log = f"/var/log/{server}/provctl-{args.target}.access.log"
        print(f"note: target {args.target} names no access_log; add\n"
              f"  access_log: {{path: {access_log}, format: {suggested}}}\n"
              "to it in provisioning.yaml so provctl reads what this server logs",
              file=sys.stderr)
    fmt = spec.access_log.format if spec.access_log else "json"
    root = args.root or (str((state.root / spec.root).resolve())
                         if isinstance(spec, LocalTarget) else spec.root)
    cfg = serving.ServeConfig(
        target=args.target, root=root, access_log=access_log, log_format=fmt,
        listen=args.listen or serving.default_listen(spec.base_url),
        server_name=args.server_name or serving.server_name(spec.base_url),
        tls_cert=args.tls_cert, tls_key=args.tls_key,
        limit_misses=None if args.limit_misses == "off" else args.limit_misses)
    try:
        if args.server == "apache":
            if spec.access_log and fmt != "combined":
                print(f"note: Apache writes `combined`; set access_log.format: combined on "
                      f"target {args.target}", file=sys.stderr)
            text = serving.apache(cfg)
        else:
            text = serving.nginx(cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    sys.stdout.write(text)
    return 0


# --- serve ---------------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d+)", text)
    if match is None:
        raise ValueError(f"--listen {text!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:8080")
    return match.group(1) or match.group(2), int(match.group(3))


def cmd_serve(args: argparse.Namespace) -> int:
    from reconciler.desired.schema import LocalTarget
    from reconciler.uptake.devserver import DevServer

    state, spec = _target(args)
    if not isinstance(spec, LocalTarget):
        print(f"error: target {args.target} is {spec.kind}; `provctl serve` serves local targets "
              "(serve an SFTP host with nginx: provctl serve-config)", file=sys.stderr)
        return USAGE
    try:
        address = _address(args.listen)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    root = (state.root / spec.root).resolve()
    logs = log_specs(state, [args.target])
    out = None
    if logs:
        path = Path(logs[args.target].path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # it holds whole URL tokens: not for everyone to read (nginx's logs are 0640 too)
        out = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640), "a",
                        encoding="utf-8")
    try:
        server = DevServer(address, root, out if out else sys.stderr,
                           spec.access_log.format if spec.access_log else "combined", time.time)
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    where = f"logging to {logs[args.target].path}" if logs else "logging to stderr"
    print(f"serving {root} on http://{host}:{port}/ ({where}); a development server: "
          "production belongs behind nginx or Apache (provctl serve-config)", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if out is not None:
            out.close()
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve-config": cmd_serve_config, "serve": cmd_serve}


# --- status --devices ------------------------------------------------------------------------


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    """The `status --devices` options (the status command itself lives in cli/main.py)."""
    p.add_argument("--stale-after", type=lambda t: duration(t), default=36 * 3600.0,
                   metavar="DURATION", help="with --devices: a phone with no fetch for this "
                   "long is stale (default 36h; 2d, 90m, ...)")
    p.add_argument("--customer", action="append", metavar="ID",
                   help="with --devices: only this customer's phones (repeatable)")
    p.add_argument("--state", action="append", choices=STATES,
                   help="with --devices: only phones in this state (repeatable)")


def duration(text: str) -> float:
    """`36h`, `2d`, `90m`, `45s` or seconds -> seconds (argparse type)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration like 36h, 2d, 90m")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def observe_devices(args: argparse.Namespace
                    ) -> tuple[FleetUptake, dict[str, str], Onboarding]:
    """Read the access logs (read-only towards the targets) and compute each phone's state;
    also each phone's recorded redirect state and its onboarding window."""
    from reconciler.pipeline.run import (
        Options,
        load_desired,
        observe_onboarding,
        observe_phones,
        observe_target,
    )
    from reconciler.pipeline.run import opened as open_targets
    from reconciler.redirect.plan import recorded_state
    from reconciler.redirect.state import load_records, records_path

    repo = find_repo(args.repo)
    opts = Options(repo=repo, state_dir=args.state_dir,
                   targets=[args.target] if args.target else None)
    state_dir = args.state_dir or record.default_state_dir(repo)
    desired = load_desired(opts)
    with open_targets(desired) as targets:
        observed = {n: observe_target(t, desired.artifacts[n], False) for n, t in targets.items()}
        uptake = observe_phones(desired, targets, observed, state_dir, opts,
                                stale_after=args.stale_after)
    onboarding = observe_onboarding(desired, opts, state_dir)
    records = load_records(records_path(state_dir))
    return uptake, {mac: recorded_state(rec) for mac, rec in records.items()}, onboarding


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _selected(args: argparse.Namespace, uptake: FleetUptake) -> list[Uptake]:
    return [u for _, u in sorted(uptake.devices.items())
            if (not args.customer or u.customer in args.customer)
            and (not args.state or u.state in args.state)]


def _phone_text(u: Uptake) -> str:
    ua = u.last.ua if u.last else None
    if ua is None:
        return (u.last.agent or "-") if u.last else "-"
    return " ".join(x for x in (ua.vendor.capitalize(), ua.model, ua.firmware) if x)


def window_dict(w: Window | None) -> dict[str, Any] | None:
    """A phone's onboarding window (docs/zero-touch.md), for `status --devices --format json`."""
    if w is None:
        return None
    return {"state": w.state, "opened": _iso(w.opened), "until": _iso(w.until),
            "arrived": None if w.arrival is None else {"at": _iso(w.arrival.at),
                                                       "ip": w.arrival.ip}}


def device_dict(u: Uptake, redirect: str | None, revision: str | None,
                window: Window | None = None) -> dict[str, Any]:
    last = u.last
    return {
        "mac": u.mac, "name": u.name, "customer": u.customer, "model": u.model,
        "state": u.state,
        "desired": {"revision": revision, "applied": not u.unapplied},
        "published": {"revision": u.published_rev, "at": _iso(u.published_at)},
        "last_fetch": None if last is None else {
            "at": _iso(last.at), "target": last.target, "path": show_path(last.path),
            "status": last.status, "sha256": last.sha, "revision": last.rev, "ip": last.ip,
            "user_agent": last.agent,
            "phone": None if last.ua is None else {
                "vendor": last.ua.vendor, "model": last.ua.model,
                "firmware": last.ua.firmware, "mac": last.ua.mac}},
        "last_error": None if u.error is None else {
            "at": _iso(u.error[0]), "status": u.error[1], "ip": u.error[2]},
        "pending": [show_path(p) for p in u.pending],
        "notes": list(u.notes),
        "redirect": redirect,
        "onboarding": window_dict(window),
    }


def uptake_dict(args: argparse.Namespace, uptake: FleetUptake,
                redirects: dict[str, str], onboarding: Onboarding | None = None
                ) -> dict[str, Any]:
    chosen = _selected(args, uptake)
    windows = onboarding.windows if onboarding is not None else {}
    return {
        "format": "provctl-devices/1",
        "configured": uptake.configured,  # some target names an access_log
        "stale_after": args.stale_after,
        "summary": summary(chosen),
        "devices": [device_dict(u, redirects.get(u.mac), uptake.revision, windows.get(u.mac))
                    for u in chosen],
        "scanners": [{"target": s.target, "ip": s.ip, "requests": s.count,
                      "distinct_paths": len(s.paths), "first": _iso(s.first),
                      "last": _iso(s.last), "sample": [show_path(p) for p in s.paths[:5]]}
                     for s in uptake.scanners],
        "logs": [{"target": s.target, "path": s.log, "offset": s.cursor.offset,
                  "requests": s.requests, "unparsed": s.unparsed, "newest": _iso(s.newest)}
                 for s in uptake.log_states],
        "onboarding": onboarding_dict(onboarding),
        "warnings": uptake.warnings + (bootstrap_warnings(onboarding) if onboarding else []),
    }


def onboarding_dict(onboarding: Onboarding | None) -> dict[str, Any]:
    """The windows by state, possible hijacks and bootstrap scanning (docs/zero-touch.md)."""
    if onboarding is None:
        return {"windows": {}, "hijack": [], "scanning": []}
    counts: dict[str, int] = {}
    for w in onboarding.windows.values():
        counts[w.state] = counts.get(w.state, 0) + 1
    return {
        "windows": counts,
        "hijack": [{"mac": mac, "ips": ips} for mac, ips in sorted(onboarding.suspicious.items())],
        "scanning": [{"target": p.target, "ip": p.ip, "macs": list(p.macs),
                      "sample": [show_path(x) for x in p.paths[:5]], "last": _iso(p.last)}
                     for p in onboarding.probes],
    }


def uptake_text(args: argparse.Namespace, uptake: FleetUptake,
                redirects: dict[str, str], onboarding: Onboarding | None = None) -> str:
    chosen = _selected(args, uptake)
    windows = onboarding.windows if onboarding is not None else {}
    if not uptake.configured and not uptake.log_states:
        lines = [f"  {mac}  onboarding {window_text(w)}" for mac, w in sorted(windows.items())]
        return "\n".join(["devices: no target names an access_log, so nothing is known of "
                          "what the phones fetched (docs/serving.md), and no onboarding window "
                          "closes at a phone's fetch", *lines]) + "\n"
    out = []
    counts = summary(chosen)
    out.append("devices: " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    for u in chosen:
        pub = (f"published {(u.published_rev or '-')[:12]} at {_iso(u.published_at)}"
               if u.published_at else "published -")
        if u.last is not None:
            got = (f"fetched {(u.last.rev or '?')[:12]} at {_iso(u.last.at)} ({u.last.status} "
                   f"from {u.last.ip}, {_phone_text(u)})")
        else:
            got = "never fetched"
        if u.error is not None and (u.last is None or u.error[0] > u.last.at):
            got += f"; then {u.error[1]} at {_iso(u.error[0])} from {u.error[2]}"
        line = (f"  {u.mac}  {u.state:<13} {u.customer or '-':<10} {u.name or '-':<16} {pub}; "
                f"{got}")
        if u.unapplied:
            line += f"; {(uptake.revision or '-')[:12]} not applied yet"
        if u.pending:
            line += f"; pending: {', '.join(show_path(p) for p in u.pending)}"
        if u.mac in redirects:
            line += f"; redirect {redirects[u.mac]}"
        if u.mac in windows:
            line += f"; onboarding {window_text(windows[u.mac])}"
        if u.notes:
            line += f"; NOTE: {'; '.join(u.notes)}"
        out.append(line)
    for s in uptake.scanners:
        out.append(f"SCANNING on {s.target}: {s.ip} asked for {len(s.paths)}"
                   f"{'+' if len(s.paths) >= 50 else ''} unknown paths ({s.count} requests, "
                   f"{_iso(s.first)} to {_iso(s.last)}), e.g. {show_path(s.paths[0])}")
    if onboarding is not None:
        out += bootstrap_warnings(onboarding)
    for state in uptake.log_states:
        out.append(f"access log {state.target} {state.log}: {state.requests} request(s) read, "
                   f"{state.unparsed} unparsed line(s), newest {_iso(state.newest) or '-'}")
    return "\n".join(out) + "\n"


# --- history ------------------------------------------------------------------------------------


def history_fetches(repo: Path, mac: str, state_dir: Path | None = None) -> list[Any]:
    """The phone's fetch events as last observed (by apply, the daemon or status --devices)."""
    import vendors
    from reconciler.gitops.history import Fetch
    from reconciler.uptake.store import FILE, Store

    state_dir = state_dir or record.default_state_dir(repo)
    if not (state_dir / FILE).exists():
        return []
    with Store(state_dir) as store:
        events = store.events(mac)
    out = []
    for e in events:
        ua = vendors.identify_user_agent(e.agent) if e.agent else None
        phone = (" ".join(x for x in (ua.vendor.capitalize(), ua.model, ua.firmware) if x)
                 if ua else (e.agent or "-"))
        out.append(Fetch(_iso(e.at) or "", e.rev, e.sha, e.target, show_path(e.path), e.status,
                         e.ip, phone))
    return out
