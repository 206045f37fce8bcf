"""Incremental runs give the bytes a cold run gives, after every kind of edit.

The caches (file cache: parse and validation by content; render cache: phone key -> digests)
may only save time. Each test warms them, edits the desired state (or a secret, the
environment, a template), and compares an incremental run with a cold one byte for byte, then
checks that only the phones the edit concerns were rendered again.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import yaml
from fleet_fixtures import FLEET_SECRET, SECRETS, edit

import vendors
from reconciler.desired import secrets as secrets_mod
from reconciler.desired.filecache import FileCache, LazyDoc
from reconciler.desired.load import DEFAULT_LIMITS, read_source
from reconciler.desired.secrets import CONTROL
from reconciler.desired.validate import load_state, validate_file
from reconciler.pipeline.run import Options, load_desired
from reconciler.render import cache as render_cache
from reconciler.render import renderer as renderer_mod
from reconciler.render import templating
from reconciler.render.keys import PhoneKeys

Output = dict[tuple[str, str], bytes]


def run(repo: Path, state: Path, *, cold: bool = False) -> tuple[Output, set, int]:
    """Every file's bytes, the warnings, and how many phones were rendered (not cached)."""
    desired = load_desired(Options(repo=repo, state_dir=state, use_cache=not cold))
    files = {(t, p): a.content() for t, arts in desired.artifacts.items() for p, a in arts.items()}
    warnings = set(desired.state.warnings) | desired.renderer.warnings
    return files, warnings, desired.renderer.rendered


def same_as_cold(repo: Path, state: Path, tmp: Path) -> int:
    """Run incrementally and cold; assert identical output; return phones rendered."""
    files, warnings, rendered = run(repo, state)
    cold_files, cold_warnings, _ = run(repo, tmp / "cold-state", cold=True)
    assert files.keys() == cold_files.keys()
    assert [k for k in files if files[k] != cold_files[k]] == []
    assert warnings == cold_warnings
    return rendered


