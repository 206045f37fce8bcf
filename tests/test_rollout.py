"""Rollouts in waves, as a pure scenario: a clock and fetch observations in, decisions out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reconciler.desired.schema import PolicyRollout, Rollout
from reconciler.pipeline.rollout import (
    Gate,
    RolloutSpec,
    RolloutState,
    Uptake,
    members,
    step,
    wave_of,
)

KEY = b"fleet-secret"
H = 3600.0
SPEC = RolloutSpec(waves=(0.05, 0.25, 1.0), soak=24 * H,
                   gate=Gate(fetched=0.95, reports_version=0.90, errors_max=0.01),
                   canary=frozenset({"001565aabb01"}))


def fleet(n: int, start: int = 0) -> list[str]:
    return [f"001565{i:06x}" for i in range(start, start + n)]


def took(macs, version=True):
    return {m: Uptake(fetched_new=True, reports_version=version) for m in macs}


def test_the_yaml_of_a_rollout_becomes_a_spec():
    model = Rollout.model_validate({"canary": ["00:15:65:AA:BB:01"], "waves": ["5%", "25%", "100%"],
                                    "soak": "24h", "gate": {"fetched": "95%",
                                                            "reports_version": "90%",
                                                            "errors_max": "1%"}})
    assert RolloutSpec.of(model) == SPEC
    assert RolloutSpec.of(model.model_copy(update={"soak": "30m"})).soak == 1800
    with pytest.raises(ValueError):
        RolloutSpec(waves=(0.5, 0.25), soak=1)


@pytest.mark.parametrize("body, why", [
    ({"waves": ["5%", "50%"]}, "the last wave must be 100%"),
    ({"waves": ["50%", "25%", "100%"]}, "must grow"),
    ({"waves": [0.05, "100%"]}, "must be a percentage"),  # 0.05: 5% or 0.05%? say it
    ({"waves": ["100%"], "soak": "soon"}, "must be a duration"),
    ({"waves": ["100%"], "soak": 3600}, "must be a duration"),
    ({"waves": ["100%"], "gate": {"fetched": "120%"}}, "between 0% and 100%"),
    ({"waves": ["100%"], "gate": {"fetch": "90%"}}, "Extra inputs"),
    ({"waves": ["100%"], "canary": ["not-a-mac"]}, "MAC"),
])
def test_bad_rollouts_are_refused_with_the_reason(body, why):
    with pytest.raises(ValidationError) as exc:
        Rollout.model_validate(body)
    assert why in str(exc.value)


def test_policy_rollout_counts_phones():
    rollout = PolicyRollout.model_validate({"above": "500 phones", "waves": ["10%", "100%"],
                                            "soak": "2h", "gate": {"fetched": "90%"}})
    assert rollout.above == 500
    assert PolicyRollout.model_validate({"above": 20, "waves": ["100%"]}).above == 20
    with pytest.raises(ValidationError):
        PolicyRollout.model_validate({"above": "many", "waves": ["100%"]})


def test_waves_are_shares_and_the_canary_is_in_wave_one():
    macs = fleet(2000) + ["001565aabb01"]
    waves = members(SPEC, KEY, macs)
    assert "001565aabb01" in waves[1]
    assert 60 <= len(waves[1]) <= 150  # about 5%
    assert 300 <= len(waves[2]) <= 500  # about 20%
    assert sum(len(w) for w in waves.values()) == len(macs)


def test_waves_are_stable_when_the_fleet_grows_by_ten_percent():
    old = fleet(1000)
    before = {m: wave_of(SPEC, KEY, m) for m in old}
    grown = members(SPEC, KEY, old + fleet(100, start=5000))
    after = {m: w for w, ms in grown.items() for m in ms}
    assert all(after[m] == before[m] for m in old)


def test_three_waves_advance_only_when_each_gate_holds_then_halt_then_resume():
    macs = fleet(400) + ["001565aabb01"]
    waves = members(SPEC, KEY, macs)
    t0 = 1_000_000.0
    d = step(SPEC, None, "pin-1", waves, {}, t0)
    assert d.action == "start" and d.published == {1}

    # wave 1 fetched but the soak time has not passed
    d = step(SPEC, d.state, "pin-1", waves, took(waves[1]), t0 + 2 * H)
    assert d.action == "soaking" and d.published == {1}
    # soak passed, but only half of wave 1 fetched: wait
    half = took(waves[1][: len(waves[1]) // 2])
    d = step(SPEC, d.state, "pin-1", waves, half, t0 + 25 * H)
    assert d.action == "waiting" and d.reading is not None and not d.reading.holds(SPEC.gate)
    # now all of wave 1 took it: wave 2 starts
    d = step(SPEC, d.state, "pin-1", waves, took(waves[1]), t0 + 26 * H)
    assert d.action == "advance" and d.published == {1, 2}
    t2 = t0 + 26 * H

    # wave 2 fetches, but keeps reporting the old version: after soak × 2 it halts
    seen = took(waves[1]) | took(waves[2], version=False)
    d = step(SPEC, d.state, "pin-1", waves, seen, t2 + 30 * H)
    assert d.action == "waiting"
    d = step(SPEC, d.state, "pin-1", waves, seen, t2 + 49 * H)
    assert d.action == "halted" and d.published == {1, 2}
    assert "wave 2/3" in d.message and waves[2][0] in d.message
    # halted stays halted, whatever is observed later
    d = step(SPEC, d.state, "pin-1", waves, took(macs), t2 + 80 * H)
    assert d.action == "halted" and d.published == {1, 2}

    # a fix commit (a new rollout id) starts again at wave 1 and runs to the end
    t3 = t2 + 100 * H
    d = step(SPEC, d.state, "pin-2", waves, {}, t3)
    assert d.action == "start" and d.published == {1}
    d = step(SPEC, d.state, "pin-2", waves, took(macs), t3 + 24 * H)
    assert d.action == "advance" and d.published == {1, 2}
    d = step(SPEC, d.state, "pin-2", waves, took(macs), t3 + 48 * H)
    assert d.action == "advance" and d.published == {1, 2, 3}
    d = step(SPEC, d.state, "pin-2", waves, took(macs), t3 + 50 * H)
    assert d.action == "done"


def test_errors_fail_the_gate():
    waves = members(SPEC, KEY, fleet(400))
    d = step(SPEC, None, "p", waves, {}, 0.0)
    bad = {m: Uptake(True, True, errors=True) for m in waves[1]}
    d = step(SPEC, d.state, "p", waves, bad, 25 * H)
    assert d.action == "waiting"
    assert d.reading is not None and d.reading.errors == len(waves[1])


def test_state_round_trips_through_json():
    waves = members(SPEC, KEY, fleet(100))
    d = step(SPEC, None, "p", waves, {}, 5.0)
    assert RolloutState.from_json(d.state.to_json()) == d.state


def test_a_halted_rollout_resumes_when_its_gate_or_soak_changes():
    waves = members(SPEC, KEY, fleet(400))
    d = step(SPEC, None, "p", waves, {}, 0.0)
    d = step(SPEC, d.state, "p", waves, {}, 49 * H)
    assert d.action == "halted"
    looser = RolloutSpec(SPEC.waves, SPEC.soak, Gate(fetched=0.0), SPEC.canary)
    d = step(looser, d.state, "p", waves, {}, 50 * H)
    assert d.action == "resumed" and d.state.halted is None and d.published == {1}
    d = step(looser, d.state, "p", waves, {}, 60 * H)
    assert d.action == "soaking"  # the soak starts again at the resume
    d = step(looser, d.state, "p", waves, {}, 75 * H)
    assert d.action == "advance" and d.published == {1, 2}


def test_a_wave_without_phones_does_not_wait():
    few = RolloutSpec(waves=(0.01, 0.02, 1.0), soak=24 * H, gate=Gate(fetched=1.0))
    macs = [m for m in fleet(200) if wave_of(few, KEY, m) == 3][:5]
    waves = members(few, KEY, macs)
    assert not waves[1] and not waves[2]
    d = step(few, None, "p", waves, {}, 0.0)
    assert d.action == "start" and d.published == {1, 2, 3} and d.state.wave == 3
