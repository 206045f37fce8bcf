"""Planning MAC registrations at redirect services: pure, no I/O, no clock (`now` is passed in).

    (desired registrations, observed registrations, provctl's records, now, environment)
        -> [RedirectChange]

Inputs, all keyed by canonical MAC (12 lowercase hex):

- `desired`: the devices whose `redirect` is `true` or `{until, steal}` in git.
- `remote`: what each service says (`Remote.holder` us / nobody / other). A MAC missing here was
  not observed (its service failed to answer): nothing is planned for it.
- `records`: what provctl remembers per MAC (`Record`, persisted by `redirect/state.py`): which
  service, the URL, when the registration that opened the current window was made, the
  fingerprint of the git value that opened it, and the last known state.
- `env` (`Environment`): what this environment of the fleet calls its own — the base URLs of its
  targets — and which services can take a MAC over from another account.

Environments. One fleet often runs several desired states (`main`, `staging`, ...) against the
same vendor account. The service then says "us" for every one of them, and without a rule each
would rewrite the other's registration on every run. An environment is told apart by its
targets: a registered URL is this environment's when it lies under the `base_url` of one of its
targets, or is exactly the URL provctl's record says it registered. Any other URL held by our
account belongs to another environment of the fleet (or was set by hand at the vendor): it is a
conflict, never updated or deregistered, unless the device says `steal: true`. Two
environments must therefore not share a `base_url` (they would share a document root, too).

Rules (one device at a time; a device's result never depends on another's):

1. Desired, window open, nobody holds it → `register` (a failed attempt is retried: state
   `provision`). A window is `registered_at + window_days`, cut short by `until` (inclusive date,
   UTC); it is keyed by `opened`, so a new git value opens a new window.
2. Desired, we hold it with another URL → `update`; we hold it but provctl has no record of it,
   or its record is from an older window → `update` too (adopt it / reopen the window: the record
   written after apply starts the clock).
3. Desired, another account holds it → `conflict` (a no-op, reported), unless the device says
   `steal: true` and the service can take a MAC over → `register` with `steal`. A service that
   cannot (its API has no override) gives `conflict` with cause `cannot-steal`, which says so.
4. Our registration's window elapsed (or its `until` passed) → `deregister`; nothing is registered
   again for that `opened` fingerprint (state `disabled`).
4a. The phone fetched its own file after the registration that opened the window (`arrived`,
   observed in the access logs: it has reached us) → `deregister` with cause `fetched`, and the
   window is over as in rule 4.
5. Not desired any more, we hold it and provctl's record says it registered it → `deregister`.
6. A MAC provctl has no record of (or whose record says it was not ours) is never deregistered.
7. Desired, our account holds it with a URL of another environment → `conflict` (cause
   `other-environment`), unless `steal: true` → `update` with `steal`. Not desired, or its window
   over, and the URL is another environment's → nothing: it is not ours to deregister.

The changes are frozen values with a stable order: deregistrations first (they run before files
are deleted), then updates and registrations (after files are published), then conflicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, get_args

from reconciler.core.errors import UnsafePlan
from reconciler.redirect.base import DesiredRegistration, Remote, State

Action = Literal["register", "update", "deregister", "conflict"]
Cause = Literal[
    "new",  # desired and nobody holds it
    "retry",  # an earlier registration failed (state provision)
    "missing",  # registered in this window, but gone at the vendor: register again
    "url-changed",  # we hold it with another URL
    "window-reopened",  # the device's redirect changed in git: a new window
    "adopt",  # we hold it but provctl has no record: adopt it, the window starts now
    "steal",  # another account holds it and the device says steal: true
    "held-by-other",  # another account holds it (conflict)
    "cannot-steal",  # another account holds it, steal: true, the service cannot (conflict)
    "other-environment",  # our account holds it for another environment of the fleet (conflict)
    "window-elapsed",  # registered_at + window_days passed
    "until-passed",  # the device's redirect.until date passed
    "fetched",  # the phone fetched its own file from us after the registration: it arrived
    "not-desired",  # the device no longer asks for a registration
    "moved",  # the device now uses another redirect service
]

ACTION_ORDER: dict[str, int] = {"deregister": 0, "update": 1, "register": 2, "conflict": 3}
STATES: tuple[str, ...] = get_args(State)
HOLDING: frozenset[str] = frozenset({"active", "provision", "deprovision"})
# Deregistrations that follow from a change in git (not from the clock): the ones that count
# against policy.max_delete_percent, like pruned files.
PRUNE_CAUSES: frozenset[str] = frozenset({"not-desired", "moved"})


@dataclass(frozen=True)
class Record:
    """What provctl remembers about one MAC's registration (persisted by redirect/state.py)."""

    mac: str
    service: str
    url: str | None  # the URL provctl registered (None if it never succeeded)
    registered_at: str | None  # ISO 8601 UTC: the successful registration that opened the window
    opened: str  # fingerprint of the git value that opened the window
    state: State
    # The conflict was found by a write that the observation thought would succeed (the service
    # cannot show other accounts' MACs, e.g. Poly): retried only in a new window or with steal.
    conflict_blind: bool = False
    updated_at: str | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        if data.get("state") not in STATES:
            raise ValueError(f"{data.get('mac')}: unknown state {data.get('state')!r}")
        return cls(
            mac=str(data["mac"]),
            service=str(data["service"]),
            url=data.get("url"),
            registered_at=data.get("registered_at"),
            opened=str(data.get("opened", "")),
            state=data["state"],
            conflict_blind=bool(data.get("conflict_blind", False)),
            updated_at=data.get("updated_at"),
            message=str(data.get("message", "")),
        )


