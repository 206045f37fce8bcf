"""Secrets: resolved only by reference, shown only redacted.

References:

- `secret:NAME` — a value in the secrets file(s): `secrets.age_file`, an age-encrypted YAML map
  kept in the repository (identity from PROVCTL_AGE_IDENTITY or PROVCTL_AGE_IDENTITY_FILE),
  then `secrets.file`, a plain YAML map kept outside the repository;
- `env:NAME` — an environment variable; `file:PATH` — a file's content;
- `derive:NAME` — a strong password derived from the fleet secret (HMAC): stable for as long as
  NAME, the fleet secret and the rotation stay the same. `{mac}` in NAME is the phone's MAC, so
  `derive:admin-{mac}` gives every phone its own admin password from one line of defaults.yaml.
  `derive:NAME@rotation=N` (N = 0, 1, 2 ...; no suffix = 0) changes the value: raise N to rotate.

A redacted value names the reference and a short digest of the value, so a rotation is visible
in a plan without showing anything usable: `<secret:acme/201 sha256:3f9a1c0b…>`.

pyrage (age) is used here only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import string
from collections.abc import Mapping
from pathlib import Path

import yaml

AGE_IDENTITY_ENV = "PROVCTL_AGE_IDENTITY"  # the identity (private key) text
AGE_IDENTITY_FILE_ENV = "PROVCTL_AGE_IDENTITY_FILE"  # a file holding it, outside the repository

DERIVE = re.compile(r"^derive:(?P<name>[^@\s]+)(?:@rotation=(?P<rotation>[0-9]+))?$")
_DERIVE_NAME = re.compile(r"^(?:[A-Za-z0-9_.:/+-]|\{mac\})+$")
DERIVED_LENGTH = 20
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62


class MissingSecret(Exception):
    def __init__(self, ref: str, reason: str):
        self.ref = ref
        super().__init__(f"secret reference {ref} does not resolve: {reason}")


class BadReference(MissingSecret):
    """A reference that is wrong whatever the secrets: reported even when redacting."""

    def __init__(self, ref: str, reason: str):
        self.ref = ref
        Exception.__init__(self, f"secret reference {ref} is invalid: {reason}")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def redacted(ref: str, value: str) -> str:
    return f"<{ref} sha256:{digest(value)}…>"


def parse_derive(ref: str) -> tuple[str, int]:
    """`derive:NAME[@rotation=N]` -> (NAME, N); raise BadReference on anything else."""
    match = DERIVE.match(ref)
    if match is None:
        raise BadReference(ref, "expected derive:NAME or derive:NAME@rotation=N")
    name = match["name"]
    if not _DERIVE_NAME.match(name):
        raise BadReference(ref, "NAME may use letters, digits, _.:/+- and the placeholder {mac}")
    return name, int(match["rotation"] or 0)


def derive_password(fleet_secret: str, name: str, rotation: int = 0) -> str:
    """20 characters of [0-9A-Za-z] (about 119 bits) from HMAC-SHA256(fleet secret, name).

    Deterministic; the first candidate holding a digit, an upper- and a lower-case letter is
    taken, so phones with password rules accept it.
    """
    for attempt in range(1000):
        msg = f"provctl-derive:{name}:{rotation}:{attempt}".encode()
        number = int.from_bytes(hmac.new(fleet_secret.encode(), msg, hashlib.sha256).digest())
        chars = []
        for _ in range(DERIVED_LENGTH):
            number, index = divmod(number, len(_ALPHABET))
            chars.append(_ALPHABET[index])
        value = "".join(chars)
        if (any(c.isdigit() for c in value) and any(c.isupper() for c in value)
                and any(c.islower() for c in value)):
            return value
    raise AssertionError("unreachable")  # pragma: no cover


class Secrets:
    """Resolves references. `environ` and the secrets files are injected so tests stay pure."""

    def __init__(self, base_dir: Path, secrets_file: str | None,
                 environ: Mapping[str, str] | None = None, *, redacting: bool = False,
                 fleet_secret: str | None = None, age_file: str | None = None):
        self.base_dir = base_dir
        # Redacting mode (plans between revisions): every value is its redacted form, and a
        # reference that does not resolve becomes a placeholder, so CI needs no secrets.
        self.redacting = redacting
        self.environ = os.environ if environ is None else environ
        self._file_ref = secrets_file
        self._age_file = age_file
        self._fleet_ref = fleet_secret
        self._map: dict[str, str] | None = None
        self._age_map: dict[str, str] | None = None
        self._cache: dict[tuple[str, str | None], str] = {}

    # --- the secrets files --------------------------------------------------------------------

    def _secrets_map(self) -> dict[str, str]:
        if self._map is not None:
            return self._map
        if not self._file_ref:
            raise MissingSecret("secrets.file", "no secrets file is configured")
        path_text = self._file_ref
        if path_text.startswith(("env:", "file:")):
            path_text = self._resolve(path_text)
        path = self._path(path_text)
        try:
            text = path.read_text()
        except OSError as exc:
            raise MissingSecret("secrets.file", f"cannot read {path}: {exc.strerror}") from exc
        self._map = parse_secrets_map(text, str(path), "secrets.file")
        return self._map

    def age_path(self) -> Path | None:
        return self._path(self._age_file) if self._age_file else None

    def _age_secrets(self) -> dict[str, str]:
        if self._age_map is not None:
            return self._age_map
        path = self.age_path()
        assert path is not None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._age_map = {}  # not created yet: `provctl secrets set` creates it
            return self._age_map
        except OSError as exc:
            raise MissingSecret("secrets.age_file",
                                f"cannot read {path}: {exc.strerror}") from exc
        text = age_decrypt(data, age_identities(self.environ), str(path))
        self._age_map = parse_secrets_map(text, str(path), "secrets.age_file")
        return self._age_map

    def _lookup(self, ref: str, name: str) -> str:
        reasons = []
        if self._age_file:
            # An encrypted file that cannot be read is an error, never a reason to fall back
            # to (possibly older) values elsewhere.
            try:
                found = self._age_secrets().get(name)
            except MissingSecret as exc:
                raise MissingSecret(ref, str(exc).split(": ", 1)[-1]) from exc
            if found is not None:
                return found
            reasons.append(f"not in {self._age_file}")
        if self._file_ref or not self._age_file:
            try:
                found = self._secrets_map().get(name)
            except MissingSecret as exc:
                reasons.append(str(exc).split(": ", 1)[-1])
            else:
                if found is not None:
                    return found
                reasons.append("not in the secrets file")
        raise MissingSecret(ref, "; ".join(reasons))

    def _path(self, text: str) -> Path:
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else self.base_dir / path

    # --- resolving ----------------------------------------------------------------------------

    def resolve(self, ref: str, mac: str | None = None) -> str:
        """The value of a reference (redacted in redacting mode); `mac` fills derive's {mac}."""
        if not self.redacting:
            return self._resolve(ref, mac)
        shown = _shown(ref, mac)
        try:
            return redacted(shown, self._resolve(ref, mac))
        except BadReference:
            raise
        except MissingSecret:
            return f"<{shown}>"

    def check(self, ref: str, *, device: bool = False) -> None:
        """Raise MissingSecret if `ref` does not resolve (only a bad reference when redacting).

        `device`: the reference is a phone's parameter, where derive's {mac} is allowed.
        """
        if ref.startswith("derive:"):
            name, _ = parse_derive(ref)
            if "{mac}" in name and not device:
                raise BadReference(ref, "{mac} is allowed only in phone parameters (e.g. "
                                   "admin_password), where each phone fills in its own MAC")
            if "{mac}" in name:
                ref_mac = "000000000000"  # any phone: checks the syntax and the fleet secret
                self.resolve(ref, ref_mac)
                return
        self.resolve(ref)

    def _resolve(self, ref: str, mac: str | None = None) -> str:
        key = (ref, mac if "{mac}" in ref else None)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        kind, _, name = ref.partition(":")
        if kind == "env":
            value = self.environ.get(name)
            if value is None:
                raise MissingSecret(ref, f"environment variable {name} is not set")
        elif kind == "file":
            try:
                value = self._path(name).read_text().rstrip("\n")
            except OSError as exc:
                raise MissingSecret(ref, exc.strerror or str(exc)) from exc
        elif kind == "secret":
            value = self._lookup(ref, name)
        elif kind == "derive":
            value = self._derive(ref, mac)
        else:
            raise MissingSecret(ref, f"unknown kind {kind!r}")
        if value == "":
            raise MissingSecret(ref, "empty value")
        self._cache[key] = value
        return value

    def _derive(self, ref: str, mac: str | None) -> str:
        name, rotation = parse_derive(ref)
        if "{mac}" in name:
            if mac is None:
                raise BadReference(ref, "{mac} needs a phone: use it in phone parameters only")
            name = name.replace("{mac}", mac)
        fleet_ref = self._fleet_ref
        if not fleet_ref:
            raise MissingSecret(ref, "no fleet secret to derive from")
        if fleet_ref.startswith("derive:"):
            raise BadReference(fleet_ref, "the fleet secret cannot itself be derived")
        try:
            fleet_secret = self._resolve(fleet_ref)
        except MissingSecret as exc:
            raise MissingSecret(ref, f"the fleet secret does not resolve ({exc})") from exc
        return derive_password(fleet_secret, name, rotation)

    def resolved(self) -> list[tuple[str, str]]:
        """(reference as shown, value) of every secret resolved so far: what redacting a text
        that may carry them must hide (`provctl diff`)."""
        return [(_shown(ref, mac), value) for (ref, mac), value in self._cache.items()]

    def redact(self, ref: str, mac: str | None = None) -> str:
        if self.redacting:
            return self.resolve(ref, mac)
        return redacted(_shown(ref, mac), self._resolve(ref, mac))