@pytest.fixture
def warm(fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example fleet with its own secrets file, run once so that the caches are warm."""
    secrets = tmp_path / "secrets.yaml"
    shutil.copy(SECRETS, secrets)
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(secrets))
    state = tmp_path / "state"
    files, _, rendered = run(fleet, state)
    assert rendered == len({p.split("/")[0] for _, p in files if "/" in p and
                            not p.startswith("firmware/")})  # every phone, once
    assert run(fleet, state)[2] == 0  # and then none
    return state


def test_a_device_edit_renders_that_phone_only(fleet, warm, tmp_path):
    edit(fleet / "devices" / "acme.yaml", "name: reception", "name: front-desk")
    assert same_as_cold(fleet, warm, tmp_path) == 1


def test_a_profile_edit_renders_its_phones(fleet, warm, tmp_path):
    edit(fleet / "profiles" / "office-yealink.yaml", "language: it", "language: fr")
    phones = sum(1 for d in load_state(read_source(fleet)).devices.values()
                 if d.value.profile == "office-yealink")
    assert same_as_cold(fleet, warm, tmp_path) == phones > 0


def test_a_defaults_edit_renders_every_phone(fleet, warm, tmp_path):
    edit(fleet / "defaults.yaml", "pool.ntp.org", "ntp.example.net")
    assert same_as_cold(fleet, warm, tmp_path) == len(load_state(read_source(fleet)).devices)


def test_a_comment_renders_nothing_and_moved_lines_stay_right(fleet, warm, tmp_path):
    edit(fleet / "defaults.yaml", "# Lowest layer", "#\n#\n# Lowest layer")  # warnings move
    assert same_as_cold(fleet, warm, tmp_path) == 0


def test_warnings_of_cached_phones_follow_their_own_parameters(fleet, warm, tmp_path):
    """The DECT base cannot express the codecs of defaults.yaml (a warning); a device that
    clears them, or sets one of its own that its vendor lacks, changes its warnings."""
    devices = fleet / "devices" / "mixed.yaml"
    for old, new in [("  name: shop-floor-dect\n", "  name: shop-floor-dect\n  params: {}\n"),
                     ("params: {}", "params: {codecs: []}"),
                     ("params: {codecs: []}", "params: {codecs: [g722], vlan: {id: 5}}"),
                     ("params: {codecs: [g722], vlan: {id: 5}}", "params: {vlan: {id: 5}}")]:
        edit(devices, old, new)
        assert same_as_cold(fleet, warm, tmp_path) == 1  # the phone changed: rendered
        assert same_as_cold(fleet, warm, tmp_path) == 0  # and now from the cache


def test_a_secret_value_renders_the_phones_that_use_it(fleet, warm, tmp_path, monkeypatch):
    secrets = Path(__import__("os").environ["PROVCTL_SECRETS_FILE"])
    edit(secrets, '"S3cr&t<201>"', '"N3w&<201>"')  # acme/201: Alice's three phones
    assert same_as_cold(fleet, warm, tmp_path) == 3


def test_an_unchanged_secrets_file_is_not_parsed(fleet, warm, tmp_path, monkeypatch):
    """The values' digests come from the file's index (state directory, by content): neither
    validation nor the phones' keys parse the file again; a phone rendered again reads its
    value from its line, checked against the digest."""
    parsed = []
    real = secrets_mod.parse_secrets_map
    monkeypatch.setattr(secrets_mod, "parse_secrets_map",
                        lambda *a, **k: parsed.append(a[1]) or real(*a, **k))
    assert run(fleet, warm)[2] == 0
    assert parsed == []
    edit(fleet / "devices" / "acme.yaml", "name: reception", "name: front-desk")
    assert same_as_cold(fleet, warm, tmp_path) == 1
    assert parsed == [str(os.environ["PROVCTL_SECRETS_FILE"])]  # the cold run only


def test_a_secrets_file_edit_that_changes_no_value_renders_nothing(fleet, warm, tmp_path):
    secrets = Path(os.environ["PROVCTL_SECRETS_FILE"])
    with open(secrets, "a") as fh:
        fh.write("# a comment\nunused/secret: never-referenced\n")
    edit(secrets, 'acme/201: "S3cr&t<201>"', "acme/201: 'S3cr&t<201>'")  # same value
    assert same_as_cold(fleet, warm, tmp_path) == 0


def test_a_value_equal_to_a_host_secret_is_refused_with_the_index(fleet, warm, tmp_path):
    """phone_value refuses a phone's value that is a host secret; the index's digests must not
    let a cached phone skip that check."""
    secrets = Path(os.environ["PROVCTL_SECRETS_FILE"])
    edit(secrets, '"S3cr&t<201>"', f'"{FLEET_SECRET}"')
    found = problems_of(fleet, warm)
    assert found == problems_of(fleet, tmp_path / "cold", cold=True)
    assert any("acme/201" in p and "must never reach a phone" in p for p in found), found


@pytest.mark.parametrize("text", [
    'a: "x"\nb: y\na: z\n',  # a duplicate: the last one counts
    "a: |\n  b: inner\nb: outer\n",  # a line inside a block scalar looks like an entry
    "a: 0x1f\nb: 1_000\nc: yes\nd: '01'\ne: 2001-01-01\n",  # not strings
    "a: >\n  folded\n  text\nb: 'it''s'\nc: \"tab\\there\"\r\nd: x # comment\n",
    "{a: 1, b: 2}\n",  # flow style: no line per entry
    "a: &v one\nb: *v\n",  # an alias
])
def test_a_value_read_from_the_index_is_what_the_whole_file_gives(tmp_path, text):
    path = tmp_path / "secrets.yaml"
    path.write_bytes(text.encode())
    environ = {"FLEET": "s3cret"}
    values = secrets_mod.parse_secrets_map(text, "x")

    def fresh() -> secrets_mod.Secrets:
        return secrets_mod.Secrets(tmp_path, str(path), environ, fleet_secret="env:FLEET",
                                   index_dir=tmp_path / "index")

    assert fresh()._indexed() is not None  # parses the file and writes the index
    assert list((tmp_path / "index").iterdir())
    for name, value in values.items():
        got = fresh()
        if CONTROL.search(value) or not value:
            continue
        assert got.resolve(f"secret:{name}") == value  # by its line, else the whole file
        assert got.value_digest(f"secret:{name}") is not None


def test_the_secrets_index_ignores_entries_it_did_not_write(tmp_path):
    path = tmp_path / "secrets.yaml"
    path.write_text("a: one\n")
    index = tmp_path / "index"

    def fresh(fleet: str) -> secrets_mod.Secrets:
        return secrets_mod.Secrets(tmp_path, str(path), {"FLEET": fleet},
                                   fleet_secret="env:FLEET", index_dir=index)

    first = fresh("key-a")
    digest = first.value_digest("secret:a")
    assert digest is not None and first._map is not None  # parsed once, to build the index
    (entry,) = index.iterdir()
    assert fresh("key-a").value_digest("secret:a") == digest
    assert b"one" not in entry.read_bytes()  # digests only, never a value
    other = fresh("key-b")  # another fleet secret: another name, another key
    assert other.value_digest("secret:a") not in (None, digest) and other._map is not None
    entry.write_bytes(entry.read_bytes()[:-1] + b"x")  # tampered: parsed again, no error
    again = fresh("key-a")
    assert again.value_digest("secret:a") == digest and again._map is not None


def test_an_environment_secret_renders_what_uses_it(fleet, warm, tmp_path, monkeypatch):
    edit(fleet / "assignments" / "initech.yaml", "secret:initech/10", "env:INITECH_10")
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         "secrets: {file: env:PROVCTL_SECRETS_FILE, env: [INITECH_*]}")
    monkeypatch.setenv("INITECH_10", "first")
    same_as_cold(fleet, warm, tmp_path)
    monkeypatch.setenv("INITECH_10", "second")
    assert same_as_cold(fleet, warm, tmp_path) == 1


def test_a_new_fleet_secret_renders_everything(fleet, warm, tmp_path, monkeypatch):
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", FLEET_SECRET + "-rotated")
    assert same_as_cold(fleet, warm, tmp_path) == len(load_state(read_source(fleet)).devices)


def test_a_firmware_entry_renders_the_models_it_pins(fleet, warm, tmp_path):
    edit(fleet / "firmware" / "yealink.yaml", "pins: []",
         "pins:\n  - {models: [yealink/T46U], version: 108.86.0.95}")
    files, _, _ = run(fleet, tmp_path / "check", cold=True)
    assert ("local", "firmware/T46U-108.86.0.95.rom") in files
    assert same_as_cold(fleet, warm, tmp_path) == len(load_state(read_source(fleet)).devices)


def test_an_assignment_edit_renders_its_phones(fleet, warm, tmp_path):
    edit(fleet / "assignments" / "acme.yaml", "display_name: Sales", "display_name: Sales Desk")
    assert same_as_cold(fleet, warm, tmp_path) == 1


def test_a_template_edit_renders_every_phone(fleet, warm, tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    shutil.copytree(vendors.TEMPLATES, templates)
    monkeypatch.setattr(vendors, "TEMPLATES", templates)
    monkeypatch.setattr(templating, "TEMPLATES", templates)
    for cached in (templating._environment, render_cache.code_version):
        cached.cache_clear()
    try:
        same_as_cold(fleet, warm, tmp_path)  # a copy: same bytes, so nothing but digests moved
        edit(templates / "snom" / "mac.xml.j2", "<settings>", "<settings><!-- edited -->")
        for cached in (templating._environment, render_cache.code_version):
            cached.cache_clear()  # as a new process (the daemon restarted after an upgrade)
        # one code version for every vendor (they share vendors/*.py): every phone again
        assert same_as_cold(fleet, warm, tmp_path) == len(load_state(read_source(fleet)).devices)
    finally:
        for cached in (templating._environment, render_cache.code_version):
            cached.cache_clear()


def test_the_file_cache_ignores_entries_it_did_not_write(fleet, tmp_path):
    """A pickle dropped into the state directory (say, committed under .provctl/) is never
    loaded: entries carry an HMAC keyed with the fleet secret."""
    cache_dir = tmp_path / "cache"
    data = (fleet / "defaults.yaml").read_bytes()
    mine = FileCache(cache_dir, "secret-a")
    first = mine("defaults.yaml", data)
    reader = FileCache(cache_dir, "secret-a")
    again = reader("defaults.yaml", data)
    assert isinstance(again.doc, LazyDoc) and again.doc.data == first.doc.data
    assert (reader.hits, reader.misses) == (1, 0)
    assert again.objects[0].value == first.objects[0].value
    (entry,) = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    evil = FileCache(cache_dir, "secret-b")
    assert evil("defaults.yaml", data).doc.data == first.doc.data
    assert (evil.hits, evil.misses) == (0, 1)
    entry.write_bytes(entry.read_bytes()[:-1] + b"x")  # tampered: a miss, never an error
    assert FileCache(cache_dir, "secret-a")("defaults.yaml", data).doc.data == first.doc.data


def test_cached_file_results_equal_fresh_ones(fleet, tmp_path):
    cache = FileCache(tmp_path, FLEET_SECRET)
    source = read_source(fleet)
    for rel, data in source.files.items():
        cache(rel, data)
    for rel, data in source.files.items():
        got = FileCache(tmp_path, FLEET_SECRET)(rel, data)
        want = validate_file(rel, data, DEFAULT_LIMITS)
        assert (got.objects, got.problems) == (want.objects, want.problems)
        assert [(x.digest, x.refs) for x in got.objects] == [
            (x.digest, x.refs) for x in want.objects]
        assert all(x.doc is got.doc for x in got.objects)  # one LazyDoc per file
        assert got.doc.lines == want.doc.lines and got.doc.line(("params",)) == want.doc.line(
            ("params",))


# --- a generated fleet, and the property that a key never hides a change -------------------


def generate(repo: Path, n: int, rng: random.Random) -> None:
    for sub in ("profiles", "customers", "devices", "assignments", "firmware"):
        (repo / sub).mkdir(parents=True)
    (repo / "provisioning.yaml").write_text(
        "fleet: {name: gen, secret: env:PROVCTL_FLEET_SECRET}\n"
        "secrets: {file: env:PROVCTL_SECRETS_FILE}\n"
        "targets:\n  local: {kind: local, root: ./out/www, base_url: 'https://p.example/'}\n"
        "  second: {kind: local, root: ./out/two, base_url: 'https://q.example/',"
        " customers: [c1]}\n")
    (repo / "defaults.yaml").write_text(yaml.safe_dump({"params": {
        "codecs": ["g722", "pcma"], "ntp": {"server": "pool.ntp.org"}, "timezone": "Europe/Berlin",
        "language": "en", "admin_password": "derive:admin-{mac}",
        "sip": {"port": 5060, "transport": "udp"}}}))
    (repo / "firmware" / "yealink.yaml").write_text("catalog: []\npins: []\n")
    for p, (vendor, models) in enumerate([("yealink", ["T46U", "T54W"]), ("snom", ["D785"]),
                                          ("yealink", ["T46U"]), ("snom", ["D785", "D735"])]):
        (repo / "profiles" / f"p{p}.yaml").write_text(yaml.safe_dump(
            {"name": f"p{p}", "vendor": vendor, "models": models,
             "params": {"language": rng.choice(["de", "it", "fr"])}}))
    for c in range(3):
        (repo / "customers" / f"c{c}.yaml").write_text(yaml.safe_dump(
            {"id": f"c{c}", "name": f"C{c}", "sip": {"domain": f"pbx{c}.example.net"}}))
    devices: dict[str, list] = {}
    accounts: dict[str, list] = {}
    secrets = {}
    for i in range(n):
        p = i % 4
        vendor, models = [("yealink", ["T46U", "T54W"]), ("snom", ["D785"]),
                          ("yealink", ["T46U"]), ("snom", ["D785", "D735"])][p]
        mac = f"{'001565' if vendor == 'yealink' else '000413'}{i:06x}"
        customer = f"c{i % 3}"
        devices.setdefault(customer, []).append(
            {"mac": mac, "model": f"{vendor}/{models[i % len(models)]}", "profile": f"p{p}",
             "customer": customer, "name": f"phone-{i}"})
        ext = str(100 + i)
        secrets[f"{customer}/{ext}"] = f"pw-{i}"
        accounts.setdefault(customer, []).append(
            {"account": f"{customer}/{ext}", "display_name": f"User {i}",
             "password": f"secret:{customer}/{ext}", "devices": [mac]})
    for c, items in devices.items():
        (repo / "devices" / f"{c}.yaml").write_text(yaml.safe_dump(items, sort_keys=False))
    for c, items in accounts.items():
        (repo / "assignments" / f"{c}.yaml").write_text(yaml.safe_dump(items, sort_keys=False))
    (repo.parent / "secrets.yaml").write_text(yaml.safe_dump(secrets))


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _dump(path: Path, value) -> None:
    path.write_text(yaml.safe_dump(value, sort_keys=False))


def random_edit(repo: Path, rng: random.Random) -> str:
    """One edit of a kind that can change some phones' files (or none)."""
    kind = rng.choice(["device", "device-params", "move", "profile", "customer", "defaults",
                       "secret", "assignment", "firmware", "reorder", "remove", "noise",
                       "warn-layer", "warn-device"])
    c = f"c{rng.randrange(3)}"
    dev_file, acc_file = repo / "devices" / f"{c}.yaml", repo / "assignments" / f"{c}.yaml"
    devices, accounts = _load(dev_file), _load(acc_file)
    if kind == "device":
        rng.choice(devices)["name"] = f"renamed-{rng.randrange(1000)}"
        _dump(dev_file, devices)
    elif kind == "device-params":
        rng.choice(devices)["params"] = {"timezone": rng.choice(["Europe/Rome", "Europe/Lisbon"])}
        _dump(dev_file, devices)
    elif kind == "move":  # to a profile of the same vendor
        d = rng.choice(devices)
        same = {"p0": "p2", "p2": "p0", "p1": "p3", "p3": "p1"}
        if d["model"].endswith(("T54W", "D735")):
            return "noise"
        d["profile"] = same[d["profile"]]
        _dump(dev_file, devices)
    elif kind == "profile":
        p = repo / "profiles" / f"p{rng.randrange(4)}.yaml"
        prof = _load(p)
        prof["params"]["language"] = rng.choice(["de", "it", "fr", "en"])
        _dump(p, prof)
    elif kind == "customer":
        p = repo / "customers" / f"{c}.yaml"
        cust = _load(p)
        cust["sip"]["domain"] = f"pbx{rng.randrange(100)}.example.net"
        _dump(p, cust)
    elif kind == "defaults":
        p = repo / "defaults.yaml"
        d = _load(p)
        d["params"]["ntp"]["server"] = rng.choice(["a.example", "b.example", "pool.ntp.org"])
        _dump(p, d)
    elif kind == "secret":
        p = repo.parent / "secrets.yaml"
        s = _load(p)
        s[rng.choice(sorted(s))] = f"rotated-{rng.randrange(1000)}"
        _dump(p, s)
    elif kind == "assignment":
        rng.choice(accounts)["display_name"] = f"User {rng.randrange(1000)}"
        _dump(acc_file, accounts)
    elif kind == "firmware":
        p = repo / "firmware" / "yealink.yaml"
        fw = _load(p)
        fw["pins"] = [] if fw["pins"] else [{"models": ["yealink/T46U"], "version": "installed"}]
        _dump(p, fw)
    elif kind == "warn-layer":  # Snom cannot express screensaver: a warning per phone
        p = repo / "profiles" / "p1.yaml"
        prof = _load(p)
        if "screensaver" in prof["params"]:
            del prof["params"]["screensaver"]
        else:
            prof["params"]["screensaver"] = {"url": "https://cdn.example/bg.png"}
        _dump(p, prof)
    elif kind == "warn-device":  # set it, or clear the profile's on one phone
        d = rng.choice(devices)
        d["params"] = rng.choice([{"screensaver": None}, {"screensaver": {"url": "x"}},
                                  {"soft_keys": []}, {"language": "de"}])
        _dump(dev_file, devices)
    elif kind == "reorder":  # same phones, other order in the file: line numbers move
        rng.shuffle(devices)
        _dump(dev_file, devices)
    elif kind == "remove" and len(devices) > 2:
        gone = devices.pop(rng.randrange(len(devices)))
        accounts = [a for a in accounts if a["devices"] != [gone["mac"]]]
        _dump(dev_file, devices)
        _dump(acc_file, accounts)
    return kind


def keys_and_phones(repo: Path, state: Path) -> tuple[dict, dict, Output]:
    """Cold: each phone's keys (secret values as themselves, and as digests from the secrets
    file's index) and files per target, and every file."""
    desired = load_desired(Options(repo=repo, state_dir=state, use_cache=False))
    plain = PhoneKeys(desired.state, desired.renderer.fleet_secret)
    indexed = PhoneKeys(load_state(read_source(repo), secrets_index=state / "index"),
                        desired.renderer.fleet_secret)
    phones: dict[tuple[str, str], dict[str, bytes]] = {}
    for t, arts in desired.artifacts.items():
        for path, art in arts.items():
            if art.device:
                phones.setdefault((t, art.device), {})[path] = art.content()
    files = {(t, p): a.content() for t, arts in desired.artifacts.items() for p, a in arts.items()}
    keys = {phone: (plain.key(phone[1], phone[0]), indexed.key(phone[1], phone[0]))
            for phone in phones}
    assert indexed.state.secrets._indexed() is not None  # the digests came from the index
    return keys, phones, files


@pytest.mark.parametrize("seed", range(2))
def test_a_key_never_hides_a_change(tmp_path, monkeypatch, seed):
    """Random edits of a generated fleet: wherever a phone's files changed its key changed, and
    the incremental run equals the cold one after every edit."""
    rng = random.Random(seed)
    repo = tmp_path / "fleet"
    generate(repo, 36, rng)
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", "generated-secret")
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(tmp_path / "secrets.yaml"))
    state = tmp_path / "state"
    run(repo, state)
    keys, phones, _ = keys_and_phones(repo, tmp_path / "k")
    kinds = []
    for _ in range(10):
        kinds.append(random_edit(repo, rng))
        new_keys, new_phones, files = keys_and_phones(repo, tmp_path / "k")
        hidden = [phone for phone, got in new_phones.items()
                  if phone in phones and phones[phone] != got
                  and any(a == b for a, b in zip(keys[phone], new_keys[phone], strict=True))]
        assert hidden == [], f"a key hid a change after {kinds}"
        cold_warnings = run(repo, tmp_path / "cold", cold=True)[1]
        for _ in range(2):  # the edited phones rendered, then every phone from the cache
            got, warnings, _ = run(repo, state)
            assert got == files, f"incremental differs from cold after {kinds}"
            assert warnings == cold_warnings, f"warnings differ after {kinds}"
        keys, phones = new_keys, new_phones


