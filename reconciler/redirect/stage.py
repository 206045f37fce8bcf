"""The redirect stage of the pipeline: desired registrations, observe, apply, record.

Desired: every device whose `redirect` is true or `{until, steal}`, at the service configured
for its vendor (or `default`), pointing at its provisioning URL on its primary target. Planning
itself is pure and lives in redirect/plan.py; this module only gathers inputs and runs changes.

A registration window is keyed by `opened`: the fingerprint of the device's redirect value and
the revision at which provctl first saw that value (remembered in the state directory), so that
true → false → true in git opens a new window.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.errors import ConfigError, Problem, RedirectError
from reconciler.core.files import atomic_write
from reconciler.desired.schema import RedirectWindow
from reconciler.desired.validate import DesiredState
from reconciler.redirect import make_client
from reconciler.redirect.base import (
    DesiredRegistration,
    Outcomes,
    RateSnapshot,
    RateStats,
    RedirectClient,
    Remote,
    deregister_many,
    rate_note,
    rates,
    register_many,
    update_many,
)
from reconciler.redirect.plan import (
    ACTION_ORDER,
    Environment,
    Record,
    RedirectChange,
    plan_redirects,
)
from reconciler.redirect.state import (
    Outcome,
    load_records,
    record_outcome,
    records_path,
    save_records,
    understood,
)
from reconciler.render.addressing import Addressing

log = logging.getLogger(__name__)


@dataclass
class RedirectSnapshot:
    desired: dict[str, DesiredRegistration]
    remote: dict[str, Remote]
    records: dict[str, Record]
    errors: dict[str, str] = field(default_factory=dict)  # service -> why it was not observed
    memory: dict[str, list[str]] = field(default_factory=dict)  # mac -> [value, first revision]
    env: Environment = field(default_factory=Environment)  # this environment's URLs, stealers


def _memory_path(state_dir: Path) -> Path:
    return state_dir / "redirect-desired.json"


def _load_memory(state_dir: Path) -> dict[str, list[str]]:
    try:
        return json.loads(_memory_path(state_dir).read_text())
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class Addresses:
    """What the redirect stage needs to know of the rendered fleet: the desired state, the
    addressing rules and each phone's effective customer (a pooled phone takes its account's)."""

    state: DesiredState
    addressing: Addressing
    customer_of: Mapping[str, str | None]


def service_for(state: DesiredState, vendor: str) -> str | None:
    services = state.provisioning.value.redirect
    if vendor in services:
        return vendor
    return "default" if "default" in services else None


def redirect_url(addresses: Addresses, mac: str) -> str | None:
    """Where the vendor service sends the phone: its directory, or its file for Snom-style."""
    customer = addresses.customer_of[mac]
    target = addresses.addressing.primary_target(customer)
    if target is None:
        return None
    url = addresses.addressing.provisioning_url(mac, customer, target)
    vendor = addresses.state.devices[mac].value.vendor
    to_file: Callable[[str, str], str] | None = getattr(vendors.get(vendor), "redirect_url", None)
    return to_file(url, mac) if to_file else url


def desired_registrations(addresses: Addresses, memory: dict[str, list[str]]
                          ) -> tuple[dict[str, DesiredRegistration], dict[str, list[str]]]:
    state = addresses.state
    out: dict[str, DesiredRegistration] = {}
    new_memory: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for mac, located in state.devices.items():
        d = located.value
        if d.redirect is False:
            continue
        window = d.redirect if isinstance(d.redirect, RedirectWindow) else RedirectWindow()
        service = service_for(state, d.vendor)
        url = redirect_url(addresses, mac)
        if service is None or url is None:
            why = ("no redirect service is configured for " + d.vendor + " (nor a default)"
                   if service is None else "no target serves this device")
            problems.append(Problem(located.file, located.line("redirect"), "redirect", why))
            continue
        kind = state.provisioning.value.redirect[service].kind
        kinds = vendors.get(d.vendor).redirect_kinds
        if kind != "local" and kind not in kinds:
            problems.append(Problem(located.file, located.line("redirect"), "redirect",
                                    f"redirect service {service!r} ({kind}) does not serve "
                                    f"{d.vendor} phones (it takes: {', '.join(kinds) or 'none'})"))
            continue
        value = json.dumps({"service": service, "until": str(window.until or ""),
                            "steal": window.steal}, sort_keys=True)
        seen = memory.get(mac)
        first = seen[1] if seen and seen[0] == value else state.revision
        new_memory[mac] = [value, first]
        opened = hashlib.sha256(f"{value}@{first}".encode()).hexdigest()[:16]
        out[mac] = DesiredRegistration(
            mac=mac, service=service, url=url, model=d.model, serial=d.serial,
            until=window.until.isoformat() if window.until else None, steal=window.steal,
            opened=opened)
    if problems:
        raise ConfigError(problems)
    return out, new_memory


class Clients:
    """One client per configured service, opened on first use."""

    def __init__(self, state: DesiredState,
                 factory: Callable[..., RedirectClient] = make_client):
        self.state = state
        self.factory = factory
        self._clients: dict[str, RedirectClient] = {}

    def get(self, service: str) -> RedirectClient:
        if service not in self._clients:
            state = self.state
            spec = state.provisioning.value.redirect[service]
            self._clients[service] = self.factory(service, spec, state.secrets.resolve,
                                                  state.root)
        return self._clients[service]

    def rates(self) -> dict[str, RateSnapshot]:
        """Each open service's traffic and current rate (for a progress line)."""
        return rates(self._clients)

    def rate_note(self) -> str:
        """The rates as a progress line shows them (base.rate_note)."""
        return rate_note(self.rates())

    def close(self) -> None:
        for client in self._clients.values():
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's result
                log.debug("closing %s failed", client.name)


