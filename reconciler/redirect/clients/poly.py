"""`kind: poly-ztp`: Poly Zero Touch Provisioning REST API (reference §3.1).

Authentication is a static `API-KEY` header (set once on the HTTP client, never logged).

The provisioning URL lives on a *profile* (`template.provisioning.server.address`); a device
only points at a profile id. Design: **one profile per distinct provisioning URL**, named
`provctl-<sha256(url)[:16]>` (the name never shows the URL's token), found or created on demand.
With per-device URL tokens that is one profile per device; with per-customer tokens, one per
customer. A profile provctl created is deleted when its last device leaves it. Profiles not
named `provctl-…` are never touched.

No PUT on devices is known: moving a device to another profile is DELETE + POST (the MAC is
briefly unregistered). POST of a MAC another account holds → 409 → `RedirectError(conflict=True)`
(`GET /devices/{mac}` cannot see other accounts' devices: lookup reports them as "nobody", the
conflict shows at registration). DELETE → 409 "registered with a different account" → conflict.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Outcomes, Remote, each
from reconciler.redirect.http import BaseTransport, HttpTransport, Response, RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.ztp.poly.com/preview"
PROFILE_PREFIX = "provctl-"
CURSOR_KEYS = ("cursor", "nextCursor", "next_cursor", "next")  # the real name is not known


def profile_name(url: str) -> str:
    return PROFILE_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:16]


def profile_address(profile: Mapping[str, Any]) -> str | None:
    server = (((profile.get("template") or {}).get("provisioning") or {}).get("server") or {})
    address = server.get("address")
    return str(address) if address else None


def _message(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.body[:200].decode("utf-8", "replace")
    if isinstance(body, Mapping) and body.get("message"):
        return str(body["message"])[:200]
    return str(body)[:200]


class PolyZtpClient:
    # [V] rps-apis.md §"Ownership": only Yealink XML-RPC and Htek have an override flag; Poly
    # ZTP refuses another account's device (409) and has none.
    can_steal = False

    def __init__(
        self,
        name: str,
        api_key: str,
        *,
        base_url: str | None = None,
        rate_per_second: float = 5.0,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = 50,
        precise_lookup: int = 3,
    ):
        self.name = name
        self.page_size = page_size
        self.precise_lookup = precise_lookup
        self._profiles: dict[str, dict[str, Any]] | None = None  # id -> profile
        # What the last lookup saw: the MACs it covered and our devices among them; and, once
        # every device was listed, how many devices use each profile.
        self._observed: set[str] = set()
        self._ours: dict[str, dict[str, Any]] = {}
        self._usage: dict[str, int] | None = None
        self.http = HttpTransport(
            name,
            base_url or DEFAULT_BASE_URL,
            rate_per_second=rate_per_second,
            timeout=timeout,
            retry=retry,
            transport=transport,
            headers={"API-KEY": api_key, "Accept": "application/json"},
            sleep=sleep,
        )
        self.stats = self.http.stats

    # -- transport -----------------------------------------------------------------------

    def _send(self, method: str, path: str, *, body: Any = None,
              params: Mapping[str, str] | None = None) -> Response:
        response = self.http.request(method, path, params=params, json_body=body)
        if response.status == 401:
            raise RedirectError(self.name, f"authentication refused: {_message(response)}")
        return response

    def _fail(self, what: str, response: Response) -> RedirectError:
        return RedirectError(self.name, f"{what}: HTTP {response.status}: {_message(response)}")

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params = {"limit": str(self.page_size)}
            if cursor:
                params["cursor"] = cursor
            response = self._send("GET", path, params=params)
            if not response.ok:
                raise self._fail(f"GET {path}", response)
            body = response.json() or {}
            items = body.get("results", []) if isinstance(body, Mapping) else body
            yield from items or []
            cursor = next(
                (str(body[k]) for k in CURSOR_KEYS if isinstance(body, Mapping) and body.get(k)),
                None,
            )
            if not cursor or cursor in seen or not items:
                return
            seen.add(cursor)

    # -- profiles ------------------------------------------------------------------------

    def _profile_index(self) -> dict[str, dict[str, Any]]:
        if self._profiles is None:
            self._profiles = {str(p["id"]): p for p in self._pages("profiles")}
        return self._profiles

    def _profile_for(self, url: str) -> str:
        """The id of provctl's profile for this URL, created if needed."""
        wanted = profile_name(url)
        for pid, profile in self._profile_index().items():
            if profile.get("name") == wanted and profile_address(profile) == url:
                return pid
        body = {
            "name": wanted,
            "enabled": True,
            "template": {"provisioning": {"server": {"address": url}}},
        }
        response = self._send("POST", "profiles", body=body)
        if not response.ok:
            raise self._fail("create profile", response)
        created = response.json() or {}
        pid = str(created.get("id") or "")
        if not pid:
            raise RedirectError(self.name, "create profile: no id in the answer")
        self._profile_index()[pid] = {**body, "id": pid}
        log.info("%s: created profile %s", self.name, wanted)
        return pid

    def _url_of_profile(self, pid: str) -> str | None:
        profile = self._profile_index().get(pid)
        if profile is None:
            response = self._send("GET", f"profiles/{pid}")
            if not response.ok:
                return None
            profile = response.json() or {}
            self._profile_index()[pid] = profile
        return profile_address(profile)

    def _release_profile(self, pid: str | None) -> None:
        """Delete a provctl profile no device points at any more (best effort)."""
        if not pid:
            return
        profile = self._profile_index().get(pid)
        if profile is None or not str(profile.get("name", "")).startswith(PROFILE_PREFIX):
            return
        try:
            if self._usage is None:
                self._count_usage(self._pages("devices"))
            assert self._usage is not None
            if self._usage.get(pid, 0) > 0:
                return
            response = self._send("DELETE", f"profiles/{pid}")
        except RedirectError as exc:
            log.warning("%s: could not clean up profile %s: %s", self.name, pid, exc)
            return
        if response.ok or response.status == 404:
            self._profile_index().pop(pid, None)
            log.info("%s: deleted unused profile %s", self.name, profile.get("name"))
        else:
            log.warning("%s: could not delete profile %s: HTTP %s", self.name,
                        profile.get("name"), response.status)

    def _count_usage(self, devices: Iterator[Mapping[str, Any]]) -> None:
        usage: dict[str, int] = {}
        for device in devices:  # a listing that fails half-way leaves no partial count
            pid = self._profile_of(device)
            usage[pid] = usage.get(pid, 0) + 1
        self._usage = usage

    def _used(self, pid: str, delta: int) -> None:
        if self._usage is not None and pid:
            self._usage[pid] = max(0, self._usage.get(pid, 0) + delta)

    # -- devices -------------------------------------------------------------------------

    def _device(self, mac: str) -> dict[str, Any] | None:
        response = self._send("GET", f"devices/{mac}")
        if response.status == 404:
            return None
        if not response.ok:
            raise self._fail(f"GET device {mac}", response)
        return response.json() or {}

    @staticmethod
    def _profile_of(device: Mapping[str, Any]) -> str:
        return str(device.get("profileid") or device.get("profile") or "")

    def list_macs(self) -> list[str]:
        """Every device of this account (all pages)."""
        return sorted(str(d["id"]).lower() for d in self._pages("devices"))

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        wanted = sorted(set(macs))
        self._profiles, self._usage = None, None
        self._observed, self._ours = set(), {}
        found: dict[str, Remote] = {}
        if len(wanted) > self.precise_lookup:
            listed = list(self._pages("devices"))
            self._count_usage(iter(listed))
            own = {str(d["id"]).lower(): d for d in listed}
        else:
            own = {mac: d for mac in wanted if (d := self._device(mac)) is not None}
        for mac in wanted:
            device = own.get(mac)
            if device is None:
                found[mac] = Remote(mac, "nobody")  # or another account's: invisible here
            else:
                self._ours[mac] = device
                found[mac] = Remote(mac, "us", self._url_of_profile(self._profile_of(device)))
        self._observed = set(wanted)
        return found

    def _seen(self, mac: str) -> dict[str, Any] | None:
        """Our device as the last lookup saw it; read only for a MAC it did not cover."""
        if mac in self._observed:
            return self._ours.get(mac)
        return self._device(mac)

    def _post(self, mac: str, pid: str) -> Response:
        response = self._send("POST", "devices", body={"id": mac, "profile": pid})
        if response.ok:
            self._ours[mac] = {"id": mac, "profileid": pid}
            self._observed.add(mac)
            self._used(pid, +1)
        return response

    def register_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        return each(regs, lambda r: r.mac, self.register)

    def update_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        return each(regs, lambda r: r.mac, self.update)

    def deregister_many(self, macs: Sequence[str]) -> Outcomes:
        return each(macs, lambda m: m, self.deregister)

    def register(self, reg: DesiredRegistration) -> None:
        pid = self._profile_for(reg.url)
        response = self._post(reg.mac, pid)
        if response.ok:
            log.info("%s: registered %s", self.name, reg.mac)
            return
        if response.status != 409:
            raise self._fail(f"register {reg.mac}", response)
        device = self._device(reg.mac)  # 409: ours already, or another account's?
        if device is None:
            extra = " (this API cannot take it over: steal is not possible here)"
            raise RedirectError(
                self.name,
                f"{reg.mac} is registered with a different account"
                + (extra if reg.steal else ""),
                conflict=True,
            )
        self._repoint(reg.mac, device, pid)

    def update(self, reg: DesiredRegistration) -> None:
        device = self._seen(reg.mac)
        if device is None:
            self.register(reg)
            return
        self._repoint(reg.mac, device, self._profile_for(reg.url))

    def _repoint(self, mac: str, device: Mapping[str, Any], pid: str) -> None:
        old = self._profile_of(device)
        if old == pid:
            log.debug("%s: %s already points at its profile", self.name, mac)
            return
        response = self._send("DELETE", f"devices/{mac}")
        if response.status == 409:
            raise RedirectError(self.name, f"{mac} is registered with a different account",
                                conflict=True)
        if not (response.ok or response.status == 404):
            raise self._fail(f"update {mac} (delete)", response)
        self._ours.pop(mac, None)
        self._used(old, -1)
        response = self._post(mac, pid)
        if not response.ok:
            raise self._fail(f"update {mac} (re-add; the MAC is now unregistered)", response)
        log.info("%s: updated %s", self.name, mac)
        self._release_profile(old)

    def deregister(self, mac: str) -> None:
        device = self._seen(mac)
        response = self._send("DELETE", f"devices/{mac}")
        if response.status == 404:
            log.debug("%s: %s already deregistered", self.name, mac)
            return
        if response.status == 409:
            raise RedirectError(self.name, f"{mac} is registered with a different account",
                                conflict=True)
        if not response.ok:
            raise self._fail(f"deregister {mac}", response)
        log.info("%s: deregistered %s", self.name, mac)
        self._ours.pop(mac, None)
        if device is not None:
            self._used(self._profile_of(device), -1)
            self._release_profile(self._profile_of(device))

    def close(self) -> None:
        self.http.close()
