"""provctl's memory of its redirect registrations: one JSON file in the state directory.

The file keeps, per MAC, the `Record` the planner reads (service, URL, when the registration that
opened the window was made, the window's fingerprint, the state), so a window survives restarts.
It is written atomically (temporary file in the same directory, then rename).

`record_outcome` is the pure transition from (previous record, change, outcome) to the next
record: a successful register/update → `active` (the window starts unless it continues the same
one); a failed one → `provision`; a deregistration → `disabled`, or `deprovision` when it failed;
a conflict → `conflict`. `apply_change` runs one change against a client and returns the new
record; one device's failure never raises out of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from reconciler.core.errors import OperationError, RedirectError
from reconciler.core.files import atomic_write
from reconciler.redirect.base import DesiredRegistration, RedirectClient, State
from reconciler.redirect.plan import Record, RedirectChange

log = logging.getLogger(__name__)

RECORDS_FILE = "redirect-records.json"
FORMAT_VERSION = 1

Outcome = Literal["ok", "failed", "conflict"]


def records_path(state_dir: Path) -> Path:
    return state_dir / RECORDS_FILE


def load_records(path: Path) -> dict[str, Record]:
    """The records in `path`; {} when the file does not exist yet.

    An unreadable file is an error, never "no records" (which would forget our registrations).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise OperationError(f"cannot read redirect records {path}: {exc}") from exc
    try:
        data = json.loads(raw)
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        return {mac: Record.from_dict({**entry, "mac": mac})
                for mac, entry in data["records"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OperationError(f"cannot read redirect records {path}: {exc}") from exc


def dump_records(records: Mapping[str, Record]) -> bytes:
    body = {
        "version": FORMAT_VERSION,
        "records": {
            mac: {k: v for k, v in records[mac].to_dict().items() if k != "mac"}
            for mac in sorted(records)
        },
    }
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def save_records(path: Path, records: Mapping[str, Record]) -> None:
    atomic_write(path, dump_records(records))


@contextlib.contextmanager
def understood(service: str, what: str) -> Iterator[None]:
    """Turn an answer a client could not take apart (a vendor API that answers `{"ret": 1,
    "data": "x"}`: KeyError, TypeError, AttributeError, ValueError) into one RedirectError that
    names the service, instead of a traceback. Clients check the shapes they rely on; this is
    the net under them. The traceback is logged at DEBUG, for the case it was our bug."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        log.debug("%s: %s: unexpected answer", service, what, exc_info=True)
        raise RedirectError(service, f"{what}: unexpected answer from the service "
                            f"({type(exc).__name__}: {exc})") from exc


def record_outcome(
    previous: Record | None,
    change: RedirectChange,
    outcome: Outcome,
    now: datetime,
    message: str = "",
) -> Record:
    """The record after `change` was attempted with `outcome`. Pure."""
    stamp = now.isoformat()
    same = previous if previous is not None and previous.service == change.service else None
    if change.action in ("register", "update"):
        continues = (
            same is not None and same.opened == change.opened and same.registered_at is not None
        )
        if outcome == "ok":
            return Record(
                mac=change.mac,
                service=change.service,
                url=change.url,
                registered_at=same.registered_at if continues and same else stamp,
                opened=change.opened,
                state="active",
                updated_at=stamp,
            )
        if outcome == "conflict":
            return Record(
                mac=change.mac,
                service=change.service,
                url=same.url if same else None,
                registered_at=same.registered_at if continues and same else None,
                opened=change.opened,
                state="conflict",
                conflict_blind=change.cause not in ("held-by-other", "steal"),
                updated_at=stamp,
                message=message,
            )
        if same is not None:
            return replace(same, state="provision", updated_at=stamp, message=message)
        return Record(
            mac=change.mac, service=change.service, url=None, registered_at=None,
            opened=change.opened, state="provision", updated_at=stamp, message=message,
        )
    if change.action == "conflict":
        return Record(
            mac=change.mac,
            service=change.service,
            url=same.url if same else None,
            registered_at=same.registered_at if same and same.opened == change.opened else None,
            opened=change.opened,
            state="conflict",
            conflict_blind=same.conflict_blind if same and same.state == "conflict" else False,
            updated_at=stamp,
            message=message or change.reason,
        )
    # deregister
    base = same or Record(
        mac=change.mac, service=change.service, url=change.url, registered_at=None,
        opened=change.opened, state="active",
    )
    state: State = "deprovision" if outcome == "failed" else "disabled"
    return replace(base, state=state, updated_at=stamp, message=message)


def apply_change(
    client: RedirectClient,
    change: RedirectChange,
    want: DesiredRegistration | None,
    previous: Record | None,
    now: datetime,
) -> tuple[Record, RedirectError | None]:
    """Run one planned change; return the next record and the error, if any (never raises
    a RedirectError: one device's failure must not block the others).

    `want` is the device's desired registration (required for register/update).
    """
    if change.action in ("register", "update") and want is None:
        raise ValueError(f"{change.action} {change.mac} needs its desired registration")
    try:
        with understood(change.service, f"{change.action} {change.mac}"):
            if change.action == "conflict":
                pass
            elif change.action == "deregister":
                client.deregister(change.mac)
            else:
                assert want is not None
                if change.steal and not want.steal:
                    want = replace(want, steal=True)
                if change.action == "register":
                    client.register(want)
                else:
                    client.update(want)
    except RedirectError as exc:
        outcome: Outcome = "conflict" if exc.conflict else "failed"
        log.warning("%s %s at %s failed: %s", change.action, change.mac, change.service, exc)
        return record_outcome(previous, change, outcome, now, str(exc)), exc
    return record_outcome(previous, change, "ok", now), None
