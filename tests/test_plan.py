"""Planning is pure: desired digests + an observed snapshot in, an exact plan out."""

from __future__ import annotations

from reconciler.pipeline.plan import Desired, FileChange, Observed, Plan, diff_target
from reconciler.render.addressing import show_path
from reconciler.targets.base import FileStat
from reconciler.targets.manifest import Manifest, ManifestEntry

TOKEN = "0123456789abcdef0123456789abcdef"


def entry(sha: str, size: int = 10, mtime: float = 100.0, fw: str | None = None):
    return ManifestEntry(sha, size, mtime, fw)


def diff(desired, manifest, present=None, **kw):
    opts = dict(prune=True, heal=False, max_delete_percent=50, force=False)
    opts.update(kw)
    return diff_target(desired, Observed("t", Manifest(manifest), present), **opts)


def test_create_update_unchanged_and_prune():
    desired = {"a/x.cfg": Desired("new", 3, "m1"), "a/y.cfg": Desired("same", 10, "m1"),
               "b/z.cfg": Desired("z", 4, "m2")}
    manifest = {"a/x.cfg": entry("old"), "a/y.cfg": entry("same"), "c/gone.cfg": entry("g"),
                "a/w.cfg": entry("w")}
    changes, drift, summary, refusals = diff(desired, manifest)
    assert changes == [
        FileChange("t", "a/w.cfg", "delete", "prune", "w", 10),
        FileChange("t", "a/x.cfg", "put", "update", "new", 3, "m1"),
        FileChange("t", "b/z.cfg", "put", "create", "z", 4, "m2"),
        FileChange("t", "c/gone.cfg", "delete", "prune", "g", 10),
    ]
    assert (summary.unchanged, summary.managed, drift, refusals) == (1, 4, [], [])


def test_prune_beyond_the_limit_is_refused_with_the_numbers():
    manifest = {f"d/{i}.cfg": entry("x") for i in range(10)}
    desired = {f"d/{i}.cfg": Desired("x", 10) for i in range(8)}
    _, _, _, refusals = diff(desired, manifest, max_delete_percent=10)
    assert refusals == ["target t: would delete 2 of 10 managed files (20.0%), above "
                        "policy.max_delete_percent (10%); use --force to allow it"]
    _, _, _, forced = diff(desired, manifest, max_delete_percent=10, force=True)
    assert forced == []
    _, _, _, within = diff(desired, manifest, max_delete_percent=20)
    assert within == []


def test_no_prune_means_no_deletes():
    changes, *_ = diff({}, {"a": entry("x")}, prune=False)
    assert changes == []


def test_drift_is_reported_and_healed_only_when_asked():
    desired = {"a/x.cfg": Desired("s", 10), "a/y.cfg": Desired("s", 10),
               "a/z.cfg": Desired("s", 10)}
    manifest = {p: entry("s") for p in desired}
    present = {"a/x.cfg": FileStat(10, 100.0), "a/y.cfg": FileStat(12, 100.0)}
    changes, drift, summary, _ = diff(desired, manifest, present)
    assert changes == []
    assert [(d.path, d.kind) for d in drift] == [("a/y.cfg", "modified"), ("a/z.cfg", "missing")]
    healed, *_ = diff(desired, manifest, present, heal=True)
    assert [(c.path, c.reason) for c in healed] == [("a/y.cfg", "heal"), ("a/z.cfg", "heal")]


def test_a_file_provctl_did_not_publish_is_never_overwritten_silently():
    desired = {"a/x.cfg": Desired("s", 10)}
    _, _, _, refusals = diff(desired, {}, {"a/x.cfg": FileStat(3, 1.0)})
    assert refusals == ["target t: a/x.cfg exists but was not published by provctl; remove it "
                        "or use --force to replace it"]


def test_downgrade_check_is_consulted_for_pinned_files():
    desired = {"a/x.cfg": Desired("new", 10, "m1", "1.0")}
    manifest = {"a/x.cfg": entry("old", fw="2.0")}
    seen = []

    def downgrade(device, old, new):
        seen.append((device, old, new))
        return "downgrade refused"

    _, _, _, refusals = diff(desired, manifest, downgrade=downgrade)
    assert seen == [("m1", "2.0", "1.0")]
    assert refusals == ["target t: downgrade refused"]


def test_plan_checksum_is_stable_and_changes_with_content():
    a = Plan("r1", (FileChange("t", "p", "put", "create", "s", 1),))
    b = Plan("r2", (FileChange("t", "p", "put", "create", "s", 1),))
    c = Plan("r1", (FileChange("t", "p", "put", "create", "s2", 1),))
    assert a.checksum() == b.checksum() != c.checksum()


