"""The `daemon` command: added to the CLI by `add_commands` (the loop lives in daemon.py).

daemon.py imports watchdog, gitpython and prometheus_client only when the daemon runs, so
registering the command costs the other commands nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `provctl daemon` on the provctl parser."""
    from reconciler.daemon.loop import add_arguments

    p = sub.add_parser("daemon", help="follow a branch and reconcile its newest revision")
    add_arguments(p)


def cmd_daemon(args: argparse.Namespace) -> int:
    from reconciler.daemon.loop import config_from_args, run_daemon

    return run_daemon(config_from_args(args))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"daemon": cmd_daemon}
