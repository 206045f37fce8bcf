"""The one error tree of provctl, split by who must act.

    ProvctlError
    ├── ConfigError          the operator fixes the desired state (every problem, with file:line)
    ├── NotFound             a name given on the command line (a MAC, a customer) is not known
    ├── OperationError       a target or redirect service failed
    │   ├── TargetError          (.transient: retry later, or permanent: stop this target)
    │   ├── RedirectError        (.transient, .conflict: the MAC belongs to another account)
    │   └── Interrupted          a stop was asked for (SIGTERM) before anything was written
    └── Refused              a safety rule said no (exit code 3)
        ├── UnsafePlan           too many deletions without --force
        ├── LockHeld             another run holds the target lock
        └── PlanMismatch         `apply --plan` got a plan that no longer matches a fresh one

The CLI prints known errors as one clear message and maps them to exit codes; only a bug shows
a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProvctlError(Exception):
    exit_code = 1


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in the desired state, located as precisely as we can."""

    file: str
    line: int
    field: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ConfigError(ProvctlError):
    """The desired state is invalid; carries every problem found in one run."""

    exit_code = 1

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class NotFound(ProvctlError):
    """A MAC, customer or target named on the command line is not known (exit 1)."""

    exit_code = 1


class OperationError(ProvctlError):
    exit_code = 1


class TargetError(OperationError):
    def __init__(self, target: str, message: str, *, transient: bool = False):
        self.target = target
        self.transient = transient
        super().__init__(f"target {target}: {message}")


class RedirectError(OperationError):
    def __init__(
        self, service: str, message: str, *, transient: bool = False, conflict: bool = False
    ):
        self.service = service
        self.transient = transient
        self.conflict = conflict
        super().__init__(f"redirect {service}: {message}")


class Interrupted(OperationError):
    """The run stopped on request (the daemon's SIGTERM) before it wrote anything."""


class Refused(ProvctlError):
    exit_code = 3


class UnsafePlan(Refused):
    pass


class LockHeld(Refused):
    pass


class PlanMismatch(Refused):
    pass
