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
gets its own tokenised URL. `device.mac.existed` on add → the device is ours: edit it (unless
it already has the URL). `device.mac.added.by.other` / `device.operate.forbidden` →
`RedirectError(conflict=True)`. The JSON API has no override flag: `steal: true` cannot take a
MAC here (conflict again), and nothing this client sends can move another account's MAC.

At scale (issue 17):

- `lookup` of more than `precise_lookup` MACs lists this account's devices (`device/list`,
  `page_size` per request) and does not ask `checkMac` per MAC: a MAC that is not ours is
  reported `nobody`, and whether another enterprise holds it is learnt from `device/add`'s
  answer (`device.mac.added.by.other`), which never takes it. The planner already handles a
  conflict found at registration (`Record.conflict_blind`). A small lookup (a plan for a
  few devices) still asks `checkMac`, so it can show the conflict before apply.
- `device/add` takes a list of MACs with ONE `serverId`/`uniqueServerUrl` [V reference §1.2
  endpoint table; no source shows a per-MAC URL in one call]: registrations are grouped by URL
  and sent `batch_size` MACs per request (100 [I]: the RPS JSON limit is not documented; YMCS
  caps its batch add at 100). With `url_tokens: per-device` every URL differs, so that is one
  request per MAC; with per-customer or no tokens, one per `batch_size`.
- What a batch add does when one MAC fails is not documented [I]. The FS PBX fixture names
  the MAC in `data` (`{"ret":-1,"data":"001565123123","error":{"msg":
  "device.mac.added.by.other"}}`). This client handles all-or-nothing and partial services:
  the MACs named in `data` get their own outcome and the rest is sent again; an error that
  names none splits the batch in halves; an own MAC (`existed`) is read back and edited only
  if its URL differs; a success whose `data` lists fewer devices than sent re-sends the others
  one by one. Once a re-sent batch shows that the refused one was applied in part, the client
  settles the rest of each refused batch with one `device/list` by the MACs' common prefix
  (`key` is a substring search) instead of one re-send per MAC.
- `device/delete` takes a list of `ids` [V reference §1.2]: deregistrations are batched.
- Edits (`device/edit {id, ...}`) are one per device; the ids come from what `lookup` saw, so
  nothing is observed twice in one run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import (
    DesiredRegistration,
    OneByBatch,
    Outcomes,
    Remote,
    Seen,
    batched,
    own_ids,
    shown,
    skip_pages,
    with_mac,
)
from reconciler.redirect.http import BaseTransport, HttpTransport, Response, RetryPolicy, SignInput

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api-dm.yealink.com:8443"
API_PREFIX = "api/open/v1/"
MAX_SERVER_NAME = 20
OWN_EXISTS = "device.mac.existed"
OTHER_OWNS = frozenset({"device.mac.added.by.other", "device.operate.forbidden"})
THROTTLE_CODES = frozenset({429, 900429})  # 900429 is YMCS's documented throttling code
AUTH_CODES = frozenset({401, 403})
MAC = re.compile(r"^[0-9a-fA-F]{12}$")


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


def _macs_in(data: Any) -> list[str]:
    """MACs an error's `data` names: a MAC, a list of MACs, or devices with a `mac` [I]."""
    items = data if isinstance(data, list) else [data]
    out = []
    for item in items:
        value = item.get("mac") if isinstance(item, Mapping) else item
        if isinstance(value, str) and MAC.match(value):
            out.append(value.lower())
    return out


def _ids_in(data: Any) -> list[str]:
    items = data if isinstance(data, list) else [data]
    return [str(i.get("id") if isinstance(i, Mapping) else i) for i in items
            if isinstance(i, str | int) or (isinstance(i, Mapping) and i.get("id"))]


