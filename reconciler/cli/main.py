"""provctl's command line: parse, call one function, print, map errors to exit codes.

Exit codes for every command: 0 success and nothing to change, 2 changes pending (plan) or made
(apply), 1 invalid desired state or a failed operation, 3 refused (safety limit, lock, conflict,
an apply answered "no"), 64 usage error (never argparse's 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from reconciler import __version__
from reconciler.cli import help as cli_help
from reconciler.cli import output
from reconciler.cli import rollouts as cli_rollouts
from reconciler.core.errors import ConfigError, NotFound, Problem, ProvctlError
from reconciler.core.layout import in_layout
from reconciler.core.macs import normalize_mac
from reconciler.core.names import did_you_mean
from reconciler.desired.load import find_repo
from reconciler.pipeline import receipt as record
from reconciler.pipeline.plan import Plan
from reconciler.pipeline.run import (
    LOCK_TTL,
    Options,
    apply,
    load_desired,
    plan,
    read_plan_file,
)

DISTRIBUTION = "provctl-phones"  # the name on PyPI; the command stays `provctl`


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64: 2 means "changes pending" to provctl's callers."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(cli_help.USAGE_EXIT, f"{self.prog}: error: {message}\n")


def _common(p: argparse.ArgumentParser, rev: bool = True) -> None:
    p.add_argument("--repo", help="desired-state directory (default: . or desired-state/)")
    if rev:
        p.add_argument("--rev", help="read the desired state from this git revision")


def _target(p: argparse.ArgumentParser, many: bool = False, required: bool = False) -> None:
    # --host: Terraform users read -target as "one resource"; here it names a provisioning host.
    if many:
        p.add_argument("--target", "--host", dest="target", action="append", metavar="NAME",
                       help="only this target of provisioning.yaml (repeatable; --host is "
                            "the same)")
    else:
        p.add_argument("--target", "--host", dest="target", metavar="NAME", required=required,
                       help="the target of provisioning.yaml (--host is the same)")


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, metavar="DIR",
                   help="status, receipts, render cache and redirect records (default: "
                        "$PROVCTL_STATE_DIR, else <repo>/.provctl)")


def _allow_unserved(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-unserved", action="store_true",
                   help="a phone no target serves (outside every customers: filter) is a "
                        "warning, not an error")


def parser() -> argparse.ArgumentParser:
    ap = Parser(prog="provctl", description=__doc__.splitlines()[0],
                epilog="Run `provctl COMMAND --help` for a command's options, an example and "
                       "its exit codes.")
    ap.add_argument("--version", action="version",
                    version=f"provctl {__version__} ({DISTRIBUTION}, Python "
                            f"{sys.version_info.major}.{sys.version_info.minor})",
                    help="print the version and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every write")
    ap.add_argument("--no-color", action="store_true",
                    help="no colour (also: the NO_COLOR environment variable)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check the desired state")
    _common(p)
    p.add_argument("--no-secrets", action="store_true",
                   help="do not require secrets (CI without them): references become "
                        "placeholders, everything else is checked")
    _allow_unserved(p)

    p = sub.add_parser("render", help="render phone files to a directory (mode 0600)")
    _common(p)
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="the directory to write the files to")
    p.add_argument("--redact", action="store_true",
                   help="write secrets in their redacted form, e.g. to share the files (token "
                        "directories then differ from the published ones)")
    p.add_argument("--device", metavar="MAC", help="only this MAC")
    p.add_argument("--target", metavar="NAME",
                   help="render with this target's URLs (default: each phone's first)")

    for name in ("plan", "apply"):
        p = sub.add_parser(name, help="show the changes against the targets" if name == "plan"
                           else "show the plan, confirm on a terminal, then write it")
        _common(p)
        _target(p, many=True)
        p.add_argument("--device", action="append", metavar="MAC",
                       help="limit the changes to this phone (repeatable)")
        p.add_argument("--customer", action="append", metavar="ID",
                       help="limit the changes to this customer's phones (repeatable)")
        p.add_argument("--verify", action="store_true", help="read files back and hash them")
        p.add_argument("--scan", action="store_true", default=None,
                       help="scan the whole target for drift now (default: when "
                            "policy.drift_scan_every has passed; else trust the manifest)")
        p.add_argument("--heal", action="store_true", default=None,
                       help="rewrite drifted files (default: policy.drift)")
        p.add_argument("--prune", action="store_true", default=None,
                       help="delete files no longer desired (default: policy.prune)")
        p.add_argument("--no-prune", dest="prune", action="store_false",
                       help="never delete files in this run")
        p.add_argument("--force", action="store_true",
                       help="override the safety limits (deletions, downgrades, foreign files)")
        _state_dir(p)
        _allow_unserved(p)
        if name == "plan":
            p.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                           help="text for people, json for machines (docs/json.md), markdown "
                                "for a pull-request comment")
            p.add_argument("--base", metavar="REV",
                           help="compare two desired states, no host contacted: this revision")
            p.add_argument("--head", metavar="REV",
                           help="... with this one (default: the working tree)")
            p.add_argument("--out", type=Path, metavar="FILE",
                           help="also write the JSON plan to this file (for apply --plan)")
        else:
            p.add_argument("--plan", type=Path, metavar="FILE",
                           help="apply only if a fresh plan matches this one (written by plan "
                                "--out); never asks")
            p.add_argument("-y", "--auto-approve", action="store_true",
                           help="do not ask for confirmation on a terminal")

    p = sub.add_parser("diff", help="one phone: what would be published against what is")
    _common(p)
    p.add_argument("mac", metavar="MAC", help="the phone")
    _target(p)
    p.add_argument("--context", type=int, default=3, metavar="N",
                   help="lines of context in the unified diff (default: 3)")

    p = sub.add_parser("explain", help="each resolved parameter of a phone and its origin")
    _common(p)
    p.add_argument("mac", metavar="MAC", help="the phone")
    p.add_argument("--param", help="only this parameter (dotted, e.g. sip.server)")

    p = sub.add_parser("status", help="last attempted / applied revision per target")
    _common(p, rev=False)
    _target(p)
    _state_dir(p)
    p.add_argument("--devices", action="store_true", help="per phone: what it fetched (access "
                   "logs), its state, and its redirect state")
    from reconciler.cli import observe as cli_observe

    cli_observe.add_status_arguments(p)
    p.add_argument("--live", action="store_true",
                   help="also observe the targets (read-only): pending changes, drift, lock")
    p.add_argument("--exit-code", action="store_true",
                   help="observe the targets too and exit 0 in sync, 2 changes pending, 1 the "
                        "last run failed")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for people, json for machines")

    p = sub.add_parser("history", help="commits that changed what a phone gets; when applied")
    _common(p, rev=False)
    p.add_argument("mac", metavar="MAC", help="the phone")
    p.add_argument("--max-count", type=int, default=100, metavar="N",
                   help="commits to look back (default: 100)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for people; json: structured diffs and applies")
    p.add_argument("--state-dir", type=Path, help="where the rollouts are recorded")

    p = sub.add_parser("unlock", help="remove a stale target lock")
    _common(p, rev=False)
    _target(p, required=True)
    p.add_argument("--id", required=True, help="the lock id shown by the refusal")

    p = sub.add_parser("init", help="scaffold a desired-state repository")
    from reconciler.cli import scaffold

    scaffold.add_arguments(p)

    p = sub.add_parser("completion", help="a shell completion script (bash, zsh, fish)")
    p.add_argument("shell", choices=sorted(cli_help.SHELLS), help="the shell")

    for module in _modules():
        module.add_commands(sub)
    cli_help.finish(ap)
    return ap


def _modules() -> list[Any]:
    from reconciler.cli import daemon as cli_daemon
    from reconciler.cli import inventory as cli_inventory
    from reconciler.cli import observe as cli_observe
    from reconciler.cli import vendors as cli_vendors
    from reconciler.cli import zerotouch as cli_zerotouch

    return [cli_inventory, cli_daemon, cli_vendors, cli_zerotouch, cli_observe]


def _options(args: argparse.Namespace) -> Options:
    target = getattr(args, "target", None)
    devices = getattr(args, "device", None)
    customers = getattr(args, "customer", None)
    return Options(
        repo=find_repo(args.repo), rev=getattr(args, "rev", None),
        targets=[target] if isinstance(target, str) else target,
        prune=getattr(args, "prune", None),
        force=getattr(args, "force", False), verify=getattr(args, "verify", False),
        scan=getattr(args, "scan", None),
        heal=getattr(args, "heal", None), state_dir=getattr(args, "state_dir", None),
        devices=frozenset(_mac(d) for d in devices) if isinstance(devices, list) else None,
        customers=frozenset(customers) if isinstance(customers, list) else None,
        allow_unserved=getattr(args, "allow_unserved", False),
    )


def _progress(args: argparse.Namespace) -> Any:
    """A progress display on stderr when it is a terminal, else None (nothing printed)."""
    if not sys.stderr.isatty():
        return None
    from reconciler.cli.progress import Progress

    return Progress(sys.stderr, output.Style.for_stream(sys.stderr, args.no_color).enabled)


_LEFT: list[object] = []  # what plan and apply leave for the process to drop (see run())


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
    opts.redacting = args.redact
    desired = load_desired(opts)
    renderer = desired.renderer
    only = normalize_mac(args.device) if args.device else None
    if only and only not in desired.state.devices:
        raise _unknown_mac(only, desired.state.devices)
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
            _write_private(args.out, art.path, art.content())
            written += 1
    print(f"rendered {written} file(s) to {args.out}")
    return 0


def _write_private(out: Path, rel: str, data: bytes) -> None:
    """Rendered files hold cleartext secrets: files 0600 in folders 0700, never through a
    symlink."""
    import os

    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = out / rel
    for folder in reversed(path.relative_to(out).parents[:-1]):  # shallowest first
        (out / folder).mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # a file that existed keeps no wider mode
            handle.write(data)
    except OSError as exc:
        from reconciler.core.errors import OperationError

        raise OperationError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _unknown_mac(mac: str, known: Any) -> NotFound:
    return NotFound(f"unknown device {mac} (not in devices/*.yaml){did_you_mean(mac, known)}")


def _mac(text: str) -> str:
    try:
        return normalize_mac(text)
    except ValueError as exc:
        raise NotFound(str(exc)) from exc


def cmd_plan(args: argparse.Namespace) -> int:
    if args.base:
        from reconciler.gitops.compare import compare

        comparison = compare(find_repo(args.repo), args.base, args.head,
                             allow_unserved=args.allow_unserved)
        sys.stdout.write(output.render_comparison(comparison, args.format))
        return comparison.exit_code
    opts = _options(args)
    progress = _progress(args) if args.format == "text" else None
    opts.progress = progress
    try:
        result = plan(opts)
    finally:
        if progress is not None:
            progress.close()
    _LEFT.append(result)  # the desired state: freed with the process (run())
    style = output.Style.for_stream(sys.stdout, args.no_color)
    if args.format == "text":
        sys.stdout.write(output.plan_text(result.plan, style=style))
    else:
        sys.stdout.write(output.render_plan(result.plan, args.format))
    if args.out:
        args.out.write_text(output.plan_json(result.plan))
    return result.exit_code


def _ask(the_plan: Plan, style: output.Style) -> bool:
    """On a terminal: Terraform's question; only "yes" goes ahead."""
    n = len(the_plan.changes) + len(the_plan.actionable_redirects)
    sys.stderr.write(style("bold", f"Apply these {n} change(s)? Only 'yes' is accepted: "))
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        answer = ""
    return answer.strip() == "yes"


