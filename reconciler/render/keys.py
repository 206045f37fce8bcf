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
  function of the fleet secret, the reference and the MAC, all in the key already); a value of
  the secrets file as its digest from the file's index (`secrets.SecretsIndex`, keyed with the
  fleet secret), so that a run whose secrets file did not change never parses it.

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


_NO_EXTRA = _part("")


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
        # (target, profile, customer) -> the keyed hash fed with base and layers, copied for
        # each phone (None: a secret they need does not resolve)
        self._prefixes: dict[tuple[str, str, str | None], hashlib.blake2b | None] = {}

    def customer(self, mac: str) -> str | None:
        """The phone's effective customer: allocated, else that of its first account."""
        return self.state.devices[mac].value.customer or self._account_customer.get(mac)

    def _values(self, refs: tuple[str, ...]) -> bytes:
        """The secret values behind references (MissingSecret propagates: no key, no cache):
        a value of the secrets file as its keyed digest from the file's index when there is
        one (the file is then not parsed), any other as itself."""
        out = b""
        secrets = self.state.secrets
        for ref in refs:
            if not ref.startswith("derive:"):  # never a host secret (phone_value refuses it)
                digest = secrets.value_digest(ref)
                out += (b"#" + digest if digest is not None
                        else _part(secrets.phone_value(ref)))
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

    def _prefix(self, target: str, profile: str, customer: str | None
                ) -> hashlib.blake2b | None:
        base = self._bases[target] if target in self._bases else self._base(target)
        layers = self._layer_part(profile, customer)
        found = None
        if base is not None and layers is not None:
            found = hashlib.blake2b(key=self._key, digest_size=20)
            found.update(base + layers)
        self._prefixes[(target, profile, customer)] = found
        return found

    def key(self, mac: str, target: str, extra: str = "", customer: str | None = None
            ) -> str | None:
        """The phone's key on a target; None when a secret it needs does not resolve (it is
        then rendered, and the problem reported, like any phone without a cache entry).
        `extra`: what else its files depend on this run (a rollout holding its firmware);
        `customer`: its effective customer (self.customer(mac)), when the caller has it."""
        located = self.state.devices[mac]
        d = located.value
        if customer is None:
            customer = d.customer or self._account_customer.get(mac)
        where = (target, d.profile, customer)
        prefixes = self._prefixes
        prefix = prefixes[where] if where in prefixes else self._prefix(*where)
        if prefix is None:
            return None
        # digests are 40 hex digits and secret values length-prefixed: the parts cannot run
        # into one another
        own = f"{mac}{located.digest}".encode() + (_part(extra) if extra else _NO_EXTRA)
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
        h = prefix.copy()  # = blake2b(base + layers + own): the shared part hashed once
        h.update(own)
        return h.hexdigest()
