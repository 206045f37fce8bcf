"""Access-log lines -> requests. Pure: bytes in, `Request` tuples out; tested from recorded lines.

Two formats (docs/serving.md):

- `combined`, the nginx and Apache default:
  `ip - user [10/Oct/2026:13:55:36 +0200] "GET /path HTTP/1.1" 200 2326 "referer" "agent"`;
  fields after the user agent (some sites add `$request_time`) are ignored.
- `json`, one object per line, as `provctl serve-config nginx` emits it (`log_format ...
  escape=json`): `msec` (seconds since the epoch with milliseconds) or `time` (ISO 8601),
  `remote_addr`, `request` (the request line) or `method` + `uri`, `status`, `body_bytes_sent`,
  `http_user_agent`, and optionally `request_time` (seconds, millisecond resolution).

A line that does not parse is counted, never fatal. Paths are normalised the way nginx routes
them: no query string, percent-decoded, repeated slashes merged, `.` and `..` resolved, no
leading slash.
"""

from __future__ import annotations

import calendar
import json
import posixpath
import re
from datetime import datetime
from typing import Literal, NamedTuple
from urllib.parse import unquote

Format = Literal["combined", "json"]
FORMATS: tuple[str, ...] = ("combined", "json")


class Request(NamedTuple):
    """One request as the web server logged it (a NamedTuple: a million of them are cheap)."""

    at: float  # unix time the server logged it
    ip: str
    method: str
    path: str  # relative to the document root: "3f9a…/001565aabb01.cfg"
    status: int
    size: int  # body bytes sent (0 for 304)
    agent: str
    duration_ms: float | None = None  # request time, when the format carries it


# One anchored pattern per line, run over a whole chunk (MULTILINE): far faster than splitting
# first. No part may cross a newline, so a garbage line can only fail to match.
_COMBINED = re.compile(
    r'^(\S+) \S+ \S+ \[([^\]\n]+)\] "(\S+) ([^ "\n]+) [^ "\n]+" (\d{3}) (\d+|-) '
    r'"[^"\\\n]*(?:\\.[^"\\\n]*)*" "([^"\\\n]*(?:\\.[^"\\\n]*)*)"[^\n]*$',
    re.MULTILINE,
)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_minutes: dict[str, float] = {}  # "10/Oct/2026:13:55 +0200" -> unix time of that minute


def clf_time(text: str) -> float:
    """`10/Oct/2026:13:55:36 +0200` (nginx $time_local, Apache %t) -> unix time."""
    if len(text) != 26 or text[11] != ":" or text[17] != ":" or text[20] != " ":
        raise ValueError(text)
    key = text[:17] + text[20:]
    base = _minutes.get(key)
    if base is None:
        day, month, year = int(text[0:2]), _MONTHS[text[3:6]], int(text[7:11])
        hour, minute = int(text[12:14]), int(text[15:17])
        if text[21] not in "+-" or not (1 <= day <= 31 and hour < 24 and minute < 60):
            raise ValueError(text)
        sign = 1 if text[21] == "+" else -1
        offset = (int(text[22:24]) * 60 + int(text[24:26])) * 60 * sign
        base = float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)) - offset)
        if len(_minutes) > 100_000:
            _minutes.clear()
        _minutes[key] = base
    second = int(text[18:20])
    if second > 60:
        raise ValueError(text)
    return base + second


_paths: dict[str, str] = {}  # request target -> path: a fleet's phones ask for the same files


def request_path(target: str) -> str:
    """The document-root-relative path of a request target, as nginx would route it."""
    path = _paths.get(target)
    if path is None:
        path = _route(target)
        if len(_paths) > 200_000:
            _paths.clear()
        _paths[target] = path
    return path


def _route(target: str) -> str:
    if target.startswith(("http://", "https://")):  # absolute-form request line
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "%" in path:
        path = unquote(path)
    while "//" in path:
        path = path.replace("//", "/")
    if "/." in path:  # "/./" and "/../" segments, as nginx resolves them
        path = posixpath.normpath(path) + ("/" if path.endswith("/") else "")
    return path.lstrip("/")


