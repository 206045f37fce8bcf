"""`kind: snom-sraps` and `kind: gigaset-grape`: the SRAPS REST API (GRAPE is the same platform).

Authentication is Hawk 1.x with HMAC-SHA256 (reference §2.1): the header MAC covers
`hawk.1.header`, ts (Unix seconds), nonce, METHOD, the request URI as sent, host, port, the
optional payload hash and ext. A body is sent with its payload hash. A 401 "Stale timestamp"
whose `tsm` verifies with our key corrects the local clock offset and the request is retried
once.

Resources are discovered, not built: `tokens/{key id}` → company link → endpoints link; the
settings catalogue (paginated, `Link: rel="next"`) names the setting that holds the redirect URL.
SRAPS has TWO settings with `param_name == "setting_server"`: the global "Setting Server URL"
and the "phone-settings" one; the redirect URL belongs in the **phone-settings** one. GRAPE's is
`ProvisioningServer`.

`PUT endpoints/{mac}` is a full replace: we send the MAC, `autoprovisioning_enabled`, the
endpoint's other `settings_manager` entries and its `provisioning_profile` as they were (read
first), and our setting — so a registration never resets what someone set in the portal. A MAC
of another company answers 403 (or 400) "User lacks permission to endpoint" /
"taken_mac_or_forbidden" → `RedirectError(conflict=True)`; the API cannot take it over.

At scale (issue 17): SRAPS has no batch write [V reference §2.1: endpoints are PUT/GET/DELETE
one MAC each]: every registration, update and deregistration is one request. What can be saved
is observation: `lookup` of more than `precise_lookup` MACs reads the company's endpoint list
(`page_size` 1000, the maximum) instead of one GET per MAC, and the PUT that follows reuses
the listed endpoint instead of reading it again — only when the listed item carries both
`settings_manager` and `provisioning_profile` (whether the real list does is not documented
[I]; otherwise the endpoint is read before the full-replace PUT, so nothing is reset). A MAC not
in our list is reported `nobody`: another company's MAC is refused by the PUT (403 "User lacks
permission to endpoint") and never changed — the planner records that conflict.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core.errors import RedirectError
from reconciler.redirect.base import DesiredRegistration, Outcomes, Remote, each
from reconciler.redirect.http import BaseTransport, HttpTransport, Response, RetryPolicy, SignInput

log = logging.getLogger(__name__)

OWNERSHIP_TEXTS = ("taken_mac_or_forbidden", "user lacks permission to endpoint")
PAGE_SIZE = 1000  # the maximum SRAPS accepts (default 20)
FULL = ("settings_manager", "provisioning_profile")  # what a full-replace PUT must carry over


@dataclass(frozen=True)
class Flavour:
    kind: str
    base_url: str
    param_name: str
    section: str | None  # the setting's section, when the name alone is ambiguous


SNOM = Flavour("snom-sraps", "https://api.sraps.snom.com/api/v1/", "setting_server",
               "phone-settings")
GRAPE = Flavour("gigaset-grape", "https://api.grape.gigaset.net/api/v1/", "ProvisioningServer",
                None)
FLAVOURS = {f.kind: f for f in (SNOM, GRAPE)}


# -- Hawk (pure) ----------------------------------------------------------------------------


def payload_hash(content_type: str, body: bytes) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    data = b"hawk.1.payload\n" + media.encode() + b"\n" + body + b"\n"
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def normalized_string(
    ts: int, nonce: str, method: str, uri: str, host: str, port: int,
    hash_: str = "", ext: str = "",
) -> str:
    return (
        f"hawk.1.header\n{ts}\n{nonce}\n{method.upper()}\n{uri}\n{host.lower()}\n{port}\n"
        f"{hash_}\n{ext}\n"
    )


def hawk_mac(secret: str, normalized: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), normalized.encode(), hashlib.sha256).digest()
    ).decode()


def hawk_header(key_id: str, secret: str, request: SignInput, ts: int, nonce: str) -> str:
    hash_ = payload_hash(request.content_type, request.body) if request.body else ""
    mac = hawk_mac(
        secret,
        normalized_string(ts, nonce, request.method, request.raw_target, request.host,
                          request.port, hash_),
    )
    parts = [f'id="{key_id}"', f'ts="{ts}"', f'nonce="{nonce}"']
    if hash_:
        parts.append(f'hash="{hash_}"')
    parts.append(f'mac="{mac}"')
    return "Hawk " + ", ".join(parts)


_ATTR = re.compile(r'(\w+)="([^"\\]*)"')


def parse_hawk_attributes(header: str) -> dict[str, str]:
    """Attributes of a `Hawk k="v", ...` header (Authorization or WWW-Authenticate)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "hawk":
        return {}
    return dict(_ATTR.findall(rest))


def timestamp_mac(secret: str, ts: str) -> str:
    return hawk_mac(secret, f"hawk.1.ts\n{ts}\n")