def cmd_apply(args: argparse.Namespace) -> int:
    """Show before write: the plan is printed first; on a terminal (stdin) apply asks before
    writing, unless -y or --plan FILE (whose checksum is the approval). Not on a terminal
    (daemon, cron, CI) it goes ahead without asking, as before."""
    expected = read_plan_file(args.plan) if args.plan else None
    ask = not args.auto_approve and expected is None and sys.stdin.isatty()
    style = output.Style.for_stream(sys.stdout, args.no_color)
    progress = _progress(args)
    shown: list[Plan] = []

    def confirm(the_plan: Plan) -> bool:
        if progress is not None:
            progress.close()
        sys.stdout.write(output.plan_text(the_plan, style=style))
        sys.stdout.flush()
        shown.append(the_plan)
        if the_plan.empty or not ask:
            return True
        asked = time.monotonic()
        if not _ask(the_plan, style):
            return False
        if time.monotonic() - asked > 0.9 * LOCK_TTL:  # the locks may have been taken over
            print(f"error: the answer came after {int(time.monotonic() - asked) // 60} minutes; "
                  "the target locks may have expired meanwhile: run apply again",
                  file=sys.stderr)
            return False
        return True

    opts = _options(args)
    opts.progress = progress
    opts.confirm = confirm
    try:
        result = apply(opts, expected)
    finally:
        if progress is not None:
            progress.close()
    _LEFT.append(result)  # the desired state: freed with the process (run())
    if not shown:
        sys.stdout.write(output.plan_text(result.plan, style=style))
    if result.cancelled:
        print("Apply cancelled: nothing was written.", file=sys.stderr)
        return 3
    sys.stdout.write(output.apply_text(result.results, result.redirect, style=style))
    return result.exit_code


