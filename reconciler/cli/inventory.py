"""Inventory and secrets commands, added to the CLI by `add_commands`:

    provctl import FILE.csv [--dry-run] [--commit -m MSG --branch NAME]
    provctl import --template
    provctl export [--out FILE] [--customer ID] [--action add|update|delete]
    provctl device add|remove|move|assign|unassign ... [--dry-run] [--commit ...]
    provctl secrets edit | set NAME | check
    provctl onboard MAC... [--until DATE] [--dry-run] [--commit ...]

Edits follow the exit codes of every command: 0 nothing to change, 2 files changed (or would
be, with --dry-run), 1 invalid (nothing written), 3 refused (e.g. the branch exists).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.core.errors import ConfigError, OperationError, Problem
from reconciler.desired.load import find_repo, parse_yaml
from reconciler.desired.schema import SECRET_REF, Provisioning
from reconciler.desired.secrets import (
    MissingSecret,
    parse_secrets_map,
    read_age_map,
    write_age_map,
)
from reconciler.gitops import repo as gitrepo
from reconciler.inventory import bulk, devices
from reconciler.inventory.yamledit import Workspace


def _repo_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", help="desired-state directory (default: . or desired-state/)")


def _repo_after_subcommand(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`provctl secrets check --repo X` as well as `provctl secrets --repo X check`."""
    for child in commands.choices.values():
        child.add_argument("--repo", default=argparse.SUPPRESS,
                           help="desired-state directory (default: . or desired-state/)")


