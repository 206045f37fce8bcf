"""The executor: interrupted runs converge, the journal keeps ownership, stop is honoured."""

from __future__ import annotations

import hashlib

import pytest
from fleet_fixtures import edit, run

from reconciler.core.errors import TargetError
from reconciler.pipeline import apply as apply_mod
from reconciler.pipeline.run import Options, apply, observe_target, plan
from reconciler.targets import local as local_mod
from reconciler.targets import manifest as records
from reconciler.targets.base import OpResult, Put
from reconciler.targets.manifest import JOURNAL, JOURNAL_DIR


class Dropping(local_mod.LocalTarget):
    """A local target whose 'connection' drops after `budget` published config files."""

    budget = 3

    def execute(self, ops):
        puts = [op for op in ops if isinstance(op, Put)]  # (records go to meta, not here)
        if puts and Dropping.budget <= 0:
            raise TargetError(self.name, "connection dropped", transient=True)
        if puts:
            done = super().execute(ops[: Dropping.budget])
            Dropping.budget = 0
            raise_after = len(ops) > len(done)
            if raise_after:
                raise TargetError(self.name, "connection dropped", transient=True)
            return done
        return super().execute(ops)


def test_a_run_dropped_mid_apply_converges_on_the_next(fleet, monkeypatch, capsys):
    monkeypatch.setattr(apply_mod, "BATCH", 5)
    monkeypatch.setattr("reconciler.targets.LocalTarget", Dropping)
    assert run(fleet, "apply") == 1
    meta = fleet / "out" / ".provctl-www"  # the records, beside the served tree
    assert list((meta / JOURNAL_DIR).glob("*.json"))  # the paths it may have written are known
    assert "connection dropped" in capsys.readouterr().out
    monkeypatch.setattr("reconciler.targets.LocalTarget", local_mod.LocalTarget)
    # No "not published by provctl" refusal: the journal says these files are ours.
    assert run(fleet, "apply") == 2
    assert not (meta / JOURNAL_DIR).exists() and not (meta / JOURNAL).exists()
    assert run(fleet, "apply") == 0


def test_stop_between_batches_records_what_was_done(fleet, monkeypatch):
    monkeypatch.setattr(apply_mod, "BATCH", 4)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2  # let two batches through

    result = apply(Options(repo=fleet, stop=stop))
    target = result.results["local"]
    assert len(target.done) == 8 and "SIGTERM" in str(target.error)
    assert result.exit_code == 1
    assert apply(Options(repo=fleet)).exit_code == 2
    assert apply(Options(repo=fleet)).exit_code == 0


def test_firmware_is_verified_after_upload(fleet, monkeypatch):
    original = local_mod.LocalTarget.read

    def corrupt(self, path):
        data = original(self, path)
        return b"corrupted" if path.startswith("firmware/") and data else data

    monkeypatch.setattr(local_mod.LocalTarget, "read", corrupt)
    result = apply(Options(repo=fleet))
    failed = result.results["local"].failed
    assert [i.path for i in failed] == ["firmware/T46U-108.86.0.95.rom"]
    assert "does not match the catalog's sha256 after upload" in failed[0].error


# --- the journal: a crash anywhere converges; costs do not grow with the run ---------------


class Crash(BaseException):
    """The process dies here (no except clause of provctl catches a BaseException)."""


class Crashing(local_mod.LocalTarget):
    """Dies after `budget` file operations on phones' files, in the middle of a batch (the
    records go to the meta store, not through here)."""

    budget = 0

    def execute(self, ops):
        out = []
        for op in ops:
            if Crashing.budget <= 0:
                raise Crash()
            Crashing.budget -= 1
            out += super().execute([op])
        return out


META = ("out", ".provctl-www")  # where a local target at out/www keeps its records


def meta_of(fleet):
    return fleet.joinpath(*META)


def published(fleet) -> dict[str, bytes]:
    www = fleet / "out" / "www"
    return {p.relative_to(www).as_posix(): p.read_bytes() for p in www.rglob("*")
            if p.is_file()}


def desired_bytes(fleet) -> dict[str, bytes]:
    from reconciler.pipeline.run import load_desired

    desired = load_desired(Options(repo=fleet, use_cache=False))
    return {path: art.content() for path, art in desired.artifacts["local"].items()}


