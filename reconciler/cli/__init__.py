"""provctl's command line: `main` parses, calls one function, prints, maps errors to exit codes."""

from reconciler.cli.main import main

__all__ = ["main"]