def test_many_phones_render_in_workers_and_match(tmp_path, monkeypatch):
    monkeypatch.setattr(renderer_mod, "PARALLEL_MIN", 20)
    monkeypatch.setenv("PROVCTL_RENDER_PROCESSES", "2")
    rng = random.Random(7)
    repo = tmp_path / "fleet"
    generate(repo, 90, rng)
    monkeypatch.setenv("PROVCTL_FLEET_SECRET", "generated-secret")
    monkeypatch.setenv("PROVCTL_SECRETS_FILE", str(tmp_path / "secrets.yaml"))
    files, _, rendered = run(repo, tmp_path / "state")
    assert rendered == 90 + 30  # every phone, and c1's again for the second target
    edit(repo / "defaults.yaml", "pool.ntp.org", "ntp.example.net")
    assert same_as_cold(repo, tmp_path / "state", tmp_path) == 120


@pytest.mark.parametrize("secret", ["s", "x" * 64, "y" * 65, "z" * 200, "ünï"])
def test_url_tokens_from_the_precomputed_hmac_are_url_token(secret):
    from reconciler.render.addressing import Addressing, url_token
    from reconciler.render.renderer import Artifact, _cached_artifact

    class Spec:
        url_tokens = "per-device"

    addressing = Addressing(Spec(), secret)  # type: ignore[arg-type]
    for scope in ("001565aabb01", "customer:acme", ""):
        assert addressing._token(scope) == url_token(secret, scope)
    loader = bytes
    assert _cached_artifact("p", "s", 1, "m", None, loader) == Artifact(
        "p", "s", 1, device="m", loader=loader)