def _edit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true",
                   help="check and show what would change; write nothing")
    p.add_argument("--commit", action="store_true",
                   help="commit the changed files on a new branch (needs --branch)")
    p.add_argument("-m", "--message", help="commit message (default: a summary)")
    p.add_argument("--branch", help="the new branch for --commit")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register this module's subcommands on the provctl parser."""
    p = sub.add_parser("import", help="bulk add/update/delete of devices from a CSV file")
    _repo_arg(p)
    p.add_argument("file", nargs="?", type=Path, help="the CSV file")
    p.add_argument("--template", action="store_true", help="print the header row and exit")
    _edit_args(p)

    p = sub.add_parser("export", help="the inventory as CSV (the import's columns)")
    _repo_arg(p)
    p.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    p.add_argument("--customer", help="only this customer's phones")
    p.add_argument("--action", choices=bulk.ACTIONS, default="update",
                   help="the Action column (default: update, so a re-import changes nothing)")

    p = sub.add_parser("device", help="edit the inventory and assignments like by hand")
    _repo_arg(p)
    dev = p.add_subparsers(dest="device_command", required=True)
    q = dev.add_parser("add", help="add a phone to the inventory")
    q.add_argument("mac", metavar="MAC", help="the phone's MAC address (any usual spelling)")
    q.add_argument("--model", required=True, help="vendor/MODEL, e.g. yealink/T46U")
    q.add_argument("--profile", help="default: model_profiles of the customer, else defaults")
    q.add_argument("--customer", help="allocate to this customer (default: the pool)")
    q.add_argument("--owned", action="store_true", help="owned by the customer (BYOD)")
    q.add_argument("--name", default="", help="a name for people (e.g. reception)")
    q.add_argument("--serial", default="", help="serial number (some redirect services need it)")
    q.add_argument("--description", default="", help="kept as a comment on the entry")
    _edit_args(q)
    q = dev.add_parser("remove", help="remove phones from the inventory")
    q.add_argument("mac", nargs="+", metavar="MAC", help="the phones to remove")
    q.add_argument("--unassign", action="store_true",
                   help="also take them off their accounts (an emptied account goes too)")
    _edit_args(q)
    q = dev.add_parser("move", help="allocate phones to a customer or return them to the pool")
    q.add_argument("mac", nargs="*", metavar="MAC", help="the phones to move (or --all-of)")
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--customer", help="the customer to allocate them to")
    where.add_argument("--pool", action="store_true", help="return them to the pool")
    q.add_argument("--all-of", metavar="CUSTOMER",
                   help="every phone allocated to CUSTOMER (owned phones are not moved)")
    q.add_argument("--unassign", action="store_true",
                   help="take them off the accounts of their former customer")
    _edit_args(q)
    q = dev.add_parser("assign", help="assign a phone (or one port) to an account")
    q.add_argument("mac", metavar="MAC", help="the phone")
    q.add_argument("--account", required=True, help="CUSTOMER/EXTENSION, e.g. acme/201")
    q.add_argument("--port", type=int, default=1, metavar="N",
                   help="the port (line) of a multi-line phone or DECT base (default: 1)")
    q.add_argument("--password", help="secret reference of a new account "
                   "(default: secret:CUSTOMER/EXTENSION)")
    q.add_argument("--display-name", default="", help="the name a new account shows")
    _edit_args(q)
    q = dev.add_parser("unassign", help="take a phone off accounts, or remove an account")
    q.add_argument("mac", nargs="?", metavar="MAC", help="the phone (omit to remove --account)")
    q.add_argument("--account", help="only this account (alone: remove the account)")
    q.add_argument("--port", type=int, metavar="N", help="only this port of the phone")
    _edit_args(q)

    p = sub.add_parser(
        "onboard", help="reopen phones' onboarding windows behind DHCP (edits devices/*.yaml)",
        epilog=_ONBOARD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _repo_arg(p)
    p.add_argument("mac", nargs="+", metavar="MAC", help="the phones (any usual spelling)")
    p.add_argument("--until", type=_day, metavar="YYYY-MM-DD",
                   help="last day of the window (default: today + "
                        "policy.onboarding_window_days)")
    _edit_args(p)

    p = sub.add_parser("secrets", help="the age-encrypted secrets file; check references")
    _repo_arg(p)
    sec = p.add_subparsers(dest="secrets_command", required=True)
    sec.add_parser("edit", help="edit the encrypted secrets in $EDITOR (plaintext stays in a "
                   "private temporary directory outside the repository)")
    q = sec.add_parser("set", help="set one secret; the value is read from stdin")
    q.add_argument("name", metavar="NAME", help="the secret's name (referenced as secret:NAME)")
    sec.add_parser("check", help="list every secret reference that does not resolve")
    for group in (dev, sec):
        _repo_after_subcommand(group)


_ONBOARD_EPILOG = """\
example:
  provctl onboard 00:0B:82:BB:00:01 --commit -m "office-rome was factory-reset" \\
      --branch onboard-office-rome

Writes onboard: {until: DATE} on each phone: after the change is applied, its bootstrap files
are published under its customer's bootstrap URL (provctl dhcp) until it fetches its own file
or the day ends (docs/zero-touch.md).
exit codes: 0 nothing to change, 2 changed (or would be, --dry-run), 1 invalid (nothing
written), 3 refused (e.g. the branch exists), 64 usage error"""


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


# --- edits --------------------------------------------------------------------------------


def _print_problems(title: str, problems: list[Problem]) -> None:
    print(f"error: {title} ({len(problems)} problem(s)):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _print_rows(title: str, problems: list[Problem]) -> None:
    """CSV problems: `FILE row N, column C: message` (line = the spreadsheet row)."""
    print(f"error: {title} ({len(problems)} problem(s)):", file=sys.stderr)
    for p in problems:
        where = f"{p.file} row {p.line}" if p.line else p.file
        print(f"  {where}" + (f", column {p.field}" if p.field else "") + f": {p.message}",
              file=sys.stderr)


def _finish(ws: Workspace, args: argparse.Namespace, done: list[str], summary: str) -> int:
    """Validate the edited repository in memory, then write (and commit) or report."""
    changed = ws.changed()
    if not changed:
        for line in done:
            print(line)
        print("nothing to change")
        return 0
    try:
        remaining = ws.check()
    except ConfigError as exc:
        _print_problems("the result would be invalid; nothing was written", exc.problems)
        return 1
    if remaining:
        print(f"warning: {len(remaining)} problem(s) of the repository remain (they were there "
              "before this edit): see provctl validate", file=sys.stderr)
    for line in done:
        print(line)
    files = ", ".join(changed)
    if args.dry_run:
        print(f"would change {files} (dry run: nothing written)")
        return 2
    paths = [ws.repo / rel for rel in changed]
    if args.commit:
        if not args.branch:
            raise OperationError("--commit needs --branch NAME")
        gitrepo.check_commit(ws.repo, paths, args.branch)
    ws.write()
    print(f"changed {files}")
    if args.commit:
        sha = gitrepo.commit_files(ws.repo, paths, args.message or summary, args.branch)
        print(f"committed {sha[:12]} on new branch {args.branch}")
    return 2


def cmd_import(args: argparse.Namespace) -> int:
    if args.template:
        sys.stdout.write(bulk.template())
        return 0
    if args.file is None:
        raise OperationError("name the CSV file (or --template for its header)")
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise OperationError(f"cannot read {args.file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise OperationError(f"{args.file} is not UTF-8 text") from exc
    ws = Workspace(find_repo(args.repo))
    try:
        rows = bulk.read_csv(text, args.file.name)
        result = bulk.import_rows(ws, rows, args.file.name)
    except ConfigError as exc:
        _print_rows(f"{args.file.name}: nothing was imported", exc.problems)
        return 1
    summary = f"import {args.file.name}: {result.summary()}"
    return _finish(ws, args, [summary], summary)


def cmd_export(args: argparse.Namespace) -> int:
    ws = Workspace(find_repo(args.repo))
    text = bulk.export_csv(ws, args.action, args.customer)
    if args.out:
        args.out.write_text(text)
        print(f"exported {text.count(chr(10)) - 1} device(s) to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    ws = Workspace(find_repo(args.repo))
    command = args.device_command
    try:
        if command == "add":
            done = devices.device_add(
                ws, args.mac, args.model, profile=args.profile, customer=args.customer,
                owned=args.owned, name=args.name, serial=args.serial,
                description_text=args.description)
        elif command == "remove":
            done = devices.device_remove(ws, args.mac, unassign=args.unassign)
        elif command == "move":
            if not args.mac and not args.all_of:
                raise ConfigError([Problem("device move", 0, "", "name MACs or --all-of")])
            done = devices.device_move(ws, args.mac, None if args.pool else args.customer,
                                         all_of=args.all_of, unassign=args.unassign)
        elif command == "assign":
            done = devices.device_assign(ws, args.mac, args.account, port=args.port,
                                           password=args.password,
                                           display_name=args.display_name)
            if done and done[0].startswith("created account"):
                done.append(_secret_hint(ws.repo, args.password or f"secret:{args.account}"))
        else:
            done = devices.device_unassign(ws, args.mac, args.account, args.port)
    except ConfigError as exc:
        _print_problems(f"device {command}: nothing was changed", exc.problems)
        return 1
    summary = f"device {command}: " + "; ".join(done) if done else f"device {command}"
    return _finish(ws, args, done, summary)


def cmd_onboard(args: argparse.Namespace) -> int:
    ws = Workspace(find_repo(args.repo))
    until = args.until or (datetime.now(UTC).date()
                           + timedelta(days=devices.window_days(ws)))
    try:
        done = devices.device_onboard(ws, args.mac, until)
    except ConfigError as exc:
        _print_problems("onboard: nothing was changed", exc.problems)
        return 1
    return _finish(ws, args, done, "onboard: " + "; ".join(done))


def _secret_hint(repo: Path, ref: str) -> str:
    """What a new account's password reference needs, and how to provide it."""
    kind, _, name = ref.partition(":")
    if kind == "env":
        return (f"set its password: export {name}=VALUE wherever provctl runs (CI, the "
                f"daemon); secrets.env of provisioning.yaml must list {name}")
    if kind == "file":
        return f"set its password: write it to {name} (outside git)"
    if kind == "derive":
        return "its password is derived from the fleet secret: nothing to set"
    try:
        prov = _provisioning(repo)
    except ConfigError:
        prov = None
    if prov is not None and prov.secrets.age_file:
        return (f"set its password: provctl secrets set {name} (reads the value from stdin; "
                f"encrypted into {prov.secrets.age_file})")
    where = f" ({prov.secrets.file})" if prov is not None and prov.secrets.file else ""
    return (f"set its password: add the line `{name}: VALUE` to the secrets file{where}, kept "
            "outside git; provctl validate says when it is missing")


# --- secrets --------------------------------------------------------------------------------


def _provisioning(repo: Path) -> Provisioning:
    path = repo / "provisioning.yaml"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([Problem(str(path), 0, "", "no provisioning.yaml here "
                                   "(is --repo right?)")]) from exc
    doc = parse_yaml("provisioning.yaml", data)
    try:
        return Provisioning.model_validate(doc.data or {})
    except Exception as exc:  # noqa: BLE001 - reported as one line; validate says more
        raise ConfigError([Problem("provisioning.yaml", 0, "", "invalid: run provctl "
                                   "validate")]) from exc


def _age_target(repo: Path) -> tuple[Path, list[str]]:
    prov = _provisioning(repo)
    if not prov.secrets.age_file:
        raise OperationError("no secrets.age_file in provisioning.yaml (see docs/inventory.md)")
    if not prov.secrets.recipients:
        raise OperationError("secrets.recipients in provisioning.yaml is empty: name the age "
                             "public keys (age1...) that may decrypt the file")
    path = Path(os.path.expanduser(prov.secrets.age_file))
    return (path if path.is_absolute() else repo / path), list(prov.secrets.recipients)


def _read_age(path: Path) -> dict[str, str]:
    try:
        return read_age_map(path, os.environ)
    except MissingSecret as exc:
        raise OperationError(str(exc).split(": ", 1)[-1]) from exc


def _secret_value() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("value (not echoed): ")
    value = sys.stdin.read()
    return value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")


def cmd_secrets(args: argparse.Namespace) -> int:
    repo = find_repo(args.repo)
    if args.secrets_command == "check":
        return _secrets_check(repo)
    path, recipients = _age_target(repo)
    values = _read_age(path)
    if args.secrets_command == "set":
        name = args.name
        if not re.match(r"^[A-Za-z0-9_.@+/-]+$", name):
            raise OperationError(f"not a secret name: {name!r}")
        value = _secret_value()
        if value == "":
            raise OperationError("empty value on stdin: nothing set")
        if values.get(name) == value:
            print(f"secret:{name} is unchanged")
            return 0
        values[name] = value
        write_age_map(path, values, recipients)
        print(f"set secret:{name} in {path.name} (encrypted to {len(recipients)} recipient(s))")
        return 2
    edited = _edit_plaintext(repo, values)
    if edited == values:
        print(f"{path.name}: no change")
        return 0
    write_age_map(path, edited, recipients)
    print(f"{path.name}: {len(edited)} secret(s) encrypted to {len(recipients)} recipient(s)")
    return 2


def _edit_plaintext(repo: Path, values: dict[str, str]) -> dict[str, str]:
    """Let $EDITOR change the map in a private temporary directory outside the repository;
    the plaintext is removed whatever happens."""
    from reconciler.desired.secrets import dump_secrets_map

    base = "/dev/shm" if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    tmpdir = Path(tempfile.mkdtemp(prefix="provctl-secrets-", dir=base))
    try:
        if tmpdir.resolve().is_relative_to(repo.resolve()):
            raise OperationError("the temporary directory is inside the repository: set TMPDIR")
        plain = tmpdir / "secrets.yaml"
        fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# provctl secrets: NAME: value. Saved encrypted when the editor exits.\n")
            fh.write(dump_secrets_map(values) if values else "")
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        status = subprocess.call([*shlex.split(editor), str(plain)])
        if status != 0:
            raise OperationError(f"the editor exited with status {status}: nothing saved")
        try:
            return parse_secrets_map(plain.read_text(), "the edited secrets")
        except MissingSecret as exc:
            raise OperationError(f"{str(exc).split(': ', 1)[-1]}: nothing saved") from exc
    finally:
        for child in tmpdir.iterdir():
            child.unlink()
        tmpdir.rmdir()


def _secrets_check(repo: Path) -> int:
    """Every reference of the desired state, resolved for real (not redacted)."""
    from reconciler.desired.load import read_source
    from reconciler.desired.validate import load_state, secrets_for

    source = read_source(repo)
    state = load_state(source, redacting=True)
    # as a run resolves them: file_dirs, secrets.env and the host's references included
    secrets = secrets_for(source, state.provisioning.value)
    host_file = state.provisioning.doc.file
    docs = {state.provisioning.doc.file: state.provisioning.doc,
            state.defaults.doc.file: state.defaults.doc}
    for group in (state.profiles.values(), state.customers.values(), state.devices.values(),
                  state.assignments):
        for located in group:
            docs.setdefault(located.doc.file, located.doc)
    found = 0
    problems: list[Problem] = []
    for file, doc in sorted(docs.items()):
        for path, ref in _refs(doc.data):
            found += 1
            in_params = any(p in ("params", "model_params") for p in path)
            try:
                secrets.check(ref, device=in_params, host=file == host_file)
            except MissingSecret as exc:
                shown = path[1:] if path and isinstance(path[0], int) else path  # list item
                problems.append(Problem(file, doc.line(path),
                                        ".".join(str(p) for p in shown), str(exc)))
    if problems:
        _print_problems(f"{len(problems)} of {found} secret reference(s) do not resolve",
                        problems)
        return 1
    print(f"all {found} secret reference(s) resolve")
    return 0


def _refs(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...],
                                                                       str]]:
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _refs(v, (*path, k))]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _refs(v, (*path, i))]
    if isinstance(value, str) and SECRET_REF.match(value):
        return [(path, value)]
    return []


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "import": cmd_import, "export": cmd_export, "device": cmd_device, "secrets": cmd_secrets,
    "onboard": cmd_onboard,
}
