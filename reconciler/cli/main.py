"""provctl's command line: parse, call one function, print, map errors to exit codes.

Exit codes for every command: 0 success and nothing to change, 2 changes pending (plan) or made
(apply), 1 invalid desired state or a failed operation, 3 refused (safety limit, lock, conflict).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from reconciler.cli import output
from reconciler.cli import rollouts as cli_rollouts
from reconciler.core.errors import ConfigError, ProvctlError
from reconciler.core.macs import normalize_mac
from reconciler.desired.load import find_repo
from reconciler.pipeline import receipt as record
from reconciler.pipeline.run import Options, apply, load_desired, plan, read_plan_file


def _common(p: argparse.ArgumentParser, rev: bool = True) -> None:
    p.add_argument("--repo", help="desired-state directory (default: . or desired-state/)")
    if rev:
        p.add_argument("--rev", help="read the desired state from this git revision")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="provctl", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true", help="log every write")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check the desired state")
    _common(p)
    p.add_argument("--no-secrets", action="store_true",
                   help="do not require secrets (CI without them): references become "
                        "placeholders, everything else is checked")

    p = sub.add_parser("render", help="render phone files to a directory")
    _common(p)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", help="only this MAC")
    p.add_argument("--target", help="render with this target's URLs (default: the first)")

    for name in ("plan", "apply"):
        p = sub.add_parser(name, help=f"{name} changes against the targets")
        _common(p)
        p.add_argument("--target", action="append", help="only this target (repeatable)")
        p.add_argument("--verify", action="store_true", help="read files back and hash them")
        p.add_argument("--heal", action="store_true", default=None,
                       help="rewrite drifted files (default: policy.drift)")
        p.add_argument("--prune", action="store_true", default=None,
                       help="delete files no longer desired (default: policy.prune)")
        p.add_argument("--no-prune", dest="prune", action="store_false")
        p.add_argument("--force", action="store_true", help="override the deletion limit")
        p.add_argument("--state-dir", type=Path)
        if name == "plan":
            p.add_argument("--format", choices=("text", "json", "markdown"), default="text")
            p.add_argument("--base", help="compare desired states: this revision ...")
            p.add_argument("--head", help="... with this one (default: the working tree)")
            p.add_argument("--out", type=Path, help="also write the JSON plan to this file")
        else:
            p.add_argument("--plan", type=Path, help="refuse unless a fresh plan matches")

    p = sub.add_parser("explain", help="each resolved parameter of a phone and its origin")
    _common(p)
    p.add_argument("mac")
    p.add_argument("--param", help="only this parameter (dotted, e.g. sip.server)")

    p = sub.add_parser("status", help="last attempted / applied revision per target")
    _common(p, rev=False)
    p.add_argument("--target")
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--devices", action="store_true", help="redirect state of every device")
    p.add_argument("--live", action="store_true",
                   help="also observe the targets (read-only): pending changes, drift, lock")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("history", help="commits that changed what a phone gets; when applied")
    _common(p, rev=False)
    p.add_argument("--state-dir", type=Path)
    p.add_argument("mac")
    p.add_argument("--max-count", type=int, default=100, help="commits to look back")
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("unlock", help="remove a stale target lock")
    _common(p, rev=False)
    p.add_argument("--target", required=True)
    p.add_argument("--id", required=True, help="the lock id shown by the refusal")
    from reconciler.cli import daemon as cli_daemon
    from reconciler.cli import inventory as cli_inventory
    from reconciler.cli import vendors as cli_vendors
    from reconciler.cli import zerotouch as cli_zerotouch

    cli_inventory.add_commands(sub)
    cli_daemon.add_commands(sub)
    cli_vendors.add_commands(sub)
    cli_zerotouch.add_commands(sub)
    return ap


def _options(args: argparse.Namespace) -> Options:
    return Options(
        repo=find_repo(args.repo), rev=getattr(args, "rev", None),
        targets=getattr(args, "target", None), prune=getattr(args, "prune", None),
        force=getattr(args, "force", False), verify=getattr(args, "verify", False),
        heal=getattr(args, "heal", None), state_dir=getattr(args, "state_dir", None),
    )


def cmd_validate(args: argparse.Namespace) -> int:
    opts = _options(args)
    opts.redacting = args.no_secrets
    desired = load_desired(opts)
    for warning in sorted(set(desired.state.warnings) | desired.renderer.warnings):
        print(f"warning: {warning}", file=sys.stderr)
    n = sum(len(a) for a in desired.artifacts.values())
    print(f"valid: {len(desired.state.devices)} devices, {len(desired.state.assignments)} "
          f"accounts, {n} files for {len(desired.artifacts)} target(s) "
          f"(revision {desired.state.revision[:12]})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    opts = _options(args)
    opts.targets = [args.target] if args.target else None
    desired = load_desired(opts)
    renderer = desired.renderer
    only = normalize_mac(args.device) if args.device else None
    if only and only not in desired.state.devices:
        raise ConfigError([_unknown_mac(only)])
    written = 0
    for mac, device in renderer.resolved().items():
        if only and mac != only:
            continue
        target = args.target or renderer.primary_target(device)
        if target is None:
            continue
        for art in renderer.render_device(device, target):
            if art.source is not None:
                continue  # firmware binaries are not copied by render
            path = args.out / art.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(art.content())
            written += 1
    print(f"rendered {written} file(s) to {args.out}")
    return 0


def _unknown_mac(mac: str):
    from reconciler.core.errors import Problem

    return Problem("devices/", 0, "mac", f"unknown device {mac}")


def cmd_plan(args: argparse.Namespace) -> int:
    if args.base:
        from reconciler.gitops.compare import compare

        comparison = compare(find_repo(args.repo), args.base, args.head)
        sys.stdout.write(output.render_comparison(comparison, args.format))
        return comparison.exit_code
    result = plan(_options(args))
    sys.stdout.write(output.render_plan(result.plan, args.format))
    if args.out:
        args.out.write_text(output.plan_json(result.plan))
    return result.exit_code


def cmd_apply(args: argparse.Namespace) -> int:
    expected = read_plan_file(args.plan) if args.plan else None
    result = apply(_options(args), expected)
    sys.stdout.write(output.plan_text(result.plan))
    sys.stdout.write(output.apply_text(result.results, result.redirect))
    return result.exit_code


def cmd_explain(args: argparse.Namespace) -> int:
    from reconciler.pipeline.explain import explain

    desired = load_desired(_options(args))
    mac = normalize_mac(args.mac)
    if mac not in desired.state.devices:
        raise ConfigError([_unknown_mac(mac)])
    sys.stdout.write(explain(desired.renderer, mac, args.param))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Offline: what the state directory says about targets and redirect registrations."""
    from reconciler.redirect.plan import recorded_state
    from reconciler.redirect.state import load_records, records_path

    repo = find_repo(args.repo)
    state_dir = args.state_dir or record.default_state_dir(repo)
    status = record.read_status(state_dir)
    if args.target:
        status = {k: v for k, v in status.items() if k == args.target}
    records = load_records(records_path(state_dir))
    states: dict[str, int] = {}
    for rec in records.values():
        states[recorded_state(rec)] = states.get(recorded_state(rec), 0) + 1
    live = _live_status(args) if args.live else {}
    book = cli_rollouts.book(state_dir)
    if args.format == "json":
        body = {"targets": status, "redirect": {"states": states}, "live": live,
                "rollouts": cli_rollouts.status_dict(book)}
        if args.devices:
            body["redirect"]["devices"] = {mac: r.to_dict() for mac, r in sorted(records.items())}
        print(json.dumps(body, indent=1, sort_keys=True, default=str))
        return 0
    if not status and not records and not live and not book.rollouts:
        print("no runs recorded yet")
        return 0
    for name, entry in sorted(status.items()):
        applied = entry.get("last_applied") or {}
        attempted = entry.get("last_attempted") or {}
        print(f"target {name}: last applied {applied.get('revision', '-')[:12]} at "
              f"{applied.get('at', '-')}; last attempted {attempted.get('revision', '-')[:12]} "
              f"at {attempted.get('at', '-')}"
              + (f" — FAILED: {attempted['error']}" if attempted.get("error") else ""))
    for name, entry in sorted(live.items()):
        if entry.get("error"):
            print(f"target {name}: cannot be observed: {entry['error']}")
            continue
        print(f"target {name} now: {entry['pending']} change(s) pending, {entry['drift']} "
              f"drifted, lock {entry['lock'] or 'free'}")
    if records:
        print("redirect: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    for line in cli_rollouts.status_lines(book):
        print(line)
    if args.devices:
        for mac, rec in sorted(records.items()):
            since = f" since {rec.registered_at}" if rec.registered_at else ""
            note = f" ({rec.message})" if getattr(rec, "message", "") else ""
            print(f"  {mac} {recorded_state(rec)} at {rec.service}{since}{note}")
    return 0


def _live_status(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Observe every target read-only: what a plan would do, drift, and who holds the lock."""
    from reconciler.pipeline.run import (
        decide_rollouts,
        load_desired,
        make_plan,
        observe_target,
        opened,
    )
    from reconciler.targets.base import LOCK, LockInfo

    opts = _options(args)
    opts.targets = [args.target] if args.target else None
    desired = load_desired(opts)
    out: dict[str, dict[str, object]] = {}
    with opened(desired) as targets:
        observed = {n: observe_target(t, desired.artifacts[n], False) for n, t in targets.items()}
        state_dir = opts.state_dir or record.default_state_dir(opts.repo)
        rollouts = decide_rollouts(desired, observed, state_dir, opts)
        the_plan = make_plan(desired, observed, opts, rollouts=rollouts)
        for name, target in targets.items():
            if observed[name].error:
                out[name] = {"error": observed[name].error}
                continue
            lock = None
            try:
                data = target.read(LOCK)
                lock = LockInfo.from_bytes(data).describe() if data else None
            except (ValueError, TypeError, ProvctlError):
                lock = "unreadable lock file"
            out[name] = {"pending": sum(1 for c in the_plan.changes if c.target == name),
                         "drift": sum(1 for d in the_plan.drift if d.target == name),
                         "lock": lock}
    return out


def cmd_history(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from reconciler.gitops.history import history, history_text

    mac = normalize_mac(args.mac)
    repo = find_repo(args.repo)
    changes = history(repo, mac, args.max_count)
    waves = cli_rollouts.history_entries(args.state_dir or record.default_state_dir(repo), mac)
    if args.format == "json":
        print(json.dumps([asdict(c) for c in changes] + waves, indent=1))
    else:
        sys.stdout.write(history_text(mac, changes))
        sys.stdout.writelines(line + "\n" for line in cli_rollouts.history_lines(waves))
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from reconciler.pipeline.run import opened

    opts = _options(args)
    opts.targets = [args.target]
    desired = load_desired(opts)
    with opened(desired) as targets:
        held = targets[args.target].break_lock(args.id)
    print(f"removed {held.describe()}")
    return 0


COMMANDS = {"validate": cmd_validate, "render": cmd_render, "plan": cmd_plan,
            "apply": cmd_apply, "explain": cmd_explain, "status": cmd_status,
            "history": cmd_history, "unlock": cmd_unlock}


def _command(name: str):
    from reconciler.cli import daemon as cli_daemon
    from reconciler.cli import inventory as cli_inventory
    from reconciler.cli import vendors as cli_vendors
    from reconciler.cli import zerotouch as cli_zerotouch

    return {**cli_inventory.COMMANDS, **cli_daemon.COMMANDS, **cli_vendors.COMMANDS,
            **cli_zerotouch.COMMANDS, **COMMANDS}[name]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _command(args.command)(args)
    except ConfigError as exc:
        print(f"error: the desired state is invalid ({len(exc.problems)} problem(s)):",
              file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return exc.exit_code
    except ProvctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
