"""Serving a target's root with a real Apache 2.4 configured by `provctl serve-config apache`:
what a phone (or a scanner) can fetch, and the access log provctl reads back.

The guarantees of the nginx tests (test_serving.py, test_served_tree.py, test_uptake_nginx.py):
a phone's file at its tokenised URL with its content type; unknown tokens, the root and token
directories 404 (no listing, no redirect to `dir/`); dot-paths and a meta_root inside the root
404; GET and HEAD only; the `combined` log parsed so that the phones that fetched are `current`
and a scanner is reported. One Apache for the module: the applied test fleet behind the printed
block, and beside it, on the same port, a careless virtual host (`careless.test`: Debian's
default site pointed at the same root) that shows what the block's rules hold back.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apache import ApacheServer, apache_missing_reason, check, named_modules
from fleet_fixtures import EXAMPLE, FLEET_SECRET, SECRETS, commit, edit, git, run
from phones import Phone, scan

from reconciler.render.addressing import url_token
from reconciler.targets.base import TMP_PREFIX
from reconciler.uptake import serving

pytestmark = pytest.mark.integration

YEALINK = Phone("yealink", "001565aabb01", "T46U", "108.86.0.95", ip="127.0.0.21")
SNOM = Phone("snom", "000413aabb04", "D785", "10.1.54.13", ip="127.0.0.22")
POLY = Phone("poly", "0004f2aa0001", "VVX450", "6.4.6.2390", ip="127.0.0.23")
GRANDSTREAM = Phone("grandstream", "000b82bb0001", "GXP2140", "1.0.11.79", ip="127.0.0.24")
CARELESS = "careless.test"
CARELESS_SITE = f"""
<VirtualHost *:{{port}}>
    ServerName {CARELESS}
    DocumentRoot "{{root}}"
    <Directory "{{root}}">
        Options Indexes FollowSymLinks
        AllowOverride None
        Require all granted
    </Directory>
