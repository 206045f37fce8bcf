"""Rollouts in waves: which phones get a change now, and when the next wave may start.

Pure: no I/O, no clock (`now` is passed in). The inputs are the rollout's spec, the phones it
applies to, what was observed of each phone (from the access logs), and the rollout's state from
the last run; the output is the new state and a decision the plan shows.

- Wave membership is stable: a phone's place is HMAC(key, MAC) read as a fraction in [0, 1), and
  the phone is in the first wave whose cumulative share exceeds it. Adding phones to the fleet
  moves no phone to another wave (a rank-based split would). Canary MACs are always in wave 1.
- A wave advances when the previous wave's gate holds (enough of its phones fetched the new
  config, enough report the new firmware, few enough show errors) and its soak time has passed.
  A wave without phones (a small fleet, 5%) does not wait: the next one starts with it.
- A wave whose gate still fails after twice its soak halts the rollout: nothing more is
  published until a new commit changes what is rolled out (a fix, or a revert: a new rollout
  id, which starts at wave 1) or its gate or soak (the halted rollout resumes at its wave, with
  a fresh soak).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from reconciler.desired.schema import Rollout, duration_value, percent_value


@dataclass(frozen=True)
class Gate:
    """What the previous wave must show before the next starts (None: not checked)."""

    fetched: float | None = None  # share of its phones that fetched the new config
    reports_version: float | None = None  # share reporting the new firmware in the User-Agent
    errors_max: float | None = None  # at most this share with fetch errors

    @classmethod
    def of(cls, model: Rollout) -> Gate:
        g = model.gate
        return cls(*(None if v is None else percent_value(v)
                     for v in (g.fetched, g.reports_version, g.errors_max)))


@dataclass(frozen=True)
class RolloutSpec:
    waves: tuple[float, ...]  # cumulative shares, ascending, the last 1.0
    soak: float  # seconds at least between two waves
    gate: Gate = Gate()
    canary: frozenset[str] = frozenset()  # MACs always in wave 1

    def __post_init__(self) -> None:
        if not self.waves or list(self.waves) != sorted(self.waves) or self.waves[-1] != 1.0:
            raise ValueError("waves must be ascending shares ending at 100%")

    @classmethod
    def of(cls, model: Rollout) -> RolloutSpec:
        return cls(tuple(percent_value(w) for w in model.waves), duration_value(model.soak),
                   Gate.of(model), frozenset(model.canary))

    def digest(self) -> str:
        """What may change without restarting the rollout: soak, gate, canary."""
        body = json.dumps([self.soak, [self.gate.fetched, self.gate.reports_version,
                                       self.gate.errors_max], sorted(self.canary)])
        return hashlib.sha256(body.encode()).hexdigest()[:12]


def place(key: bytes, mac: str) -> float:
    """A phone's stable place in [0, 1) under the fleet key."""
    digest = hmac.new(key, f"provctl-rollout:{mac}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def wave_of(spec: RolloutSpec, key: bytes, mac: str) -> int:
    """The 1-based wave a phone belongs to."""
    if mac in spec.canary:
        return 1
    p = place(key, mac)
    for i, share in enumerate(spec.waves, start=1):
        if p < share:
            return i
    return len(spec.waves)


def members(spec: RolloutSpec, key: bytes, macs: Iterable[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {i: [] for i in range(1, len(spec.waves) + 1)}
    for mac in sorted(macs):
        out[wave_of(spec, key, mac)].append(mac)
    return out


@dataclass(frozen=True)
class Uptake:
    """What was observed of one phone since the rollout's change was published to it."""

    fetched_new: bool = False  # fetched the config that carries the change
    reports_version: bool = False  # its User-Agent reports the new firmware
    errors: bool = False  # its latest request failed


@dataclass(frozen=True)
class GateReading:
    phones: int
    fetched: int
    reporting: int
    errors: int
    lagging: tuple[str, ...] = ()  # phones that keep the gate from holding (for the message)

    def holds(self, gate: Gate) -> bool:
        if self.phones == 0:
            return True
        checks = [(gate.fetched, self.fetched, True), (gate.reports_version, self.reporting, True),
                  (gate.errors_max, self.errors, False)]
        for threshold, count, at_least in checks:
            if threshold is None:
                continue
            share = count / self.phones
            if at_least and share + 1e-9 < threshold:
                return False
            if not at_least and share > threshold + 1e-9:
                return False
        return True

    def show(self) -> str:
        return (f"{self.fetched}/{self.phones} fetched, {self.reporting}/{self.phones} report "
                f"the new version, {self.errors}/{self.phones} with errors")

    def to_json(self) -> dict[str, object]:
        return {"phones": self.phones, "fetched": self.fetched, "reporting": self.reporting,
                "errors": self.errors, "lagging": list(self.lagging[:50])}


def read_gate(gate: Gate, macs: Iterable[str], uptake: Mapping[str, Uptake]) -> GateReading:
    macs = list(macs)
    seen = [uptake.get(m, Uptake()) for m in macs]
    lagging = tuple(m for m, u in zip(macs, seen, strict=True)
                    if (gate.fetched is not None and not u.fetched_new)
                    or (gate.reports_version is not None and not u.reports_version)
                    or (gate.errors_max is not None and u.errors))
    return GateReading(len(macs), sum(u.fetched_new for u in seen),
                       sum(u.reports_version for u in seen), sum(u.errors for u in seen), lagging)


@dataclass(frozen=True)
class RolloutState:
    """What a rollout remembers between runs (kept in the state directory)."""

    id: str  # what is being rolled out: changes when the rollout's change changes
    wave: int = 1  # the highest wave that is published
    started: tuple[float, ...] = ()  # when each published wave started
    halted: str | None = None  # why the rollout stopped, or None
    spec: str = ""  # RolloutSpec.digest() it ran under: a new gate or soak resumes a halt

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "wave": self.wave, "started": list(self.started),
                "halted": self.halted, "spec": self.spec}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RolloutState:
        started = data.get("started") or []
        assert isinstance(started, list)
        wave = data.get("wave", 1)
        halted = data.get("halted")
        return cls(str(data["id"]), int(wave) if isinstance(wave, int | str) else 1,
                   tuple(float(s) for s in started), str(halted) if halted else None,
                   str(data.get("spec") or ""))


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    action: str  # start | advance | soaking | waiting | halted | resumed | done
    reading: GateReading | None = None  # the gate of the wave before the next one
    message: str = ""
    published: frozenset[int] = field(default_factory=frozenset)  # waves that get the change

    def in_rollout(self, wave: int) -> bool:
        return wave in self.published


def step(spec: RolloutSpec, previous: RolloutState | None, rollout_id: str,
         waves: Mapping[int, list[str]], uptake: Mapping[str, Uptake], now: float) -> Decision:
    """Where the rollout stands now, and whether the next wave starts. Pure."""
    last = len(spec.waves)
    digest = spec.digest()
    if previous is None or previous.id != rollout_id:
        # A new change (or a fix commit: a new id) starts at wave 1 (and passes empty waves).
        state = _past_empty(RolloutState(rollout_id, 1, (now,), spec=digest), waves, last, now)
        return Decision(state, "start", None, f"wave {state.wave}/{last} starts",
                        frozenset(range(1, state.wave + 1)))
    state = previous
    if state.wave > last:  # a state from before the waves changed: keep what is published
        state = replace(state, wave=last)
    published = frozenset(range(1, state.wave + 1))
    if state.halted and state.spec and state.spec != digest:
        # The operator changed the gate or the soak: try the halted wave again, soak anew.
        resumed = replace(state, halted=None, spec=digest, started=(*state.started[:-1], now))
        return Decision(resumed, "resumed", None,
                        f"wave {state.wave}/{last} resumes: the rollout's gate or soak changed",
                        published)
    if state.spec != digest:
        state = replace(state, spec=digest)
    if state.halted:
        return Decision(state, "halted", None, state.halted, published)
    if state.wave >= last:
        return Decision(state, "done", None, f"wave {last}/{last} published", published)
    started = state.started[-1] if state.started else now
    reading = read_gate(spec.gate, waves.get(state.wave, []), uptake)
    elapsed = now - started
    if reading.holds(spec.gate):
        if elapsed < spec.soak and reading.phones:
            wait = math.ceil((spec.soak - elapsed) / 60)
            return Decision(state, "soaking", reading,
                            f"wave {state.wave}/{last}: gate holds ({reading.show()}); "
                            f"soaking {wait} min more", published)
        nxt = _past_empty(replace(state, wave=state.wave + 1, started=(*state.started, now)),
                          waves, last, now)
        return Decision(nxt, "advance", reading,
                        f"wave {state.wave}/{last} gate holds ({reading.show()}): "
                        f"wave {nxt.wave}/{last} starts", frozenset(range(1, nxt.wave + 1)))
    if elapsed >= 2 * spec.soak:
        names = ", ".join(reading.lagging[:10]) + (" …" if len(reading.lagging) > 10 else "")
        why = (f"halted at wave {state.wave}/{last}: gate failed after {elapsed / 3600:.1f} h "
               f"({reading.show()}); phones: {names}")
        return Decision(replace(state, halted=why), "halted", reading, why, published)
    return Decision(state, "waiting", reading,
                    f"wave {state.wave}/{last}: waiting for the gate ({reading.show()})",
                    published)


def _past_empty(state: RolloutState, waves: Mapping[int, list[str]], last: int,
                now: float) -> RolloutState:
    """A wave without phones has nothing to soak: the next wave starts with it."""
    while state.wave < last and not waves.get(state.wave):
        state = replace(state, wave=state.wave + 1, started=(*state.started, now))
    return state