def observe(addresses: Addresses, clients: Clients, state_dir: Path) -> RedirectSnapshot:
    """Read-only: provctl's records and what each service says about the MACs involved."""
    memory = _load_memory(state_dir)
    desired, new_memory = desired_registrations(addresses, memory)
    records = load_records(records_path(state_dir))
    services = addresses.state.provisioning.value.redirect
    by_service: dict[str, set[str]] = {}
    for mac, reg in desired.items():
        by_service.setdefault(reg.service, set()).add(mac)
    for mac, rec in records.items():
        if rec.service in services:
            by_service.setdefault(rec.service, set()).add(mac)
    remote: dict[str, Remote] = {}
    errors: dict[str, str] = {}
    stealers: set[str] = set()
    for service, macs in sorted(by_service.items()):
        try:
            client = clients.get(service)
            stealers |= {service} if client.can_steal else set()
            with understood(service, "lookup"):
                remote.update(client.lookup(sorted(macs)))
        except RedirectError as exc:
            errors[service] = str(exc)
    return RedirectSnapshot(desired, remote, records, errors, new_memory,
                            environment(addresses.state, stealers))


def environment(state: DesiredState, can_steal: set[str]) -> Environment:
    """This environment of the fleet: the base URLs of its targets (see redirect/plan.py)."""
    return Environment.of((t.base_url for t in state.provisioning.value.targets.values()),
                          can_steal)


def plan(snapshot: RedirectSnapshot, now: datetime, window_days: int,
         arrived: Mapping[str, datetime] | None = None) -> list[RedirectChange]:
    """`arrived`: mac -> the phone's latest fetch of its own file (ends its window)."""
    return plan_redirects(snapshot.desired, snapshot.remote, snapshot.records, now, window_days,
                          env=snapshot.env, arrived=arrived)


@dataclass
class RedirectResult:
    done: list[RedirectChange] = field(default_factory=list)
    failed: list[tuple[RedirectChange, str]] = field(default_factory=list)
    conflicts: list[tuple[RedirectChange, str]] = field(default_factory=list)  # (change, why)


