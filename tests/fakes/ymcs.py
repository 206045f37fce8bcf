"""A faithful fake of Yealink YMCS v2, its RPS half (reference §1.3 and §7).

Authentication: `POST /v2/token` checks `Authorization: Basic base64(client_id:secret)` and
`grant_type == client_credentials` (else 400 `70011`) and answers `{access_token, token_type,
expires_in}`; a token expires after `token_ttl` seconds of the fake's clock (`expire_tokens()`
ends every token now). Every call (the token's too) needs `timestamp` (ms, within `window_ms`
of the fake's clock) and `nonce` headers (else 400 `900400`); a nonce seen before within the
window is refused (400 `900400` [I: the replay answer is not documented]). Other calls need
`Authorization: Bearer <live token>` (else 401 `900401`).

Errors are non-2xx `{code, message, requestId, details}`; throttling is 429 `900429` with
`Retry-After`. An unknown device id answers 400 `900400`, not 404 [V dszp changelog].

RPS: devices belong to one enterprise (the account's). `listDevices` pages (`limit` capped at
100) with an optional `filter.mac` (substring [I]); `addDevicesByMac` takes a bare array (an
object → 412) of at most `max_batch` items (else 400 `800006`) and answers 200 `{total,
successCount, failureCount, errors: [{mac, sn, errorInfo}]}` with `errorInfo` `800001`
(invalid MAC), `800003` (this enterprise has it), `800004` (another enterprise has it) — as
the code (`error_info="code"`) or a message (`"message"`). `disable_add_by_mac(enterprise)`
refuses the call for that enterprise (403 `900403` by default, configurable: the real answer is
not recorded anywhere). `PATCH /v2/rps/devices/{id}` edits `uniqueServerUrl`/`serverId`/
`remark`; `delDevices {deviceIdType, deviceIds}` answers bulk counts with per-item `{field,
msg}` failures for a device that is not this enterprise's.

The messages are this fake's own where the vendor's are not known.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from typing import Any

from .server import Accounts, FakeServer, Reply, Request

MAC = re.compile(r"^[0-9a-fA-F]{12}$")
MESSAGES = {
    "800001": "Invalid MAC",
    "800003": "Resource already exists",
    "800004": "Device already managed by another organization",
    "800006": "Batch size exceeds limit",
    "900400": "Request parameters are incorrect or missing",
    "900401": "Not logged in or session expired",
    "900403": "Request forbidden",
    "900404": "Resource not found",
    "900429": "Too many requests",
    "70011": "Invalid grant_type",
}


def fail(status: int, code: str, message: str | None = None) -> Reply:
    return Reply(status, {"code": code, "message": message or MESSAGES.get(code, code),
                          "requestId": secrets.token_hex(8), "details": []})


class FakeYmcs(Accounts, FakeServer):
    prefix = "org"

    def __init__(
        self,
        credentials: dict[str, str] | None = None,
        *,
        token_ttl: float = 7200.0,
        window_ms: int = 5 * 60 * 1000,
        max_batch: int = 100,
        max_limit: int = 100,
        error_info: str = "code",
    ):
        super().__init__()
        assert error_info in ("code", "message")
        self.token_ttl, self.window_ms, self.error_info = token_ttl, window_ms, error_info
        self.max_batch, self.max_limit = max_batch, max_limit  # items per add/delete, per page
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (enterprise, expires at)
        self.disabled: dict[str, Reply] = {}  # enterprise -> the answer to addDevicesByMac
        self._nonces: dict[str, int] = {}
        self.init_accounts(credentials)  # client id -> (secret, enterprise); devices

    # -- seeding and inspection -------------------------------------------------------------

    def _seeded(self, mac: str, account: str, url: str) -> dict[str, Any]:
        return self._new(mac, account, url)

    def effective_url(self, mac: str) -> str | None:
        with self.lock:
            device = self.devices.get(mac)
            return device.get("uniqueServerUrl") if device else None

    def disable_add_by_mac(self, enterprise: str, status: int = 403,
                           code: str = "900403") -> None:
        self.disabled[enterprise] = fail(status, code)

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = {t: (e, 0.0) for t, (e, _) in self.tokens.items()}

    def throttle_reply(self, retry_after: str | None) -> Reply:
        reply = fail(429, "900429")
        if retry_after:
            reply.headers["Retry-After"] = retry_after
        return reply

    # -- authentication ------------------------------------------------------------------

    def _stamped(self, request: Request) -> Reply | None:
        stamp, nonce = request.headers.get("timestamp", ""), request.headers.get("nonce", "")
        now_ms = int(self.now() * 1000)
        if not stamp.isdigit() or not nonce:
            return fail(400, "900400", "timestamp and nonce headers are required")
        if abs(now_ms - int(stamp)) > self.window_ms:
            return fail(400, "900400", "timestamp out of the allowed window")
        self._nonces = {n: t for n, t in self._nonces.items() if now_ms - t <= self.window_ms}
        if nonce in self._nonces:
            return fail(400, "900400", "nonce already used")
        self._nonces[nonce] = now_ms
        return None

    def _token(self, request: Request) -> Reply:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            client_id, secret = "", ""
        known = self.accounts.get(client_id)
        if scheme != "Basic" or known is None or known[0] != secret:
            return Reply(401, {"code": "900401", "error": "invalid_client",
                               "message": "Bad client credentials"})
        body = request.json() if request.body else None
        if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
            return fail(400, "70011")
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (known[1], self.now() + self.token_ttl)
        return Reply(200, {"access_token": token, "token_type": "Bearer",
                           "expires_in": int(self.token_ttl)})

    def _enterprise(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        held = self.tokens.get(token) if scheme == "Bearer" else None
        if held is None or held[1] <= self.now():
            return None
        return held[0]

    # -- dispatch ------------------------------------------------------------------------

    ROUTES = {
        ("POST", "/v2/rps/listDevices"): "list_devices",
        ("POST", "/v2/rps/addDevicesByMac"): "add_by_mac",
        ("POST", "/v2/rps/delDevices"): "delete_devices",
    }

    def handle(self, request: Request) -> Reply:
        refused = self._stamped(request)
        if refused is not None:
            return refused
        if request.path == "/v2/token":
            return self._token(request) if request.method == "POST" else fail(405, "900405")
        enterprise = self._enterprise(request)
        if enterprise is None:
            return fail(401, "900401")
        try:
            body = request.json()
        except ValueError:
            return fail(400, "900400", "body is not JSON")
        if request.path.startswith("/v2/rps/devices/"):
            did = request.path.rsplit("/", 1)[1]
            if request.method == "PATCH":
                return self.patch_device(enterprise, did, body)
            if request.method == "GET":
                return self.get_device(enterprise, did)
            return fail(405, "900405", "Method Not Allowed")
        route = self.ROUTES.get((request.method, request.path))
        if route is None:
            return fail(404, "900404")
        return getattr(self, route)(enterprise, body)

    # -- devices -------------------------------------------------------------------------

    def _new(self, mac: str, enterprise: str, url: str | None) -> dict[str, Any]:
        return {"id": secrets.token_hex(12), "mac": mac, "sn": None, "serverId": None,
                "serverName": None, "serverUrl": None, "uniqueServerUrl": url,
                "remark": None, "dateRegistered": int(time.time() * 1000),
                "lastConnected": None, "account": enterprise}

    @staticmethod
    def _show(device: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in device.items() if k != "account"}

    def _by_id(self, enterprise: str, did: str) -> dict[str, Any] | None:
        found = next((d for d in self.devices.values() if d["id"] == did), None)
        return found if found is not None and found["account"] == enterprise else None

    def list_devices(self, enterprise: str, body: Any) -> Reply:
        if not isinstance(body, dict):
            return fail(400, "900400")
        try:
            skip = int(body.get("skip") or 0)
            limit = min(int(body.get("limit") or 10), self.max_limit)
        except (TypeError, ValueError):
            return fail(400, "900400", "invalid paging")
        key = str((body.get("filter") or {}).get("mac") or "").lower()
        items = sorted((d for d in self.devices.values()
                        if d["account"] == enterprise and key in d["mac"]),
                       key=lambda d: d["mac"])
        return Reply(200, {"skip": skip, "limit": limit,
                           "total": len(items) if body.get("autoCount") else 0,
                           "data": [self._show(d) for d in items[skip:skip + limit]]})

    def _item_error(self, mac: str, code: str) -> dict[str, Any]:
        info = code if self.error_info == "code" else MESSAGES[code]
        return {"mac": mac, "sn": None, "errorInfo": info}

    def add_by_mac(self, enterprise: str, body: Any) -> Reply:
        if enterprise in self.disabled:
            return self.disabled[enterprise]
        if not isinstance(body, list):
            return fail(412, "900400", "a JSON array is expected")
        if len(body) > self.max_batch:
            return fail(400, "800006")
        errors = []
        for item in body:
            mac = str(item.get("mac") or "") if isinstance(item, dict) else ""
            url = item.get("uniqueServerUrl") if isinstance(item, dict) else None
            held = self.devices.get(mac.lower())
            if not MAC.match(mac) or (url is not None and not isinstance(url, str)):
                errors.append(self._item_error(mac, "800001"))
            elif held is not None:
                errors.append(self._item_error(mac.lower(), "800003"
                                               if held["account"] == enterprise
                                               else "800004"))
            else:
                self.devices[mac.lower()] = self._new(mac.lower(), enterprise, url)
        return Reply(200, {"total": len(body), "successCount": len(body) - len(errors),
                           "failureCount": len(errors), "errors": errors})

    def get_device(self, enterprise: str, did: str) -> Reply:
        device = self._by_id(enterprise, did)
        return fail(400, "900400") if device is None else Reply(200, self._show(device))

    def patch_device(self, enterprise: str, did: str, body: Any) -> Reply:
        device = self._by_id(enterprise, did)
        if device is None:
            return fail(400, "900400")
        if not isinstance(body, dict) or not body:
            return fail(400, "900400")
        for key in ("uniqueServerUrl", "serverId", "remark"):
            if key in body:
                device[key] = body[key]
        return Reply(200, self._show(device))

    def delete_devices(self, enterprise: str, body: Any) -> Reply:
        if not isinstance(body, dict) or body.get("deviceIdType") not in ("mac", "id"):
            return fail(400, "900400")
        ids = body.get("deviceIds")
        if not isinstance(ids, list) or not ids:
            return fail(400, "900400")
        if len(ids) > self.max_batch:
            return fail(400, "800006")
        errors = []
        for value in ids:
            if body["deviceIdType"] == "mac":
                device = self.devices.get(str(value).lower())
            else:
                device = next((d for d in self.devices.values() if d["id"] == value), None)
            if device is None:
                errors.append({"field": value, "msg": MESSAGES["900404"]})
            elif device["account"] != enterprise:
                errors.append({"field": value, "msg": MESSAGES["800004"]})
            else:
                del self.devices[device["mac"]]
        return Reply(200, {"total": len(ids), "successCount": len(ids) - len(errors),
                           "failureCount": len(errors), "errors": errors})