@pytest.mark.parametrize("budget", [0, 1, 4, 5, 6, 11, 22])
def test_a_crash_anywhere_in_the_puts_converges(fleet, monkeypatch, budget):
    monkeypatch.setattr(apply_mod, "BATCH", 5)
    monkeypatch.setattr("reconciler.targets.LocalTarget", Crashing)
    Crashing.budget = budget
    with pytest.raises(Crash):
        apply(Options(repo=fleet))
    monkeypatch.setattr("reconciler.targets.LocalTarget", local_mod.LocalTarget)
    result = apply(Options(repo=fleet))  # no "not published by provctl" refusal
    assert result.exit_code == 2, result.plan.refusals
    written = {i.path for i in result.results["local"].done}
    assert len(written) <= len(desired_bytes(fleet)) - budget + 5  # what was confirmed stays
    assert apply(Options(repo=fleet)).exit_code == 0
    assert published(fleet) == desired_bytes(fleet)
    assert not (meta_of(fleet) / JOURNAL_DIR).exists()


@pytest.mark.parametrize("where", [0.0, 0.5, 0.99])
def test_a_crash_in_the_deletes_converges(fleet, monkeypatch, where):
    monkeypatch.setattr(apply_mod, "BATCH", 2)
    assert apply(Options(repo=fleet)).exit_code == 2
    edit(fleet / "provisioning.yaml", "max_delete_percent: 10", "max_delete_percent: 100")
    (fleet / "devices" / "globex.yaml").write_text("[]\n")
    (fleet / "assignments" / "globex.yaml").unlink()
    changes = plan(Options(repo=fleet)).plan.changes
    assert sum(c.action == "delete" for c in changes) >= 3
    monkeypatch.setattr("reconciler.targets.LocalTarget", Crashing)
    Crashing.budget = int(where * len(changes))
    with pytest.raises(Crash):
        apply(Options(repo=fleet))
    monkeypatch.setattr("reconciler.targets.LocalTarget", local_mod.LocalTarget)
    assert apply(Options(repo=fleet)).exit_code == 2
    assert apply(Options(repo=fleet)).exit_code == 0
    assert published(fleet) == desired_bytes(fleet)


def test_a_crash_after_the_manifest_converges(fleet, monkeypatch):
    """The run dies after writing its manifest, before removing its journal records."""

    original = local_mod.LocalTree.execute

    def dies_cleaning_up(self, ops):
        if any(op.path.startswith(f"{JOURNAL_DIR}/") and not isinstance(op, Put) for op in ops):
            raise Crash()
        return original(self, ops)

    monkeypatch.setattr(local_mod.LocalTree, "execute", dies_cleaning_up)
    with pytest.raises(Crash):
        apply(Options(repo=fleet))
    monkeypatch.setattr(local_mod.LocalTree, "execute", original)
    journal = meta_of(fleet) / JOURNAL_DIR
    assert list(journal.glob("*.json"))
    result = apply(Options(repo=fleet))
    assert result.exit_code == 0 and not result.plan.changes  # the records: already held
    edit(fleet / "devices" / "acme.yaml", "Europe/Lisbon", "Europe/Rome")
    assert apply(Options(repo=fleet)).exit_code == 2
    assert not journal.exists()  # removed with the next manifest written
    assert published(fleet) == desired_bytes(fleet)


def test_records_the_manifest_holds_are_never_applied_again(fleet, monkeypatch):
    """Records whose removal failed must not win over a newer manifest (a no-op stays one)."""

    original = local_mod.LocalTree.execute

    def keeps_records(self, ops):
        kept = [op for op in ops if not isinstance(op, Put)
                and op.path.startswith(f"{JOURNAL_DIR}/000000000002-")]
        done = original(self, [op for op in ops if op not in kept])
        return done + [OpResult(op, error="permission denied") for op in kept]

    assert apply(Options(repo=fleet)).exit_code == 2  # generation 1
    monkeypatch.setattr(local_mod.LocalTree, "execute", keeps_records)
    edit(fleet / "devices" / "acme.yaml", "Europe/Lisbon", "Europe/Rome")
    assert apply(Options(repo=fleet)).exit_code == 2  # generation 2: its records stay
    edit(fleet / "devices" / "acme.yaml", "Europe/Rome", "Europe/Lisbon")
    assert apply(Options(repo=fleet)).exit_code == 2  # generation 3: the file as it was
    journal = meta_of(fleet) / JOURNAL_DIR
    assert list(journal.glob("000000000002-*.json"))  # left behind, saying "Europe/Rome"
    monkeypatch.setattr(local_mod.LocalTree, "execute", original)
    result = apply(Options(repo=fleet))
    assert (result.exit_code, result.plan.changes) == (0, ())
    assert published(fleet) == desired_bytes(fleet)


