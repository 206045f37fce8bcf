"""Serving a target's root to phones: the nginx and Apache configuration `provctl serve-config`
prints, and the routing rules the development server (`provctl serve`) shares with them. Pure
text.

The rules, everywhere: only GET and HEAD; a path with a segment starting with "." is a 404 (the
temporary upload names, any state kept in the tree); only regular files are served, so a
directory (a token directory, the root) is a 404 rather than a listing, a 403 or a redirect that
would confirm that it exists; requests for files that do not exist may be rate-limited per client
address (`limit_req`: scanners guessing MACs and tokens); every request is logged in the format
provctl reads (docs/serving.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# nginx `log_format ... escape=json`: the fields reconciler/uptake/accesslog.py reads.
NGINX_JSON = (
    '\'{"msec":$msec,"remote_addr":"$remote_addr","request":"$request","status":$status,\'\n'
    '    \'"body_bytes_sent":$body_bytes_sent,"http_user_agent":"$http_user_agent",\'\n'
    '    \'"request_time":$request_time,"host":"$host"}\''
)
_RATE = re.compile(r"^\d+r/[sm]$")
# Content types `provctl serve` and the Apache block send for what provctl publishes
# (/etc/mime.types, and so Apache, has no .cfg or .boot).
TYPES = {".xml": "text/xml", ".cfg": "text/plain", ".boot": "text/plain", ".txt": "text/plain"}


@dataclass(frozen=True)
class ServeConfig:
    target: str
    root: str  # absolute path of the document root on the web server's host
    access_log: str
    log_format: str  # combined | json
    listen: str  # "8080", "127.0.0.1:8080", "[::]:443"
    server_name: str = "_"
    tls_cert: str | None = None
    tls_key: str | None = None
    limit_misses: str | None = "30r/m"  # requests for missing files per client; None = off
    burst: int = 60


def default_listen(base_url: str) -> str:
    """The port phones use, from the target's base_url (80 / 443 unless it names one)."""
    parts = urlsplit(base_url)
    if parts.port:
        return str(parts.port)
    return "443" if parts.scheme == "https" else "80"


def server_name(base_url: str) -> str:
    return urlsplit(base_url).hostname or "_"


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def nginx(cfg: ServeConfig) -> str:
    """A snippet for nginx's `http` context (e.g. /etc/nginx/conf.d/provctl-NAME.conf)."""
    if cfg.limit_misses is not None and not _RATE.match(cfg.limit_misses):
        raise ValueError(f"rate {cfg.limit_misses!r}: expected like 30r/m or 2r/s")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ValueError("TLS needs both a certificate and a key")
    ident = _ident(cfg.target)
    fmt = f"provctl_{ident}" if cfg.log_format == "json" else "combined"
    zone = f"provctl_{ident}_misses"
    ssl = " ssl" if cfg.tls_cert else ""
    out = [
        f"# provctl serve-config nginx --target {cfg.target}",
        "# The phones' provisioning server for this target. Put it in the http context",
        "# (e.g. /etc/nginx/conf.d/); provctl reads the access log it writes (docs/serving.md).",
    ]
    if cfg.log_format == "json":
        out += [f"log_format {fmt} escape=json", f"    {NGINX_JSON};"]
    if cfg.limit_misses:
        out += ["# Requests for files that do not exist, per client address: scanners guessing",
                "# MACs and tokens get 429; a phone asks for a few optional files at boot.",
                f"limit_req_zone $binary_remote_addr zone={zone}:10m rate={cfg.limit_misses};"]
    out += [
        "server {",
        f"    listen {cfg.listen}{ssl};",
        f"    server_name {cfg.server_name};",
    ]
    if cfg.tls_cert:
        out += [f"    ssl_certificate {cfg.tls_cert};",
                f"    ssl_certificate_key {cfg.tls_key};",
                "    ssl_protocols TLSv1.2 TLSv1.3;"]
    out += [
        f"    root {cfg.root};",
        "    autoindex off;",
        "    server_tokens off;",
        f"    access_log {cfg.access_log} {fmt};",
        "    # Nothing under a dot-directory or dot-file (temporary uploads, state) is served.",
        "    location ~ (^|/)\\. { return 404; }",
        "    # Regular files only: a directory (a token directory) is a 404, never a listing,",
        "    # a 403 or a redirect that would confirm it exists.",
        "    location / {",
        "        limit_except GET { deny all; }  # GET and HEAD only",
        "        try_files $uri @missing;",
        "    }",
        "    location @missing {",
    ]
    if cfg.limit_misses:
        out += [f"        limit_req zone={zone} burst={cfg.burst} nodelay;",
                "        limit_req_status 429;"]
    # try_files, not `return`: return ends the request before limit_req's phase would run.
    out += ["        try_files $uri =404;", "    }", "}", ""]
    return "\n".join(out)


