"""Onboarding windows and bootstrap files (docs/zero-touch.md), through the pipeline on the test
fleet: published while a phone's window is open, holding nothing secret, withdrawn when the
phone arrives or the window runs out — withdrawn, not pruned, and not held back by
max_delete_percent. Fetches are handed in by a small fake of what the access logs say
(tests/test_zero_touch_nginx.py runs the same with real nginx and phones)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from fleet_fixtures import FLEET_SECRET, SECRETS, edit, run

from reconciler.core.errors import ConfigError
from reconciler.pipeline import run as pipeline
from reconciler.pipeline.bootstrap import BootstrapProbe
from reconciler.pipeline.onboarding import Arrival
from reconciler.render.addressing import url_token

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CISCO, PANASONIC = "c80084cc0001", "0080f0cc0002"  # initech
GRANDSTREAM, FANVIL = "000b82bb0001", "0c383eaa0002"  # globex, acme
INITECH = url_token(FLEET_SECRET, "bootstrap:initech:0")


class Fetches:
    """What the access logs would say: each phone's fetches of its own files (time, address)."""

    def __init__(self, seen: dict[str, list[tuple[float, str]]] | None = None):
        self.seen = seen or {}

    def first_fetch(self, mac: str, since: float) -> Arrival | None:
        times = sorted((at, ip) for at, ip in self.seen.get(mac, []) if at >= since)
        return Arrival(*times[0]) if times else None

    def fetch_ips(self, mac: str, since: float, until: float) -> set[str]:
        return {ip for at, ip in self.seen.get(mac, []) if since <= at <= until}

    def bootstrap_requests(self, directories: frozenset[str]) -> list[BootstrapProbe]:
        return []


def onboard(fleet: Path, mac: str, value: str = "true") -> None:
    """Set `onboard:` on one phone, however its devices file spells the MAC."""
    for path in sorted((fleet / "devices").glob("*.yaml")):
        text = path.read_text()
        for found in re.finditer(r'^- mac: "?([0-9A-Fa-f:.\-]+)"?\n', text, re.M):
            if re.sub(r"[^0-9a-f]", "", found.group(1).lower()) == mac:
                path.write_text(text[:found.end()] + f"  onboard: {value}\n"
                                + text[found.end():])
                return
    raise AssertionError(f"{mac} not in {fleet / 'devices'}")


def opts(fleet: Path, now: datetime, **extra: object) -> pipeline.Options:
    return pipeline.Options(repo=fleet, now=now, use_cache=False, **extra)  # type: ignore[arg-type]


def apply(fleet: Path, now: datetime, fetches: Fetches | None = None) -> pipeline.ApplyResult:
    """One apply at `now`, with the phones' fetches as `fetches` say (none: nobody fetched)."""
    return pipeline.apply(opts(fleet, now, fetches=fetches or Fetches()))


def www(fleet: Path) -> Path:
    return fleet / "out" / "www"


def bootstrap_files(fleet: Path) -> dict[str, bytes]:
    """Every file in any bootstrap directory on the local target, by path."""
    directories = {url_token(FLEET_SECRET, f"bootstrap:{c}:{n}")
                   for c in ("acme", "globex", "initech") for n in range(3)}
    return {str(p.relative_to(www(fleet))): p.read_bytes() for p in www(fleet).rglob("*")
            if p.is_file() and p.relative_to(www(fleet)).parts[0] in directories}


@pytest.fixture
def onboarding(fleet: Path) -> Path:
    """The test fleet applied once (provctl meets it: no window opens by itself), then the
    Cisco, Panasonic, Grandstream and Fanvil phones set to onboard."""
    assert apply(fleet, T0).exit_code == 2
    assert bootstrap_files(fleet) == {}
    for mac in (CISCO, PANASONIC, GRANDSTREAM, FANVIL):
        onboard(fleet, mac)
    return fleet