_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")


def _unescape(text: str) -> str:
    """nginx writes `"` as \\x22 and other bytes as \\xHH in combined (so UTF-8 arrives as
    several escapes); Apache writes \\" and \\\\. "-" is no value."""
    if "\\" not in text:
        return "" if text == "-" else text
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def parse_combined(text: str) -> tuple[list[Request], int]:
    """Every complete line of `text` -> (requests, lines that did not parse).

    The hot loop of observing: keep it lean (tuple.__new__ builds a Request without the
    keyword machinery; the last parsed time and the routed paths are reused).
    """
    out: list[Request] = []
    append = out.append
    paths = _paths
    new = tuple.__new__
    last_when, at = "", 0.0  # lines come in time order: many share the second before them
    for m in _COMBINED.finditer(text):
        ip, when, method, target, status, size, agent = m.groups()
        if when != last_when:
            try:
                at = clf_time(when)
            except (ValueError, KeyError):
                continue
            last_when = when
        path = paths.get(target)
        if path is None:
            path = request_path(_unescape(target) if "\\" in target else target)
        if "\\" in agent or agent == "-":
            agent = _unescape(agent)
        append(new(Request, (at, ip, method, path, int(status),
                             0 if size == "-" else int(size), agent, None)))
    lines = text.count("\n") + (0 if not text or text.endswith("\n") else 1)
    if "\n\n" in text or text.startswith("\n"):  # blank lines are not counted, as in json
        lines -= sum(1 for line in text.split("\n")[:lines] if not line.strip())
    return out, lines - len(out)


def iso_time(text: str) -> float:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return moment.timestamp()


def _json_request(body: object) -> Request:
    if not isinstance(body, dict):
        raise ValueError("not an object")
    if "msec" in body:
        at = float(body["msec"])
    else:
        at = iso_time(str(body["time"]))
    if "request" in body:
        method, target, _ = str(body["request"]).split(" ")
    else:
        method, target = str(body["method"]), str(body["uri"])
    size = body.get("body_bytes_sent", body.get("bytes", 0))
    duration = body.get("request_time")
    return Request(
        at, str(body["remote_addr"]), method, request_path(target), int(body["status"]),
        int(size) if size not in (None, "", "-") else 0,
        str(body.get("http_user_agent", body.get("user_agent", "")) or ""),
        None if duration in (None, "", "-") else float(duration) * 1000.0,
    )


# The exact layout `serve-config` writes (serving.py NGINX_JSON): read without json.loads.
_SERVED_JSON = re.compile(
    r'\{"msec":(\d+(?:\.\d+)?),"remote_addr":"([^"\\]*)","request":"(\S+) ([^ "\\]+) '
    r'[^"\\]*","status":(\d{3}),"body_bytes_sent":(\d+),'
    r'"http_user_agent":"([^"\\]*(?:\\.[^"\\]*)*)","request_time":(\d+(?:\.\d+)?),'
    r'"host":"[^"\\]*(?:\\.[^"\\]*)*"\}')


def parse_json(text: str) -> tuple[list[Request], int]:
    out: list[Request] = []
    append = out.append
    bad = 0
    loads = json.loads
    fast = _SERVED_JSON.fullmatch
    new = tuple.__new__
    for line in text.splitlines():
        m = fast(line)
        if m is not None:
            at, ip, method, target, status, size, agent, seconds = m.groups()
            if "\\" in agent:
                agent = loads(f'"{agent}"')
            append(new(Request, (float(at), ip, method, request_path(
                loads(f'"{target}"') if "\\" in target else target), int(status), int(size),
                agent, float(seconds) * 1000.0)))
            continue
        if not line.strip():
            continue
        try:
            append(_json_request(loads(line)))
        except (ValueError, KeyError, TypeError):
            bad += 1
    return out, bad


def parse(data: bytes, fmt: Format) -> tuple[list[Request], int]:
    """Complete lines (the caller keeps a partial last line for later) -> (requests, bad)."""
    text = data.decode("utf-8", "replace")
    return parse_combined(text) if fmt == "combined" else parse_json(text)