def _shown(ref: str, mac: str | None) -> str:
    """How a reference is named in redacted output: a derived one with its MAC filled in."""
    if mac and ref.startswith("derive:"):
        return ref.replace("{mac}", mac)
    return ref


def parse_secrets_map(text: str, where: str, ref: str = "secrets") -> dict[str, str]:
    """A secrets file: a YAML map NAME -> scalar value (the value is never shown in errors)."""
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MissingSecret(ref, f"{where} is not valid YAML") from exc
    if not isinstance(loaded, dict) or any(
            isinstance(v, dict | list) or v is None for v in loaded.values()):
        raise MissingSecret(ref, f"{where} must be a map NAME: value")
    return {str(k): str(v) for k, v in loaded.items()}


def dump_secrets_map(values: Mapping[str, str]) -> str:
    return yaml.safe_dump(dict(sorted(values.items())), default_flow_style=False,
                          allow_unicode=True, width=1000)


# --- age ------------------------------------------------------------------------------------


def age_identities(environ: Mapping[str, str]) -> list[object]:
    """The identities from PROVCTL_AGE_IDENTITY (text) or PROVCTL_AGE_IDENTITY_FILE (path)."""
    from pyrage import ssh, x25519

    text = environ.get(AGE_IDENTITY_ENV)
    where = AGE_IDENTITY_ENV
    if not text:
        path = environ.get(AGE_IDENTITY_FILE_ENV)
        if not path:
            raise MissingSecret("secrets.age_file", f"no age identity: set {AGE_IDENTITY_ENV} "
                                f"or {AGE_IDENTITY_FILE_ENV}")
        where = path
        try:
            text = Path(os.path.expanduser(path)).read_text()
        except OSError as exc:
            raise MissingSecret("secrets.age_file", f"cannot read the age identity {path}: "
                                f"{exc.strerror}") from exc
    if "PRIVATE KEY-----" in text:
        try:
            return [ssh.Identity.from_buffer(text.encode())]
        except Exception as exc:  # noqa: BLE001 - pyrage raises its own types
            raise MissingSecret("secrets.age_file", f"{where}: not a usable SSH key") from exc
    out: list[object] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(x25519.Identity.from_str(line))
        except Exception as exc:  # noqa: BLE001
            raise MissingSecret("secrets.age_file",
                                f"{where}: not an age identity (AGE-SECRET-KEY-1...)") from exc
    if not out:
        raise MissingSecret("secrets.age_file", f"{where} holds no age identity")
    return out


