"""provctl's redirect records: the file, and the transitions after each attempted change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.errors import OperationError, RedirectError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.plan import Record, RedirectChange
from reconciler.redirect.state import (
    apply_change,
    load_records,
    record_outcome,
    records_path,
    save_records,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
EARLIER = (NOW - timedelta(days=2)).isoformat()
M = "001565aabb01"
U1, U2 = "https://prov.example.net/a/", "https://prov.example.net/b/"


def change(action, cause="new", url=U1, opened="o1", steal=False):
    return RedirectChange(action, M, "yealink", url, "why", cause, steal, opened)


def active(opened="o1", at=EARLIER, url=U1):
    return Record(M, "yealink", url, at, opened, "active")


# -- the file -------------------------------------------------------------------------------


def test_records_round_trip_and_the_file_is_stable(tmp_path):
    path = records_path(tmp_path / "state")
    records = {M: active(), "001565aabb00": Record("001565aabb00", "snom", None, None, "x",
                                                   "provision", message="HTTP 500")}
    save_records(path, records)
    assert load_records(path) == records
    first = path.read_bytes()
    save_records(path, dict(reversed(list(records.items()))))
    assert path.read_bytes() == first  # sorted: byte-stable
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_missing_file_is_no_records_but_a_corrupt_one_is_an_error(tmp_path):
    path = tmp_path / "redirect-records.json"
    assert load_records(path) == {}
    path.write_text("{not json")
    with pytest.raises(OperationError, match="cannot read redirect records"):
        load_records(path)
    path.write_text(json.dumps({"version": 99, "records": {}}))
    with pytest.raises(OperationError, match="unsupported version"):
        load_records(path)


# -- transitions ----------------------------------------------------------------------------


def test_successful_registration_starts_the_window():
    record = record_outcome(None, change("register"), "ok", NOW)
    assert record == Record(M, "yealink", U1, NOW.isoformat(), "o1", "active",
                            updated_at=NOW.isoformat())


def test_url_update_in_the_same_window_keeps_the_clock():
    record = record_outcome(active(), change("update", "url-changed", url=U2), "ok", NOW)
    assert record.registered_at == EARLIER and record.url == U2 and record.state == "active"


def test_new_git_value_restarts_the_clock():
    record = record_outcome(active(), change("update", "window-reopened", opened="o2"), "ok",
                            NOW)
    assert record.registered_at == NOW.isoformat() and record.opened == "o2"


def test_failed_registration_is_provision_and_keeps_what_was_there():
    fresh = record_outcome(None, change("register"), "failed", NOW, "HTTP 500")
    assert (fresh.state, fresh.registered_at, fresh.message) == ("provision", None, "HTTP 500")
    kept = record_outcome(active(), change("update", "url-changed", url=U2), "failed", NOW)
    assert (kept.state, kept.url, kept.registered_at) == ("provision", U1, EARLIER)


def test_conflicts():
    blind = record_outcome(None, change("register"), "conflict", NOW)
    assert blind.state == "conflict" and blind.conflict_blind
    seen = record_outcome(None, change("conflict", "held-by-other"), "ok", NOW)
    assert seen.state == "conflict" and not seen.conflict_blind
    stolen = record_outcome(None, change("register", "steal", steal=True), "conflict", NOW)
    assert not stolen.conflict_blind


def test_deregistration():
    done = record_outcome(active(), change("deregister", "window-elapsed"), "ok", NOW)
    assert (done.state, done.registered_at, done.opened) == ("disabled", EARLIER, "o1")
    failed = record_outcome(active(), change("deregister", "not-desired"), "failed", NOW)
    assert failed.state == "deprovision"


# -- apply_change against a client ----------------------------------------------------------


class Flaky:
    """A client whose every call fails in a chosen way."""

    name = "yealink"

    def __init__(self, error: RedirectError | None):
        self.error, self.calls = error, []

    def _do(self, what, arg):
        self.calls.append((what, arg))
        if self.error:
            raise self.error

    def lookup(self, macs):
        return {m: Remote(m, "nobody") for m in macs}

    def register(self, reg):
        self._do("register", reg)

    def update(self, reg):
        self._do("update", reg)

    def deregister(self, mac):
        self._do("deregister", mac)

    def close(self):
        pass


WANT = DesiredRegistration(M, "yealink", U1, "yealink/T46U", opened="o1")


def test_apply_change_records_success_and_failure_without_raising():
    ok = Flaky(None)
    record, error = apply_change(ok, change("register"), WANT, None, NOW)
    assert error is None and record.state == "active" and ok.calls == [("register", WANT)]

    transient = Flaky(RedirectError("yealink", "HTTP 503 after 5 attempts", transient=True))
    record, error = apply_change(transient, change("register"), WANT, None, NOW)
    assert error is not None and record.state == "provision"

    record, error = apply_change(transient, change("deregister", "not-desired"), None,
                                 active(), NOW)
    assert error is not None and record.state == "deprovision"

    conflict = Flaky(RedirectError("yealink", "held", conflict=True))
    record, error = apply_change(conflict, change("register"), WANT, None, NOW)
    assert record.state == "conflict" and record.conflict_blind


def test_apply_change_passes_steal_and_never_calls_for_a_conflict():
    client = Flaky(None)
    apply_change(client, change("register", "steal", steal=True), WANT, None, NOW)
    assert client.calls[0][1].steal is True
    client.calls.clear()
    record, _ = apply_change(client, change("conflict", "held-by-other"), WANT, None, NOW)
    assert client.calls == [] and record.state == "conflict"
