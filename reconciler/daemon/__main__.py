"""`python -m reconciler.daemon`: the daemon with the same flags as `provctl daemon`."""

import sys

from reconciler.daemon.loop import main

sys.exit(main())
