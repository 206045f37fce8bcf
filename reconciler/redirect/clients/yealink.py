"""`kind: yealink-rps`: the Yealink RPS JSON "Open API" (`/api/open/v1/...`).

Signing (reference §1.2): every request carries `X-Ca-Key` (AccessKey ID), `X-Ca-Timestamp`
(Unix ms), `X-Ca-Nonce` (random), `Content-MD5` (base64 MD5 of the exact body bytes, POST only)
and `X-Ca-Signature` = base64(HMAC-SHA256(AccessKey Secret, StringToSign)) where

    StringToSign = METHOD \\n <those headers sorted by name, "Name:value", joined by \\n>
                   \\n <path without the leading slash>
                   [\\n <query sorted by name, k=v joined by &, values not URL-encoded>]

Every answer is HTTP 200 with `{ret, data, error}`; `ret < 0` is a failure named by
`error.msg`.

Registrations: the account keeps one *server* object named `server_name` (found or created,
its URL the origin of the provisioning URLs — never a device's token); each device is added
with its own `uniqueServerUrl` (which takes precedence over the server's URL), so every phone
gets its own tokenised URL. `device.mac.existed` on add → the device is ours: edit it.
`device.mac.added.by.other` / `device.operate.forbidden` → `RedirectError(conflict=True)`.
The JSON API has no override flag: `steal: true` cannot take a MAC here (conflict again).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Remote
from reconciler.redirect.http import BaseTransport, HttpTransport, Response, RetryPolicy, SignInput

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api-dm.yealink.com:8443"
API_PREFIX = "api/open/v1/"
MAX_SERVER_NAME = 20
OWN_EXISTS = "device.mac.existed"
OTHER_OWNS = frozenset({"device.mac.added.by.other", "device.operate.forbidden"})
THROTTLE_CODES = frozenset({429, 900429})  # 900429 is YMCS's documented throttling code
AUTH_CODES = frozenset({401, 403})


# -- signing (pure) -------------------------------------------------------------------------


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def string_to_sign(
    method: str,
    headers: Mapping[str, str],
    path: str,
    query: Sequence[tuple[str, str]] = (),
) -> str:
    block = "\n".join(f"{name}:{headers[name]}" for name in sorted(headers))
    text = f"{method.upper()}\n{block}\n{path.lstrip('/')}"
    if query:
        text += "\n" + "&".join(f"{k}={v}" if v != "" else k for k, v in sorted(query))
    return text


def signature(secret: str, text: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    ).decode()


def sign_headers(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    body: bytes,
    *,
    access_key: str,
    secret: str,
    timestamp_ms: int,
    nonce: str,
) -> dict[str, str]:
    """The X-Ca-* headers (and Content-MD5 for a body) of one request."""
    headers = {
        "X-Ca-Key": access_key,
        "X-Ca-Nonce": nonce,
        "X-Ca-Timestamp": str(timestamp_ms),
    }
    if body:
        headers["Content-MD5"] = content_md5(body)
    headers["X-Ca-Signature"] = signature(secret, string_to_sign(method, headers, path, query))
    return headers


# -- client ---------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(self, msg: str, code: int | None, data: Any):
        self.msg, self.code, self.data = msg, code, data
        super().__init__(msg)


def _error_of(envelope: Mapping[str, Any]) -> tuple[str, int | None]:
    error = envelope.get("error") or envelope.get("errors") or {}
    if isinstance(error, list):
        error = error[0] if error else {}
    if not isinstance(error, Mapping):
        return str(error), None
    code = error.get("errorCode")
    msg = str(error.get("msg") or "unknown error")
    fields = error.get("fieldErrors") or []
    if fields:
        msg += " (" + ", ".join(
            f"{f.get('field', '?')}: {f.get('msg', '?')}" for f in fields if isinstance(f, Mapping)
        ) + ")"
    return msg, code if isinstance(code, int) else None


def _throttled(response: Response) -> bool:
    try:
        envelope = response.json()
    except ValueError:
        return False
    ret = envelope.get("ret") if isinstance(envelope, Mapping) else None
    if not isinstance(ret, int) or ret >= 0:
        return False
    return _error_of(envelope)[1] in THROTTLE_CODES


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


class YealinkRpsClient:
    # [V] /work/shared/reference/rps-apis.md §"Ownership": only the XML-RPC API has isOverride;
    # the JSON Open API spoken here has no override flag.
    can_steal = False

    def __init__(
        self,
        name: str,
        access_key: str,
        secret: str,
        *,
        base_url: str | None = None,
        server_name: str = "provctl",
        rate_per_second: float = 5.0,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        page_size: int = 100,
    ):
        if not server_name or len(server_name) > MAX_SERVER_NAME:
            raise RedirectError(
                name, f"server_name must be 1-{MAX_SERVER_NAME} characters: {server_name!r}"
            )
        self.name = name
        self.server_name = server_name
        self.page_size = page_size
        self._access_key = access_key
        self._secret = secret
        self._clock = clock
        self._server: tuple[str, str] | None = None  # (id, url)
        self._server_urls: dict[str, str] | None = None
        self.http = HttpTransport(
            name,
            base_url or DEFAULT_BASE_URL,
            rate_per_second=rate_per_second,
            timeout=timeout,
            retry=retry,
            transport=transport,
            headers={"Accept": "application/json"},
            sleep=sleep,
        )

    # -- transport -----------------------------------------------------------------------

    def _sign(self, request: SignInput) -> dict[str, str]:
        return sign_headers(
            request.method,
            request.path,
            request.query,
            request.body,
            access_key=self._access_key,
            secret=self._secret,
            timestamp_ms=int(self._clock() * 1000),
            nonce=uuid.uuid4().hex,
        )

    def _call(self, op: str, body: Mapping[str, Any] | None = None,
              params: Mapping[str, str] | None = None) -> Any:
        method = "POST" if body is not None else "GET"
        response = self.http.request(
            method,
            API_PREFIX + op,
            params=params,
            json_body=body,
            headers={"Content-Type": "application/json;charset=UTF-8"} if body is not None
            else None,
            signer=self._sign,
            throttled=_throttled,
        )
        if not response.ok:
            raise RedirectError(self.name, f"{op}: HTTP {response.status}")
        try:
            envelope = response.json()
        except ValueError as exc:
            raise RedirectError(self.name, f"{op}: {exc}") from exc
        if not isinstance(envelope, Mapping) or "ret" not in envelope:
            raise RedirectError(self.name, f"{op}: not a {{ret, data, error}} envelope")
        if not isinstance(envelope["ret"], int) or isinstance(envelope["ret"], bool):
            raise RedirectError(self.name, f"{op}: unexpected answer: ret is "
                                f"{envelope['ret']!r}, not a number")
        if envelope["ret"] < 0:
            msg, code = _error_of(envelope)
            if code in AUTH_CODES or msg.startswith("auth."):
                raise RedirectError(self.name, f"{op}: authentication refused: {msg}")
            raise _ApiError(msg, code, envelope.get("data"))
        return envelope.get("data")

    def _object(self, op: str, data: Any) -> Mapping[str, Any]:
        """`data` of a successful answer, which must be an object (or nothing)."""
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise RedirectError(self.name, f"{op}: unexpected answer: data is "
                                f"{type(data).__name__}, not an object")
        return data

    def _id(self, op: str, obj: Mapping[str, Any]) -> str:
        if obj.get("id") in (None, ""):
            raise RedirectError(self.name, f"{op}: unexpected answer: no id")
        return str(obj["id"])

    def _pages(self, op: str, query: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        skip = 0
        while True:
            try:
                page = self._object(op, self._call(
                    op, {**query, "skip": skip, "limit": self.page_size, "autoCount": True}
                ))
            except _ApiError as exc:
                raise RedirectError(self.name, f"{op}: {exc.msg}") from exc
            items = page.get("data") or []
            if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
                raise RedirectError(self.name, f"{op}: unexpected answer: data.data is not a "
                                    "list of objects")
            yield from items
            skip += len(items)
            total = page.get("total")
            if not items or len(items) < self.page_size or (
                isinstance(total, int) and skip >= total
            ):
                return

    # -- servers and devices -------------------------------------------------------------

    def _server_id(self, url: str) -> str:
        if self._server is None:
            for server in self._pages("server/list", {"key": self.server_name}):
                if server.get("serverName") == self.server_name:
                    self._server = (self._id("server/list", server), str(server.get("url") or ""))
                    break
            else:
                try:
                    data = self._object("server/add", self._call(
                        "server/add", {"serverName": self.server_name, "url": _origin(url)}
                    ))
                except _ApiError as exc:
                    raise RedirectError(
                        self.name, f"cannot create server {self.server_name!r}: {exc.msg}"
                    ) from exc
                self._server = (self._id("server/add", data), _origin(url))
                log.info("%s: created server %s", self.name, self.server_name)
        return self._server[0]

    def _servers(self) -> dict[str, str]:
        if self._server_urls is None:
            self._server_urls = {
                self._id("server/list", s): str(s.get("url") or "")
                for s in self._pages("server/list", {})
            }
        return self._server_urls

    def _find(self, mac: str) -> Mapping[str, Any] | None:
        """Our device with exactly this MAC (`key` is a substring search)."""
        for device in self._pages("device/list", {"key": mac}):
            if str(device.get("mac", "")).lower() == mac:
                return device
        return None

    def _url_of(self, device: Mapping[str, Any]) -> str | None:
        url = device.get("uniqueServerUrl") or device.get("serverUrl")
        if not url and device.get("serverId"):
            url = self._servers().get(str(device["serverId"]))
        return url or None

    def list_devices(self) -> dict[str, Mapping[str, Any]]:
        """Every device of this account, by MAC (all pages)."""
        return {str(d["mac"]).lower(): d for d in self._pages("device/list", {}) if d.get("mac")}

    # -- RedirectClient ------------------------------------------------------------------

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        wanted = sorted(set(macs))
        if not wanted:
            return {}
        self._server_urls = None
        if len(wanted) > 3:
            own = self.list_devices()
        else:
            own = {mac: d for mac in wanted if (d := self._find(mac)) is not None}
        found: dict[str, Remote] = {}
        for mac in wanted:
            if mac in own:
                found[mac] = Remote(mac, "us", self._url_of(own[mac]))
                continue
            try:
                check = self._object("device/checkMac",
                                     self._call("device/checkMac", params={"mac": mac}))
            except _ApiError as exc:
                raise RedirectError(self.name, f"checkMac {mac}: {exc.msg}") from exc
            # {existed: bool, self: bool | null} (reference §1.2, medium-low) [I]; anything
            # else is not taken for "nobody", which would send a registration.
            if not isinstance(check.get("existed"), bool):
                raise RedirectError(self.name, f"device/checkMac {mac}: unexpected answer: "
                                    "no existed flag")
            if not check["existed"]:
                found[mac] = Remote(mac, "nobody")
            elif check.get("self"):  # appeared since the listing
                device = self._find(mac)
                found[mac] = Remote(mac, "us", self._url_of(device) if device else None)
            else:
                found[mac] = Remote(mac, "other")
        return found

    def register(self, reg: DesiredRegistration) -> None:
        server_id = self._server_id(reg.url)
        try:
            self._call(
                "device/add",
                {"macs": [reg.mac], "serverId": server_id, "uniqueServerUrl": reg.url},
            )
        except _ApiError as exc:
            if exc.msg == OWN_EXISTS:
                self._edit(reg, server_id)
                return
            self._raise(reg.mac, exc, reg.steal)
        log.info("%s: registered %s", self.name, reg.mac)

    def update(self, reg: DesiredRegistration) -> None:
        server_id = self._server_id(reg.url)
        if not self._edit(reg, server_id, missing_ok=True):
            self.register(reg)

    def _edit(self, reg: DesiredRegistration, server_id: str, *, missing_ok: bool = False
              ) -> bool:
        device = self._find(reg.mac)
        if device is None:
            if missing_ok:
                return False
            raise RedirectError(self.name, f"{reg.mac}: said to exist but not found", )
        try:
            self._call(
                "device/edit",
                {"id": self._id("device/list", device), "serverId": server_id,
                 "uniqueServerUrl": reg.url},
            )
        except _ApiError as exc:
            self._raise(reg.mac, exc, reg.steal)
        log.info("%s: updated %s", self.name, reg.mac)
        return True

    def deregister(self, mac: str) -> None:
        device = self._find(mac)
        if device is None:
            log.debug("%s: %s not registered by this account", self.name, mac)
            return
        try:
            self._call("device/delete", {"ids": [self._id("device/list", device)]})
        except _ApiError as exc:
            self._raise(mac, exc, False)
        log.info("%s: deregistered %s", self.name, mac)

    def _raise(self, mac: str, exc: _ApiError, steal: bool) -> None:
        if exc.msg in OTHER_OWNS:
            extra = " (the RPS JSON API cannot take it over: steal is not possible here)"
            raise RedirectError(
                self.name, f"{mac} is held by another account{extra if steal else ''}",
                conflict=True,
            ) from exc
        raise RedirectError(self.name, f"{mac}: {exc.msg}") from exc

    def close(self) -> None:
        self.http.close()
