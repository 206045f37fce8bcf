"""A real Apache 2.4 on 127.0.0.1 serving a directory, for serving and access-log tests.

`ApacheServer(root, vhost)` writes a main configuration of its own (ServerRoot, PidFile,
ErrorLog, Mutex and runtime directory in a temporary directory) that is Debian's apache2.conf
where it matters here: the modules Debian enables by default (mod_autoindex, mod_dir and
mod_negotiation among them: what would list a directory or redirect `tok` to `tok/`), the
modules the block names on its `a2enmod` line, `<Directory />` denied, `combined` defined with
`%O` (bytes on the wire), /etc/mime.types, and signatures and TRACE on (compiled-in defaults
that Debian's security.conf leaves or sets so). It includes `vhost`: the text
`provctl serve-config apache` prints, with `{port}`, `{root}` and `{access_log}` filled in.

It runs `/usr/sbin/apache2 -f CONF -DFOREGROUND` as the current user. Apache refuses to serve as
root; as root the fixture runs it as nobody with CAP_DAC_OVERRIDE only (setpriv), so that it
reads the tests' 0700 temporary directories as nginx's `user root` does, and what keeps a file
from being served is the configuration, never a permission. `check(vhost)` is `apache2 -t`.
Needs /usr/sbin/apache2 and its modules (Debian's apache2-bin; scripts/system-deps installs it).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from webserver import LoopbackServer

APACHE = Path(os.environ.get("PROVCTL_TEST_APACHE", "/usr/sbin/apache2"))
MODULES = Path("/usr/lib/apache2/modules")
HOST = "127.0.0.1"
# /etc/apache2/mods-enabled after `apt-get install apache2` (Debian 12, Apache 2.4)
DEBIAN_MODULES = (
    "mpm_event", "access_compat", "alias", "auth_basic", "authn_core", "authn_file",
    "authz_core", "authz_host", "authz_user", "autoindex", "deflate", "dir", "env", "filter",
    "mime", "negotiation", "reqtimeout", "setenvif", "status")
# Debian's ports.conf: what a block must not repeat
PORTS_CONF = "Listen 80\n<IfModule ssl_module>\n    Listen 443\n</IfModule>\n"


def apache_missing_reason() -> str | None:
    if not APACHE.exists():
        return f"{APACHE} not found (install the apache2-bin package)"
    if not (MODULES / "mod_rewrite.so").exists():
        return f"{MODULES}/mod_rewrite.so not found (install the apache2-bin package)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv not found (util-linux): needed to run Apache as nobody when root"
    return None


def named_modules(vhost: str) -> list[str]:
    """The modules a block says it needs on its `# ... a2enmod rewrite alias.` line."""
    match = re.search(r"a2enmod ([a-z_0-9 ]+)", vhost)
    return match.group(1).split() if match else []


def main_config(directory: Path, vhost: str, stock: bool = True, ports: bool = False) -> str:
    """The main configuration around `vhost`: Debian's defaults (`stock`) or only the MPM and
    the modules the block names; with Debian's ports.conf when `ports`."""
    wanted = [*(DEBIAN_MODULES if stock else ("mpm_event",)), *named_modules(vhost)]
    modules = "".join(f"LoadModule {name}_module {MODULES}/mod_{name}.so\n"
                      for name in dict.fromkeys(wanted))
    return f"""ServerRoot "{directory}"
PidFile "{directory}/apache2.pid"
DefaultRuntimeDir "{directory}/run"
Mutex file:{directory}/run default
ErrorLog "{directory}/error.log"
LogLevel warn
ServerName {HOST}
ServerTokens OS
ServerSignature On
TraceEnable On
{modules}{PORTS_CONF if ports else ""}
<IfModule mpm_event_module>
    StartServers 1
    ServerLimit 1
    ThreadsPerChild 16
    MaxRequestWorkers 16
    MinSpareThreads 1
    MaxSpareThreads 16
</IfModule>
<IfModule mime_module>
    TypesConfig /etc/mime.types
</IfModule>
<IfModule dir_module>
    DirectoryIndex index.html
</IfModule>
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
AccessFileName .htaccess
<FilesMatch "^\\.ht">
    Require all denied
</FilesMatch>
LogFormat "%h %l %u %t \\"%r\\" %>s %O \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" combined
{vhost}
"""


def check(vhost: str, stock: bool = True) -> tuple[int, str]:
    """`apache2 -t` of `vhost` in the main configuration with Debian's ports.conf."""
    directory = Path(tempfile.mkdtemp(prefix="provctl-apache-t-"))
    try:
        (directory / "run").mkdir()
        conf = directory / "apache2.conf"
        conf.write_text(main_config(directory, vhost, stock=stock, ports=True))
        done = subprocess.run([str(APACHE), "-t", "-f", str(conf)], capture_output=True,
                              text=True, timeout=30)
        return done.returncode, done.stdout + done.stderr
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class ApacheServer(LoopbackServer):
    name = "apache2"

    def __init__(self, root: Path, vhost: str, access_log: Path | None = None):
        super().__init__(root, vhost, access_log)

    @property
    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def details(self) -> str:
        return self.error_log

    def start(self) -> ApacheServer:
        (self.dir / "run").mkdir(exist_ok=True)
        conf = self.dir / "apache2.conf"
        conf.write_text(main_config(self.dir, self.block))
        command = [str(APACHE), "-f", str(conf), "-DFOREGROUND"]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       "--inh-caps=+dac_override", "--ambient-caps=+dac_override", *command]
        try:
            self.launch(command)
        except BaseException:
            self.cleanup()
            raise
        return self

    def request(self, path: str, method: str = "GET", host: str | None = None,
                user_agent: str = "provctl-test", tls: ssl.SSLContext | None = None,
                ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request as sent: redirects are not followed."""
        conn = (http.client.HTTPSConnection(HOST, self.port, timeout=5, context=tls) if tls
                else http.client.HTTPConnection(HOST, self.port, timeout=5))
        try:
            conn.request(method, "/" + path.lstrip("/"),
                         headers={"User-Agent": user_agent, "Host": host or HOST})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def get(self, path: str, host: str | None = None) -> tuple[int, bytes]:
        status, _, body = self.request(path, host=host)
        return status, body