class YealinkRpsClient(Seen, OneByBatch):
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
        batch_size: int = 100,
        precise_lookup: int = 3,
    ):
        if not server_name or len(server_name) > MAX_SERVER_NAME:
            raise RedirectError(
                name, f"server_name must be 1-{MAX_SERVER_NAME} characters: {server_name!r}"
            )
        self.name = name
        self.server_name = server_name
        self.page_size = page_size
        self.batch_size = batch_size
        self.precise_lookup = precise_lookup
        self._access_key = access_key
        self._secret = secret
        self._clock = clock
        self._server: tuple[str, str] | None = None  # (id, url)
        self._server_urls: dict[str, str] | None = None
        # What the last lookup saw: every MAC it covered, and our devices among them.
        self._observed: set[str] = set()
        self._ours: dict[str, Mapping[str, Any]] = {}
        self._partial = False  # learnt: a refused batch add still applied its other MACs
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
        self.stats = self.http.stats

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
            if msg.startswith("auth.") or (code in AUTH_CODES and msg not in OTHER_OWNS):
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
        def fetch(skip: int) -> Mapping[str, Any]:
            try:
                return self._object(op, self._call(
                    op, {**query, "skip": skip, "limit": self.page_size, "autoCount": True}))
            except _ApiError as exc:
                raise RedirectError(self.name, f"{op}: {exc.msg}") from exc

        return skip_pages(fetch, self.page_size, lambda why: RedirectError(self.name,
                                                                           f"{op}: {why}"))

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
        return with_mac(self._pages("device/list", {"key": mac}), mac)  # `key`: substrings

    def _url_of(self, device: Mapping[str, Any]) -> str | None:
        url = device.get("uniqueServerUrl") or device.get("serverUrl")
        if not url and device.get("serverId"):
            url = self._servers().get(str(device["serverId"]))
        return url or None

    def list_devices(self) -> dict[str, Mapping[str, Any]]:
        """Every device of this account, by MAC (all pages)."""
        return {str(d["mac"]).lower(): d for d in self._pages("device/list", {}) if d.get("mac")}

    # -- observe -------------------------------------------------------------------------

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        wanted = sorted(set(macs))
        self._observed, self._ours = set(), {}
        if not wanted:
            return {}
        self._server_urls = None
        precise = len(wanted) <= self.precise_lookup
        if precise:
            own = {mac: d for mac in wanted if (d := self._find(mac)) is not None}
        else:
            own = self.list_devices()
        found: dict[str, Remote] = {}
        for mac in wanted:
            if mac in own:
                found[mac] = Remote(mac, "us", self._url_of(own[mac]))
                self._ours[mac] = own[mac]
            elif not precise:
                found[mac] = Remote(mac, "nobody")  # or another's: device/add will say
            else:
                found[mac] = self._check(mac)
        self._observed = set(wanted)
        return found

    def _check(self, mac: str) -> Remote:
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
            return Remote(mac, "nobody")
        if check.get("self"):  # appeared since the listing
            device = self._find(mac)
            if device is not None:
                self._ours[mac] = device
            return Remote(mac, "us", self._url_of(device) if device else None)
        return Remote(mac, "other")

    # -- change: batches -----------------------------------------------------------------

    def register_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        if not regs:
            return {}
        try:
            server_id = self._server_id(regs[0].url)
        except RedirectError as exc:
            return {r.mac: exc for r in regs}
        steal = {r.mac for r in regs if r.steal}
        by_url: dict[str, list[str]] = {}
        for r in regs:
            by_url.setdefault(r.url, []).append(r.mac)
        pairs = [(url, mac) for url, macs in sorted(by_url.items()) for mac in sorted(macs)]
        return batched(pairs, self.batch_size, lambda p: p[1],
                       lambda chunk: self._add([m for _, m in chunk], chunk[0][0], server_id,
                                               steal),
                       group=lambda p: p[0])  # a chunk never mixes URLs

    def _add(self, macs: list[str], url: str, server_id: str, steal: set[str]) -> Outcomes:
        """device/add of MACs that share a URL; one outcome per MAC (see the module text)."""
        out: Outcomes = {}
        pending = list(macs)
        resent = False
        while pending:
            try:
                data = self._call("device/add", {"macs": pending, "serverId": server_id,
                                                 "uniqueServerUrl": url})
            except _ApiError as exc:
                named = [m for m in _macs_in(exc.data) if m in pending]
                if not named and len(pending) > 1:  # which MAC failed is not said: halve
                    half = len(pending) // 2
                    out.update(self._add(pending[:half], url, server_id, steal))
                    out.update(self._add(pending[half:], url, server_id, steal))
                    return out
                for mac in named or pending:
                    out[mac], had_url = self._refused(mac, exc, url, server_id, mac in steal)
                    if resent and had_url:
                        # Sent again after a refusal, it was already ours with this URL: the
                        # service applied the rest of the refused batch (partial batches).
                        self._partial = True
                pending = [m for m in pending if m not in out]
                if self._partial and pending:
                    settled = self._settle(pending, url)
                    out.update(dict.fromkeys(settled))
                    pending = [m for m in pending if m not in settled]
                resent = True
                continue
            except RedirectError as exc:  # transient, or authentication: the whole batch
                out.update(dict.fromkeys(pending, exc))
                return out
            created = {str(d["mac"]).lower(): d for d in (data if isinstance(data, list) else [])
                       if isinstance(d, Mapping) and d.get("mac")}
            unconfirmed = [m for m in pending if created and m not in created]
            done = [m for m in pending if m not in unconfirmed]
            for mac in done:
                out[mac] = None
                if mac in created:
                    self._ours[mac] = dict(created[mac])
            if done:
                log.info("%s: registered %s", self.name, shown(done))
            for mac in unconfirmed:  # a success that does not list them: ask one by one
                out.update(self._add([mac], url, server_id, steal) if len(pending) > 1
                           else {mac: None})
            return out
        return out

    def _settle(self, macs: list[str], url: str) -> set[str]:
        """Which of these MACs are ours with this URL now (after a partial batch): one listing
        by their common prefix (`key` is a substring search), not one per MAC."""
        prefix = os.path.commonprefix(macs)
        if len(prefix) < 6:  # would list most of the account: let device/add tell instead
            return set()
        settled = set()
        wanted = set(macs)
        for device in self._pages("device/list", {"key": prefix}):
            mac = str(device.get("mac", "")).lower()
            if mac in wanted and self._url_of(device) == url:
                settled.add(mac)
                self._ours[mac] = device
        return settled

    def _refused(self, mac: str, exc: _ApiError, url: str, server_id: str, steal: bool
                 ) -> tuple[RedirectError | None, bool]:
        """The outcome of a MAC that device/add refused, and whether it already had `url`."""
        if exc.msg != OWN_EXISTS:
            return self._error(mac, exc, steal), False
        try:  # ours already: by a partial batch, or registered since the lookup
            device = self._find(mac)
            if device is None:
                return RedirectError(self.name, f"{mac}: said to exist but not found"), False
            had_url = self._url_of(device) == url
            if not had_url and mac in self._observed:
                # The lookup saw it as not ours; now our account holds it with another URL
                # (another environment of the fleet, or by hand). The planner has not judged
                # that registration: leave it; the next run's plan decides.
                return RedirectError(self.name, f"{mac}: registered by this account since the "
                                     "lookup, with another URL; left alone"), False
            if not had_url:
                self._edit(mac, device, url, server_id, steal)
            self._ours[mac] = {**device, "uniqueServerUrl": url}
        except RedirectError as error:
            return error, False
        return None, had_url

    def _edit(self, mac: str, device: Mapping[str, Any], url: str, server_id: str,
              steal: bool) -> None:
        try:
            self._call("device/edit",
                       {"id": self._id("device/list", device), "serverId": server_id,
                        "uniqueServerUrl": url})
        except _ApiError as exc:
            raise self._error(mac, exc, steal) from exc
        log.info("%s: updated %s", self.name, mac)

    def update_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        if not regs:
            return {}
        try:
            server_id = self._server_id(regs[0].url)
        except RedirectError as exc:
            return {r.mac: exc for r in regs}
        out: Outcomes = {}
        gone: list[DesiredRegistration] = []
        for reg in regs:
            try:
                device = self._device(reg.mac)
                if device is None:
                    gone.append(reg)
                    continue
                if self._url_of(device) == reg.url and device.get("serverId") == server_id:
                    out[reg.mac] = None  # already right (adopted, or a new window): no write
                    continue
                try:
                    self._edit(reg.mac, device, reg.url, server_id, reg.steal)
                except RedirectError as exc:
                    if "device.not.found" not in str(exc):
                        raise
                    gone.append(reg)  # deleted since the lookup: add it again
                    continue
                self._ours[reg.mac] = {**device, "uniqueServerUrl": reg.url,
                                       "serverId": server_id}
                out[reg.mac] = None
            except RedirectError as exc:
                out[reg.mac] = exc
        for reg in gone:
            self._observed.discard(reg.mac)
        out.update(self.register_many(gone))
        return out

    def deregister_many(self, macs: Sequence[str]) -> Outcomes:
        out, ids = own_ids(macs, self._device, lambda d: self._id("device/list", d))
        out.update(batched(sorted(ids), self.batch_size, lambda i: ids[i],
                           lambda chunk: self._delete({i: ids[i] for i in chunk})))
        return out

    def _delete(self, ids: dict[str, str]) -> Outcomes:
        out: Outcomes = {}
        pending = dict(ids)
        while pending:
            try:
                self._call("device/delete", {"ids": sorted(pending)})
            except _ApiError as exc:
                named = [i for i in _ids_in(exc.data) if i in pending]
                if not named and len(pending) > 1:
                    keys = sorted(pending)
                    half = len(keys) // 2
                    out.update(self._delete({i: pending[i] for i in keys[:half]}))
                    out.update(self._delete({i: pending[i] for i in keys[half:]}))
                    return out
                for i in named or list(pending):
                    mac = pending.pop(i)
                    out[mac] = (None if exc.msg == "device.not.found"  # already gone
                                else self._error(mac, exc, False))
                continue
            except RedirectError as exc:
                out.update(dict.fromkeys(pending.values(), exc))
                return out
            done = sorted(pending.values())
            for mac in done:
                out[mac] = None
                self._ours.pop(mac, None)
            log.info("%s: deregistered %s", self.name, shown(done))
            return out
        return out

    def _error(self, mac: str, exc: _ApiError, steal: bool) -> RedirectError:
        if exc.msg in OTHER_OWNS:
            extra = " (the RPS JSON API cannot take it over: steal is not possible here)"
            return RedirectError(
                self.name, f"{mac} is held by another account{extra if steal else ''}",
                conflict=True,
            )
        return RedirectError(self.name, f"{mac}: {exc.msg}")

    def close(self) -> None:
        self.http.close()