def test_an_onboarding_phone_is_sent_from_the_bootstrap_url_to_its_own_directory(onboarding):
    result = apply(onboarding, T0 + timedelta(minutes=1))
    assert result.exit_code == 2
    files = bootstrap_files(onboarding)
    cisco_dir = url_token(FLEET_SECRET, CISCO)
    assert sorted(files) == sorted([
        f"{INITECH}/8841-3PCC.xml", f"{INITECH}/{CISCO}.xml",
        f"{INITECH}/KX-HDV230.cfg", f"{INITECH}/Config0080F0CC0002.cfg",
        f"{url_token(FLEET_SECRET, 'bootstrap:globex:0')}/cfg{GRANDSTREAM}.xml",
        f"{url_token(FLEET_SECRET, 'bootstrap:acme:0')}/{FANVIL}.cfg"])
    base = "http://localhost:8080/"
    psn = files[f"{INITECH}/8841-3PCC.xml"].decode()
    assert f"<Profile_Rule ua=\"na\">{base}{INITECH}/$MA.xml</Profile_Rule>" in psn
    mine = files[f"{INITECH}/{CISCO}.xml"].decode()
    own = f"{base}{cisco_dir}/{CISCO}.xml"
    assert f"<Profile_Rule ua=\"na\">{own}</Profile_Rule>" in mine
    assert (www(onboarding) / cisco_dir / f"{CISCO}.xml").is_file()  # where it points: there
    panasonic = files[f"{INITECH}/Config0080F0CC0002.cfg"].decode()
    assert (f'CFG_STANDARD_FILE_PATH="{base}{url_token(FLEET_SECRET, PANASONIC)}/'
            'Config0080F0CC0002.cfg"') in panasonic
    gs = files[f"{url_token(FLEET_SECRET, 'bootstrap:globex:0')}/cfg{GRANDSTREAM}.xml"].decode()
    assert f"<P237>localhost:8080/{url_token(FLEET_SECRET, GRANDSTREAM)}</P237>" in gs
    # the plan said so, and it shows the bootstrap files by their phone
    created = {c.path: c.device for c in result.plan.changes if c.reason == "create"}
    assert created[f"{INITECH}/{CISCO}.xml"] == CISCO
    assert created[f"{INITECH}/8841-3PCC.xml"] is None


def test_no_bootstrap_file_holds_a_secret_or_another_phones_token(onboarding):
    apply(onboarding, T0 + timedelta(minutes=1))
    files = bootstrap_files(onboarding)
    assert files
    secrets = [str(v) for v in yaml.safe_load(SECRETS.read_text()).values()] + [FLEET_SECRET]
    onboarding_phones = {CISCO, PANASONIC, GRANDSTREAM, FANVIL}
    all_macs = [m.lower().replace(":", "").replace(".", "").replace("-", "") for m in re.findall(
        r'mac: "?([0-9A-Fa-f:.\-]{12,17})"?', "".join(
            p.read_text() for p in (onboarding / "devices").glob("*.yaml")))]
    others = [url_token(FLEET_SECRET, m) for m in all_macs if m not in onboarding_phones]
    assert len(others) >= 10
    for path, data in files.items():
        text = data.decode()
        for secret in secrets:
            for form in {secret, secret.replace("&", "&amp;").replace("<", "&lt;")
                         .replace(">", "&gt;")}:
                assert form not in text, (path, secret)
        for token in others:
            assert token not in text, path
        assert "password" not in text.lower() and "Password" not in text, path


