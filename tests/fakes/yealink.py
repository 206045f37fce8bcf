"""A faithful fake of the Yealink RPS JSON Open API (reference §1.2 and §7).

Enforced on every request, in this order: `X-Ca-Key` known; `X-Ca-Timestamp` (ms) within
`window_ms` of the fake's clock; `Content-MD5` present on POST and equal to base64 MD5 of the
raw body; `X-Ca-Signature` recomputed (for a GET without query both the "no trailing newline"
and the "trailing newline" forms are accepted); `X-Ca-Nonce` not seen within the window.
Everything answers HTTP 200 with `{ret, data, error}`.

Business rules: `device/add` → `device.mac.existed` (own MAC), `device.mac.added.by.other`
(another account's), field errors for a malformed MAC and a server name over 20 characters;
`device/list` fuzzy `key` with skip/limit/total; `device/delete` by `ids` (`macs` → field
error); `server/add` names unique across all accounts; deleting a server that still has
devices: `server_delete="reject"` (default) or `"cascade"`.

Lists: `device/add` takes up to `max_batch` MACs (100 [I]: not documented for RPS JSON; YMCS
caps its batch add at 100) with one `serverId`/`uniqueServerUrl`; `device/delete` up to
`max_batch` ids. What a batch does when one item fails is not documented: `batch="atomic"`
(default: nothing is changed, the error names the first failing MAC or id in `data`, the shape
of the FS PBX fixture) or `batch="partial"` (the good items ARE applied, and the answer is
still the error naming the first failing one — the hardest case for a client).

The auth failure messages (`auth.*`) are this fake's own: the vendor's texts are not known.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from typing import Any

from .server import Accounts, FakeServer, Reply, Request

PREFIX = "/api/open/v1/"
MAC = re.compile(r"^[0-9a-fA-F]{12}$")
GET_OPS = {"server/detail", "server/checkServerName", "device/detail", "device/checkDevice",
           "device/checkMac", "device/serverList"}


def ok(data: Any = None, ret: int = 1) -> Reply:
    return Reply(200, {"ret": ret, "data": data, "error": None})


def done() -> Reply:
    return ok(None, ret=0)


def err(msg: str, code: int = 400, data: Any = None, fields: list[dict] | None = None) -> Reply:
    return Reply(200, {"ret": -1, "data": data,
                       "error": {"msg": msg, "errorCode": code, "fieldErrors": fields or []}})


def field_err(field: str, msg: str) -> Reply:
    return err("field.invalid", 400, fields=[{"field": field, "msg": msg}])


class FakeYealinkRps(Accounts, FakeServer):
    prefix = "ent"

    def __init__(
        self,
        credentials: dict[str, str] | None = None,
        *,
        window_ms: int = 15 * 60 * 1000,
        max_limit: int = 100,
        server_delete: str = "reject",
        max_batch: int = 100,
        batch: str = "atomic",
    ):
        super().__init__()
        assert batch in ("atomic", "partial")
        self.max_batch = max_batch
        self.batch = batch
        self.window_ms = window_ms
        self.max_limit = max_limit
        self.server_delete = server_delete
        self.servers: dict[str, dict[str, Any]] = {}  # id -> server (with "account")
        self._nonces: dict[tuple[str, str], int] = {}
        self.init_accounts(credentials)  # access key -> (secret, account id); devices

    # -- seeding and inspection -------------------------------------------------------------

    def _seeded(self, mac: str, account: str, url: str) -> dict[str, Any]:
        return self._new_device(mac, account, None, url)

    def effective_url(self, mac: str) -> str | None:
        """The URL a phone with this MAC is sent to."""
        with self.lock:
            device = self.devices.get(mac)
            if device is None:
                return None
            server = self.servers.get(device.get("serverId") or "")
            return device.get("uniqueServerUrl") or (server or {}).get("url")

    def throttle_reply(self, retry_after: str | None) -> Reply:
        return err("api.rate.limit", 900429)

    # -- authentication ------------------------------------------------------------------

    def _authenticate(self, request: Request) -> tuple[str | None, Reply | None]:
        h = request.headers
        key = h.get("x-ca-key", "")
        if key not in self.accounts:
            return None, err("auth.key.invalid", 401)
        secret, account = self.accounts[key]
        stamp = h.get("x-ca-timestamp", "")
        now_ms = int(self.now() * 1000)
        if not stamp.isdigit() or abs(now_ms - int(stamp)) > self.window_ms:
            return None, err("auth.timestamp.expired", 401)
        nonce = h.get("x-ca-nonce", "")
        if not nonce:
            return None, err("auth.nonce.missing", 401)
        signed = {"X-Ca-Key": key, "X-Ca-Nonce": nonce, "X-Ca-Timestamp": stamp}
        if request.method == "POST" or request.body:
            md5 = h.get("content-md5")
            if not md5:
                return None, err("auth.contentmd5.missing", 401)
            if md5 != base64.b64encode(hashlib.md5(request.body).digest()).decode():
                return None, err("auth.contentmd5.invalid", 401)
            signed["Content-MD5"] = md5
        block = "\n".join(f"{k}:{signed[k]}" for k in sorted(signed))
        base = f"{request.method}\n{block}\n{request.path.lstrip('/')}"
        candidates = [base]
        if request.query:
            q = "&".join(f"{k}={v}" if v != "" else k for k, v in sorted(request.query))
            candidates = [f"{base}\n{q}"]
        elif request.method == "GET":
            candidates.append(base + "\n")
        given = h.get("x-ca-signature", "")
        if not any(
            hmac.compare_digest(
                given,
                base64.b64encode(hmac.new(secret.encode(), c.encode(), hashlib.sha256)
                                 .digest()).decode(),
            )
            for c in candidates
        ):
            return None, err("auth.signature.invalid", 401)
        self._nonces = {k: t for k, t in self._nonces.items() if now_ms - t <= self.window_ms}
        if (key, nonce) in self._nonces:
            return None, err("auth.nonce.replayed", 401)
        self._nonces[(key, nonce)] = now_ms
        return account, None

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if not request.path.startswith(PREFIX):
            return Reply(404, {"message": "Not Found"})
        op = request.path[len(PREFIX):]
        handler = getattr(self, "op_" + op.replace("/", "_"), None)
        if handler is None:
            return Reply(404, {"message": "Not Found"})
        if request.method != ("GET" if op in GET_OPS else "POST"):
            return Reply(405, {"message": "Method Not Allowed"})
        account, refused = self._authenticate(request)
        if refused is not None:
            return refused
        if request.method == "POST":
            try:
                body = request.json()
            except ValueError:
                return err("body.invalid", 400)
            if not isinstance(body, dict):
                return err("body.invalid", 400)
        else:
            body = dict(request.query)
        return handler(account, body)

    # -- servers -------------------------------------------------------------------------

    def _server_repr(self, server: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in server.items() if k != "account"}

    def op_server_add(self, account: str, body: dict[str, Any]) -> Reply:
        name, url = body.get("serverName"), body.get("url")
        if not isinstance(name, str) or not name:
            return field_err("serverName", "required")
        if len(name) > 20:
            return field_err("serverName", "length must be at most 20")
        if not isinstance(url, str) or not re.match(r"^(https?|ftp|tftp)://", url):
            return field_err("url", "invalid url")
        if any(s["serverName"] == name for s in self.servers.values()):
            return err("server.name.existed", 400)
        server = {"id": uuid.uuid4().hex, "serverName": name, "url": url, "account": account,
                  "authName": body.get("authName")}
        self.servers[server["id"]] = server
        return ok(self._server_repr(server))

    def op_server_list(self, account: str, body: dict[str, Any]) -> Reply:
        key = str(body.get("key") or "")
        items = sorted(
            (s for s in self.servers.values()
             if s["account"] == account and key in s["serverName"]),
            key=lambda s: s["serverName"],
        )
        return self._page(items, body, self._server_repr)

    def op_server_detail(self, account: str, query: dict[str, Any]) -> Reply:
        server = self.servers.get(str(query.get("id")))
        if server is None or server["account"] != account:
            return err("server.not.found", 404)
        return ok(self._server_repr(server))

    def op_server_checkServerName(self, account: str, query: dict[str, Any]) -> Reply:
        name = query.get("serverName")
        return ok(any(s["serverName"] == name for s in self.servers.values()))

    def op_server_edit(self, account: str, body: dict[str, Any]) -> Reply:
        server = self.servers.get(str(body.get("id")))
        if server is None or server["account"] != account:
            return err("server.not.found", 404)
        for key in ("serverName", "url", "authName"):
            if key in body:
                server[key] = body[key]
        return ok(self._server_repr(server))

    def op_server_delete(self, account: str, body: dict[str, Any]) -> Reply:
        ids = body.get("ids")
        if not isinstance(ids, list):
            return field_err("ids", "required")
        for sid in ids:
            server = self.servers.get(str(sid))
            if server is None or server["account"] != account:
                return err("server.not.found", 404)
            users = [m for m, d in self.devices.items() if d.get("serverId") == sid]
            if users and self.server_delete == "reject":
                return err("server.has.devices", 400)
        for sid in ids:
            for mac in [m for m, d in self.devices.items() if d.get("serverId") == sid]:
                del self.devices[mac]
            del self.servers[str(sid)]
        return done()

    # -- devices -------------------------------------------------------------------------

    def _new_device(self, mac: str, account: str, server_id: str | None,
                    unique_url: str | None) -> dict[str, Any]:
        return {"id": uuid.uuid4().hex, "mac": mac, "serverId": server_id,
                "uniqueServerUrl": unique_url, "remark": None, "account": account}

    def _device_repr(self, device: dict[str, Any]) -> dict[str, Any]:
        server = self.servers.get(device.get("serverId") or "") or {}
        out = {k: v for k, v in device.items() if k != "account"}
        out["serverName"] = server.get("serverName")
        out["serverUrl"] = server.get("url")
        return out

    def _own_server(self, account: str, body: dict[str, Any]) -> tuple[str | None, Reply | None]:
        sid = body.get("serverId")
        if sid is None:
            return None, None
        server = self.servers.get(str(sid))
        if server is None or server["account"] != account:
            return None, field_err("serverId", "server not found")
        return str(sid), None

    def op_device_add(self, account: str, body: dict[str, Any]) -> Reply:
        macs = body.get("macs")
        if not isinstance(macs, list) or not macs:
            return field_err("macs", "required")
        if len(macs) > self.max_batch:
            return field_err("macs", f"at most {self.max_batch} per request")
        bad = [m for m in macs if not isinstance(m, str) or not MAC.match(m)]
        if bad:
            return field_err("macs", f"invalid mac {bad[0]}")
        sid, refused = self._own_server(account, body)
        if refused:
            return refused
        url = body.get("uniqueServerUrl")
        if sid is None and not url:
            return field_err("serverId", "serverId or uniqueServerUrl required")
        macs = [m.lower() for m in macs]
        failure: Reply | None = None
        good = []
        for mac in macs:
            held = self.devices.get(mac)
            if held is None:
                good.append(mac)
            elif failure is None:
                failure = (err("device.mac.existed", 400, data=mac) if held["account"] == account
                           else err("device.mac.added.by.other", 409, data=mac))
        if failure is not None and self.batch == "atomic":
            return failure
        created = []
        for mac in good:
            device = self._new_device(mac, account, sid, url)
            self.devices[mac] = device
            created.append(self._device_repr(device))
        return failure or ok(created)

    def op_device_list(self, account: str, body: dict[str, Any]) -> Reply:
        key = str(body.get("key") or "").lower()
        items = sorted(
            (d for d in self.devices.values() if d["account"] == account and key in d["mac"]),
            key=lambda d: d["mac"],
        )
        return self._page(items, body, self._device_repr)

    def op_device_detail(self, account: str, query: dict[str, Any]) -> Reply:
        device = next((d for d in self.devices.values() if d["id"] == query.get("id")), None)
        if device is None or device["account"] != account:
            return err("device.not.found", 404)
        return ok(self._device_repr(device))

    def op_device_checkMac(self, account: str, query: dict[str, Any]) -> Reply:
        mac = str(query.get("mac") or "").lower()
        if not MAC.match(mac):
            return field_err("mac", "invalid mac")
        device = self.devices.get(mac)
        if device is None:
            return ok({"existed": False, "self": None})
        return ok({"existed": True, "self": device["account"] == account})

    def op_device_edit(self, account: str, body: dict[str, Any]) -> Reply:
        device = next((d for d in self.devices.values() if d["id"] == body.get("id")), None)
        if device is None:
            return err("device.not.found", 404)
        if device["account"] != account:
            return err("device.operate.forbidden", 403)
        sid, refused = self._own_server(account, body)
        if refused:
            return refused
        if "serverId" in body:
            device["serverId"] = sid
        for key in ("uniqueServerUrl", "remark"):
            if key in body:
                device[key] = body[key]
        return ok(self._device_repr(device))

    def op_device_delete(self, account: str, body: dict[str, Any]) -> Reply:
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids:
            return field_err("ids", "required")
        if len(ids) > self.max_batch:
            return field_err("ids", f"at most {self.max_batch} per request")
        by_id = {d["id"]: d for d in self.devices.values()}
        failure: Reply | None = None
        good = []
        for did in ids:
            device = by_id.get(did)
            if device is not None and device["account"] == account:
                good.append(did)
            elif failure is None:
                failure = (err("device.not.found", 404, data=did) if device is None
                           else err("device.operate.forbidden", 403, data=did))
        if failure is not None and self.batch == "atomic":
            return failure
        for did in good:
            del self.devices[by_id[did]["mac"]]
        return failure or done()

    # -- paging --------------------------------------------------------------------------

    def _page(self, items: list[dict[str, Any]], body: dict[str, Any], show: Any) -> Reply:
        try:
            skip = int(body.get("skip") or 0)
            limit = min(int(body.get("limit") or 10), self.max_limit)
        except (TypeError, ValueError):
            return field_err("skip", "invalid paging")
        window = items[skip: skip + limit]
        total = len(items) if body.get("autoCount") else 0
        return ok({"skip": skip, "limit": limit, "total": total,
                   "data": [show(i) for i in window]})