def pick_setting(settings: Sequence[Mapping[str, Any]], flavour: Flavour) -> Mapping[str, Any]:
    """The setting that holds the redirect URL: by param_name, and by section if given."""
    named = [s for s in settings if s.get("param_name") == flavour.param_name]
    if flavour.section is not None:
        named = [s for s in named if s.get("section") == flavour.section]
    if len(named) != 1:
        where = f" in section {flavour.section!r}" if flavour.section else ""
        raise ValueError(
            f"expected one setting {flavour.param_name!r}{where}, found {len(named)}"
        )
    return named[0]


def _detail(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.body[:200].decode("utf-8", "replace")
    if isinstance(body, Mapping):
        for key in ("detail", "message", "error"):
            if body.get(key):
                return str(body[key])[:200]
    return str(body)[:200]


def _is_ownership(response: Response) -> bool:
    return response.status in (400, 403) and any(
        text in _detail(response).lower() for text in OWNERSHIP_TEXTS
    )


# -- client ---------------------------------------------------------------------------------


class SrapsClient:
    # [V] rps-apis.md §"Ownership": SRAPS/GRAPE refuse another account's MAC
    # (taken_mac_or_forbidden) and offer no override.
    can_steal = False

    def __init__(
        self,
        name: str,
        key_id: str,
        secret: str,
        *,
        flavour: Flavour = SNOM,
        base_url: str | None = None,
        rate_per_second: float = 5.0,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        transport: BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        page_size: int = PAGE_SIZE,
        precise_lookup: int = 3,
    ):
        self.name = name
        self.flavour = flavour
        self.page_size = page_size
        self.precise_lookup = precise_lookup
        # What the last lookup saw: the MACs it covered, and our endpoints among them.
        self._observed: set[str] = set()
        self._ours: dict[str, Mapping[str, Any]] = {}
        self._key_id = key_id
        self._secret = secret
        self._clock = clock
        self._offset = 0  # seconds to add to our clock (from a verified 401 "Stale timestamp")
        self._endpoints: str | None = None
        self._setting: str | None = None
        self.http = HttpTransport(
            name,
            base_url or flavour.base_url,
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
        ts = int(self._clock()) + self._offset
        return {"Authorization": hawk_header(
            self._key_id, self._secret, request, ts, secrets.token_urlsafe(9)
        )}

    def _send(self, method: str, url: str, *, body: Any = None,
              params: Mapping[str, str] | None = None) -> Response:
        response = self.http.request(method, url, params=params, json_body=body,
                                     signer=self._sign)
        if response.status == 401 and self._resync(response):
            response = self.http.request(method, url, params=params, json_body=body,
                                         signer=self._sign)
        if response.status == 401:
            raise RedirectError(self.name, f"authentication refused: {_detail(response)}")
        return response

    def _resync(self, response: Response) -> bool:
        attrs = parse_hawk_attributes(response.headers.get("www-authenticate", ""))
        ts, tsm = attrs.get("ts"), attrs.get("tsm")
        if not ts or not tsm or not ts.isdigit():
            return False
        if not hmac.compare_digest(tsm, timestamp_mac(self._secret, ts)):
            log.warning("%s: ignoring a server timestamp whose tsm does not verify", self.name)
            return False
        self._offset = int(ts) - int(self._clock())
        log.info("%s: clock offset to the service is %+d s", self.name, self._offset)
        return True

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._send(method, url, **kwargs)
        if not response.ok:
            raise RedirectError(self.name, f"{method} {url}: HTTP {response.status}: "
                                f"{_detail(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise RedirectError(self.name, f"{method} {url}: {exc}") from exc

    def _pages(self, url: str) -> Iterator[Mapping[str, Any]]:
        """Every item of a paginated collection (RFC 8288 `Link: rel="next"`)."""
        params: Mapping[str, str] | None = {"page_size": str(self.page_size)}
        next_url: str | None = url
        seen: set[str] = set()
        while next_url and next_url not in seen:
            seen.add(next_url)
            response = self._send("GET", next_url, params=params)
            if not response.ok:
                raise RedirectError(self.name, f"GET {next_url}: HTTP {response.status}: "
                                    f"{_detail(response)}")
            body = response.json()
            items = body.get("results", []) if isinstance(body, Mapping) else body
            yield from items or []
            next_url, params = response.links.get("next"), None

    # -- discovery -----------------------------------------------------------------------

    def _discover(self) -> tuple[str, str]:
        if self._endpoints is None or self._setting is None:
            token = self._json("GET", f"tokens/{self._key_id}")
            company_url = (token.get("links") or {}).get("company")
            if not company_url:
                raise RedirectError(self.name, "tokens/{id} has no company link")
            company = self._json("GET", company_url)
            endpoints = (company.get("links") or {}).get("endpoints")
            if not endpoints:
                raise RedirectError(self.name, "the company has no endpoints link")
            try:
                setting = pick_setting(list(self._pages("settings/")), self.flavour)
            except ValueError as exc:
                raise RedirectError(self.name, str(exc)) from exc
            self._endpoints = endpoints if endpoints.endswith("/") else endpoints + "/"
            self._setting = str(setting["uuid"])
        return self._endpoints, self._setting

    # -- endpoints -----------------------------------------------------------------------

    def _get(self, mac: str) -> tuple[str, Mapping[str, Any] | None]:
        """("us", endpoint) | ("nobody", None) | ("other", None)."""
        endpoints, _ = self._discover()
        response = self._send("GET", endpoints + mac)
        if response.status == 404:
            return "nobody", None
        if _is_ownership(response):
            return "other", None
        if not response.ok:
            raise RedirectError(self.name, f"GET endpoint {mac}: HTTP {response.status}: "
                                f"{_detail(response)}")
        return "us", response.json()

    def list_endpoints(self) -> dict[str, Mapping[str, Any]]:
        """Every endpoint of the company (all pages), by MAC."""
        endpoints, _ = self._discover()
        return {str(item["mac"]).lower(): item for item in self._pages(endpoints)}

    def list_macs(self) -> list[str]:
        return sorted(self.list_endpoints())

    def _url_in(self, endpoint: Mapping[str, Any] | None, setting: str) -> str | None:
        if endpoint is None:
            return None
        entry = (endpoint.get("settings_manager") or {}).get(setting) or {}
        return entry.get("value") if isinstance(entry, Mapping) else None

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        wanted = sorted(set(macs))
        self._observed, self._ours = set(), {}
        if not wanted:
            return {}
        _, setting = self._discover()
        found: dict[str, Remote] = {}
        if len(wanted) > self.precise_lookup:
            listed = self.list_endpoints()
            for mac in wanted:
                endpoint = listed.get(mac)
                if endpoint is None:
                    found[mac] = Remote(mac, "nobody")  # or another company's: PUT will say
                    continue
                found[mac] = Remote(mac, "us", self._url_in(endpoint, setting))
                if all(key in endpoint for key in FULL):
                    self._ours[mac] = endpoint
            self._observed = {m for m in wanted if m not in listed or m in self._ours}
            return found
        for mac in wanted:
            holder, endpoint = self._get(mac)
            found[mac] = Remote(mac, holder, self._url_in(endpoint, setting))  # type: ignore[arg-type]
            if endpoint is not None:
                self._ours[mac] = endpoint
            if holder != "other":
                self._observed.add(mac)
        return found

    def register_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        return each(regs, lambda r: r.mac, self._put)

    def update_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        return each(regs, lambda r: r.mac, self._put)

    def deregister_many(self, macs: Sequence[str]) -> Outcomes:
        return each(macs, lambda m: m, self.deregister)

    def register(self, reg: DesiredRegistration) -> None:
        self._put(reg)

    def update(self, reg: DesiredRegistration) -> None:
        self._put(reg)

    def _current(self, mac: str) -> tuple[str, Mapping[str, Any] | None]:
        """As `_get`, from the last lookup when it saw this MAC whole."""
        if mac in self._observed:
            endpoint = self._ours.get(mac)
            return ("us" if endpoint is not None else "nobody"), endpoint
        return self._get(mac)

    def _put(self, reg: DesiredRegistration) -> None:
        endpoints, setting = self._discover()
        holder, current = self._current(reg.mac)
        if holder == "other":
            raise self._conflict(reg.mac, reg.steal)
        settings = dict((current or {}).get("settings_manager") or {})
        settings[setting] = {"value": reg.url, "attrs": {"perm": "RW"}}
        body: dict[str, Any] = {
            "mac": reg.mac,
            "autoprovisioning_enabled": True,
            "settings_manager": settings,
        }
        if current and current.get("provisioning_profile"):
            body["provisioning_profile"] = current["provisioning_profile"]
        response = self._send("PUT", endpoints + reg.mac, body=body)
        if _is_ownership(response):
            raise self._conflict(reg.mac, reg.steal)
        if not response.ok:
            raise RedirectError(self.name, f"PUT endpoint {reg.mac}: HTTP {response.status}: "
                                f"{_detail(response)}")
        try:
            stored = response.json()
        except ValueError:
            stored = None
        if isinstance(stored, Mapping) and all(key in stored for key in FULL):
            self._ours[reg.mac] = stored
        else:
            self._ours[reg.mac] = body
        self._observed.add(reg.mac)
        log.info("%s: %s %s", self.name, "updated" if current else "registered", reg.mac)

    def deregister(self, mac: str) -> None:
        endpoints, _ = self._discover()
        response = self._send("DELETE", endpoints + mac)
        if response.status == 404:
            log.debug("%s: %s already deregistered", self.name, mac)
            return
        if _is_ownership(response):
            raise self._conflict(mac, False)
        if not response.ok:
            raise RedirectError(self.name, f"DELETE endpoint {mac}: HTTP {response.status}: "
                                f"{_detail(response)}")
        self._ours.pop(mac, None)
        log.info("%s: deregistered %s", self.name, mac)

    def _conflict(self, mac: str, steal: bool) -> RedirectError:
        extra = " (this API cannot take it over: steal is not possible here)" if steal else ""
        return RedirectError(self.name, f"{mac} is held by another company{extra}",
                             conflict=True)

    def close(self) -> None:
        self.http.close()
