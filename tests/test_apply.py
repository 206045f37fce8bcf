"""The executor: interrupted runs converge, the journal keeps ownership, stop is honoured."""

from __future__ import annotations

from fleet_fixtures import run

from reconciler.core.errors import TargetError
from reconciler.pipeline import apply as apply_mod
from reconciler.pipeline.run import Options, apply
from reconciler.targets import local as local_mod
from reconciler.targets.base import Put
from reconciler.targets.manifest import JOURNAL


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
    assert (meta / JOURNAL).exists()  # the paths it may have written are known
    assert "connection dropped" in capsys.readouterr().out
    monkeypatch.setattr("reconciler.targets.LocalTarget", local_mod.LocalTarget)
    # No "not published by provctl" refusal: the journal says these files are ours.
    assert run(fleet, "apply") == 2
    assert not (meta / JOURNAL).exists()
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