def apply(changes: list[RedirectChange], snapshot: RedirectSnapshot, clients: Clients,
          state_dir: Path, now: datetime, skip: Mapping[str, str],
          progress: Callable[[int, int], None] | None = None) -> RedirectResult:
    """Run the changes in batches, one per service and action — deregistrations first, then
    updates, then registrations; each MAC gets its own outcome (a failure, or a MAC held by
    another account, never blocks the others); record every outcome.
    `progress(done, total)` is called after each batch.

    `skip`: MACs whose files failed to publish (mac -> why): they are not registered now.
    """
    result = RedirectResult()
    records = dict(snapshot.records)
    try:
        batches: dict[tuple[int, str, str], list[RedirectChange]] = {}
        handled = 0
        for change in changes:
            if change.action in ("register", "update") and change.mac in skip:
                result.failed.append((change, f"not registered: {skip[change.mac]}"))
            elif change.action == "conflict":  # a no-op: recorded, never sent
                result.conflicts.append((change, change.reason))
                records[change.mac] = record_outcome(records.get(change.mac), change, "ok", now)
            else:
                key = (ACTION_ORDER[change.action], change.service, change.action)
                batches.setdefault(key, []).append(change)
                continue
            handled += 1
        if progress is not None:
            progress(handled, len(changes))
        for (_, service, action), batch in sorted(batches.items()):
            client = clients.get(service)
            # while a batch runs, every request refreshes the progress (its rate note)
            with _listening(client, _refresh(progress, handled, len(changes))):
                outcomes = _run_batch(client, service, action, batch, snapshot.desired)
            for change in batch:
                error = outcomes.get(change.mac, RedirectError(service, f"{change.mac}: no "
                                                               "outcome reported"))
                outcome: Outcome = ("ok" if error is None
                                    else "conflict" if error.conflict else "failed")
                if error is not None:
                    log.warning("%s %s at %s failed: %s", change.action, change.mac,
                                change.service, error)
                records[change.mac] = record_outcome(records.get(change.mac), change, outcome,
                                                     now, "" if error is None else str(error))
                if error is None:
                    result.done.append(change)
                    log.info("redirect %s: %s %s", change.service, change.action, change.mac)
                elif error.conflict:
                    result.conflicts.append((change, str(error)))
                else:
                    result.failed.append((change, str(error)))
            handled += len(batch)
            if progress is not None:
                progress(handled, len(changes))
    finally:
        save_records(records_path(state_dir), records)
        atomic_write(_memory_path(state_dir),
                      json.dumps(snapshot.memory, sort_keys=True).encode())
    return result


def _refresh(progress: Callable[[int, int], None] | None, done: int, total: int
             ) -> Callable[[RateSnapshot], None] | None:
    if progress is None:
        return None
    return lambda _: progress(done, total)


@contextmanager
def _listening(client: RedirectClient, listener: Callable[[RateSnapshot], None] | None
               ) -> Iterator[None]:
    """`listener` on the client's request counter (`stats.listener`) for the duration."""
    stats = getattr(client, "stats", None)
    if listener is None or not isinstance(stats, RateStats):
        yield
        return
    stats.listener = listener
    try:
        yield
    finally:
        stats.listener = None


def _run_batch(client: RedirectClient, service: str, action: str, batch: list[RedirectChange],
               desired: Mapping[str, DesiredRegistration]) -> Outcomes:
    """One batch call; an answer the client could not take apart fails the whole batch."""
    wants = []
    for change in batch if action != "deregister" else ():
        want = desired.get(change.mac)
        if want is None:
            raise ValueError(f"{change.action} {change.mac} needs its desired registration")
        wants.append(replace(want, steal=True) if change.steal and not want.steal else want)
    try:
        with understood(service, f"{action} of {len(batch)} MAC(s)"):
            if action == "deregister":
                return deregister_many(client, [c.mac for c in batch])
            return (register_many if action == "register" else update_many)(client, wants)
    except RedirectError as exc:
        return dict.fromkeys((c.mac for c in batch), exc)


def redact_url(url: Any) -> Any:
    """Shorten URL-token path segments so plans and receipts never carry a whole token."""
    if not isinstance(url, str):
        return url
    parts = url.split("/")
    return "/".join(p[:6] + "…" if len(p) == 32 and all(c in "0123456789abcdef" for c in p)
                    else p for p in parts)
