"""`python -m reconciler.cli`: the same as the `provctl` command."""

from reconciler.cli.main import run

run()
