"""Zero-touch commands, added to the CLI by `add_commands`: `provctl dhcp`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from reconciler.desired.load import find_repo
from reconciler.render.dhcp import FORMATS

_DHCP_EPILOG = """\
example:
  provctl dhcp --customer acme --format kea > /etc/kea/provctl-acme.json

The options carry the customer's bootstrap URL (docs/zero-touch.md), matched to the MAC
prefixes of the customer's phones in the inventory.
exit codes: 0 printed, 1 invalid desired state or unknown customer, 64 usage error"""


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dhcp", help="DHCP options that send a customer's new phones to provctl",
                       epilog=_DHCP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", help="desired-state directory (default: . or desired-state/)")
    p.add_argument("--rev", help="read the desired state from this git revision")
    p.add_argument("--customer", required=True, help="the customer (customers/<id>.yaml)")
    p.add_argument("--format", choices=FORMATS, default="isc",
                   help="isc (dhcpd.conf), kea (Dhcp4 JSON) or dnsmasq (default: isc)")


def cmd_dhcp(args: argparse.Namespace) -> int:
    from reconciler.pipeline.run import Options
    from reconciler.pipeline.zerotouch import dhcp_config

    opts = Options(repo=find_repo(args.repo), rev=args.rev)
    sys.stdout.write(dhcp_config(opts, args.customer, args.format))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"dhcp": cmd_dhcp}