def test_plan_checksum_is_the_sha256_of_the_documented_body():
    """Plan files written by earlier versions keep matching: the body is what asdict gave."""
    import hashlib
    import json
    from dataclasses import asdict

    plan = Plan("r", (FileChange("t", "p", "put", "create", "s", 1, "m"),
                      FileChange("t", "q", "delete", "prune", "x", 2)))
    body = {"changes": [asdict(c) for c in plan.changes], "redirects": []}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert plan.checksum() == hashlib.sha256(data).hexdigest()


def test_without_a_full_scan_only_creates_are_checked_and_no_drift_is_judged():
    desired = {"a/x.cfg": Desired("s", 10), "a/new.cfg": Desired("n", 3)}
    manifest = {"a/x.cfg": entry("s")}
    present = {"a/new.cfg": FileStat(3, 1.0)}  # only where files are to be created
    observed = Observed("t", Manifest(manifest), present, scanned=False)
    changes, drift, _, refusals = diff_target(desired, observed, prune=True, heal=True,
                                              max_delete_percent=50, force=False)
    assert drift == []  # a/x.cfg was not listed: trusted, not "missing"
    assert refusals == ["target t: a/new.cfg exists but was not published by provctl; remove "
                        "it or use --force to replace it"]


def test_token_directories_are_shortened_for_display():
    assert show_path(f"{TOKEN}/001565aabb01.cfg") == "012345…/001565aabb01.cfg"
    assert show_path("firmware/x.rom") == "firmware/x.rom"


def test_journalled_paths_are_ours_and_written_again():
    desired = {"a/x.cfg": Desired("s", 10), "a/y.cfg": Desired("s", 10)}
    manifest = {"a/y.cfg": entry("s")}
    observed = Observed("t", Manifest(manifest), {"a/x.cfg": FileStat(10, 1.0)},
                        pending=frozenset({"a/x.cfg", "a/y.cfg", "a/old.cfg"}))
    changes, _, _, refusals = diff_target(desired, observed, prune=True, heal=False,
                                          max_delete_percent=50, force=False)
    assert refusals == []  # a/x.cfg is on the host but journalled: ours, not a foreign file
    assert [(c.path, c.action, c.reason) for c in changes] == [
        ("a/old.cfg", "delete", "prune"), ("a/x.cfg", "put", "create"),
        ("a/y.cfg", "put", "update")]


def test_text_plan_lists_a_bounded_number_of_changes():
    from reconciler.cli.output import plan_text
    from reconciler.pipeline.plan import TargetSummary

    changes = tuple(FileChange("t", f"d/{i:04}.cfg", "put", "create", "s", 1) for i in range(250))
    text = plan_text(Plan("r", changes, targets=(TargetSummary("t", 0, 0),)), limit=200)
    assert "d/0199.cfg" in text and "d/0200.cfg" not in text
    assert "… and 50 more (--format json lists them all)" in text
    assert "Summary: 250 to create" in text


def test_bootstrap_files_are_withdrawn_apart_from_the_deletion_limit():
    """docs/zero-touch.md: a bootstrap file whose window closed goes, pruning on or off, and
    neither its withdrawal nor the file itself counts against max_delete_percent."""
    boot = "b" * 32
    manifest = {f"d/{i}.cfg": entry("x") for i in range(10)}
    manifest.update({f"{boot}/{i}.xml": entry("b") for i in range(20)})
    desired = {f"d/{i}.cfg": Desired("x", 10) for i in range(9)}
    changes, _, summary, refusals = diff(desired, manifest, max_delete_percent=10,
                                         bootstrap=lambda p: p.startswith(boot))
    assert refusals == []  # 1 of the 10 phones' files: 10 %, not 21 of 30
    assert sorted((c.reason, c.path) for c in changes) == [
        ("prune", "d/9.cfg"), *(("withdraw", f"{boot}/{i}.xml") for i in sorted(
            map(str, range(20))))]
    _, _, _, refused = diff(desired, {**manifest, "d/x.cfg": entry("x")}, max_delete_percent=10,
                            bootstrap=lambda p: p.startswith(boot))
    assert refused and "would delete 2 of 11 managed files" in refused[0]
    kept, _, _, _ = diff(desired, manifest, prune=False, bootstrap=lambda p: p.startswith(boot))
    assert {c.reason for c in kept} == {"withdraw"} and len(kept) == 20
