"""A redirect registration sends a phone to its files, so it runs only for phones whose files
are published on their primary target: by this run, or already, per the manifest."""

from __future__ import annotations

from fleet_fixtures import FLEET_SECRET, edit, run

from reconciler.core.errors import TargetError
from reconciler.pipeline.plan import Desired, Drift, FileChange, Observed, published
from reconciler.redirect.clients.local import LocalRegistry
from reconciler.render.addressing import url_token
from reconciler.targets import local as local_mod
from reconciler.targets.base import Put
from reconciler.targets.manifest import Manifest, ManifestEntry

MAC = "001565aabb01"  # redirect: true in the example fleet
REDIRECT = "  redirect: true\n"


def registry(fleet) -> dict:
    path = fleet / "out" / "redirect.json"
    return LocalRegistry("default", path).entries() if path.exists() else {}


class Unwritable(local_mod.LocalTarget):
    """A target that fails as a whole on any publish (the connection drops, say)."""

    def execute(self, ops):
        if any(isinstance(op, Put) for op in ops):  # (the records are in meta, not here)
            raise TargetError(self.name, "connection dropped", transient=True)
        return super().execute(ops)


def test_a_token_directory_that_is_a_symlink_gets_no_registration(fleet, tmp_path, capsys):
    www = fleet / "out" / "www"
    www.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (www / url_token(FLEET_SECRET, MAC)).symlink_to(elsewhere)
    assert run(fleet, "apply") == 1
    out = capsys.readouterr().out
    assert MAC not in registry(fleet)
    assert f"register {MAC} at default: not registered: its file" in out
    assert not any(elsewhere.iterdir())  # nothing was written through the link


def test_a_target_failing_as_a_whole_gets_no_registration_until_it_publishes(
        fleet, monkeypatch, capsys):
    monkeypatch.setattr("reconciler.targets.LocalTarget", Unwritable)
    assert run(fleet, "apply") == 1
    out = capsys.readouterr().out
    assert MAC not in registry(fleet)
    assert "is not published on target local (target local: connection dropped)" in out
    monkeypatch.setattr("reconciler.targets.LocalTarget", local_mod.LocalTarget)
    assert run(fleet, "apply") == 2
    assert registry(fleet)[MAC]["url"] == f"http://localhost:8080/{url_token(FLEET_SECRET, MAC)}/"


def test_a_phone_published_before_is_registered_while_other_files_fail(fleet, monkeypatch):
    edit(fleet / "devices" / "acme.yaml", REDIRECT, "")
    assert run(fleet, "apply") == 2
    edit(fleet / "devices" / "acme.yaml", '  name: reception\n',
         '  name: reception\n' + REDIRECT)
    edit(fleet / "customers" / "globex.yaml", "ntp.globex.example.it", "ntp2.globex.example.it")
    monkeypatch.setattr("reconciler.targets.LocalTarget", Unwritable)
    assert run(fleet, "apply") == 1  # globex's files failed ...
    assert MAC in registry(fleet)  # ... acme's reception phone was already published


def test_a_phone_whose_file_is_gone_from_the_host_is_not_registered(fleet, capsys):
    edit(fleet / "devices" / "acme.yaml", REDIRECT, "")
    assert run(fleet, "apply") == 2
    (fleet / "out" / "www" / url_token(FLEET_SECRET, MAC) / f"{MAC}.cfg").unlink()
    edit(fleet / "devices" / "acme.yaml", '  name: reception\n',
         '  name: reception\n' + REDIRECT)
    capsys.readouterr()
    assert run(fleet, "apply") == 1  # drift is reported (not healed): no registration
    assert MAC not in registry(fleet)
    assert f"its file {url_token(FLEET_SECRET, MAC)[:6]}…/{MAC}.cfg is not published" in (
        capsys.readouterr().out)
    assert run(fleet, "apply", "--heal") == 2
    assert MAC in registry(fleet)


# -- the rule, pure ---------------------------------------------------------------------------


def _observed(**kw):
    files = {p: ManifestEntry("s-" + p, 1) for p in ("ok", "planned", "pending", "gone", "old")}
    files["old"] = ManifestEntry("stale", 1)
    return Observed("t", Manifest(files), pending=frozenset({"pending"}), **kw)


WANT = {p: Desired("s-" + p, 1, "m") for p in ("ok", "planned", "pending", "gone", "old", "new")}
PLANNED = [FileChange("t", "planned", "put", "heal", "s-planned", 1, "m"),
           FileChange("t", "new", "put", "create", "s-new", 1, "m"),
           FileChange("t", "old", "put", "update", "s-old", 1, "m")]
GONE = [Drift("t", "gone", "missing", "file is gone from the host")]


def test_published_is_the_manifest_minus_what_is_unsure_plus_what_this_run_confirmed():
    assert published(WANT, _observed(), PLANNED, GONE, done=set()) == {"ok"}
    assert published(WANT, _observed(), PLANNED, GONE, done={"new", "pending"}) == {
        "ok", "new", "pending"}
    assert published(WANT, _observed(error="unreachable"), [], [], done=set()) == set()
