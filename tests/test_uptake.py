"""The pure parts of the loop with the phones: matching requests, the publish timeline, each
phone's state, the redirect window's end at a fetch; and observing a log into the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from memlogs import LogTarget

from reconciler.core.errors import TargetError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.plan import Environment, Record, device_states, plan_redirects
from reconciler.uptake import serving
from reconciler.uptake.devices import Phone, arrived, device_uptake
from reconciler.uptake.match import Index, PathInfo, Timeline
from reconciler.uptake.observe import LogSpec, observe_log, scanners
from reconciler.uptake.store import Last, Store, Version

TOKEN = "0123456789abcdef0123456789abcdef"
MAC = "001565aabb01"
CFG, BOOT = f"{TOKEN}/{MAC}.cfg", f"{TOKEN}/{MAC}.boot"
YEALINK = "Yealink SIP-T46U 108.86.0.95 00:15:65:aa:bb:01"
T0 = 1_800_000_000.0
HOUR = 3600.0


def index() -> Index:
    return Index.build({CFG: PathInfo(MAC, True), BOOT: PathInfo(MAC, True),
                        "firmware/T46U.rom": PathInfo(None, False)},
                       former=frozenset({"fedcba…/000413aabb04.xml"}))


@pytest.mark.parametrize(("path", "probe"), [
    (f"{'f' * 32}/{MAC}.cfg", True),  # a token directory provctl does not know
    (f"{'f' * 32}/", True),
    (f"{TOKEN}/{MAC}-directory.xml", False),  # the phone's own directory: an optional file
    (f"{TOKEN}/y000000000000.boot", False),
    ("001565aabb99.cfg", True),  # a MAC-named file outside every token directory
    ("cfg000b82aabbcc.xml", True),
    ("favicon.ico", False),
    ("robots.txt", False),
    (f"fedcba{'0' * 26}/000413aabb04.xml", False),  # published once: a retired phone asking
])
def test_what_looks_like_a_probe(path, probe):
    assert index().probe(path) is probe


def v(started, sha, size=100, action="put", rev=None, seq=0):
    return Version(started, started + 5, action, sha, size, rev or f"rev-{sha}", seq)


def test_the_content_a_request_got_from_the_timeline():
    line = Timeline([v(T0, "a", 100), v(T0 + HOUR, "b", 120), v(T0 + 2 * HOUR, "x", None,
                                                                  "delete")])
    assert line.at(T0 - 1, 100, 200) is None  # before provctl published it
    assert line.at(T0 + 60, 100, 200).sha == "a"
    assert line.at(T0 + HOUR + 2, 100, 200).sha == "a"  # during the apply, still the old size
    assert line.at(T0 + HOUR + 2, 120, 200).sha == "b"
    assert line.at(T0 + HOUR + 2, 0, 304).sha == "b"
    assert line.at(T0 + HOUR + 60, 100, 200).sha == "b"  # after it: the new one, whatever size
    assert line.at(T0 + 3 * HOUR, 0, 200) is None  # deleted
    assert Timeline([]).at(T0, 1, 200) is None


def phone(**kw) -> Phone:
    base = dict(mac=MAC, vendor="yealink", model="T46U", name="reception", customer="acme",
                firmware=None, files=(("local", BOOT), ("local", CFG)))
    return Phone(**{**base, **kw})


def last(path, ok_at=None, sha=None, err_at=None, err_status=404, agent=YEALINK, seq=1):
    return Last("local", path, MAC, ok_at, 200 if ok_at else None, sha, f"rev-{sha}",
                "192.0.2.1", agent, ok_at, seq, err_at, err_status if err_at else None,
                "192.0.2.1" if err_at else None, agent)


NEWEST = {("local", BOOT): v(T0, "boot1"), ("local", CFG): v(T0 + HOUR, "cfg2", seq=2)}
PUBLISHED = {("local", BOOT): "boot1", ("local", CFG): "cfg2"}


def state(lasts, now=T0 + 2 * HOUR, stale_after=36 * HOUR, **kw):
    return device_uptake(phone(**kw), {("local", x.path): x for x in lasts}, NEWEST, PUBLISHED,
                         now, stale_after)


def test_states_of_a_phone():
    assert state([]).state == "never-fetched"
    current = state([last(BOOT, T0 + 10, "boot1"), last(CFG, T0 + HOUR + 10, "cfg2")])
    assert current.state == "current" and current.pending == ()
    assert current.last.rev == "rev-cfg2" and current.published_rev == "rev-cfg2"
    assert current.last.ua.model == "T46U"
    pending = state([last(BOOT, T0 + 10, "boot1"), last(CFG, T0 + 10, "cfg1")])
    assert pending.state == "pending" and pending.pending == (CFG,)
    # the boot file alone fetched: the cfg it never asked for does not make it pending
    assert state([last(BOOT, T0 + 10, "boot1")]).state == "current"
    stale = state([last(CFG, T0 + 10, "cfg1")], now=T0 + 40 * HOUR)
    assert stale.state == "stale"  # stale wins over pending: the phone is not asking
    assert state([last(CFG, None, None, err_at=T0)]).state == "errors"
    failing = state([last(BOOT, T0 + 10, "boot1"), last(CFG, T0 + 10, "cfg2", err_at=T0 + 20)])
    assert failing.state == "errors" and failing.error == (T0 + 20, 404, "192.0.2.1")
    recovered = state([last(CFG, T0 + 30, "cfg2", err_at=T0 + 20)])
    assert recovered.state == "current"


def test_a_receipt_without_digests_compares_times():
    lasts = {("local", CFG): last(CFG, T0 + 10, None)}
    newest = {("local", CFG): v(T0 + HOUR, None)}
    assert device_uptake(phone(), lasts, newest, {}, T0 + 2 * HOUR, 36 * HOUR).state == (
        "pending")
    lasts = {("local", CFG): last(CFG, T0 + 2 * HOUR, None)}
    assert device_uptake(phone(), lasts, newest, {}, T0 + 2 * HOUR, 36 * HOUR).state == (
        "current")


def test_what_the_phone_reports_against_git():
    notes = state([last(CFG, T0 + HOUR + 10, "cfg2")], firmware="108.86.0.99").notes
    assert notes == ("runs firmware 108.86.0.95, pinned to 108.86.0.99",)
    other = "Yealink SIP-T46U 108.86.0.95 00:15:65:00:00:99"
    assert state([last(CFG, T0 + HOUR + 10, "cfg2", agent=other)]).notes == (
        "fetched by a phone reporting MAC 001565000099",)
    assert "reports model T54W" in state([last(CFG, T0 + HOUR + 10, "cfg2", agent=(
        "Yealink SIP-T54W 96.86.0.1 00:15:65:aa:bb:01"))]).notes[0]


def test_arrival_ignores_fetches_by_another_phone():
    lasts = {("local", CFG): last(CFG, T0, "cfg2", agent="Mozilla/4.0 (compatible; snomD785-SIP "
                                  "10.1.54.13 2010.12 000413AABB04)")}
    assert arrived(phone(), lasts) is None
    lasts[("local", BOOT)] = last(BOOT, T0 - 5, "boot1", agent="curl/8.0")  # unknown: counts
    assert arrived(phone(), lasts) == T0 - 5


NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ENV = Environment.of(["https://p/"])


def test_a_redirect_window_ends_at_the_phones_first_fetch():
    want = {MAC: DesiredRegistration(mac=MAC, service="yealink", url="https://p/a/",
                                     model="yealink/T46U", opened="o1")}
    registered = (NOW - timedelta(days=1)).isoformat()
    record = {MAC: Record(mac=MAC, service="yealink", url="https://p/a/",
                          registered_at=registered, opened="o1", state="active")}
    held = {MAC: Remote(MAC, "us", "https://p/a/")}

    before = {MAC: NOW - timedelta(days=2)}  # fetched before it was registered: not arrival
    assert plan_redirects(want, held, record, NOW, 7, env=ENV, arrived=before) == []
    came = {MAC: NOW - timedelta(hours=1)}
    [change] = plan_redirects(want, held, record, NOW, 7, env=ENV, arrived=came)
    assert (change.action, change.cause) == ("deregister", "fetched")
    assert device_states(want, held, record, NOW, 7, env=ENV, arrived=came)[MAC] == "active"
    # deregistered: it stays so for this window (no "missing" re-registration)
    gone = {MAC: Remote(MAC, "nobody", None)}
    done = {MAC: Record(mac=MAC, service="yealink", url="https://p/a/",
                        registered_at=registered, opened="o1", state="disabled")}
    assert plan_redirects(want, gone, done, NOW, 7, env=ENV, arrived=came) == []
    assert device_states(want, gone, done, NOW, 7, env=ENV, arrived=came)[MAC] == "disabled"
    # a new window (git changed the redirect value) registers again
    reopened = {MAC: DesiredRegistration(mac=MAC, service="yealink", url="https://p/a/",
                                         model="yealink/T46U", opened="o2")}
    [change] = plan_redirects(reopened, gone, done, NOW, 7, env=ENV, arrived=came)
    assert (change.action, change.cause) == ("register", "new")


def test_serve_config_nginx_text():
    cfg = serving.ServeConfig("eu-1", "/srv/prov", "/var/log/nginx/prov.log", "json",
                              "443", "prov.example.net", "/etc/ssl/p.pem", "/etc/ssl/p.key")
    text = serving.nginx(cfg)
    assert "listen 443 ssl;" in text and "ssl_certificate /etc/ssl/p.pem;" in text
    assert "log_format provctl_eu_1 escape=json" in text
    assert "access_log /var/log/nginx/prov.log provctl_eu_1;" in text
    assert "limit_req zone=provctl_eu_1_misses" in text
    assert "autoindex off;" in text and "location ~ (^|/)\\. { return 404; }" in text
    assert "return 404" not in text.split("@missing", 2)[2]  # limit_req must get to run
    with pytest.raises(ValueError, match="rate"):
        serving.nginx(serving.ServeConfig("a", "/r", "/l", "json", "80", limit_misses="lots"))
    with pytest.raises(ValueError, match="both"):
        serving.nginx(serving.ServeConfig("a", "/r", "/l", "json", "80", tls_cert="/c"))
    plain = serving.nginx(serving.ServeConfig("a", "/r", "/l", "combined", "80",
                                              limit_misses=None))
    assert "log_format" not in plain and "limit_req" not in plain
    assert "access_log /l combined;" in plain
    assert serving.default_listen("https://prov.example.net/") == "443"
    assert serving.default_listen("http://localhost:8080/") == "8080"


def _log(*lines: dict) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in lines)


def req(path, status=200, at=T0 + 10, ip="192.0.2.1", agent=YEALINK, size=100):
    return {"msec": at, "remote_addr": ip, "request": f"GET /{path} HTTP/1.1",
            "status": status, "body_bytes_sent": size, "http_user_agent": agent}


LOG = "/var/log/nginx/prov.access.log"
SPEC = LogSpec("local", LOG, "json", scan_threshold=3)


def receipts(path: Path, *puts: tuple[str, str, str, str]) -> None:
    with open(path, "a") as fh:
        for rid, started, rev, sha in puts:
            fh.write(json.dumps({"id": rid, "revision": rev, "started": started,
                                 "ended": started, "targets": {"local": {"items": [
                                     {"path": f"{TOKEN[:6]}…/{MAC}.cfg", "action": "put",
                                      "error": None, "sha256": sha, "size": 100}]}}}) + "\n")


def test_observing_records_new_content_once_and_counts_probes(tmp_path):
    host = LogTarget()
    receipts(tmp_path / "receipts.jsonl", ("r1", "2027-01-15T08:00:00Z", "rev1", "sha1"))
    host.outside[LOG] = _log(
        req(CFG, at=T0 + 10), req(CFG, at=T0 + 20), req(CFG, 304, at=T0 + 30, size=0),
        req(BOOT, 404, at=T0 + 31),
        *[req(f"{i:032x}/{MAC}.cfg", 404, ip="203.0.113.9", agent="x") for i in range(4)],
        req(f"{TOKEN}/y000000000000.boot", 404))
    with Store(tmp_path) as store:
        store.ingest_receipts(tmp_path / "receipts.jsonl")
        obs = observe_log(host, SPEC, index(), store, lambda: T0 + 40)

        assert obs.requests == 9 and obs.unknown == 4 and obs.events == 1
        assert obs.statuses == {200: 2, 304: 1, 404: 6}
        [event] = store.events(MAC)
        assert (event.at, event.sha, event.rev, event.status) == (T0 + 10, "sha1", "rev1", 200)
        cfg = store.last("local", CFG)
        assert cfg is not None and (cfg.ok_at, cfg.ok_status, cfg.ok_sha) == (T0 + 30, 304,
                                                                              "sha1")
        boot = store.last("local", BOOT)
        assert boot is not None and boot.ok_at is None and boot.err_status == 404
        [scanner] = scanners(store, {"local": 3})
        assert (scanner.ip, scanner.count, len(scanner.paths)) == ("203.0.113.9", 4, 4)

        # new content published, then fetched: one more event; the same lines again: none
        receipts(tmp_path / "receipts.jsonl", ("r2", "2027-01-15T09:00:00Z", "rev2", "sha2"))
        store.ingest_receipts(tmp_path / "receipts.jsonl")
        host.outside[LOG] += _log(req(CFG, at=T0 + 2 * HOUR))
        assert observe_log(host, SPEC, index(), store, lambda: T0).events == 1
        assert observe_log(host, SPEC, index(), store, lambda: T0).requests == 0
        assert [e.rev for e in store.events(MAC)] == ["rev1", "rev2"]
        state = store.log_state("local", LOG)
        assert state is not None and state.requests == 10 and state.cursor.offset == len(
            host.outside[LOG])


class Flaky(LogTarget):
    """Fails every read after the first `good` ones (a connection that drops mid-log)."""

    def __init__(self, good: int):
        super().__init__()
        self.good = good

    def read_range(self, path, offset, length):
        self.good -= 1
        if self.good < 0:
            raise TargetError(self.name, "connection lost", transient=True)
        return super().read_range(path, offset, length)


def test_a_log_that_fails_mid_way_keeps_what_was_read(tmp_path, monkeypatch):
    from reconciler.uptake import reader

    monkeypatch.setattr(reader, "CHUNK", 200)  # several reads for a few lines
    data = _log(*[req(CFG, at=T0 + i) for i in range(20)])
    host = Flaky(good=4)  # the fingerprint, then three chunks
    host.outside[LOG] = data
    with Store(tmp_path) as store:
        obs = observe_log(host, SPEC, index(), store, lambda: T0)
        assert obs.warnings and "cannot be read" in obs.warnings[0]
        first = store.log_state("local", LOG)
        assert first is not None and 0 < first.cursor.offset < len(data)
        assert first.requests == obs.requests > 0
        host.good = 1000
        again = observe_log(host, SPEC, index(), store, lambda: T0)
        assert obs.requests + again.requests == 20 and again.warnings == []


def test_two_processes_reading_one_log_count_each_request_once(tmp_path):
    receipts(tmp_path / "receipts.jsonl", ("r1", "2027-01-15T08:00:00Z", "rev1", "sha1"))

    class Racing(LogTarget):
        """While this reader reads, another process (the daemon) reads the same log."""

        raced = False

        def read_range(self, path, offset, length):
            if not self.raced:
                self.raced = True
                with Store(tmp_path) as other:
                    assert observe_log(host, SPEC, index(), other, lambda: T0).requests == 3
            return super().read_range(path, offset, length)

    host = Racing()
    host.outside[LOG] = _log(req(CFG, at=T0 + 1), req(CFG, at=T0 + 2), req(BOOT, at=T0 + 3))
    with Store(tmp_path) as store:
        store.ingest_receipts(tmp_path / "receipts.jsonl")
        assert observe_log(host, SPEC, index(), store, lambda: T0).requests == 0  # dropped
        state = store.log_state("local", LOG)
        assert state is not None and state.requests == 3
        assert len(store.events(MAC)) == 2  # boot and cfg, once each


def test_the_store_is_private(tmp_path):
    with Store(tmp_path) as store:
        store.ingest_receipts(tmp_path / "none.jsonl")
    assert (tmp_path / "uptake.sqlite3").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("path", [CFG, f"{TOKEN}/", "firmware/T46U.rom", f"{TOKEN.upper()}/x",
                                  f"{TOKEN}0/x", "x", ""])
def test_shown_paths_are_the_receipts_spelling(path):
    from reconciler.render.addressing import show_path
    from reconciler.uptake.match import shown

    assert shown(path) == show_path(path)
