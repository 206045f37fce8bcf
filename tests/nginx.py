"""A real nginx on 127.0.0.1 serving a directory, for serving and access-log tests.

`NginxServer(root, server_block=None)` writes a minimal main config (its own `-p` prefix, pid
file, temp paths, error log) and includes `server_block`: the text `provctl serve-config nginx`
prints, or, when None, a plain block that serves `root` (autoindex off, dot-paths denied) and
logs in nginx's `combined` format. It runs `nginx -p PREFIX -c CONF -g 'daemon off;'` as the
current user on a free port. `{port}`, `{root}` and `{access_log}` in `server_block` are filled
in. Needs the Debian `nginx` package (scripts/system-deps installs it).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from webserver import LoopbackServer

NGINX = Path(os.environ.get("PROVCTL_TEST_NGINX", "/usr/sbin/nginx"))
HOST = "127.0.0.1"

DEFAULT_BLOCK = """
server {
    listen 127.0.0.1:{port};
    root {root};
    autoindex off;
    access_log {access_log} combined;
    location ~ /\\. { return 404; }
}
"""


def nginx_missing_reason() -> str | None:
    if not NGINX.exists():
        return f"{NGINX} not found (install the nginx package)"
    return None


class NginxServer(LoopbackServer):
    name = "nginx"

    def __init__(self, root: Path, server_block: str | None = None,
                 access_log: Path | None = None):
        super().__init__(root, server_block if server_block is not None else DEFAULT_BLOCK,
                         access_log)

    def _write_config(self) -> Path:
        for sub in ("logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {self.dir}/tmp/body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
{self.block}
}}
""")
        return conf

    def start(self) -> NginxServer:
        conf = self._write_config()
        self.launch([str(NGINX), "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"])
        return self

    def get(self, path: str, user_agent: str = "provctl-test") -> tuple[int, bytes]:
        """GET a path; (status, body) — 4xx/5xx are returned, not raised."""
        req = urllib.request.Request(self.url + path.lstrip("/"),
                                     headers={"User-Agent": user_agent})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