def problems_of(repo: Path, state: Path, *, cold: bool = False) -> list[str]:
    from reconciler.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_desired(Options(repo=repo, state_dir=state, use_cache=not cold))
    return [str(p) for p in err.value.problems]


def test_sip_user_collisions_are_found_between_cached_phones(fleet, warm, tmp_path):
    """Validation refuses two lines with one SIP user at one domain; the lines of phones from
    the cache come from their entries, and the message is the one a cold run gives."""
    with open(fleet / "assignments" / "acme.yaml", "a") as fh:
        fh.write("- account: acme/91201\n  password: secret:acme/205\n"
                 '  devices: ["00:15:65:EE:00:01"]\n')
    edit(fleet / "devices" / "pool.yaml", "  name: spare-1\n", "  name: spare-1\n"
         "  customer: acme\n")
    found = problems_of(fleet, warm)
    assert found == problems_of(fleet, tmp_path / "cold", cold=True)
    assert any("acme/91201 on 001565ee0001 port 1 registers as 91201@acme.pbx.example.net, "
               "as does acme/201 on 001565aabb03 port 1" in p for p in found), found


def test_a_domain_change_in_a_layer_collides_cached_phones(fleet, warm, tmp_path):
    """globex's and initech's extension 100 meet when their customers share a PBX domain:
    every phone of both is rendered again (their layers changed) and the collision is found."""
    edit(fleet / "assignments" / "initech.yaml", "account: initech/10", "account: initech/100")
    same_as_cold(fleet, warm, tmp_path)
    edit(fleet / "customers" / "initech.yaml", "pbx.initech.example.de", "pbx.example.net")
    edit(fleet / "customers" / "globex.yaml", "sip.globex.example.it", "pbx.example.net")
    found = problems_of(fleet, warm)
    assert found == problems_of(fleet, tmp_path / "cold", cold=True)
    assert any("registers as 100@pbx.example.net" in p for p in found), found