</VirtualHost>
"""


@dataclass
class Served:
    fleet: Path
    root: Path
    log: Path
    block: str
    server: ApacheServer

    def url(self, mac: str) -> str:
        return f"{self.server.url}{url_token(FLEET_SECRET, mac)}/"


def _need_apache() -> None:
    reason = apache_missing_reason()
    if reason and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI must run the Apache tests: {reason} (scripts/system-deps installs it)")
    if reason:
        pytest.skip(reason)


def serve_config(fleet: Path, *extra: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert run(fleet, "serve-config", "apache", "--target", "local", *extra) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The test fleet applied (its records in <root>/.provctl) and Apache serving its root."""
    _need_apache()
    tmp = tmp_path_factory.mktemp("apache")
    fleet, log = tmp / "fleet", tmp / "logs" / "access.log"
    log.parent.mkdir()
    shutil.copytree(EXAMPLE, fleet, ignore=shutil.ignore_patterns("out", ".provctl"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROVCTL_FLEET_SECRET", FLEET_SECRET)
        env.setenv("PROVCTL_SECRETS_FILE", str(SECRETS))
        env.delenv("PROVCTL_STATE_DIR", raising=False)
        edit(fleet / "provisioning.yaml", 'base_url: "http://localhost:8080/"}',
             'base_url: "http://localhost:8080/", meta_root: ./out/www/.provctl, '
             f'access_log: {{path: "{log}", format: combined, scan_threshold: 5}}}}')
        (fleet / ".gitignore").write_text("out/\n.provctl/\n")
        git(fleet, "init", "-q")
        commit(fleet, "initial fleet")
        with contextlib.redirect_stdout(io.StringIO()):
            assert run(fleet, "apply") == 2
        block = serve_config(fleet, "--listen", "127.0.0.1:{port}")
        root = fleet / "out" / "www"
        server = ApacheServer(root, block + CARELESS_SITE, access_log=log).start()
        try:
            yield Served(fleet, root, log, block, server)
        finally:
            server.cleanup()


def devices(fleet: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert run(fleet, "status", "--devices", "--format", "json") == 0
    return json.loads(capsys.readouterr().out)["devices"]


def test_a_phones_file_is_served_at_its_token_url_with_its_content_type(served):
    token = url_token(FLEET_SECRET, YEALINK.mac)
    cfg = served.root / token / f"{YEALINK.mac}.cfg"
    status, headers, body = served.server.request(f"{token}/{YEALINK.mac}.cfg")
    assert (status, body) == (200, cfg.read_bytes())
    assert headers["Content-Type"] == "text/plain"
    status, headers, body = served.server.request(f"{token}/{YEALINK.mac}.cfg", "HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(cfg.stat().st_size))
    snom = f"{url_token(FLEET_SECRET, SNOM.mac)}/{SNOM.mac.upper()}.xml"
    status, headers, body = served.server.request(snom)
    assert (status, headers["Content-Type"]) == (200, "text/xml")
    assert body == (served.root / snom).read_bytes()


def test_unknown_tokens_the_root_and_token_directories_are_404_never_listed(served):
    token = url_token(FLEET_SECRET, YEALINK.mac)
    unknown = url_token(FLEET_SECRET, "001565ffffff")
    for path in (f"{unknown}/001565ffffff.cfg", f"{unknown}/", f"{token}/001565ffffff.cfg",
                 "", f"{token}/", token, f"{token}/{YEALINK.mac}.cfg/", "index.html"):
        status, _, body = served.server.request(path)
        assert status == 404, path
        assert token.encode() not in body and YEALINK.mac.encode() not in body, path
        assert b"Apache/" not in body, path  # ServerSignature Off (Debian's security.conf: On)
    # what the same Apache does without the block's rules: a listing and a redirect to dir/
    status, _, body = served.server.request(f"{token}/", host=CARELESS)
    assert status == 200 and f"{YEALINK.mac}.cfg".encode() in body
    status, headers, _ = served.server.request(token, host=CARELESS)
    assert status == 301 and headers["Location"].endswith(f"/{token}/")


def test_dot_paths_and_the_meta_directory_inside_the_root_are_404(served):
    meta = served.root / ".provctl"
    assert (meta / "manifest.json").is_file()  # meta_root: ./out/www/.provctl, mode 0700
    assert oct(meta.stat().st_mode & 0o777) == "0o700"
    token = url_token(FLEET_SECRET, YEALINK.mac)
    upload = served.root / token / f"{TMP_PREFIX}{YEALINK.mac}.cfg.1a2b3c"  # an upload under way
    upload.write_text("half an upload\n")
    try:
        for path in (".provctl/manifest.json", ".provctl/", ".provctl", "%2eprovctl/manifest.json",
                     f"{token}/../.provctl/manifest.json", f"{token}/{upload.name}"):
            status, _, body = served.server.request(path)
            assert status == 404, path
            assert token.encode() not in body, path
        # the files are there and readable by this Apache: its configuration is what hides them
        status, _, body = served.server.request(".provctl/manifest.json", host=CARELESS)
        assert status == 200 and token.encode() in body
        assert served.server.request(f"{token}/{upload.name}", host=CARELESS)[0] == 200
    finally:
        upload.unlink()


def test_only_get_and_head_are_answered(served):
    path = f"{url_token(FLEET_SECRET, YEALINK.mac)}/{YEALINK.mac}.cfg"
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, _, body = served.server.request(path, method)
        assert status == 403 and b"sip" not in body.lower(), method
    assert served.server.request(path, "TRACE")[0] == 405
    assert served.server.request(path, "POST", host=CARELESS)[0] == 200  # Apache's default


def test_phones_fetch_and_provctl_reads_apaches_log(served, capsys):
    assert YEALINK.boot(served.url(YEALINK.mac)) == [
        ("y000000000000.boot", 404), ("001565aabb01.boot", 200), ("001565aabb01.cfg", 200)]
    assert SNOM.boot(served.url(SNOM.mac)) == [("000413AABB04.xml", 200)]
    assert POLY.boot(served.url(POLY.mac)) == [
        ("0004f2aa0001.cfg", 200), ("0004f2aa0001-provctl.cfg", 200),
        ("0004f2aa0001-directory.xml", 404)]
    assert GRANDSTREAM.boot(served.url(GRANDSTREAM.mac)) == [
        ("cfg000b82bb0001", 404), ("cfg000b82bb0001.xml", 200)]

    body = devices(served.fleet, capsys)

    by_mac = {d["mac"]: d for d in body["devices"]}
    head = git(served.fleet, "rev-parse", "HEAD").strip()
    for phone in (YEALINK, SNOM, POLY, GRANDSTREAM):
        seen = by_mac[phone.mac]
        assert seen["state"] == "current", (phone.vendor, seen)
        assert seen["last_fetch"]["revision"] == head
        assert seen["last_fetch"]["ip"] == phone.ip
        assert seen["last_fetch"]["phone"]["vendor"] == phone.vendor
        assert seen["last_fetch"]["phone"]["firmware"] == phone.firmware
        assert seen["notes"] == []
    assert by_mac["001565aabb02"]["state"] == "never-fetched"
    assert body["logs"][0]["path"] == str(served.log) and body["logs"][0]["unparsed"] == 0
    # the size logged is the body's (%b), not Debian's `combined` %O with the headers
    cfg = served.root / url_token(FLEET_SECRET, YEALINK.mac) / f"{YEALINK.mac}.cfg"
    line = next(line for line in served.log.read_text().splitlines()
                if line.startswith(f"{YEALINK.ip} ") and f"/{YEALINK.mac}.cfg " in line)
    assert re.search(r'" 200 (\d+) ', line).group(1) == str(cfg.stat().st_size)
    logged = datetime.strptime(line.split("[", 1)[1].split("]", 1)[0], "%d/%b/%Y:%H:%M:%S %z")
    assert abs(datetime.now(UTC) - logged) < timedelta(minutes=1)
    assert f'"{YEALINK.user_agent}"' in line


def test_a_scanner_in_apaches_log_is_reported(served, capsys):
    assert YEALINK.boot(served.url(YEALINK.mac))[0] == ("y000000000000.boot", 404)
    assert scan(served.server.url, 6, ip="127.0.0.66") == [404] * 6
    assert scan(served.server.url, 4, ip="127.0.0.67") == [404] * 4  # under scan_threshold: 5
    capsys.readouterr()
    assert run(served.fleet, "status", "--devices") == 0
    text = capsys.readouterr().out
    assert "SCANNING on local: 127.0.0.66 asked for 6 unknown paths" in text
    reported = text.split("SCANNING", 1)[1]
    assert "127.0.0.67" not in reported and YEALINK.ip not in reported


# --- apache2 -t of every kind of block serve-config prints --------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


OPTIONS = {
    "defaults": [],  # the port of base_url (8080), ServerName localhost
    "port-80": ["--listen", "80"],  # Listen 80 is ports.conf's
    "address": ["--listen", "127.0.0.1:8080", "--server-name", "_"],
    "tls-443": ["--listen", "443", "--tls"],
    "tls-ipv6": ["--listen", "[::]:8443", "--server-name", "prov1.example.net", "--tls"],
    "paths": ["--root", "{tmp}/srv/provisioning", "--access-log", "{tmp}/log/prov.log",
              "--limit-misses", "off"],
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_every_printed_block_passes_apache2_t(served, tmp_path, options):
    if "--tls" in options:
        cert, key = _self_signed(tmp_path)
        options = [*options[:-1], "--tls-cert", str(cert), "--tls-key", str(key)]
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    (tmp_path / "srv" / "provisioning").mkdir(parents=True)  # apache2 -t: the root exists,
    (tmp_path / "log").mkdir()  # and the directory of the log
    block = serve_config(served.fleet, *options)

    for stock in (True, False):  # Debian's modules, or only those its a2enmod line names
        rc, out = check(block, stock=stock)
        assert (rc, out.strip().splitlines()[-1]) == (0, "Syntax OK"), (stock, out, block)
    assert ("ssl" in named_modules(block)) == ("--tls-cert" in options)


def test_a_block_of_any_target_name_and_log_format_passes_apache2_t():
    _need_apache()
    cfg = serving.ServeConfig(target="eu-1.prov", root="/srv/p", access_log="/tmp/p.log",
                              log_format="json", listen="8080")
    block = serving.apache(cfg)  # a root that does not exist: a warning
    assert "CustomLog \"/tmp/p.log\" provctl_eu_1_prov" in block
    assert check(block)[0] == 0
    assert check(block + "Listen 80\n")[0] != 0  # the check judges: ports.conf has Listen 80


def test_a_tls_block_serves_https(served, tmp_path):
    cert, key = _self_signed(tmp_path)
    block = serve_config(served.fleet, "--listen", "127.0.0.1:{port}", "--tls-cert", str(cert),
                         "--tls-key", str(key), "--access-log", "{access_log}")
    server = ApacheServer(served.root, block, access_log=tmp_path / "tls.log").start()
    try:
        token = url_token(FLEET_SECRET, YEALINK.mac)
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        status, _, body = server.request(f"{token}/{YEALINK.mac}.cfg", tls=context)
        assert (status, body) == (200, (served.root / token / f"{YEALINK.mac}.cfg").read_bytes())
        assert server.request(".provctl/manifest.json", tls=context)[0] == 404
        logged = (tmp_path / "tls.log").read_text()
        assert f'"GET /{token}/{YEALINK.mac}.cfg HTTP/1.1" 200' in logged
    finally:
        server.cleanup()


def test_a_target_without_an_access_log_is_told_what_apache_writes(fleet, capsys):
    capsys.readouterr()
    assert run(fleet, "serve-config", "apache", "--target", "local") == 0
    out, err = capsys.readouterr()
    log = "/var/log/apache2/provctl-local.access.log"
    assert f'CustomLog "{log}" provctl_local' in out
    assert f"access_log: {{path: {log}, format: combined}}" in err
    assert "json" not in err
    assert "\nListen 8080\n<VirtualHost *:8080>\n    ServerName localhost\n" in out  # base_url
