"""Rollouts through the pipeline: a firmware pin in waves, policy.rollout staging a big change,
halting on a gate that fails, and rollback by revert, on a local target with a clock.

The gates here have no thresholds or read no access logs (a halted gate is a wave whose phones
fetched nothing); tests/test_rollout_nginx.py has phones that fetch from a real nginx.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fleet_fixtures import FLEET_SECRET, commit, edit, git, run

from reconciler.pipeline import waves
from reconciler.pipeline.rollout import RolloutSpec, wave_of
from reconciler.pipeline.run import Options, apply, plan
from reconciler.render.addressing import url_token

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
OLD, NEW = "108.86.0.90", "108.86.0.95"
PHONES = [f"0015657a{i:04x}" for i in range(60)]
KEY = waves.rollout_key(FLEET_SECRET)




def www(fleet: Path) -> Path:
    return fleet / "out" / "www"


def cfg(fleet: Path, mac: str) -> str:
    return (www(fleet) / url_token(FLEET_SECRET, mac) / f"{mac}.cfg").read_text()


def firmware_in(fleet: Path, mac: str) -> str | None:
    for line in cfg(fleet, mac).splitlines():
        if line.startswith("static.firmware.url"):
            return line.rsplit("T46U-", 1)[1].removesuffix(".rom")
    return None


ROLLOUT = "{waves: [10%, 50%, 100%], soak: 1h, gate: {}}"


@pytest.fixture
def waved(fleet: Path) -> Path:
    """The test fleet with 60 more T46U phones at acme, all pinned to OLD, applied at T0 - 1 h,
    in git."""
    lines = [f'- {{mac: "{m}", model: yealink/T46U, profile: office-yealink, customer: acme}}'
             for m in PHONES]
    (fleet / "devices" / "wave.yaml").write_text("\n".join(lines) + "\n")
    binary = fleet / "firmware-store" / f"T46U-{OLD}.rom"
    binary.write_bytes(b"the older firmware\n")
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    (fleet / "firmware" / "yealink.yaml").write_text(
        (fleet / "firmware" / "yealink.yaml").read_text().replace("pins: []", "")
        + f"  - {{vendor: yealink, models: [T46U], version: {OLD}, file: T46U-{OLD}.rom,\n"
          f'     sha256: "{sha}", source: firmware-store/T46U-{OLD}.rom}}\n'
          f"pins:\n  - {{models: [yealink/T46U], version: {OLD}, customer: acme}}\n")
    (fleet / ".gitignore").write_text("out/\n.provctl/\n")
    git(fleet, "init", "-q")
    commit(fleet, "fleet on the older firmware")
    assert apply(Options(repo=fleet, now=T0 - H)).exit_code == 2
    assert all(firmware_in(fleet, m) == OLD for m in PHONES)
    return fleet


def pin_new(fleet: Path, rollout: str = ROLLOUT) -> str:
    edit(fleet / "firmware" / "yealink.yaml",
         f"{{models: [yealink/T46U], version: {OLD}, customer: acme}}",
         f"{{models: [yealink/T46U], version: {NEW}, customer: acme,\n"
         f"     rollout: {rollout}}}")
    return commit(fleet, f"acme T46U: firmware {NEW} in waves")


def members(rollout: str = ROLLOUT) -> dict[int, list[str]]:
    import yaml

    from reconciler.desired.schema import Rollout

    spec = RolloutSpec.of(Rollout.model_validate(yaml.safe_load(rollout)))
    acme_t46u = PHONES + ["001565aabb01"]
    out: dict[int, list[str]] = {1: [], 2: [], 3: []}
    for mac in acme_t46u:
        out[wave_of(spec, KEY, mac)].append(mac)
    return out


def changed_phones(result) -> set[str]:
    return {c.device for c in result.plan.changes if c.device}


def test_a_firmware_pin_goes_out_wave_by_wave_and_a_revert_takes_it_back(waved, capsys):
    fleet = waved
    wave = members()
    assert all(wave.values()), wave  # 61 phones: every wave has some
    pin_new(fleet)

    # plan: wave 1 starts; only its phones change, the others keep OLD
    result = plan(Options(repo=fleet, now=T0))
    assert changed_phones(result) == set(wave[1])
    (report,) = result.plan.rollouts
    assert (report.kind, report.action, report.wave, report.waves) == ("firmware", "start", 1, 3)
    assert report.phones == 61 and report.held == len(wave[2]) + len(wave[3])
    assert report.next_phones == len(wave[2])
    assert result.exit_code == 2

    first = apply(Options(repo=fleet, now=T0))
    assert first.exit_code == 2 and first.plan.checksum() == result.plan.checksum()
    assert {m: firmware_in(fleet, m) for m in wave[1]} == dict.fromkeys(wave[1], NEW)
    assert {firmware_in(fleet, m) for m in wave[2] + wave[3]} == {OLD}
    assert (www(fleet) / "firmware" / f"T46U-{NEW}.rom").exists()
    book = waves.load_book(fleet / ".provctl")
    (stored,) = book.rollouts.values()
    assert stored.state.wave == 1 and stored.state.started == (T0.timestamp(),)
    assert set(book.firmware) >= set(PHONES) and book.firmware[wave[2][0]] == OLD
    receipt = json.loads((fleet / ".provctl" / "receipts.jsonl").read_text().splitlines()[-1])
    assert receipt["rollouts"][0]["action"] == "start"
    notes = git(fleet, "notes", "--ref", "provctl", "show", "HEAD")
    assert f"rollout {report.id}" in notes and "wave 1/3 starts" in notes

    capsys.readouterr()
    assert run(fleet, "explain", wave[3][0], "--param", "firmware") == 0
    out = capsys.readouterr().out
    assert f"firmware = {OLD}    <- held (rollout {report.id}: wave 3/3 not yet published)" in out
    assert f"the desired state chooses {NEW} <- customer pin (firmware/yealink.yaml:" in out

    # soaking: nothing changes, the plan says how long
    soaking = apply(Options(repo=fleet, now=T0 + 0.5 * H))
    assert soaking.exit_code == 0 and soaking.plan.rollouts[0].action == "soaking"

    # soak passed (the gate checks nothing): wave 2 goes out, wave 3 still keeps OLD
    second = apply(Options(repo=fleet, now=T0 + 1.1 * H))
    assert second.plan.rollouts[0].action == "advance"
    assert changed_phones(second) == set(wave[2])
    assert {firmware_in(fleet, m) for m in wave[1] + wave[2]} == {NEW}
    assert {firmware_in(fleet, m) for m in wave[3]} == {OLD}

    # history: the phone's wave and when it started
    capsys.readouterr()
    assert run(fleet, "history", wave[2][0]) == 0
    out = capsys.readouterr().out
    assert f"rollout {report.id}" in out and "in wave 2/3, published 2025-03-03T10:06" in out

    # rollback: revert the commit; every phone of waves 1 and 2 goes back at once (a
    # downgrade, but from a rollout that left the desired state: not refused)
    git(fleet, "revert", "--no-edit", "HEAD")
    back = plan(Options(repo=fleet, now=T0 + 1.2 * H))
    assert back.plan.refusals == ()
    assert changed_phones(back) == set(wave[1] + wave[2])
    (gone,) = back.plan.rollouts
    assert gone.id == report.id and gone.action == "removed" and gone.event
    from reconciler.cli import output

    assert (f"removed (a rollback): left the desired state at wave 2/3: the "
            f"{len(wave[1] + wave[2])} phone(s) it gave {NEW} get what the desired state gives "
            "them now, at once") in output.plan_text(back.plan)
    assert apply(Options(repo=fleet, now=T0 + 1.2 * H)).exit_code == 2
    assert {firmware_in(fleet, m) for m in PHONES} == {OLD}
    book = waves.load_book(fleet / ".provctl")
    assert book.rollouts[report.id].closed.startswith("removed from the desired state")
    assert "left the desired state at wave 2/3" in git(fleet, "notes", "--ref", "provctl",
                                                       "show", "HEAD")
    assert plan(Options(repo=fleet, now=T0 + 1.3 * H)).plan.rollouts == ()  # said once


def test_a_wave_that_fetches_nothing_halts_and_nothing_more_is_published(waved, capsys):
    fleet = waved
    wave = members("{waves: [10%, 50%, 100%], soak: 1h, gate: {fetched: 90%}}")
    pin_new(fleet, "{waves: [10%, 50%, 100%], soak: 1h, gate: {fetched: 90%}}")
    assert apply(Options(repo=fleet, now=T0)).exit_code == 2
    waiting = apply(Options(repo=fleet, now=T0 + 1.5 * H))
    assert waiting.plan.rollouts[0].action == "waiting"
    assert waiting.plan.rollouts[0].reading.phones == len(wave[1])
    assert waiting.plan.rollouts[0].reading.fetched == 0
    halted = apply(Options(repo=fleet, now=T0 + 2.1 * H))
    report = halted.plan.rollouts[0]
    assert report.action == "halted" and report.event and halted.exit_code == 0
    assert wave[1][0] in report.message and "halted at wave 1/3" in report.message
    later = apply(Options(repo=fleet, now=T0 + 30 * H))
    assert later.plan.rollouts[0].action == "halted" and not later.plan.rollouts[0].event
    assert {firmware_in(fleet, m) for m in wave[2] + wave[3]} == {OLD}

    capsys.readouterr()
    assert run(fleet, "status") == 0
    out = capsys.readouterr().out
    assert "HALTED: halted at wave 1/3" in out and wave[1][0] in out
    assert run(fleet, "status", "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)
    assert body["rollouts"][report.id]["halted"].startswith("halted at wave 1/3")

    # resume: the operator lowers the gate in a commit; wave 1 tries again with a fresh soak
    edit(fleet / "firmware" / "yealink.yaml", "gate: {fetched: 90%}", "gate: {}")
    commit(fleet, "rollout: no gate")
    resumed = apply(Options(repo=fleet, now=T0 + 31 * H))
    assert resumed.plan.rollouts[0].action == "resumed" and resumed.plan.changes == ()
    advanced = apply(Options(repo=fleet, now=T0 + 32.5 * H))
    assert advanced.plan.rollouts[0].action == "advance"
    assert changed_phones(advanced) == set(wave[2])


def test_the_plan_shows_the_wave_the_gate_and_the_next_wave(waved, capsys):
    fleet = waved
    pin_new(fleet, "{waves: [10%, 50%, 100%], soak: 1h, gate: {fetched: 90%}}")
    assert apply(Options(repo=fleet, now=T0)).exit_code == 2
    wave = members()
    capsys.readouterr()
    from reconciler.cli import output

    result = plan(Options(repo=fleet, now=T0 + 0.5 * H))
    text = output.plan_text(result.plan)
    n = len(wave[1])
    assert (f"wave 1/3 is current (61 phone(s), per wave {n}/{len(wave[2])}/{len(wave[3])}) — "
            f"waiting: waiting for the gate (0/{n} fetched, 0/{n} report the new version, "
            f"0/{n} with errors)") in text
    assert f"gate not met by {n} of {n} phone(s) of wave 1: {wave[1][0]}" in text
    assert f"held back: {len(wave[2]) + len(wave[3])} phone(s) keep their previous firmware" \
        in text
    assert f"next: wave 2/3 would change {len(wave[2])} phone(s)" in text
    body = json.loads(output.plan_json(result.plan))
    (r,) = body["rollouts"]
    assert r["gate"]["phones"] == len(wave[1]) and r["gate"]["fetched"] == 0
    assert r["next"] == {"wave": 2, "phones": len(wave[2]), "changes": 0}
    assert "#### Rollouts" in output.plan_markdown(result.plan)


POLICY = "rollout: {above: 20 phones, waves: [25%, 100%], soak: 2h, gate: {}}"


def test_policy_rollout_stages_a_change_to_many_phones(waved):
    fleet = waved
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7}",
         f"redirect_window_days: 7, {POLICY}}}")
    commit(fleet, "policy: stage big changes")
    assert apply(Options(repo=fleet, now=T0)).plan.changes == ()  # policy alone changes nothing
    edit(fleet / "profiles" / "office-yealink.yaml", "language: it", "language: de")
    commit(fleet, "office-yealink: German")
    from reconciler.desired.schema import PolicyRollout

    spec = RolloutSpec.of(PolicyRollout.model_validate(
        {"above": 20, "waves": ["25%", "100%"], "soak": "2h"}))
    first = plan(Options(repo=fleet, now=T0))
    (report,) = first.plan.rollouts
    affected = changed_phones(first) | {c.device for c in first.plan.held}
    assert len(affected) > 20 and report.kind == "policy" and report.action == "start"
    assert changed_phones(first) == {m for m in affected if wave_of(spec, KEY, m) == 1}
    assert {c.device for c in first.plan.held} == {m for m in affected
                                                    if wave_of(spec, KEY, m) == 2}
    applied = apply(Options(repo=fleet, now=T0))
    assert applied.plan.checksum() == first.plan.checksum()
    late = sorted(c.device for c in first.plan.held)
    early = sorted(changed_phones(first))
    assert "lang.gui = German" in cfg(fleet, early[0])
    assert "lang.gui = Italian" in cfg(fleet, late[0])  # kept as published until its wave
    assert apply(Options(repo=fleet, now=T0 + H)).plan.changes == ()  # soaking
    second = apply(Options(repo=fleet, now=T0 + 2.5 * H))
    assert second.plan.rollouts[0].action == "advance"
    assert changed_phones(second) == set(late) and second.plan.held == ()
    assert "lang.gui = German" in cfg(fleet, late[0])
    done = apply(Options(repo=fleet, now=T0 + 3 * H))
    assert done.plan.changes == () and done.plan.rollouts == ()
    book = waves.load_book(fleet / ".provctl")
    assert book.rollouts[report.id].closed is not None


def test_a_small_change_is_not_staged(waved):
    fleet = waved
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7}",
         f"redirect_window_days: 7, {POLICY}}}")
    edit(fleet / "devices" / "wave.yaml", f'"{PHONES[0]}", model',
         f'"{PHONES[0]}", params: {{language: fr}}, model')
    commit(fleet, "one phone in French")
    result = plan(Options(repo=fleet, now=T0))
    assert changed_phones(result) == {PHONES[0]} and result.plan.held == ()
    assert result.plan.rollouts == ()


def test_a_gate_without_an_access_log_is_a_warning(waved, capsys):
    pin_new(waved, "{waves: [50%, 100%], gate: {fetched: 90%}}")
    assert run(waved, "validate") == 0
    err = capsys.readouterr().err
    assert "warning: firmware/yealink.yaml:" in err and "no target names an access_log" in err
    pin_new_again = (waved / "firmware" / "yealink.yaml").read_text().replace(
        "gate: {fetched: 90%}", "gate: {}")
    (waved / "firmware" / "yealink.yaml").write_text(pin_new_again)
    assert run(waved, "validate") == 0
    assert "access_log" not in capsys.readouterr().err  # a gate of soak alone needs no log


def test_a_canary_must_be_a_known_phone(waved, capsys):
    fleet = waved
    pin_new(fleet, '{canary: ["00:15:65:ff:ff:ff"], waves: [100%]}')
    assert run(fleet, "validate") == 1
    err = capsys.readouterr().err
    assert "firmware/yealink.yaml:" in err and "unknown device 001565ffffff" in err


def test_ten_percent_more_phones_move_no_phone_to_another_wave(waved):
    fleet = waved
    pin_new(fleet)
    assert apply(Options(repo=fleet, now=T0)).exit_code == 2
    before = dict(waves.load_book(fleet / ".provctl").rollouts.popitem()[1].phones)
    more = [f"0015657b{i:04x}" for i in range(7)]  # 61 phones + 7
    with open(fleet / "devices" / "wave.yaml", "a") as fh:
        fh.writelines(f'- {{mac: "{m}", model: yealink/T46U, profile: office-yealink, '
                      f"customer: acme}}\n" for m in more)
    commit(fleet, "seven more phones")
    grown = apply(Options(repo=fleet, now=T0 + 0.2 * H))
    assert grown.plan.rollouts[0].action == "soaking" and grown.plan.rollouts[0].phones == 68
    after = waves.load_book(fleet / ".provctl").rollouts.popitem()[1].phones
    assert {m: w for m, (w, _, _) in after.items() if m in before} == {
        m: w for m, (w, _, _) in before.items()}
    # the new phones: those in wave 1 get NEW, the others start on their installed firmware
    for mac in more:
        assert firmware_in(fleet, mac) == (NEW if after[mac][0] == 1 else None)
    assert {firmware_in(fleet, m) for m, (w, _, _) in before.items() if w > 1} == {OLD}


@pytest.mark.parametrize("forget", [False, True], ids=["book", "manifest"])
def test_the_next_rollout_holds_phones_at_the_version_the_last_one_gave_them(waved, forget):
    """Held phones keep what they were last published with: the book says it, or (a lost
    state directory) the manifest entry published last, not the .boot file's older one."""
    fleet = waved
    pin_new(fleet)
    for hours in (0, 1.1, 2.2):
        apply(Options(repo=fleet, now=T0 + hours * H))
    assert {firmware_in(fleet, m) for m in PHONES} == {NEW}
    newer = fleet / "firmware-store" / "T46U-108.86.0.99.rom"
    newer.write_bytes(b"newer\n")
    catalog = fleet / "firmware" / "yealink.yaml"
    catalog.write_text(catalog.read_text().replace("pins:", (
        "  - {vendor: yealink, models: [T46U], version: 108.86.0.99, file: T46U-108.86.0.99.rom,"
        f' sha256: "{hashlib.sha256(newer.read_bytes()).hexdigest()}", '
        "source: firmware-store/T46U-108.86.0.99.rom}\npins:")).replace(
        f"version: {NEW}, customer: acme", "version: 108.86.0.99, customer: acme"))
    commit(fleet, "acme T46U: 108.86.0.99 in waves")
    if forget:
        (fleet / ".provctl" / waves.BOOK).unlink()
    apply(Options(repo=fleet, now=T0 + 3 * H))
    wave = members()
    assert {firmware_in(fleet, m) for m in wave[1]} == {"108.86.0.99"}
    assert {firmware_in(fleet, m) for m in wave[2] + wave[3]} == {NEW}


