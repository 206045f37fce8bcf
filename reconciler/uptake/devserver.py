"""`provctl serve`: a small HTTP server for a local target, for the quick start and for trying a
phone or curl against it. Production belongs behind nginx or Apache (`provctl serve-config`).

It follows the routing rules of serving.py — GET and HEAD only, nothing under a dot-path, regular
files only (a directory is a 404, never a listing), `If-Modified-Since` answered with 304 — and
writes every request to the target's access log in the format provctl reads, so the loop works
the same as behind nginx. It does not rate-limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from reconciler.uptake.accesslog import request_path
from reconciler.uptake.serving import TYPES


def resolve(root: Path, rel: str) -> Path | None:
    """The regular file a request path names under `root`, or None (404)."""
    if any(part.startswith(".") for part in rel.split("/") if part) or rel.endswith("/"):
        return None
    if not rel:
        return None
    base = root.resolve()
    path = (base / rel).resolve()
    if base not in path.parents or not path.is_file():
        return None  # outside the root (a symlink, `..`), a directory, or nothing
    return path


def log_line(fmt: str, *, at: float, ip: str, request: str, status: int, size: int,
             agent: str, seconds: float) -> str:
    if fmt == "json":
        return json.dumps({"msec": round(at, 3), "remote_addr": ip, "request": request,
                           "status": status, "body_bytes_sent": size,
                           "http_user_agent": agent, "request_time": round(seconds, 3)},
                          ensure_ascii=False)
    from time import gmtime, strftime

    def quote(text: str) -> str:
        return "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else
                       "".join(f"\\x{b:02X}" for b in c.encode()) for c in text)

    when = strftime("%d/%b/%Y:%H:%M:%S +0000", gmtime(at))
    return (f'{ip} - - [{when}] "{quote(request)}" {status} {size} "-" '
            f'"{quote(agent) if agent else "-"}"')


class _Handler(BaseHTTPRequestHandler):
    server_version = "provctl-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse(self) -> None:
        self.close_connection = True  # its body, if any, is not read
        self._reply(403, b"")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def _serve(self, body: bool) -> None:
        server: DevServer = self.server  # type: ignore[assignment]
        path = resolve(server.root, request_path(self.path))
        if path is None:
            self._reply(404, b"not found\n", body=body)
            return
        stat = path.stat()
        modified = formatdate(stat.st_mtime, usegmt=True)
        since = self.headers.get("If-Modified-Since")
        if since:
            try:
                if int(parsedate_to_datetime(since).timestamp()) >= int(stat.st_mtime):
                    self._reply(304, b"", {"Last-Modified": modified}, body=body)
                    return
            except (TypeError, ValueError):
                pass
        data = path.read_bytes()
        self._reply(200, data, {"Last-Modified": modified,
                                "Content-Type": TYPES.get(path.suffix, "application/octet-stream")},
                    body=body)

    def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None,
               body: bool = True) -> None:
        server: DevServer = self.server  # type: ignore[assignment]
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Server", self.server_version)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        sent = len(data) if body and status == 200 else 0
        if body and data:
            self.wfile.write(data)
        server.log(self.client_address[0], self.requestline, status, sent,
                   self.headers.get("User-Agent", "") if self.headers else "")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # the access log is written by DevServer.log


class DevServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, log: IO[str] | None, fmt: str,
                 clock: Callable[[], float]):
        super().__init__(address, _Handler)
        self.root = root
        self.out = log
        self.format = fmt
        self.clock = clock
        self._lock = threading.Lock()

    def log(self, ip: str, request: str, status: int, size: int, agent: str) -> None:
        if self.out is None:
            return
        line = log_line(self.format, at=self.clock(), ip=ip, request=request, status=status,
                        size=size, agent=agent, seconds=0.0)
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()
