"""`python -m reconciler.cli`: the same as the `provctl` command."""

import sys

from reconciler.cli.main import main

sys.exit(main())