def test_the_window_closes_at_the_first_fetch_and_the_next_apply_withdraws(onboarding):
    apply(onboarding, T0 + timedelta(minutes=1))
    opened = T0 + timedelta(minutes=1)
    arrived = Fetches({CISCO: [(opened.timestamp() + 30, "10.1.2.3")]})
    # a tight deletion limit does not hold the withdrawal back
    edit(onboarding / "provisioning.yaml", "max_delete_percent: 10", "max_delete_percent: 0")
    result = apply(onboarding, T0 + timedelta(minutes=5), arrived)
    assert result.exit_code == 2 and not result.plan.refusals
    withdrawn = sorted(c.path for c in result.plan.changes if c.reason == "withdraw")
    assert withdrawn == [f"{INITECH}/8841-3PCC.xml", f"{INITECH}/{CISCO}.xml"]
    assert {c.reason for c in result.plan.changes} == {"withdraw"}
    left = bootstrap_files(onboarding)
    assert f"{INITECH}/{CISCO}.xml" not in left and f"{INITECH}/KX-HDV230.cfg" in left
    window = result.onboarding.windows[CISCO]
    assert window.state == "arrived" and window.arrival == Arrival(
        opened.timestamp() + 30, "10.1.2.3")
    # remembered: the arrival stays the first one, the files stay withdrawn
    memory = json.loads((onboarding / ".provctl" / "onboarding.json").read_text())
    assert memory["windows"][CISCO]["arrival"] == [opened.timestamp() + 30, "10.1.2.3"]
    again = apply(onboarding, T0 + timedelta(hours=1), Fetches())
    assert again.plan.changes == () and again.onboarding.windows[CISCO].state == "arrived"


def test_a_fetch_before_the_window_opened_does_not_close_it(onboarding):
    before = Fetches({CISCO: [(T0.timestamp() - 3600, "10.1.2.3")]})
    result = apply(onboarding, T0 + timedelta(minutes=1), before)
    assert result.onboarding.windows[CISCO].state == "waiting"
    assert f"{INITECH}/{CISCO}.xml" in bootstrap_files(onboarding)


def test_the_window_expires_after_policy_days(onboarding):
    edit(onboarding / "provisioning.yaml", "redirect_window_days: 7",
         "redirect_window_days: 7, onboarding_window_days: 2")
    apply(onboarding, T0 + timedelta(minutes=1))
    result = apply(onboarding, T0 + timedelta(days=2, hours=1))
    assert {w.state for w in result.onboarding.windows.values()} == {"expired"}
    assert sorted(c.reason for c in result.plan.changes) == ["withdraw"] * 6
    assert bootstrap_files(onboarding) == {}


def test_an_until_date_keeps_the_window_past_the_policy_days(onboarding):
    onboard(onboarding, "001565aabb01", "{until: 2026-12-20}")  # a Yealink: DHCP, not RPS
    apply(onboarding, T0 + timedelta(minutes=1))
    result = apply(onboarding, T0 + timedelta(days=10))
    states = {m: w.state for m, w in result.onboarding.windows.items()}
    assert states.pop("001565aabb01") == "waiting" and set(states.values()) == {"expired"}
    yealink_dir = url_token(FLEET_SECRET, "bootstrap:acme:0")
    assert sorted(bootstrap_files(onboarding)) == [f"{yealink_dir}/001565aabb01.boot",
                                                   f"{yealink_dir}/001565aabb01.cfg"]


def test_a_shared_model_file_stays_while_another_phone_of_the_model_onboards(onboarding):
    path = onboarding / "devices" / "mixed.yaml"
    path.write_text(path.read_text() + (
        '- mac: "C8:00:84:CC:00:09"\n  model: cisco/CP-8841-3PCC\n  profile: cisco-mpp\n'
        "  customer: initech\n  name: second-manager\n  onboard: true\n"))
    apply(onboarding, T0 + timedelta(minutes=1))
    assert f"{INITECH}/c80084cc0009.xml" in bootstrap_files(onboarding)
    arrived = Fetches({CISCO: [((T0 + timedelta(minutes=2)).timestamp(), "10.1.2.3")]})
    result = apply(onboarding, T0 + timedelta(minutes=5), arrived)
    assert [c.path for c in result.plan.changes] == [f"{INITECH}/{CISCO}.xml"]
    assert f"{INITECH}/8841-3PCC.xml" in bootstrap_files(onboarding)