def cmd_diff(args: argparse.Namespace) -> int:
    from reconciler.pipeline.phonediff import phone_diff

    opts = _options(args)
    mac = _mac(args.mac)
    diffs = phone_diff(opts, mac, args.target, context=args.context)
    style = output.Style.for_stream(sys.stdout, args.no_color)
    sys.stdout.write(output.phone_diff_text(mac, diffs, style))
    return 2 if any(d.status != "unchanged" for d in diffs) else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from reconciler.pipeline.explain import explain

    desired = load_desired(_options(args))
    mac = _mac(args.mac)
    if mac not in desired.state.devices:
        raise _unknown_mac(mac, desired.state.devices)
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
    live = _live_status(args) if args.live or args.exit_code else {}
    code = _status_code(status, live) if args.exit_code else 0
    book = cli_rollouts.book(state_dir)
    from reconciler.cli import observe as cli_observe

    uptake = cli_observe.observe_devices(args) if args.devices else None
    if args.format == "json":
        body: dict[str, Any] = {"targets": status, "redirect": {"states": states}, "live": live,
                                "rollouts": cli_rollouts.status_dict(book)}
        if args.devices:
            body["redirect"]["devices"] = {mac: r.to_dict() for mac, r in sorted(records.items())}
            body["devices"] = cli_observe.uptake_dict(args, *uptake)  # type: ignore[misc]
        if args.exit_code:
            body["exit_code"] = code
        print(json.dumps(body, indent=1, sort_keys=True, default=str))
        return code
    if not status and not records and not live and not args.devices and not book.rollouts:
        print("no runs recorded yet")
        return code
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
        sys.stdout.write(cli_observe.uptake_text(args, *uptake))  # type: ignore[misc]
    return code