# The log line of the Apache block: `combined` with %b (body bytes, "-" for none), not Debian's
# %O (bytes on the wire, headers included), so the size is the body's, as nginx logs it.
APACHE_COMBINED = (
    '"%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\""')
# Ports the stock Apache configuration listens on already (Debian's ports.conf, httpd.conf):
# a second `Listen` for one of them is a syntax error.
STOCK_PORTS = ("80", "443")


def apache(cfg: ServeConfig) -> str:
    """A `VirtualHost` for Apache 2.4 (e.g. /etc/apache2/sites-available/provctl-NAME.conf).

    The same rules as nginx() but the rate limit of misses, which needs a module Apache does not
    ship (mod_evasive, mod_security).
    """
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ValueError("TLS needs both a certificate and a key")
    ident = _ident(cfg.target)
    fmt = f"provctl_{ident}"
    port = cfg.listen.rsplit(":", 1)[-1]
    modules = "rewrite alias mime authz_core" + (" ssl" if cfg.tls_cert else "")
    out = [
        f"# provctl serve-config apache --target {cfg.target}",
        "# The phones' provisioning server for this target, for Apache 2.4: e.g. as",
        f"# /etc/apache2/sites-available/provctl-{cfg.target}.conf, then",
        f"# `a2ensite provctl-{cfg.target}` and `a2enmod {modules}`.",
        "# provctl reads the access log it writes (docs/serving.md).",
    ]
    if cfg.listen in STOCK_PORTS:
        out.append(f"# Listen {cfg.listen}: in the stock configuration already (ports.conf)")
    else:
        out.append(f"Listen {cfg.listen}")
    out += [f"<VirtualHost *:{port}>"]
    if cfg.server_name != "_":
        out.append(f"    ServerName {cfg.server_name}")
    if cfg.tls_cert:
        out += ["    SSLEngine on",
                f'    SSLCertificateFile "{cfg.tls_cert}"',
                f'    SSLCertificateKeyFile "{cfg.tls_key}"',
                "    SSLProtocol -all +TLSv1.2 +TLSv1.3"]
    out += [
        f'    DocumentRoot "{cfg.root}"',
        "    ServerSignature Off",
        "    TraceEnable off",
        f"    LogFormat {APACHE_COMBINED} {fmt}",
        f'    CustomLog "{cfg.access_log}" {fmt}',
        *(f"    AddType {kind} {' '.join(sorted(ext for ext, k in TYPES.items() if k == kind))}"
          for kind in sorted(set(TYPES.values()))),
        "    # Regular files only: a directory (a token directory, the root) is a 404, never a",
        "    # listing, a 403 or a redirect to dir/ that would confirm it exists.",
        "    RewriteEngine On",
        '    RewriteCond "%{DOCUMENT_ROOT}%{REQUEST_URI}" !-f',
        "    RewriteRule ^ - [R=404,L]",
        "    # Nothing under a dot-directory or dot-file (temporary uploads, state) is served.",
        '    RedirectMatch 404 "(^|/)\\."',
        f'    <Directory "{cfg.root}">',
        "        Options -Indexes -FollowSymLinks -MultiViews",
        "        AllowOverride None",
        "        # GET and HEAD only: others 403",
        "        Require method GET HEAD",
        "    </Directory>",
        "    # No rate limit of misses: that needs mod_evasive or mod_security; provctl reports",
        "    # the scanners either way.",
        "</VirtualHost>",
        "",
    ]
    return "\n".join(out)