@dataclass(frozen=True)
class RedirectChange:
    action: Action
    mac: str
    service: str
    url: str | None  # the URL to register (register/update); the held URL (deregister)
    reason: str  # for people
    cause: Cause  # for machines
    steal: bool = False
    opened: str = ""  # the window fingerprint a register/update opens or continues

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (ACTION_ORDER[self.action], self.service, self.mac)

    @property
    def is_noop(self) -> bool:
        return self.action == "conflict"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Environment:
    """This environment of the fleet, as far as the redirect planner needs to know it."""

    bases: tuple[str, ...] = ()  # the base_url of every target in provisioning.yaml
    can_steal: frozenset[str] = frozenset()  # services whose API can take a MAC over

    @classmethod
    def of(cls, base_urls: Iterable[str], can_steal: Iterable[str] = ()) -> Environment:
        return cls(tuple(sorted({u if u.endswith("/") else u + "/" for u in base_urls})),
                   frozenset(can_steal))

    def owns(self, url: str | None, record: Record | None) -> bool:
        """Whether a URL our account holds is this environment's. A service that does not
        show the URL (None) cannot tell us otherwise: the record decides, as before."""
        if url is None or (record is not None and record.url == url):
            return True
        return any(url.startswith(base) for base in self.bases)


# -- windows --------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def until_end(until: str) -> datetime:
    """`until` is inclusive: the registration may stay through that whole day (UTC)."""
    return datetime.combine(date.fromisoformat(until) + timedelta(days=1), time(), tzinfo=UTC)


def window_end(registered_at: str, window_days: int, until: str | None = None) -> datetime:
    end = parse_time(registered_at) + timedelta(days=window_days)
    return min(end, until_end(until)) if until else end


def _same_window(record: Record | None, want: DesiredRegistration) -> bool:
    return (
        record is not None
        and record.service == want.service
        and record.opened == want.opened
        and record.registered_at is not None
    )


def arrived_after(record: Record, came: datetime | None) -> bool:
    """Whether the phone fetched from us after the registration that opened its window.

    Access logs in the combined format keep whole seconds, so a fetch logged in the second of
    the registration counts (a phone that fetched from us then does not need the redirect).
    """
    return came is not None and record.registered_at is not None and (
        came >= parse_time(record.registered_at).replace(microsecond=0))


def window_open(
    want: DesiredRegistration | None, record: Record | None, now: datetime, window_days: int,
    came: datetime | None = None,
) -> bool:
    """Whether the device should be registered now (desired, window not over, not arrived)."""
    if want is None:
        return False
    if want.until and now >= until_end(want.until):
        return False
    if record is not None and _same_window(record, want):
        assert record.registered_at is not None
        if arrived_after(record, came):
            return False
        return now < window_end(record.registered_at, window_days, want.until)
    return True


# -- planning -------------------------------------------------------------------------------