def age_recipients(recipients: list[str]) -> list[object]:
    from pyrage import ssh, x25519

    out: list[object] = []
    for text in recipients:
        try:
            if text.startswith("age1"):
                out.append(x25519.Recipient.from_str(text))
            else:
                out.append(ssh.Recipient.from_str(text))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"not an age or SSH public key: {text[:16]}…") from exc
    return out


def age_encrypt(text: str, recipients: list[str]) -> bytes:
    import pyrage

    if not recipients:
        raise ValueError("secrets.recipients is empty: name at least one age public key")
    return pyrage.encrypt(text.encode(), age_recipients(recipients), armored=True)


def age_decrypt(data: bytes, identities: list[object], where: str) -> str:
    import pyrage

    try:
        return pyrage.decrypt(data, identities).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - pyrage.DecryptError and decoding
        raise MissingSecret("secrets.age_file",
                            f"cannot decrypt {where} with the given identity") from exc


def read_age_map(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The decrypted secrets of an age file ({} when it does not exist yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    return parse_secrets_map(age_decrypt(data, age_identities(environ), str(path)), str(path),
                             "secrets.age_file")


def write_age_map(path: Path, values: Mapping[str, str], recipients: list[str]) -> None:
    """Encrypt the map to every recipient and replace the file atomically (only ciphertext
    ever reaches the disk)."""
    data = age_encrypt(dump_secrets_map(values), recipients)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
