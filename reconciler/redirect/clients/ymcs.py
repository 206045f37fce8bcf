"""`kind: yealink-ymcs`: the RPS half of Yealink's Management Cloud Service Open API v2
(`/v2/rps/...`), the current Yealink API (reference §1.3).

Authentication (reference §1.3, Falconieri `libs/ymcs/auth.go` [V]): `POST /v2/token` with
`Authorization: Basic base64(client_id:client_secret)` and `{"grant_type":
"client_credentials"}` answers `{access_token, token_type, expires_in}`; every call then carries
`Authorization: Bearer <token>` and fresh `timestamp` (Unix ms) and `nonce` (32 hex) headers —
fresh on every attempt (they are a `Signer`). The token is kept until 60 s before it expires;
a 401 fetches a new one once and the call is sent again; a second 401 is "authentication
refused" (permanent).

Errors: non-2xx with `{code: "<string>", message, requestId, details}` [V reference §1.3].
`900429` is throttling (like HTTP 429: retried, the limiter slows down, `Retry-After` pauses
the service). Batch calls answer 200 with per-item failures.

Registrations: `POST /v2/rps/addDevicesByMac` takes a bare array of `{mac, uniqueServerUrl}`,
≤ 100 per call (`batch_size`), each item with its own URL — so with `url_tokens: per-device`
a first registration is one request per 100 MACs. It must be enabled for the account by
Yealink [V reference §1.1: Falconieri README, dszp changelog]; what the service answers when it
is not is not recorded anywhere [I: 403 / 900403 is assumed, and 404 / 405 are read the same]:
the client then sends nothing more and every registration fails with one message that says
so. No *server* object is made: a device added with only `uniqueServerUrl` is sent there
[V Falconieri `providers/ymcs.go` adds with only uniqueServerUrl].

Per-item `errors: [{mac, sn, errorInfo}]`, where `errorInfo` is the code as a string
(`"800004"`) or a message [V reference §1.3, Falconieri utils.go comments]:

- `800004` / "managed by another organization" → `RedirectError(conflict=True)`. The API has
  no override: `steal: true` cannot take it either, and nothing this client sends moves it.
- `800003` / "already exists" → the MAC is read back: ours with this URL → done; ours with
  another URL → edited when the lookup did not cover it, else left alone (registered by this
  account since the lookup: the plan never judged that registration); not ours → a conflict
  (Falconieri reads 800003 as "owned by another user" too).
- anything else → a permanent error for that MAC. `800006` (batch too big) on the whole call
  splits the batch in halves.

Observation: `lookup` of more than `precise_lookup` MACs reads the account's device list
(`POST /v2/rps/listDevices`, `limit` ≤ 100 per page [V dszp changelog: RPS lists cap at
100]) — not one call per MAC; a smaller lookup asks `filter: {mac}` per MAC (exact match
checked here: the filter may be a substring search [I]). Another organisation's MAC is not
visible: it is reported `nobody` and the add's 800004 says the rest (the planner records that
conflict, `Record.conflict_blind`).

Edits: `PATCH /v2/rps/devices/{id} {uniqueServerUrl}` [V reference §1.3, live-verified PATCH
shape]; whether it can change the URL of a MAC-only device is an open question [I reference §8].
An unknown id answers 400 / 900400 [V dszp changelog]: the device went since the lookup, so it
is added again. Deregistrations: `POST /v2/rps/delDevices {deviceIdType: "id", deviceIds}`,
100 per call, ids from the lookup (an id names our record as the lookup saw it; a MAC could
name whoever holds it now); a per-item "not found" is already gone.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from reconciler.core.errors import RedirectError
from reconciler.redirect import base
from reconciler.redirect.base import DesiredRegistration, Outcomes, Remote
from reconciler.redirect.http import BaseTransport, HttpTransport, Response, RetryPolicy, SignInput

log = logging.getLogger(__name__)

REGIONS = ("us", "eu", "au")  # [V reference §1.3]
MAX_BATCH = 100  # addDevicesByMac / delDevices items per call [V reference §1.3]
TOKEN = "v2/token"
LIST = "v2/rps/listDevices"
ADD = "v2/rps/addDevicesByMac"
DELETE = "v2/rps/delDevices"
DEVICE = "v2/rps/devices/"
OTHER_ORG = "800004"
EXISTS = "800003"
TOO_MANY = "800006"
THROTTLED = "900429"
UNKNOWN_ID = frozenset({"900400", "900404"})
DISABLED = frozenset({403, 404, 405})  # addDevicesByMac not enabled [I]
EARLY = 60.0  # seconds before its expiry a token is renewed
CODE = re.compile(r"\b([789]\d{4,5})\b")


def region_url(region: str) -> str:
    return f"https://{region}-api.ymcs.yealink.com"


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") +
                         (f": {message}" if message else ""))


def error_of(response: Response) -> tuple[str, str]:
    """(code, message) of a YMCS error body; ("", text) when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return "", response.body[:200].decode("utf-8", "replace")
    if not isinstance(body, Mapping):
        return "", str(body)[:200]
    message = str(body.get("message") or body.get("error") or "")
    details = body.get("details") or []
    if isinstance(details, list) and details:
        message += " (" + ", ".join(
            f"{d.get('field', '?')}: {d.get('message', '?')}" for d in details
            if isinstance(d, Mapping)) + ")"
    return str(body.get("code") or ""), message[:300]