def test_a_new_phone_of_a_vendor_without_a_redirect_client_onboards_by_default(fleet):
    apply(fleet, T0)  # the first run takes the whole fleet as known: no window opens
    memory = json.loads((fleet / ".provctl" / "onboarding.json").read_text())
    assert memory["windows"] == {} and CISCO in memory["known"]
    path = fleet / "devices" / "mixed.yaml"
    path.write_text(path.read_text() + (
        '- mac: "00:0B:82:BB:00:09"\n  model: grandstream/GXP2140\n'
        "  profile: grandstream-desk\n  customer: globex\n  name: new-desk\n"
        '- mac: "00:15:65:CC:00:09"\n  model: yealink/T46U\n  profile: office-yealink\n'
        "  customer: globex\n  name: new-yealink\n"))
    result = apply(fleet, T0 + timedelta(hours=1))
    assert set(result.onboarding.windows) == {"000b82bb0009"}  # the Yealink has RPS
    globex = url_token(FLEET_SECRET, "bootstrap:globex:0")
    assert sorted(bootstrap_files(fleet)) == [f"{globex}/cfg000b82bb0009.xml"]
    # still its window on the next run, though it is known by now
    later = apply(fleet, T0 + timedelta(hours=2))
    assert later.onboarding.windows["000b82bb0009"].state == "waiting"
    assert later.plan.changes == ()


def test_a_lost_memory_is_said_and_starts_afresh(onboarding, caplog):
    apply(onboarding, T0 + timedelta(minutes=1))
    (onboarding / ".provctl" / "onboarding.json").write_text("{broken")
    result = apply(onboarding, T0 + timedelta(minutes=2))
    assert "onboarding windows start afresh" in caplog.text
    assert result.onboarding.windows[CISCO].state == "waiting"  # onboard: true opens again


def test_withdrawing_does_not_wait_for_pruning(onboarding):
    apply(onboarding, T0 + timedelta(minutes=1))
    edit(onboarding / "provisioning.yaml", "prune: true", "prune: false")
    edit(onboarding / "devices" / "mixed.yaml", "  onboard: true\n", "")  # the first: Fanvil
    result = apply(onboarding, T0 + timedelta(minutes=2))
    assert [(c.reason, c.path) for c in result.plan.changes] == [
        ("withdraw", f"{url_token(FLEET_SECRET, 'bootstrap:acme:0')}/{FANVIL}.cfg")]
    assert result.plan.orphans == ()


def test_a_new_rotation_moves_the_files_and_withdraws_the_old_ones(onboarding):
    apply(onboarding, T0 + timedelta(minutes=1))
    edit(onboarding / "customers" / "initech.yaml", "name: ", "bootstrap: {rotation: 1}\nname: ")
    result = apply(onboarding, T0 + timedelta(minutes=2))
    moved = url_token(FLEET_SECRET, "bootstrap:initech:1")
    reasons = {(c.reason, c.path.partition("/")[0]) for c in result.plan.changes}
    assert reasons == {("withdraw", INITECH), ("create", moved)}
    assert not any(p.startswith(INITECH) for p in bootstrap_files(onboarding))


def test_phones_that_cannot_onboard_are_refused_with_file_and_line(fleet, capsys):
    onboard(fleet, "0004f2aa0001")  # Poly: redirect service only
    path = fleet / "devices" / "pool.yaml"
    path.write_text(path.read_text().replace('name: spare-1\n', 'name: spare-1\n  onboard: '
                                             'true\n'))
    with pytest.raises(ConfigError) as caught:
        pipeline.plan(opts(fleet, T0))
    text = "\n".join(str(p) for p in caught.value.problems)
    assert re.search(r"devices/mixed.yaml:\d+: onboard: poly/VVX450 \(0004f2aa0001\): provctl "
                     r"has no bootstrap files for poly phones", text)
    assert re.search(r"devices/pool.yaml:\d+: onboard: 001565ee0001 is in the provider's pool",
                     text)
    capsys.readouterr()
    assert run(fleet, "validate") == 1
    assert "has no bootstrap files for poly phones" in capsys.readouterr().err
    assert run(fleet, "apply") == 1
    assert not (fleet / "out").exists()  # nothing applied


