"""The rollout wiring's pure parts: what a phone's fetches show a gate, whose a deleted path is,
and what the book remembers."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.pipeline import waves
from reconciler.pipeline.rollout import RolloutState
from reconciler.targets.manifest import Manifest, ManifestEntry

CFG = ("local", "tok/001565aabb01.cfg")
BOOT = ("local", "tok/001565aabb01.boot")
T = 1000.0


@dataclass(frozen=True)
class Last:
    ok_at: float | None = None
    ok_sha: str | None = None
    ok_agent: str | None = None
    err_at: float | None = None


MANIFEST = {"local": Manifest({CFG[1]: ManifestEntry("new", 10, firmware="108.86.0.95"),
                               BOOT[1]: ManifestEntry("boot", 5, firmware="108.86.0.95")})}


def agent(text: str) -> str | None:
    return text.split()[-1] if text.startswith("Yealink") else None


def look(lasts, since=T, version="108.86.0.95"):
    return waves.seen([CFG, BOOT], MANIFEST, lasts, since, version, "yealink", agent)


def test_a_phone_that_fetched_the_new_config_and_reports_the_version():
    s = look({CFG: Last(T + 5, "new", "Yealink T46U 108.86.0.95"), BOOT: Last(T + 4, "boot")})
    assert s.uptake == waves.Uptake(True, True, False) and s.took == T + 5
    assert s.reported == T + 5


def test_old_content_old_version_before_the_wave_and_errors_do_not_count():
    old = look({CFG: Last(T + 5, "old", "Yealink T46U 108.86.0.90")})
    assert old.uptake == waves.Uptake(False, False, False)
    still_old = look({CFG: Last(T + 5, "new", "Yealink T46U 108.86.0.90")})
    assert still_old.uptake == waves.Uptake(True, False, False)  # fetched, not yet upgraded
    before = look({CFG: Last(T - 5, "new", "Yealink T46U 108.86.0.95")})
    assert before.uptake == waves.Uptake(False, False, False)
    failing = look({CFG: Last(T + 5, "new", "Yealink T46U 108.86.0.95", err_at=T + 9)})
    assert failing.uptake.errors
    recovered = look({CFG: Last(T + 9, "new", "Yealink T46U 108.86.0.95", err_at=T + 5)})
    assert not recovered.uptake.errors
    never = look({})
    assert never.uptake == waves.Uptake(False, False, False)


def test_a_file_it_never_asks_for_does_not_keep_it_from_counting():
    s = look({CFG: Last(T + 5, "new", "Yealink T46U 108.86.0.95")})  # no request for .boot
    assert s.uptake.fetched_new


def test_a_deleted_path_belongs_to_its_token_directory_or_the_mac_in_its_name():
    dirs = {"tok": "001565aabb01"}
    macs = {"001565aabb01", "000413aabb04"}
    assert waves.owner_of("tok/old-name.cfg", dirs, macs) == "001565aabb01"
    assert waves.owner_of("shared/000413AABB04.xml", dirs, macs) == "000413aabb04"
    assert waves.owner_of("y000000000000.cfg", dirs, macs) is None


def test_the_book_round_trips(tmp_path):
    stored = waves.Stored("firmware", "firmware X", "108.86.0.95", (0.1, 1.0), ("001565aabb01",),
                          RolloutState("abc", 2, (1.0, 2.0), None, "d"),
                          {"001565aabb01": (1, 3.0, 4.0)}, {}, ({"wave": 1},), 5.0, None)
    book = waves.Book({"abc": stored}, {"001565aabb01": "108.86.0.95", "000413aabb04": None})
    assert waves.load_book(tmp_path) == waves.Book()  # nothing yet
    waves.save_book(tmp_path, book)
    assert waves.load_book(tmp_path) == book
    (tmp_path / waves.BOOK).write_text('{"format": 9}')
    try:
        waves.load_book(tmp_path)
    except ValueError as exc:
        assert "format 9" in str(exc)
    else:
        raise AssertionError("an unknown format must not be read as empty")
