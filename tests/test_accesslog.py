"""Parsing access logs, from lines recorded from a real nginx (the block `serve-config` prints,
in both formats) and from Apache's documented combined format."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.uptake.accesslog import clf_time, parse, request_path

LOGS = Path(__file__).parent / "fixtures" / "logs"
TOKEN = "0123456789abcdef0123456789abcdef"
YEALINK = "Yealink SIP-T46U 108.86.0.95 00:15:65:aa:bb:01"


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_recorded_nginx_lines(fmt):
    requests, bad = parse((LOGS / f"nginx-{fmt}.log").read_bytes(), fmt)  # type: ignore[arg-type]

    assert bad == 0
    assert [(r.method, r.status) for r in requests] == [
        ("GET", 200), ("GET", 200), ("HEAD", 200), ("GET", 304), ("GET", 404), ("GET", 404),
        ("POST", 403), ("GET", 404), ("GET", 404), ("GET", 429), ("GET", 429), ("GET", 200)]
    first, quoted = requests[0], requests[1]
    assert first.path == f"{TOKEN}/001565aabb01.cfg" and first.agent == YEALINK
    assert first.ip == "127.0.0.1" and first.size == 6
    assert quoted.path == first.path  # `//` merged, query string dropped
    assert quoted.agent == 'ua "quoted" \\ back'  # nginx escapes differ per format; same text
    assert requests[3].size == 0  # 304
    assert requests[-1].path == first.path  # %30 decoded, as nginx routes it
    assert requests[-1].agent == "ü日本"
    assert requests[4].path == f"{TOKEN}/" and requests[5].path == ".provctl/manifest.json"
    # both formats carry the same moment (combined to the second, json to the millisecond)
    assert abs(first.at - 1796162913) < 120
    if fmt == "json":
        assert first.duration_ms == 0.0 and first.at % 1 != 0
    else:
        assert first.duration_ms is None


def test_recorded_nginx_formats_agree():
    combined, _ = parse((LOGS / "nginx-combined.log").read_bytes(), "combined")
    as_json, _ = parse((LOGS / "nginx-json.log").read_bytes(), "json")
    strip = [(r.ip, r.method, r.path, r.status, r.agent) for r in combined]
    assert strip == [(r.ip, r.method, r.path, r.status, r.agent) for r in as_json]


def test_apache_combined_and_garbage_lines_are_counted_not_fatal():
    requests, bad = parse((LOGS / "apache-combined.log").read_bytes(), "combined")

    # the manual's example line, an IPv6 client; not: a 408 without request line, a request
    # line with spaces, prose, an impossible date, a line cut before its user agent
    assert [(r.ip, r.path, r.status) for r in requests] == [
        ("127.0.0.1", "apache_pb.gif", 200),
        ("2001:db8::7", f"{TOKEN}/000413AABB04.xml", 200)]
    assert bad == 5
    assert requests[0].at == clf_time("10/Oct/2000:13:55:36 -0700") == 971211336.0
    assert requests[0].agent == "Mozilla/4.08 [en] (Win98; I ;Nav)"


def test_json_variants_and_garbage():
    lines = b"\n".join([
        b'{"time":"2026-12-01T23:00:00+01:00","remote_addr":"192.0.2.1","method":"GET",'
        b'"uri":"/a/b.cfg?x","status":"200","bytes":"10","user_agent":"x"}',
        b'{"msec":1796162913.5,"remote_addr":"192.0.2.1","request":"GET /c HTTP/1.1",'
        b'"status":404,"body_bytes_sent":0,"http_user_agent":"","request_time":0.012}',
        b'{"msec":1796162913.5}',  # no status
        b'[1, 2]',
        b'{"time":"2026-12-01T23:00:00","remote_addr":"x","request":"GET / HTTP/1.1",'
        b'"status":200}',  # a time without zone is ambiguous
        b'{not json',
        b'',
    ])
    requests, bad = parse(lines, "json")
    assert [(r.path, r.status, r.size) for r in requests] == [("a/b.cfg", 200, 10), ("c", 404, 0)]
    assert requests[0].at == 1796162400.0
    assert requests[1].duration_ms == pytest.approx(12.0)
    assert bad == 4


def test_blank_lines_are_not_counted():
    line = (LOGS / "nginx-combined.log").read_bytes().splitlines(keepends=True)[0]
    assert parse(b"\n" + line + b"\n\n" + line + b"junk\n\n", "combined")[1] == 1
    assert len(parse(line + b"\n" + line, "combined")[0]) == 2


def test_request_paths_are_routed_like_nginx():
    assert request_path("/a//b/./c.cfg?mac=1") == "a/b/c.cfg"
    assert request_path("/a/../tok/x.cfg") == "tok/x.cfg"
    assert request_path("/tok/") == "tok/"
    assert request_path("http://prov.example.net/tok/x.cfg") == "tok/x.cfg"
    assert request_path("/tok/%41%42.cfg") == "tok/AB.cfg"
    assert request_path("/") == ""


def test_the_served_json_layout_is_read_without_json_loads_and_the_same():
    import json

    from reconciler.uptake.accesslog import _SERVED_JSON, _json_request

    for line in (LOGS / "nginx-json.log").read_text().splitlines():
        assert _SERVED_JSON.fullmatch(line), line
        assert parse(line.encode(), "json")[0] == [_json_request(json.loads(line))]