def plan_redirects(
    desired: Mapping[str, DesiredRegistration],
    remote: Mapping[str, Remote],
    records: Mapping[str, Record],
    now: datetime,
    window_days: int,
    *,
    env: Environment,
    arrived: Mapping[str, datetime] | None = None,
) -> list[RedirectChange]:
    """Every change needed to bring the redirect services to the desired state. Pure.

    `arrived`: per MAC, the latest fetch of the phone's own file seen in the access logs.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    arrived = arrived or {}
    changes: list[RedirectChange] = []
    for mac in sorted(set(desired) | set(records)):
        changes.extend(_plan_one(mac, desired.get(mac), remote.get(mac), records.get(mac), now,
                                 window_days, env, arrived.get(mac)))
    return sorted(changes, key=lambda change: change.sort_key)


def _plan_one(
    mac: str,
    want: DesiredRegistration | None,
    seen: Remote | None,
    record: Record | None,
    now: datetime,
    window_days: int,
    env: Environment,
    came: datetime | None = None,
) -> list[RedirectChange]:
    if want is None:
        return _plan_unwanted(mac, seen, record, env)
    out: list[RedirectChange] = []
    if record is not None and record.service != want.service:
        if record.state in HOLDING:
            out.append(
                RedirectChange(
                    "deregister", mac, record.service, record.url,
                    f"moved to redirect service {want.service}", "moved",
                )
            )
        record = None
    if seen is None:
        return out
    return out + _plan_wanted(mac, want, seen, record, now, window_days, env, came)


def _plan_unwanted(mac: str, seen: Remote | None, record: Record | None,
                   env: Environment) -> list[RedirectChange]:
    if record is None or seen is None or record.state not in HOLDING or seen.holder != "us":
        return []
    if not env.owns(seen.url, record):
        return []  # another environment registered it since: not ours to deregister
    return [
        RedirectChange(
            "deregister", mac, record.service, seen.url or record.url,
            "the device no longer asks for a redirect registration", "not-desired",
        )
    ]


def _plan_wanted(
    mac: str,
    want: DesiredRegistration,
    seen: Remote,
    record: Record | None,
    now: datetime,
    window_days: int,
    env: Environment,
    came: datetime | None = None,
) -> list[RedirectChange]:
    # A registration at our account for another environment of the fleet is not ours.
    ours = seen.holder == "us" and env.owns(seen.url, record)
    holding = record is not None and record.state in HOLDING

    def change(action: Action, reason: str, cause: Cause, *, steal: bool = False):
        url = seen.url if action == "deregister" else want.url
        return [RedirectChange(action, mac, want.service, url, reason, cause, steal, want.opened)]

    same_window = _same_window(record, want)
    if same_window:
        assert record is not None and record.registered_at is not None
        end = window_end(record.registered_at, window_days, want.until)
        if now >= end:
            if ours and holding:
                cause: Cause = "window-elapsed"
                if want.until and end == until_end(want.until):
                    cause = "until-passed"
                return change("deregister", f"window ended {end.isoformat()}", cause)
            return []
        if arrived_after(record, came):
            assert came is not None
            if ours and holding:
                return change("deregister", f"the phone fetched its file at {came.isoformat()}",
                              "fetched")
            return []
    if want.until and now >= until_end(want.until):
        if ours and holding:
            return change("deregister", f"redirect.until {want.until} passed", "until-passed")
        return []

    if seen.holder == "other":
        if want.steal and want.service not in env.can_steal:
            return change("conflict", _CANNOT_STEAL.format(service=want.service),
                          "cannot-steal")
        if want.steal:
            return change(
                "register", "held by another account; the device says steal: true", "steal",
                steal=True,
            )
        return change("conflict", "held by another account (set steal: true to take it)",
                      "held-by-other")

    if seen.holder == "us" and not ours:
        if want.steal:
            return change("update", "registered by our account for another environment; the "
                          "device says steal: true", "steal", steal=True)
        return change(
            "conflict",
            f"registered by our account with {_redact(seen.url)}, which is not under a "
            "base_url of this environment's targets (another environment of the fleet, or "
            "set by hand at the vendor); left alone: set steal: true on the device to take it",
            "other-environment",
        )

    if seen.holder == "nobody":
        if (
            record is not None
            and record.state == "conflict"
            and record.conflict_blind
            and record.opened == want.opened
        ):
            if want.steal and want.service not in env.can_steal:
                return change("conflict", _CANNOT_STEAL.format(service=want.service),
                              "cannot-steal")
            if want.steal:
                return change("register", "held by another account at the last attempt; "
                              "the device says steal: true", "steal", steal=True)
            return change(
                "conflict",
                "another account held it at the last attempt (this service does not show "
                "other accounts' MACs); change redirect in git or set steal: true to retry",
                "held-by-other",
            )
        if record is not None and record.state == "provision":
            return change("register", "retrying a failed registration", "retry")
        if same_window:
            return change("register", "registered in this window but gone at the vendor",
                          "missing")
        return change("register", "not registered", "new")

    # we hold it
    if record is None:
        return change("update", "registered without a provctl record; adopting it "
                      "(its window starts now)", "adopt")
    if not same_window:
        if record.opened != want.opened:
            return change("update", "redirect changed in git: a new window", "window-reopened")
        return change("update", "registered although the last attempt failed; confirming",
                      "retry")
    if seen.url != want.url:
        return change("update", "registered with another URL", "url-changed")
    return []


_CANNOT_STEAL = (
    "held by another account; the device says steal: true, but redirect service {service} "
    "cannot take a MAC over from another account (its API has no override): have the holder "
    "release it, then the next run registers it"
)


def _redact(url: str | None) -> str:
    """A URL for a plan people read: token-like path segments shortened."""
    if url is None:
        return "an unknown URL"
    return "/".join(p[:6] + "…" if len(p) >= 16 and all(c in "0123456789abcdef" for c in p)
                    else p for p in url.split("/"))


# -- states ---------------------------------------------------------------------------------


def device_states(
    desired: Mapping[str, DesiredRegistration],
    remote: Mapping[str, Remote],
    records: Mapping[str, Record],
    now: datetime,
    window_days: int,
    *,
    env: Environment,
    arrived: Mapping[str, datetime] | None = None,
) -> dict[str, State]:
    """Each known device's redirect state from an observation (for status and plan output).

    Devices in neither `desired` nor `records` are `disabled`. Without an observation of a MAC
    the recorded state is reported.
    """
    states: dict[str, State] = {}
    arrived = arrived or {}
    for mac in sorted(set(desired) | set(records)):
        want, seen, record = desired.get(mac), remote.get(mac), records.get(mac)
        if record is not None and want is not None and record.service != want.service:
            record = None
        states[mac] = _state(want, seen, record, now, window_days, env, arrived.get(mac))
    return states


def recorded_state(record: Record | None) -> State:
    """The state provctl last recorded (status without observing the services)."""
    return record.state if record is not None else "disabled"


def _state(
    want: DesiredRegistration | None,
    seen: Remote | None,
    record: Record | None,
    now: datetime,
    window_days: int,
    env: Environment,
    came: datetime | None = None,
) -> State:
    if seen is None:
        return recorded_state(record)
    wanted = window_open(want, record, now, window_days, came)
    if seen.holder == "us" and not env.owns(seen.url, record):
        return "conflict" if wanted else "disabled"
    if seen.holder == "us":
        if not wanted and record is not None and record.state == "deprovision":
            return "deprovision"
        return "active"
    if seen.holder == "other":
        return "conflict" if wanted else "disabled"
    if wanted and record is not None:
        if record.state == "provision":
            return "provision"
        if record.state == "conflict" and record.conflict_blind and want is not None and (
            record.opened == want.opened
        ):
            return "conflict"
    return "disabled"


# -- safety ---------------------------------------------------------------------------------


def deregistration_count(
    changes: Iterable[RedirectChange], records: Mapping[str, Record]
) -> tuple[int, int]:
    """(deregistrations caused by git changes, registrations provctl holds)."""
    pruned = sum(1 for c in changes if c.action == "deregister" and c.cause in PRUNE_CAUSES)
    held = sum(1 for r in records.values() if r.state in HOLDING)
    return pruned, held


def raise_if_unsafe(
    changes: Iterable[RedirectChange],
    records: Mapping[str, Record],
    max_delete_percent: float,
    *,
    force: bool = False,
) -> None:
    """Refuse a plan that deregisters more than `max_delete_percent` of our registrations.

    Only deregistrations caused by git (device removed, redirect turned off, service moved)
    count; those at the end of a window are the normal, expected path and do not.
    """
    if force:
        return
    pruned, held = deregistration_count(changes, records)
    if pruned and pruned * 100 > max_delete_percent * max(held, pruned):
        raise UnsafePlan(
            f"refusing to deregister {pruned} of {max(held, pruned)} redirect registrations "
            f"(more than policy.max_delete_percent={max_delete_percent:g}%); "
            "use --force if this is intended"
        )
