"""Addressing: where a phone's files live and the URL it fetches them from.

Shared by the renderer (which writes the URL into files) and the redirect stage (which registers
it at a vendor's service), so both always agree. Pure: a function of provisioning.yaml, the fleet
secret and the phone's MAC and customer.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from reconciler.desired.schema import LocalTarget, Provisioning, SftpTarget

TargetSpec = LocalTarget | SftpTarget


def url_token(fleet_secret: str, scope: str) -> str:
    """The unguessable directory a phone fetches from: HMAC(fleet secret, MAC or customer)."""
    mac = hmac.new(fleet_secret.encode(), f"provctl-url-token:{scope}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def serves(target: TargetSpec, customer: str | None) -> bool:
    return target.customers is None or (customer is not None and customer in target.customers)


class Addressing:
    """Token directories, primary targets and provisioning URLs of one desired state."""

    def __init__(self, provisioning: Provisioning, fleet_secret: str):
        self.provisioning = provisioning
        self.fleet_secret = fleet_secret
        # HMAC-SHA256 by its definition (RFC 2104), the padded key hashed once: the tokens of
        # 100,000 phones in a fraction of what hmac.digest costs re-keying for each
        key = fleet_secret.encode()
        key = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def _token(self, scope: str) -> str:
        """url_token(fleet_secret, scope)."""
        inner = self._inner.copy()
        inner.update(f"provctl-url-token:{scope}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]

    def directory(self, mac: str, customer: str | None) -> str:
        """The token directory of a phone ("" when url_tokens is none)."""
        mode = self.provisioning.url_tokens
        if mode == "per-device":
            return self._token(mac)
        if mode == "per-customer":
            return self._token(f"customer:{customer or '-pool-'}")
        return ""

    def primary_target(self, customer: str | None) -> str | None:
        """The first target (in provisioning.yaml order) that serves the customer."""
        for name, target in self.provisioning.targets.items():
            if serves(target, customer):
                return name
        return None

    def bootstrap_directory(self, customer: str, rotation: int = 0) -> str:
        """The token directory of a customer's bootstrap URL (the one DHCP hands out).

        A different derivation from the per-device tokens, so that knowing one never gives the
        other; a new rotation number moves it (docs/zero-touch.md).
        """
        return url_token(self.fleet_secret, f"bootstrap:{customer}:{rotation}")

    def bootstrap_url(self, customer: str, rotation: int = 0) -> str | None:
        """`https://host/<bootstrap-token>/` on the customer's primary target."""
        target = self.primary_target(customer)
        if target is None:
            return None
        base = self.provisioning.targets[target].base_url
        base = base if base.endswith("/") else base + "/"
        return f"{base}{self.bootstrap_directory(customer, rotation)}/"

    def provisioning_url(self, mac: str, customer: str | None, target: str) -> str:
        base = self.provisioning.targets[target].base_url
        base = base if base.endswith("/") else base + "/"
        directory = self.directory(mac, customer)
        return f"{base}{directory}/" if directory else base


class PlaceholderAddressing(Addressing):
    """Labelled placeholders instead of token directories: for comparing revisions where the
    fleet secret is not available (a pull request from a fork), so that no made-up token
    looks real."""

    def directory(self, mac: str, customer: str | None) -> str:
        mode = self.provisioning.url_tokens
        if mode == "per-device":
            return f"{{token:{mac}}}"
        if mode == "per-customer":
            return f"{{token:customer:{customer or '-pool-'}}}"
        return ""


_TOKEN = re.compile(r"(?<![0-9a-f])([0-9a-f]{6})[0-9a-f]{26}(?![0-9a-f])")


def shorten_tokens(text: str) -> str:
    """URL tokens inside rendered content, shortened like paths (for diffs people read)."""
    return _TOKEN.sub(r"\1…", text)


def show_path(path: str) -> str:
    """A path for people: the URL token directory shortened so output never leaks it."""
    head, sep, tail = path.partition("/")
    if sep and len(head) == 32 and all(c in "0123456789abcdef" for c in head):
        return f"{head[:6]}…/{tail}"
    return path