def test_the_manifest_is_written_once_and_records_stay_small(fleet, monkeypatch):
    monkeypatch.setattr(apply_mod, "BATCH", 4)
    sizes = []
    written = []
    original, write = local_mod.LocalTree.execute, records.write

    def spy(self, ops):
        sizes.extend(len(op.data) for op in ops
                     if isinstance(op, Put) and op.path.startswith(f"{JOURNAL_DIR}/"))
        return original(self, ops)

    def count(target, manifest):
        written.append(manifest)
        write(target, manifest)

    monkeypatch.setattr(local_mod.LocalTree, "execute", spy)
    monkeypatch.setattr(records, "write", count)
    result = apply(Options(repo=fleet))
    assert result.exit_code == 2 and len(written) == 1
    n = len(result.results["local"].done)
    assert len(sizes) >= n // 4 and max(sizes) < 4 * 2 * 200  # one record per batch, each small


def test_a_small_apply_on_a_large_target_writes_records_not_the_manifest(fleet, monkeypatch):
    """The records are the manifest's delta until they grow: then it is rewritten, once."""
    monkeypatch.setattr(records, "COMPACT_BELOW", 0)  # the example fleet as a large one
    monkeypatch.setattr(records, "MAX_RECORDS", 5)
    assert apply(Options(repo=fleet)).exit_code == 2
    www, meta = fleet / "out" / "www", meta_of(fleet)
    manifest = (meta / "manifest.json").read_bytes()
    assert not (meta / JOURNAL_DIR).exists()  # a first apply writes the manifest
    for zone in ("Europe/Rome", "Europe/Paris"):
        edit(fleet / "devices" / "acme.yaml", "Europe/Lisbon" if zone == "Europe/Rome"
             else "Europe/Rome", zone)
        result = apply(Options(repo=fleet))
        assert result.exit_code == 2 and len(result.results["local"].done) == 1
        assert (meta / "manifest.json").read_bytes() == manifest  # untouched
        assert apply(Options(repo=fleet)).exit_code == 0
        assert published(fleet) == desired_bytes(fleet)
    observed = observe_target(local_mod.LocalTarget("local", www), {}, False, False)
    assert {p: e.sha256 for p, e in observed.manifest.files.items()} == {
        p: hashlib.sha256(data).hexdigest() for p, data in desired_bytes(fleet).items()}
    assert len(observed.journal) == 4 and not observed.pending
    edit(fleet / "devices" / "acme.yaml", "Europe/Paris", "Europe/Lisbon")
    assert apply(Options(repo=fleet)).exit_code == 2  # past five records: compacted
    assert (meta / "manifest.json").read_bytes() != manifest
    assert not (meta / JOURNAL_DIR).exists()
    assert apply(Options(repo=fleet)).exit_code == 0
    assert published(fleet) == desired_bytes(fleet)


def test_a_crash_with_records_as_the_delta_converges(fleet, monkeypatch):
    monkeypatch.setattr(records, "COMPACT_BELOW", 0)
    assert apply(Options(repo=fleet)).exit_code == 2
    edit(fleet / "devices" / "acme.yaml", "Europe/Lisbon", "Europe/Rome")
    assert apply(Options(repo=fleet)).exit_code == 2  # its records stay
    edit(fleet / "customers" / "globex.yaml", "globex", "globex")  # no-op edit, same bytes
    edit(fleet / "defaults.yaml", "pool.ntp.org", "ntp.example.net")  # every phone
    monkeypatch.setattr(apply_mod, "BATCH", 4)
    monkeypatch.setattr("reconciler.targets.LocalTarget", Crashing)
    Crashing.budget = 9
    with pytest.raises(Crash):
        apply(Options(repo=fleet))
    monkeypatch.setattr("reconciler.targets.LocalTarget", local_mod.LocalTarget)
    result = apply(Options(repo=fleet))
    assert result.exit_code == 2 and not result.plan.refusals
    assert apply(Options(repo=fleet)).exit_code == 0
    assert published(fleet) == desired_bytes(fleet)
