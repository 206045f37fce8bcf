"""Phone keys: one digest per phone and target that changes whenever its files could change.

A phone's files are a function of what it is built from, so its key is a MAC (keyed BLAKE2b,
its key derived from the fleet secret: the cache reveals nothing of the secrets below) of:

- the code: every file under vendors/, templates/ and reconciler/render/ with the versions of
  Python, jinja2 and markupsafe (`cache.code_version`), and provctl's desired/ and core/;
- the target it is rendered for (its settings are part of provisioning.yaml, below);
- the shared layers: provisioning.yaml, defaults.yaml and every firmware entry (catalog and pins);
- its profile and its effective customer (allocated, else that of its accounts);
- its own YAML node in devices/, and the node of every account that lists it, in order;
- the values of the secret references in all of these (`derive:` references excepted: they are a
  function of the fleet secret, the reference and the MAC, all in the key already).

Every piece is a digest of parsed YAML data (`validate.data_digest`, computed once per file
and cached with it), so computing the keys of 100,000 phones costs about a second and a phone
whose inputs did not change is neither resolved nor rendered. tests/test_incremental.py checks
that a key never hides a change.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache
from pathlib import Path

from reconciler.desired.resolve import Resolver
from reconciler.desired.schema import Assignment
from reconciler.desired.secrets import MissingSecret
from reconciler.desired.validate import DesiredState, Located
from reconciler.render.cache import code_version, tree_digest


@cache
def own_code_version() -> str:
    """What turns YAML into a RenderInput: provctl's desired/ and core/ packages (the rest,
    rendering itself, is `code_version`)."""
    here = Path(__file__).resolve().parent
    return tree_digest((here.parent / "desired", here.parent / "core"))


def _part(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return b"%d:" % len(data) + data


class PhoneKeys:
    def __init__(self, state: DesiredState, fleet_secret: str, resolver: Resolver | None = None):
        self.state = state
        # keyed BLAKE2b (a MAC in one call), its key derived from the fleet secret
        self._key = hmac.digest(fleet_secret.encode(), b"provctl-phone-key", "sha256")
        resolver = resolver or Resolver(state)  # its map of each phone's accounts
        self._accounts: dict[str, list[Located[Assignment]]] = resolver.accounts
        self._account_customer: dict[str, str] = resolver.account_customer
        self._layers: dict[tuple[str, str | None], bytes | None] = {}
        self._account_parts: dict[int, bytes] = {}  # id(located account) -> its part
        self._bases: dict[str, bytes | None] = {}  # target -> prefix

    def customer(self, mac: str) -> str | None:
        """The phone's effective customer: allocated, else that of its first account."""
        return self.state.devices[mac].value.customer or self._account_customer.get(mac)

    def _values(self, refs: tuple[str, ...]) -> bytes:
        """The secret values behind references (MissingSecret propagates: no key, no cache)."""
        out = b""
        for ref in refs:
            if not ref.startswith("derive:"):  # never a host secret (phone_value refuses it)
                out += _part(self.state.secrets.phone_value(ref))
        return out

    def _base(self, target: str) -> bytes | None:
        """The code (one version for every vendor), the target and the shared layers."""
        key = target
        if key not in self._bases:
            state = self.state
            parts = [code_version(), own_code_version(), target,
                     state.provisioning.digest, state.defaults.digest]
            parts += [x.digest for x in state.catalog] + [x.digest for x in state.pins]
            try:
                found: bytes | None = (b"".join(_part(p) for p in parts)
                                       + self._values(state.defaults.refs))
            except MissingSecret:
                found = None
            self._bases[key] = found
        return self._bases[key]

    def _layer_part(self, profile: str, customer: str | None) -> bytes | None:
        key = (profile, customer)
        if key not in self._layers:
            prof = self.state.profiles.get(profile)
            cust = self.state.customers.get(customer or "")
            try:
                self._layers[key] = (
                    _part(profile) + _part(prof.digest if prof else "-")
                    + (self._values(prof.refs) if prof else b"")
                    + _part(customer or "-") + _part(cust.digest if cust else "-")
                    + (self._values(cust.refs) if cust else b""))
            except MissingSecret:
                self._layers[key] = None
        return self._layers[key]

    def key(self, mac: str, target: str, extra: str = "") -> str | None:
        """The phone's key on a target; None when a secret it needs does not resolve (it is
        then rendered, and the problem reported, like any phone without a cache entry).
        `extra`: what else its files depend on this run (a rollout holding its firmware)."""
        located = self.state.devices[mac]
        d = located.value
        base = self._bases[target] if target in self._bases else self._base(target)
        layers = self._layer_part(d.profile, d.customer or self._account_customer.get(mac))
        if base is None or layers is None:
            return None
        # digests are 40 hex digits and secret values length-prefixed: the parts cannot run
        # into one another
        own = f"{mac}{located.digest}".encode() + _part(extra)
        try:
            if located.refs:
                own += self._values(located.refs)
            for account in self._accounts.get(mac, ()):
                part = self._account_parts.get(id(account))
                if part is None:
                    part = self._account_parts[id(account)] = (
                        account.digest.encode() + self._values(account.refs))
                own += part
        except MissingSecret:
            return None
        return hashlib.blake2b(base + layers + own, key=self._key, digest_size=20).hexdigest()