def _status_code(status: dict[str, Any], live: dict[str, dict[str, object]]) -> int:
    """--exit-code: 1 when the last run failed (or a target cannot be observed), 2 when changes
    are pending (drift counts when it would be healed, as for plan), 0 in sync."""
    if any((e.get("last_attempted") or {}).get("error") for e in status.values()):
        return 1
    if any(e.get("error") for e in live.values()):
        return 1
    if any(e.get("pending") for e in live.values()):
        return 2
    return 0


def _live_status(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Observe every target read-only: what a plan would do, drift, and who holds the lock."""
    from reconciler.pipeline.status import live_status

    return live_status(_options(args))


def cmd_history(args: argparse.Namespace) -> int:
    from reconciler.cli.observe import history_fetches
    from reconciler.gitops.history import history, history_json, history_text

    mac = _mac(args.mac)
    repo = find_repo(args.repo)
    changes = history(repo, mac, args.max_count)
    fetches = history_fetches(repo, mac)
    waves = cli_rollouts.history_entries(args.state_dir or record.default_state_dir(repo), mac)
    if args.format == "json":
        print(json.dumps({**history_json(mac, changes, fetches), "rollouts": waves}, indent=1))
    else:
        sys.stdout.write(history_text(mac, changes, fetches))
        sys.stdout.writelines(line + "\n" for line in cli_rollouts.history_lines(waves))
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from reconciler.pipeline.unlock import unlock

    held = unlock(find_repo(args.repo), args.target, args.id)
    print(f"removed {held.describe()}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from reconciler.cli import scaffold

    return scaffold.run(args)


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(cli_help.SHELLS[args.shell](parser()))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate, "render": cmd_render, "plan": cmd_plan, "apply": cmd_apply,
    "diff": cmd_diff, "explain": cmd_explain, "status": cmd_status, "history": cmd_history,
    "unlock": cmd_unlock, "init": cmd_init, "completion": cmd_completion,
}


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    table: dict[str, Callable[[argparse.Namespace], int]] = {}
    for module in _modules():
        table.update(module.COMMANDS)
    return {**table, **COMMANDS}[name]


def _about_desired(problem: Problem) -> bool:
    """Whether a problem lies in the desired state's files (or the templates they use)."""
    return in_layout(problem.file) or problem.file.startswith("templates/") or (
        problem.file.endswith("/") and in_layout(problem.file + "x.yaml"))


def print_problems(exc: ConfigError) -> None:
    n = len(exc.problems)
    if any(_about_desired(p) for p in exc.problems):
        print(f"error: the desired state is invalid ({n} problem(s)):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    elif n == 1:
        print(f"error: {exc.problems[0]}", file=sys.stderr)
    else:
        print(f"error: {n} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _command(args.command)(args)
    except ConfigError as exc:
        print_problems(exc)
        return exc.exit_code
    except ProvctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def run() -> NoReturn:
    """The provctl command: main(), then the process ends.

    After plan or apply it ends at once (os._exit) once its output is flushed and logging
    shut down: freeing a 100,000-phone desired state object by object takes about 0.3 s, for
    nothing. Every file and lock was closed by then (the commands' own `with` blocks and
    `finally` clauses); the exit code is the command's. Under a profiler or a tracer
    (cProfile, coverage), which write their results at exit, it exits as usual."""
    code = main()
    if not _LEFT or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)  # a closed or broken stream: Python's own exit says what it must
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