def test_the_plan_shows_withdrawals_apart(onboarding, capsys):
    apply(onboarding, T0 + timedelta(minutes=1))
    edit(onboarding / "devices" / "mixed.yaml", "  onboard: true\n", "")  # the Fanvil
    capsys.readouterr()
    assert run(onboarding, "plan") == 2
    out = capsys.readouterr().out
    assert re.search(r"- [0-9a-f]{6}…/0c383eaa0002.cfg  \(withdraw, \d+ B\)  \[0c383eaa0002\]",
                     out)
    assert "1 bootstrap file(s) to withdraw" in out
    capsys.readouterr()
    assert run(onboarding, "plan", "--format", "json") == 2
    body = json.loads(capsys.readouterr().out)
    assert body["summary"]["withdraw"] == 1 and body["summary"]["prune"] == 0


def test_provctl_onboard_reopens_a_window_in_git(fleet, capsys):
    git = ["git", "-C", str(fleet), "-c", "user.name=Op", "-c", "user.email=op@example.net"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "fleet"], check=True)
    capsys.readouterr()
    assert run(fleet, "onboard", "00:0B:82:BB:00:01", "--until", "2026-12-24", "--commit",
               "-m", "office-rome was reset", "--branch", "onboard-rome") == 2
    out = capsys.readouterr().out
    assert "00:0b:82:bb:00:01: onboarding window open until 2026-12-24 (devices/mixed.yaml)" in out
    shown = subprocess.run([*git, "show", "onboard-rome:devices/mixed.yaml"], check=True,
                           capture_output=True, text=True).stdout
    assert "  name: office-rome\n  onboard: {until: 2026-12-24}\n" in shown
    log = subprocess.run([*git, "log", "-1", "--format=%s", "onboard-rome"], check=True,
                         capture_output=True, text=True).stdout
    assert log.strip() == "office-rome was reset"
    # the same value again changes nothing; a phone that cannot onboard changes nothing at all
    assert run(fleet, "onboard", "00:0B:82:BB:00:01", "--until", "2026-12-24") == 0
    before = (fleet / "devices" / "mixed.yaml").read_text()
    assert run(fleet, "onboard", "00:0B:82:BB:00:01", "00:04:F2:AA:00:01") == 1
    assert "is a poly phone" in capsys.readouterr().err
    assert (fleet / "devices" / "mixed.yaml").read_text() == before


def test_provctl_onboard_defaults_to_the_policy_window(fleet, capsys):
    edit(fleet / "provisioning.yaml", "redirect_window_days: 7",
         "redirect_window_days: 7, onboarding_window_days: 3")
    assert run(fleet, "onboard", "c8:00:84:cc:00:01") == 2
    until = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    assert f"  onboard: {{until: {until}}}\n" in (fleet / "devices" / "mixed.yaml").read_text()
    with pytest.raises(SystemExit) as usage:
        run(fleet, "onboard", "c8:00:84:cc:00:01", "--until", "soon")
    assert usage.value.code == 64


def test_status_devices_shows_each_window(fleet, capsys):
    onboard(fleet, CISCO, "{until: 2020-01-31}")  # its window ran out before it opened
    onboard(fleet, GRANDSTREAM)
    assert run(fleet, "apply") == 2
    assert not any(p.endswith(f"{CISCO}.xml") for p in bootstrap_files(fleet))
    capsys.readouterr()
    assert run(fleet, "status", "--devices") == 0
    text = capsys.readouterr().out
    assert f"  {CISCO}  onboarding expired 2020-01-31T23:59:59Z" in text
    assert re.search(rf"  {GRANDSTREAM}  onboarding waiting until \d{{4}}-\d\d-\d\dT", text)
    assert "no onboarding window closes at a phone's fetch" in text
    assert run(fleet, "status", "--devices", "--format", "json") == 0
    body = json.loads(capsys.readouterr().out)["devices"]
    assert body["onboarding"] == {"windows": {"expired": 1, "waiting": 1}, "hijack": [],
                                  "scanning": []}