def _throttled(response: Response) -> bool:
    return not response.ok and error_of(response)[0] == THROTTLED


def item_code(info: Any) -> str:
    """The code in a per-item `errorInfo` / `msg`: the code itself, or one a message names, or
    the message's meaning ("" when neither)."""
    text = str(info or "")
    found = CODE.search(text)
    if found:
        return found.group(1)
    lowered = text.lower()
    if "another organization" in lowered or "another organisation" in lowered:
        return OTHER_ORG
    if "already exist" in lowered:
        return EXISTS
    if "not found" in lowered or "not exist" in lowered:
        return "900404"
    return ""


class YmcsClient(base.Seen, base.OneByBatch):
    # [V] reference §1.3 and §6: YMCS has no override; another organisation's MAC is refused
    # (800004) and stays where it is.
    can_steal = False

    def __init__(
        self,
        name: str,
        client_id: str,
        client_secret: str,
        *,
        region: str = "eu",
        base_url: str | None = None,
        batch_size: int = MAX_BATCH,
        page_size: int = 100,  # listDevices caps `limit` at 100
        precise_lookup: int = 3,
        clock: Callable[[], float] = time.time,  # timestamps and token expiry
        rate_per_second: float = 5.0,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if region not in REGIONS:
            raise RedirectError(name, f"region must be one of {', '.join(REGIONS)}: {region!r}")
        self.name = name
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.page_size = page_size
        self.precise_lookup = precise_lookup
        self._basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0
        self._disabled: RedirectError | None = None  # addDevicesByMac refused for the account
        # What the last lookup saw: every MAC it covered, and our devices among them.
        self._observed: set[str] = set()
        self._ours: dict[str, Mapping[str, Any]] = {}
        self.http = HttpTransport(name, base_url or region_url(region), retry=retry, sleep=sleep,
                                  rate_per_second=rate_per_second, timeout=timeout,
                                  transport=transport, headers={"Accept": "application/json"})
        self.stats = self.http.stats

    # -- transport -----------------------------------------------------------------------

    def _stamp(self) -> dict[str, str]:
        return {"timestamp": str(int(self._clock() * 1000)), "nonce": secrets.token_hex(16)}

    def _bearer(self) -> str:
        if self._token is not None and self._clock() < self._expires:
            return self._token
        basic = {"Authorization": "Basic " + self._basic}
        response = self.http.request("POST", TOKEN, json_body={"grant_type": "client_credentials"},
                                     signer=lambda _: {**basic, **self._stamp()},
                                     throttled=_throttled)
        if not response.ok:
            code, message = error_of(response)
            raise RedirectError(self.name, f"token: authentication refused (HTTP "
                                f"{response.status}{' ' + code if code else ''}: {message})")
        try:
            answer = response.json()
        except ValueError as exc:
            raise RedirectError(self.name, f"token: {exc}") from exc
        token = answer.get("access_token") if isinstance(answer, Mapping) else None
        if not isinstance(token, str) or not token:
            raise RedirectError(self.name, "token: unexpected answer: no access_token")
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 86400.0
        self._token, self._expires = token, self._clock() + max(0.0, lifetime - EARLY)
        log.debug("%s: new access token, valid %.0f s", self.name, lifetime)
        return token

    def _signer(self, token: str) -> Callable[[SignInput], dict[str, str]]:
        """Bearer plus a fresh timestamp and nonce for every attempt."""
        return lambda _: {"Authorization": "Bearer " + token, **self._stamp()}

    def _send(self, method: str, path: str, body: Any = None) -> Response:
        for attempt in range(2):
            response = self.http.request(method, path, json_body=body, throttled=_throttled,
                                         signer=self._signer(self._bearer()))
            if response.status != 401:
                return response
            self._token = None  # expired or revoked: one new token, one more try
            if attempt == 0:
                log.info("%s: access token refused; fetching a new one", self.name)
        code, message = error_of(response)
        raise RedirectError(self.name, f"{method} /{path}: authentication refused (HTTP 401"
                            f"{' ' + code if code else ''}: {message})")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; `_ApiError` for a non-2xx answer."""
        response = self._send(method, path, body)
        if not response.ok:
            raise _ApiError(response.status, *error_of(response))
        try:
            return response.json()
        except ValueError as exc:
            raise RedirectError(self.name, f"/{path}: {exc}") from exc

    def _object(self, path: str, data: Any) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            raise RedirectError(self.name, f"/{path}: unexpected answer: "
                                f"{type(data).__name__}, not an object")
        return data

    # -- devices -------------------------------------------------------------------------

    def _pages(self, query: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        def fetch(skip: int) -> Mapping[str, Any]:
            try:
                return self._object(LIST, self._call("POST", LIST, {
                    **query, "skip": skip, "limit": self.page_size, "autoCount": True}))
            except _ApiError as exc:
                raise RedirectError(self.name, f"/{LIST}: {exc}") from exc

        return base.skip_pages(fetch, self.page_size,
                          lambda why: RedirectError(self.name, f"/{LIST}: {why}"))

    def list_devices(self) -> dict[str, Mapping[str, Any]]:
        """Every device of this account, by MAC (all pages)."""
        return {str(d["mac"]).lower(): d for d in self._pages({"filter": {}}) if d.get("mac")}

    def _find(self, mac: str) -> Mapping[str, Any] | None:
        return base.with_mac(self._pages({"filter": {"mac": mac}}), mac)

    @staticmethod
    def _url_of(device: Mapping[str, Any]) -> str | None:
        return device.get("uniqueServerUrl") or device.get("serverUrl") or None

    def _id(self, device: Mapping[str, Any]) -> str:
        if device.get("id") in (None, ""):
            raise RedirectError(self.name, f"/{LIST}: unexpected answer: a device without id")
        return str(device["id"])

    # -- observe -------------------------------------------------------------------------

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        wanted = sorted(set(macs))
        self._observed, self._ours = set(), {}
        if not wanted:
            return {}
        if len(wanted) <= self.precise_lookup:
            own = {mac: d for mac in wanted if (d := self._find(mac)) is not None}
        else:
            own = self.list_devices()
        self._ours = {mac: own[mac] for mac in wanted if mac in own}
        self._observed = set(wanted)
        # Not ours: nobody's, or another organisation's (invisible here: the add will say).
        return {mac: Remote(mac, "us", self._url_of(own[mac])) if mac in own
                else Remote(mac, "nobody") for mac in wanted}

    # -- change: batches -----------------------------------------------------------------

    def register_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        by_mac = {r.mac: r for r in regs}
        return base.batched(sorted(by_mac), self.batch_size, lambda m: m,
                       lambda chunk: self._add([by_mac[m] for m in chunk]))

    def _add(self, regs: list[DesiredRegistration]) -> Outcomes:
        macs = [r.mac for r in regs]
        if self._disabled is not None:
            return dict.fromkeys(macs, self._disabled)  # not sent again
        body = [{"mac": r.mac, "uniqueServerUrl": r.url} for r in regs]
        try:
            answer = self._object(ADD, self._call("POST", ADD, body))
        except _ApiError as exc:
            if exc.code == TOO_MANY and len(regs) > 1:  # the account takes fewer: halve
                half = len(regs) // 2
                return {**self._add(regs[:half]), **self._add(regs[half:])}
            if exc.status in DISABLED:
                self._disabled = RedirectError(
                    self.name, f"registering by MAC (/{ADD}) is refused for this account "
                    f"({exc}): Yealink must enable addDevicesByMac for it; nothing was "
                    "registered")
                log.error("%s", self._disabled)
                return dict.fromkeys(macs, self._disabled)
            return dict.fromkeys(macs, RedirectError(self.name, f"/{ADD}: {exc}"))
        except RedirectError as exc:  # transient, or authentication: the whole batch
            return dict.fromkeys(macs, exc)
        errors = answer.get("errors") or []
        if not isinstance(errors, list) or not all(isinstance(e, Mapping) for e in errors):
            return dict.fromkeys(macs, RedirectError(
                self.name, f"/{ADD}: unexpected answer: errors is not a list of objects"))
        failed = {str(e.get("mac", "")).lower(): e.get("errorInfo") for e in errors}
        failures = answer.get("failureCount")
        unnamed = (failures - len(set(failed) & set(macs))) if isinstance(failures, int) else 0
        out: Outcomes = {}
        for reg in regs:
            if reg.mac in failed:
                out[reg.mac] = self._refused(reg, failed[reg.mac])
            elif unnamed > 0:
                out[reg.mac] = RedirectError(self.name, f"{reg.mac}: the answer counts "
                                             f"{failures} failures but does not name them all")
            else:
                out[reg.mac] = None  # its id is not in the answer: read it when next needed
                self._observed.discard(reg.mac)
                self._ours.pop(reg.mac, None)
        done = [m for m, e in out.items() if e is None]
        if done:
            log.info("%s: registered %s", self.name, base.shown(done))
        return out

    def _refused(self, reg: DesiredRegistration, info: Any) -> RedirectError | None:
        """The outcome of one MAC that addDevicesByMac refused."""
        code = item_code(info)
        if code == OTHER_ORG:
            return self._conflict(reg.mac, reg.steal)
        if code != EXISTS:
            return RedirectError(self.name, f"{reg.mac}: {info}")
        try:  # registered already: by us (since the lookup, or a retried batch), or not
            device = self._find(reg.mac)
            if device is None:
                return self._conflict(reg.mac, reg.steal)
            if self._url_of(device) == reg.url:
                self._ours[reg.mac] = device
                return None
            if reg.mac in self._observed:
                return RedirectError(self.name, f"{reg.mac}: registered by this account since "
                                     "the lookup, with another URL; left alone")
            self._patch(reg, device)
        except RedirectError as error:
            return error
        return None

    def _patch(self, reg: DesiredRegistration, device: Mapping[str, Any]) -> None:
        try:
            self._call("PATCH", DEVICE + self._id(device), {"uniqueServerUrl": reg.url})
        except _ApiError as exc:
            if exc.code == OTHER_ORG or exc.status == 403:
                raise self._conflict(reg.mac, reg.steal) from exc
            raise RedirectError(self.name, f"{reg.mac}: PATCH device: {exc}") from exc
        self._ours[reg.mac] = {**device, "uniqueServerUrl": reg.url}
        log.info("%s: updated %s", self.name, reg.mac)

    def update_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        gone: list[DesiredRegistration] = []

        def update(reg: DesiredRegistration) -> None:
            device = self._device(reg.mac)
            if device is None:
                gone.append(reg)
            elif self._url_of(device) != reg.url:  # else already right: no write
                try:
                    self._patch(reg, device)
                except RedirectError as exc:
                    if not isinstance(exc.__cause__, _ApiError) or \
                            exc.__cause__.code not in UNKNOWN_ID:
                        raise
                    gone.append(reg)  # deleted since the lookup: add it again

        out = base.each(regs, lambda r: r.mac, update)
        for reg in gone:
            del out[reg.mac]
            self._observed.discard(reg.mac)
            self._ours.pop(reg.mac, None)
        out.update(self.register_many(gone))
        return out

    def deregister_many(self, macs: Sequence[str]) -> Outcomes:
        out, ids = base.own_ids(macs, self._device, self._id)
        out.update(base.batched(sorted(ids), self.batch_size, lambda i: ids[i],
                           lambda chunk: self._delete({i: ids[i] for i in chunk})))
        return out

    def _delete(self, ids: dict[str, str]) -> Outcomes:
        try:
            answer = self._object(DELETE, self._call(
                "POST", DELETE, {"deviceIdType": "id", "deviceIds": sorted(ids)}))
        except _ApiError as exc:
            if exc.code == TOO_MANY and len(ids) > 1:
                keys = sorted(ids)
                half = len(keys) // 2
                return {**self._delete({i: ids[i] for i in keys[:half]}),
                        **self._delete({i: ids[i] for i in keys[half:]})}
            return dict.fromkeys(ids.values(), RedirectError(self.name, f"/{DELETE}: {exc}"))
        except RedirectError as exc:
            return dict.fromkeys(ids.values(), exc)
        errors = answer.get("errors") or []
        if not isinstance(errors, list) or not all(isinstance(e, Mapping) for e in errors):
            return dict.fromkeys(ids.values(), RedirectError(
                self.name, f"/{DELETE}: unexpected answer: errors is not a list of objects"))
        failed = {str(e.get("field", "")): e.get("msg") for e in errors}
        out: Outcomes = {}
        for did, mac in sorted(ids.items()):
            code = item_code(failed[did]) if did in failed else None
            if code is None or code in UNKNOWN_ID:  # deleted, or already gone
                out[mac] = None
                self._ours.pop(mac, None)
            elif code == OTHER_ORG:
                out[mac] = self._conflict(mac, False)
            else:
                out[mac] = RedirectError(self.name, f"{mac}: delete: {failed[did]}")
        done = [m for m, e in out.items() if e is None]
        if done:
            log.info("%s: deregistered %s", self.name, base.shown(done))
        return out

    def _conflict(self, mac: str, steal: bool) -> RedirectError:
        extra = " (the YMCS API cannot take it over: steal is not possible here)"
        return RedirectError(self.name, f"{mac} is held by another account (managed by another "
                             f"organization){extra if steal else ''}", conflict=True)

    def close(self) -> None:
        self.http.close()
