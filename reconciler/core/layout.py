"""The desired-state repository's file layout (design.md), written once.

Every module that asks "which kind of file is this?" or "where does this customer's inventory
live?" asks here.
"""

from __future__ import annotations

import fnmatch

PROVISIONING = "provisioning.yaml"
DEFAULTS = "defaults.yaml"
PROFILES = "profiles/"
CUSTOMERS = "customers/"
DEVICES = "devices/"
ASSIGNMENTS = "assignments/"
FIRMWARE = "firmware/"

# Which files are part of the desired state.
LAYOUT = (
    PROVISIONING,
    DEFAULTS,
    f"{PROFILES}*.yaml",
    f"{CUSTOMERS}*.yaml",
    f"{DEVICES}*.yaml",
    f"{ASSIGNMENTS}*.yaml",
    f"{FIRMWARE}*.yaml",
)

POOL = "pool"  # devices/pool.yaml: the provider's phones, allocated to no customer


def in_layout(rel: str) -> bool:
    """Whether a repository-relative path is one of the desired state's files."""
    return any(fnmatch.fnmatchcase(rel, p) and rel.count("/") == p.count("/") for p in LAYOUT)


def devices_file(customer: str | None) -> str:
    """Where a customer's (or the pool's) devices are listed."""
    return f"{DEVICES}{customer or POOL}.yaml"


def assignments_file(customer: str) -> str:
    return f"{ASSIGNMENTS}{customer}.yaml"
