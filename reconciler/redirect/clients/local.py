"""`kind: local`: a redirect "service" that is a JSON file on this machine.

The embedded default of the example fleet, and a stand-in wherever no vendor account exists.
The file maps MAC → {url, account, registered_at}:

    {"001565aabb01": {"account": "provctl", "registered_at": "2026-01-01T00:00:00+00:00",
                      "url": "http://localhost:8080/t0k3n/"}}

Entries under another `account` are held by someone else: registering such a MAC is a conflict
unless the device says `steal: true`. `seed()` writes such an entry (tests, demos). Writes are
atomic (temporary file + rename); a batch reads and writes the file once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from reconciler.core.errors import RedirectError
from reconciler.core.files import atomic_write
from reconciler.redirect.base import DesiredRegistration, OneByBatch, Outcomes, Remote

log = logging.getLogger(__name__)

ACCOUNT = "provctl"
T = TypeVar("T")


class LocalRegistry(OneByBatch):
    can_steal = True  # the registry file is ours: steal: true rewrites the entry

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        account: str = ACCOUNT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.name = name
        self.path = path
        self.account = account
        self._clock = clock
        self._lock = threading.Lock()

    # -- file ----------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RedirectError(self.name, f"cannot read {self.path}: {exc}") from exc
        try:
            data = json.loads(raw) if raw.strip() else {}
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError("expected an object of MAC -> {url, account, registered_at}")
        except ValueError as exc:
            raise RedirectError(self.name, f"cannot read {self.path}: {exc}") from exc
        return data

    def _save(self, data: dict[str, dict[str, Any]]) -> None:
        try:
            atomic_write(self.path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise RedirectError(self.name, f"cannot write {self.path}: {exc}") from exc

    def entries(self) -> dict[str, dict[str, Any]]:
        """The whole registry (every account)."""
        with self._lock:
            return self._load()

    def seed(self, mac: str, url: str, account: str) -> None:
        """Put an entry under any account (simulate a MAC held by someone else)."""
        with self._lock:
            data = self._load()
            data[mac] = {
                "url": url, "account": account, "registered_at": self._clock().isoformat(),
            }
            self._save(data)

    # -- RedirectClient ------------------------------------------------------------------

    def lookup(self, macs: Sequence[str]) -> dict[str, Remote]:
        data = self.entries()
        found: dict[str, Remote] = {}
        for mac in macs:
            entry = data.get(mac)
            if entry is None:
                found[mac] = Remote(mac, "nobody")
            elif entry.get("account") == self.account:
                found[mac] = Remote(mac, "us", entry.get("url"))
            else:
                found[mac] = Remote(mac, "other")
        return found

    # Batches read and write the file once (not once per MAC: 100,000 MACs stay linear).

    def register_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        return self._batch(regs, lambda r: r.mac, self._register)

    def update_many(self, regs: Sequence[DesiredRegistration]) -> Outcomes:
        return self._batch(regs, lambda r: r.mac, self._update)

    def deregister_many(self, macs: Sequence[str]) -> Outcomes:
        return self._batch(macs, lambda m: m, self._deregister)

    def _batch(self, items: Sequence[T], key: Callable[[T], str],
               run: Callable[[dict[str, dict[str, Any]], T], str | None]) -> Outcomes:
        if not items:
            return {}
        with self._lock:
            try:
                data = self._load()
            except RedirectError as exc:
                return {key(item): exc for item in items}
            done: list[str] = []
            out: Outcomes = {}
            for item in items:
                try:
                    what = run(data, item)
                except RedirectError as exc:
                    out[key(item)] = exc
                    continue
                out[key(item)] = None
                if what:
                    done.append(f"{what} {key(item)}")
            if done:
                try:
                    self._save(data)
                except RedirectError as exc:
                    return {key(item): out[key(item)] or exc for item in items}
        for line in done:
            log.info("%s: %s", self.name, line)
        return out

    def _register(self, data: dict[str, dict[str, Any]], reg: DesiredRegistration) -> str:
        entry = data.get(reg.mac)
        if entry is not None and entry.get("account") != self.account:
            if not reg.steal:
                raise RedirectError(
                    self.name, f"{reg.mac} is held by another account", conflict=True
                )
            log.warning("%s: taking %s from another account (steal: true)", self.name, reg.mac)
        data[reg.mac] = {
            "url": reg.url,
            "account": self.account,
            "registered_at": self._clock().isoformat(),
        }
        return "registered"

    def _update(self, data: dict[str, dict[str, Any]], reg: DesiredRegistration) -> str:
        entry = data.get(reg.mac)
        if entry is None or entry.get("account") != self.account:
            return self._register(data, reg)  # which checks ownership
        entry["url"] = reg.url
        return "updated"

    def _deregister(self, data: dict[str, dict[str, Any]], mac: str) -> str | None:
        entry = data.get(mac)
        if entry is None:
            log.debug("%s: %s already deregistered", self.name, mac)
            return None
        if entry.get("account") != self.account:
            raise RedirectError(self.name, f"{mac} is held by another account", conflict=True)
        del data[mac]
        return "deregistered"

    def close(self) -> None:
        pass
