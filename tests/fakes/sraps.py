"""A faithful fake of the Snom SRAPS REST API, and of Gigaset GRAPE (reference §2.1, §5.1, §7).

Hawk 1.x (SHA-256) verification, in the reference server's order: header parsed, id known, MAC
recomputed over the request as received (method, raw target, the Host header's host and port —
or `external_host`/`external_port` when the fake stands behind a proxy), payload `hash` checked
only when present, nonce not replayed, ts within ±`skew_s` (60) seconds. Every failure is 401
with `WWW-Authenticate: Hawk ...`; a stale ts carries `ts` and `tsm` so the client can resync.

Resources: `tokens/{id}` → company link → endpoints link (absolute URLs on the host used);
`settings/` paginated (default page size 20, max 1000, `Link: <...>; rel="next"`), seeded with
BOTH `setting_server` settings (the global URL one first, then the phone-settings one on a later
page) and GRAPE's `ProvisioningServer`; `PUT endpoints/{mac}` is a full replace (unknown setting
uuid → 400, lower-case 12-hex MAC only); GET/DELETE → 404 when absent; the endpoint list is
paginated too; another company's MAC → `other_status` (403) `{"detail": "User lacks permission
to endpoint"}` (status and shape are an assumption, see the reference); product-groups and
provisioning-profiles (GET, POST).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from typing import Any
from urllib.parse import urlencode

from .server import FakeServer, Reply, Request

PREFIX = "/api/v1/"
MAC = re.compile(r"^[0-9a-f]{12}$")
ATTR = re.compile(r'(\w+)="([^"\\]*)"')

GLOBAL_SERVER_URL = "5683038cec6c4fa9be95b2de9d1750e8"
PHONE_SETTING_SERVER = "50a400560eec4dc0b96b026094e06562"
PROVISIONING_SERVER = "9f1c3a0e2b7d4c0f8a5e6d7c8b9a0f1e"
ENDPOINT_FIELDS = ("autoprovisioning_enabled", "settings_manager", "provisioning_profile",
                   "warranty_exp_warning_period", "description")


def _setting(uid: str, param: str, name: str, section: str, field_type: str,
             description: str = "") -> dict[str, Any]:
    return {"uuid": uid, "name": name, "param_name": param, "section": section,
            "field_type": field_type, "group": None, "product_groups": [],
            "uses_permissions": section == "phone-settings", "multiple": False, "fkey": None,
            "choices": None, "default_value": "", "description": description, "attrs": {},
            "indexed": {}, "no_profiles": False}


def default_settings(filler: int = 40) -> list[dict[str, Any]]:
    """A settings catalogue where the right `setting_server` is NOT the first match."""
    settings = [
        _setting(uuid.UUID(int=i + 1).hex, f"filler_{i:03d}", f"Filler {i}", "phone-settings",
                 "text")
        for i in range(filler)
    ]
    settings.insert(3, _setting(GLOBAL_SERVER_URL, "setting_server", "Setting Server URL",
                                "global", "url"))
    settings.insert(min(len(settings), 25), _setting(
        PHONE_SETTING_SERVER, "setting_server", "Setting Server", "phone-settings", "text",
        "Setting Server for Desk phones"))
    settings.insert(min(len(settings), 30), _setting(
        PROVISIONING_SERVER, "ProvisioningServer", "Provisioning Server", "global", "url"))
    return settings


class FakeSraps(FakeServer):
    def __init__(
        self,
        credentials: dict[str, str] | None = None,
        *,
        flavour: str = "snom",
        skew_s: int = 60,
        max_page_size: int = 1000,
        other_status: int = 403,
        external_host: str | None = None,
        external_port: int | None = None,
        filler_settings: int = 40,
    ):
        super().__init__()
        assert flavour in ("snom", "grape")
        self.flavour = flavour
        self.skew_s = skew_s
        self.max_page_size = max_page_size
        self.other_status = other_status
        self.external_host = external_host
        self.external_port = external_port
        self.keys: dict[str, tuple[str, str]] = {}  # key id -> (secret, company uuid)
        self.endpoints: dict[str, dict[str, Any]] = {}  # mac -> endpoint (with "company")
        self.profiles: dict[str, dict[str, Any]] = {}  # uuid -> profile (with "company")
        self.settings = default_settings(filler_settings)
        self.product_groups = [{"uuid": uuid.uuid4().hex, "name": n}
                               for n in ("D7xx", "D8xx", "M-series")]
        self._nonces: dict[tuple[str, str], float] = {}
        for key_id, secret in (credentials or {}).items():
            self.add_company(key_id, secret)

    # -- seeding and inspection -------------------------------------------------------------

    @property
    def redirect_setting(self) -> str:
        return PHONE_SETTING_SERVER if self.flavour == "snom" else PROVISIONING_SERVER

    def add_company(self, key_id: str, secret: str) -> str:
        company = uuid.uuid4().hex
        self.keys[key_id] = (secret, company)
        return company

    def company_of(self, key_id: str) -> str:
        return self.keys[key_id][1]

    def seed_endpoint(self, mac: str, url: str, company: str, **extra: Any) -> None:
        with self.lock:
            endpoint = self._blank(mac, company)
            endpoint["settings_manager"] = {self.redirect_setting: {"value": url,
                                                                    "attrs": {"perm": "RW"}}}
            endpoint["autoprovisioning_enabled"] = True
            endpoint.update(extra)
            self.endpoints[mac] = endpoint

    def endpoint(self, mac: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.endpoints.get(mac)
            return dict(found) if found else None

    def effective_url(self, mac: str) -> str | None:
        """The redirect URL a phone with this MAC gets (from the right setting only)."""
        with self.lock:
            endpoint = self.endpoints.get(mac)
            if endpoint is None or not endpoint.get("autoprovisioning_enabled"):
                return None
            entry = endpoint["settings_manager"].get(self.redirect_setting) or {}
            return entry.get("value")

    # -- Hawk ----------------------------------------------------------------------------

    def _unauthorized(self, error: str, extra: str = "") -> Reply:
        header = f'Hawk {extra + ", " if extra else ""}error="{error}"'
        return Reply(401, {"detail": error}, {"WWW-Authenticate": header})

    def _authenticate(self, request: Request) -> tuple[str | None, Reply | None]:
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme != "Hawk":
            return None, self._unauthorized("Missing Hawk authorization")
        attrs = dict(ATTR.findall(rest))
        if not all(attrs.get(k) for k in ("id", "ts", "nonce", "mac")):
            return None, self._unauthorized("Missing attributes")
        if attrs["id"] not in self.keys:
            return None, self._unauthorized("Unknown credentials")
        secret, company = self.keys[attrs["id"]]
        host, _, port = request.host.partition(":")
        host = self.external_host or host
        port_num = self.external_port or (int(port) if port else 80)
        normalized = (
            f"hawk.1.header\n{attrs['ts']}\n{attrs['nonce']}\n{request.method}\n"
            f"{request.target}\n{host.lower()}\n{port_num}\n{attrs.get('hash', '')}\n"
            f"{attrs.get('ext', '')}\n"
        )
        expected = base64.b64encode(
            hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, attrs["mac"]):
            return None, self._unauthorized("Bad mac")
        if "hash" in attrs:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            payload = b"hawk.1.payload\n" + media.encode() + b"\n" + request.body + b"\n"
            if attrs["hash"] != base64.b64encode(hashlib.sha256(payload).digest()).decode():
                return None, self._unauthorized("Bad payload hash")
        now = self.now()
        self._nonces = {k: t for k, t in self._nonces.items() if now - t <= 2 * self.skew_s}
        if (attrs["id"], attrs["nonce"]) in self._nonces:
            return None, self._unauthorized("Invalid nonce")
        self._nonces[(attrs["id"], attrs["nonce"])] = now
        if not attrs["ts"].isdigit() or abs(int(attrs["ts"]) - now) > self.skew_s:
            ts = str(int(now))
            tsm = base64.b64encode(hmac.new(secret.encode(), f"hawk.1.ts\n{ts}\n".encode(),
                                            hashlib.sha256).digest()).decode()
            return None, self._unauthorized("Stale timestamp", f'ts="{ts}", tsm="{tsm}"')
        return company, None

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if not request.path.startswith(PREFIX):
            return Reply(404, {"detail": "Not found."})
        company, refused = self._authenticate(request)
        if refused is not None:
            return refused
        assert company is not None
        base = f"http://{request.host}{PREFIX}"
        parts = [p for p in request.path[len(PREFIX):].split("/") if p]
        m = request.method
        if parts[:1] == ["tokens"] and len(parts) == 2 and m == "GET":
            key_id = parts[1]
            if self.keys.get(key_id, ("", ""))[1] != company:
                return Reply(403, {"detail": "You do not have permission."})
            return Reply(200, {"key_id": key_id, "links": {
                "self": f"{base}tokens/{key_id}", "company": f"{base}companies/{company}"}})
        if parts == ["settings"] and m == "GET":
            return self._page(request, self.settings, f"{base}settings/")
        if parts == ["product-groups"] and m == "GET":
            return Reply(200, self.product_groups)
        if parts[:1] == ["companies"] and len(parts) >= 2:
            if parts[1] != company:
                return Reply(403, {"detail": "You do not have permission."})
            return self._company(request, company, parts[2:], base)
        return Reply(404, {"detail": "Not found."})

    def _company(self, request: Request, company: str, rest: list[str], base: str) -> Reply:
        m = request.method
        here = f"{base}companies/{company}/"
        if not rest and m == "GET":
            return Reply(200, {"uuid": company, "name": f"Company {company[:6]}", "links": {
                "self": here, "endpoints": f"{here}endpoints/",
                "provisioning_profiles": f"{here}provisioning-profiles/"}})
        if rest == ["endpoints"] and m == "GET":
            mine = sorted((e for e in self.endpoints.values() if e["company"] == company),
                          key=lambda e: e["mac"])
            return self._page(request, [self._show(e, here) for e in mine], f"{here}endpoints/")
        if len(rest) == 2 and rest[0] == "endpoints":
            return self._endpoint(request, company, rest[1], here)
        if rest == ["provisioning-profiles"]:
            if m == "GET":
                return Reply(200, [self._public(p) for p in self.profiles.values()
                                   if p["company"] == company])
            if m == "POST":
                body = request.json() or {}
                if not isinstance(body, dict) or not body.get("name"):
                    return Reply(400, {"detail": "name is required"})
                profile = {"uuid": uuid.uuid4().hex, "name": body["name"],
                           "product_group": body.get("product_group"),
                           "autoprovisioning_enabled": body.get("autoprovisioning_enabled"),
                           "company": company}
                self.profiles[profile["uuid"]] = profile
                return Reply(201, self._public(profile))
        return Reply(405 if rest else 404, {"detail": "Not allowed."})

    def _endpoint(self, request: Request, company: str, mac: str, here: str) -> Reply:
        if not MAC.match(mac):
            return Reply(400, {"detail": "malformed mac: 12 lower-case hex digits"})
        current = self.endpoints.get(mac)
        if current is not None and current["company"] != company:
            return Reply(self.other_status, {"detail": "User lacks permission to endpoint"})
        if request.method == "GET":
            if current is None:
                return Reply(404, {"detail": "Not found."})
            return Reply(200, self._show(current, here))
        if request.method == "DELETE":
            if current is None:
                return Reply(404, {"detail": "Not found."})
            del self.endpoints[mac]
            return Reply(204)
        if request.method == "PUT":
            try:
                body = request.json()
            except ValueError:
                return Reply(400, {"detail": "JSON parse error"})
            if not isinstance(body, dict):
                return Reply(400, {"detail": "expected an object"})
            if "mac" in body and body["mac"] != mac:
                return Reply(400, {"detail": "mac does not match the URL"})
            problem = self._validate(body, company)
            if problem:
                return Reply(400, {"detail": problem})
            endpoint = self._blank(mac, company)  # full replace: start from the defaults
            for key in ENDPOINT_FIELDS:
                if key in body:
                    endpoint[key] = body[key]
            enabled = endpoint["autoprovisioning_enabled"]
            endpoint["autoprovisioning_enabled"] = enabled in (True, "true", "True")
            self.endpoints[mac] = endpoint
            return Reply(200 if current else 201, self._show(endpoint, here))
        return Reply(405, {"detail": "Method not allowed."})

    def _validate(self, body: dict[str, Any], company: str) -> str | None:
        manager = body.get("settings_manager", {})
        if not isinstance(manager, dict):
            return "settings_manager must be an object"
        known = {s["uuid"] for s in self.settings}
        for uid, entry in manager.items():
            if uid not in known:
                return f"unknown setting {uid}"
            if not isinstance(entry, dict) or "value" not in entry:
                return f"setting {uid}: expected {{value, attrs}}"
        profile = body.get("provisioning_profile")
        if profile is not None and self.profiles.get(profile, {}).get("company") != company:
            return f"unknown provisioning profile {profile}"
        return None

    def _blank(self, mac: str, company: str) -> dict[str, Any]:
        return {"uuid": uuid.uuid4().hex, "mac": mac, "company": company,
                "autoprovisioning_enabled": False, "settings_manager": {},
                "provisioning_profile": None, "warranty_exp_warning_period": 3,
                "description": ""}

    def _show(self, endpoint: dict[str, Any], here: str) -> dict[str, Any]:
        out = self._public(endpoint)
        out["links"] = {"self": f"{here}endpoints/{endpoint['mac']}"}
        return out

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k != "company"}

    def _page(self, request: Request, items: list[Any], url: str) -> Reply:
        query = dict(request.query)
        try:
            size = min(int(query.get("page_size", 20)), self.max_page_size)
            page = int(query.get("page", 1))
        except ValueError:
            return Reply(400, {"detail": "invalid page"})
        if size < 1 or page < 1:
            return Reply(400, {"detail": "invalid page"})
        start = (page - 1) * size
        if start and start >= len(items):
            return Reply(404, {"detail": "Invalid page."})
        headers = {}
        if start + size < len(items):
            nxt = f"{url}?{urlencode({'page': page + 1, 'page_size': size})}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return Reply(200, items[start:start + size], headers)
