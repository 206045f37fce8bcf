"""A faithful fake of the Poly ZTP REST API (reference §3.1 and §7).

`API-KEY` header required (401 `{"message": "Unauthorized"}`); profiles CRUD with the template
shape (`template.provisioning.server.address` required); `POST /devices {id, profile}` checks
the MAC (400) and that the profile is the account's (400); `GET /devices/{mac}` → `{id,
profileid}` or 404 `{"message": "Not Found"}` (another account's device is not visible);
`DELETE /devices/{mac}` → 409 for another account's device; `POST` of a MAC another account holds
→ 409 (assumption); `POST` of an own existing MAC → `post_existing` ("conflict": 409, the
default, or "update"); deleting a profile devices still use → 409 (assumption); cursor
pagination on `/devices` and `/profiles` (`limit`, `cursor`; the answer's `cursor` key — the
real name is not known).
"""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

from .server import FakeServer, Reply, Request

MAC = re.compile(r"^[0-9a-fA-F]{12}$")
NOT_FOUND = {"message": "Not Found"}


class FakePolyZtp(FakeServer):
    def __init__(
        self,
        keys: dict[str, str] | None = None,  # API key -> account
        *,
        base_path: str = "/preview",
        post_existing: str = "conflict",
        max_limit: int = 100,
    ):
        super().__init__()
        self.keys = dict(keys or {})
        self.base_path = base_path.rstrip("/")
        self.post_existing = post_existing
        self.max_limit = max_limit
        self.profiles: dict[str, dict[str, Any]] = {}  # id -> profile (with "account")
        self.devices: dict[str, dict[str, Any]] = {}  # mac -> {id, profileid, account}

    # -- seeding and inspection -------------------------------------------------------------

    def seed_device(self, mac: str, url: str, account: str) -> None:
        with self.lock:
            profile = self._new_profile({"name": f"seed-{mac}", "template": {
                "provisioning": {"server": {"address": url}}}}, account)
            self.devices[mac.lower()] = {"id": mac.lower(), "profileid": profile["id"],
                                         "account": account}

    def device_url(self, mac: str) -> str | None:
        """The provisioning address a phone with this MAC gets."""
        with self.lock:
            device = self.devices.get(mac)
            if device is None:
                return None
            profile = self.profiles[device["profileid"]]
            return profile["template"]["provisioning"]["server"]["address"]

    def profiles_of(self, account: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.profiles.values() if p["account"] == account]

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        account = self.keys.get(request.headers.get("api-key", ""))
        if account is None:
            return Reply(401, {"message": "Unauthorized"})
        if not request.path.startswith(self.base_path + "/"):
            return Reply(404, NOT_FOUND)
        parts = [p for p in request.path[len(self.base_path):].split("/") if p]
        m = request.method
        if parts == ["profiles"]:
            if m == "GET":
                mine = [self._public(p) for p in self.profiles.values()
                        if p["account"] == account]
                return self._page(request, mine)
            if m == "POST":
                return self._create_profile(request, account)
        if len(parts) == 2 and parts[0] == "profiles":
            return self._profile(request, account, parts[1])
        if parts == ["devices"]:
            if m == "GET":
                mine = sorted((self._public(d) for d in self.devices.values()
                               if d["account"] == account), key=lambda d: d["id"])
                return self._page(request, mine)
            if m == "POST":
                return self._create_device(request, account)
        if len(parts) == 2 and parts[0] == "devices":
            return self._device(request, account, parts[1])
        return Reply(404, NOT_FOUND)

    # -- profiles ------------------------------------------------------------------------

    @staticmethod
    def _check_profile(body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return "Invalid profile: name required"
        address = (((body.get("template") or {}).get("provisioning") or {})
                   .get("server") or {}).get("address")
        if not isinstance(address, str) or not re.match(r"^(https?|ftp|tftp)://", address):
            return "Invalid profile: template.provisioning.server.address must be a URL"
        return None

    def _new_profile(self, body: dict[str, Any], account: str) -> dict[str, Any]:
        profile = {**body, "id": uuid.uuid4().hex, "account": account}
        profile.setdefault("enabled", True)
        self.profiles[profile["id"]] = profile
        return profile

    def _create_profile(self, request: Request, account: str) -> Reply:
        body = request.json()
        problem = self._check_profile(body)
        if problem:
            return Reply(400, {"message": problem})
        body.pop("id", None)
        return Reply(200, self._public(self._new_profile(body, account)))

    def _profile(self, request: Request, account: str, pid: str) -> Reply:
        profile = self.profiles.get(pid)
        if profile is None or profile["account"] != account:
            return Reply(404, NOT_FOUND)
        if request.method == "GET":
            return Reply(200, self._public(profile))
        if request.method == "PUT":
            body = request.json()
            problem = self._check_profile(body)
            if problem:
                return Reply(400, {"message": problem})
            self.profiles[pid] = {**body, "id": pid, "account": account}
            return Reply(200, self._public(self.profiles[pid]))
        if request.method == "DELETE":
            if any(d["profileid"] == pid for d in self.devices.values()):
                return Reply(409, {"message": "Profile is in use"})
            del self.profiles[pid]
            return Reply(200, {})
        return Reply(405, {"message": "Method Not Allowed"})

    # -- devices -------------------------------------------------------------------------

    def _create_device(self, request: Request, account: str) -> Reply:
        body = request.json()
        if not isinstance(body, dict):
            return Reply(400, {"message": "Invalid request body"})
        mac = body.get("id")
        if not isinstance(mac, str) or not MAC.match(mac):
            return Reply(400, {"message": "Invalid MAC address"})
        mac = mac.lower()
        profile = self.profiles.get(str(body.get("profile")))
        if profile is None or profile["account"] != account:
            return Reply(400, {"message": "Invalid profile"})
        held = self.devices.get(mac)
        if held is not None and held["account"] != account:
            return Reply(409, {"message": "Device is registered with a different account"})
        if held is not None and self.post_existing == "conflict":
            return Reply(409, {"message": "Device already exists"})
        self.devices[mac] = {"id": mac, "profileid": profile["id"], "account": account}
        return Reply(200, self._public(self.devices[mac]))

    def _device(self, request: Request, account: str, mac: str) -> Reply:
        if not MAC.match(mac):
            return Reply(400, {"message": "Invalid MAC address"})
        mac = mac.lower()
        device = self.devices.get(mac)
        if request.method == "GET":
            if device is None or device["account"] != account:
                return Reply(404, NOT_FOUND)
            return Reply(200, self._public(device))
        if request.method == "DELETE":
            if device is None:
                return Reply(404, NOT_FOUND)
            if device["account"] != account:
                return Reply(409, {"message": "Device is registered with a different account"})
            del self.devices[mac]
            return Reply(200, {})
        return Reply(405, {"message": "Method Not Allowed"})

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k != "account"}

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Reply:
        query = dict(request.query)
        try:
            limit = min(int(query.get("limit", 50)), self.max_limit)
            start = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if query.get(
                "cursor") else 0
        except (ValueError, UnicodeDecodeError):
            return Reply(400, {"message": "Invalid cursor"})
        body: dict[str, Any] = {"results": items[start:start + limit]}
        if start + limit < len(items):
            body["cursor"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return Reply(200, body)