def test_a_run_narrowed_to_one_phone_moves_no_wave(waved):
    fleet = waved
    pin_new(fleet)
    assert apply(Options(repo=fleet, now=T0)).exit_code == 2
    wave = members()
    one = wave[2][0]
    narrowed = apply(Options(repo=fleet, now=T0 + 1.1 * H, devices=frozenset({one})))
    assert changed_phones(narrowed) == {one} and firmware_in(fleet, one) == NEW
    (stored,) = waves.load_book(fleet / ".provctl").rollouts.values()
    assert stored.state.wave == 1  # the wave starts with a whole run
    assert waves.load_book(fleet / ".provctl").firmware[one] == NEW  # what it was given
    whole = apply(Options(repo=fleet, now=T0 + 1.2 * H))
    assert whole.plan.rollouts[0].action == "advance"
    assert changed_phones(whole) == set(wave[2]) - {one}


def test_a_damaged_book_is_one_clear_error_not_a_traceback(waved, capsys):
    pin_new(waved)
    assert run(waved, "apply") == 2
    (waved / ".provctl" / waves.BOOK).write_text('{"format": 1, "rollouts": {"x": {"kind": 1}}}')
    capsys.readouterr()
    assert run(waved, "plan") == 1
    err = capsys.readouterr().err
    assert "rollouts.json: damaged (KeyError" in err and "Traceback" not in err
    assert run(waved, "status") == 1
    assert "rollouts.json: damaged" in capsys.readouterr().err