def test_a_run_narrowed_to_a_phone_publishes_the_shared_file_it_needs(onboarding):
    result = pipeline.apply(opts(onboarding, T0 + timedelta(minutes=1), fetches=Fetches(),
                                 devices=frozenset({CISCO})))
    assert result.exit_code == 2
    boot = sorted(p for p in bootstrap_files(onboarding))
    assert boot == [f"{INITECH}/8841-3PCC.xml", f"{INITECH}/{CISCO}.xml"]


def test_an_ntp_server_given_by_reference_stays_out_of_the_bootstrap_files(onboarding):
    """A secret reference is resolved into the phone's own file, never into a file anyone on
    the customer's network can fetch; the NTP server is carried only as a plain host."""
    edit(onboarding / "defaults.yaml", "ntp: {server: pool.ntp.org}",
         "ntp: {server: 'secret:admin-password'}")
    apply(onboarding, T0 + timedelta(minutes=1))
    files = bootstrap_files(onboarding)
    assert files
    for path, data in files.items():
        assert b"Adm1n-Demo!" not in data and b"secret:" not in data, path
    cisco = files[f"{INITECH}/{CISCO}.xml"].decode()
    assert "Primary_NTP_Server" not in cisco
    own = (www(onboarding) / url_token(FLEET_SECRET, CISCO) / f"{CISCO}.xml").read_text()
    assert "Adm1n-Demo!" in own  # (the phone's own file does get what its profile says)


def test_a_rollout_never_holds_a_bootstrap_file_back(onboarding):
    """policy.rollout stages changes to many phones in waves; publishing and withdrawing
    bootstrap files follows the onboarding windows, never a wave."""
    edit(onboarding / "provisioning.yaml", "redirect_window_days: 7",
         "redirect_window_days: 7, rollout: {above: 1 phones, waves: [30%, 100%], soak: 2h, "
         "gate: {}}")
    edit(onboarding / "defaults.yaml", "timezone: Europe/Berlin", "timezone: Europe/Rome")
    git = ["git", "-C", str(onboarding), "-c", "user.name=Op", "-c", "user.email=op@example.net"]
    (onboarding / ".gitignore").write_text("out/\n.provctl/\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "a big change, and four phones onboarding"],
                   check=True)
    result = apply(onboarding, T0 + timedelta(minutes=1))
    assert len(bootstrap_files(onboarding)) == 6
    boot = {url_token(FLEET_SECRET, f"bootstrap:{name}:0") for name in ("acme", "globex",
                                                                          "initech")}
    assert result.plan.held  # the rollout held some phones' own files back ...
    assert not [c for c in result.plan.held if c.path.partition("/")[0] in boot]  # not these
    arrived = Fetches({m: [((T0 + timedelta(minutes=2)).timestamp(), "10.1.2.3")]
                       for m in (CISCO, PANASONIC, GRANDSTREAM, FANVIL)})
    result = apply(onboarding, T0 + timedelta(minutes=5), arrived)
    assert [c.reason for c in result.plan.changes
            if c.path.partition("/")[0] in boot] == ["withdraw"] * 6
    assert result.plan.held and not [c for c in result.plan.held
                                     if c.path.partition("/")[0] in boot]
    assert bootstrap_files(onboarding) == {}


def test_the_memory_is_written_only_when_it_changed(fleet):
    """A run that changes no window and knows the same phones leaves onboarding.json as it
    was (1.6 MB at 100,000 phones); a new phone is written to it."""
    apply(fleet, T0)
    memory = fleet / ".provctl" / "onboarding.json"
    memory.write_text(memory.read_text().replace('"version": 1', '"version":  1'))
    marked = memory.read_text()  # the same memory, spelled otherwise: must stay untouched
    apply(fleet, T0 + timedelta(hours=1))
    assert memory.read_text() == marked
    path = fleet / "devices" / "mixed.yaml"
    path.write_text(path.read_text() + (
        '- mac: "00:15:65:CC:00:09"\n  model: yealink/T46U\n  profile: office-yealink\n'
        "  customer: globex\n  name: new-yealink\n"))
    apply(fleet, T0 + timedelta(hours=2))
    assert "001565cc0009" in json.loads(memory.read_text())["known"]
