"""Inventory commands (import, export, device ...): added to the CLI by `add_commands`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register this module's subcommands on the provctl parser."""
