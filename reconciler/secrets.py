"""Secrets: resolved only by reference, shown only redacted.

References: `secret:NAME` (the secrets file, a YAML map kept outside the repository),
`env:NAME`, `file:PATH`. A redacted value names the reference and a short digest of the value,
so a rotation is visible in a plan without showing anything usable:
`<secret:acme/201 sha256:3f9a1c0b…>`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

import yaml


class MissingSecret(Exception):
    def __init__(self, ref: str, reason: str):
        self.ref = ref
        super().__init__(f"secret reference {ref} does not resolve: {reason}")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def redacted(ref: str, value: str) -> str:
    return f"<{ref} sha256:{digest(value)}…>"


class Secrets:
    """Resolves references. `environ` and the secrets file are injected so tests stay pure."""

    def __init__(self, base_dir: Path, secrets_file: str | None,
                 environ: Mapping[str, str] | None = None, *, redacting: bool = False):
        self.base_dir = base_dir
        # Redacting mode (plans between revisions): every value is its redacted form, and a
        # reference that does not resolve becomes a placeholder, so CI needs no secrets.
        self.redacting = redacting
        self.environ = os.environ if environ is None else environ
        self._file_ref = secrets_file
        self._map: dict[str, str] | None = None
        self._cache: dict[str, str] = {}

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
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise MissingSecret("secrets.file", f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise MissingSecret("secrets.file", f"{path} is not valid YAML") from exc
        if not isinstance(loaded, dict):
            raise MissingSecret("secrets.file", f"{path} must be a map NAME: value")
        self._map = {str(k): str(v) for k, v in loaded.items()}
        return self._map

    def _path(self, text: str) -> Path:
        path = Path(os.path.expanduser(text))
        return path if path.is_absolute() else self.base_dir / path

    def resolve(self, ref: str) -> str:
        if not self.redacting:
            return self._resolve(ref)
        try:
            return redacted(ref, self._resolve(ref))
        except MissingSecret:
            return f"<{ref}>"

    def _resolve(self, ref: str) -> str:
        cached = self._cache.get(ref)
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
            found = self._secrets_map().get(name)
            if found is None:
                raise MissingSecret(ref, "not in the secrets file")
            value = found
        else:
            raise MissingSecret(ref, f"unknown kind {kind!r}")
        if value == "":
            raise MissingSecret(ref, "empty value")
        self._cache[ref] = value
        return value

    def redact(self, ref: str) -> str:
        if self.redacting:
            return self.resolve(ref)
        return redacted(ref, self._resolve(ref))


def url_token(fleet_secret: str, scope: str) -> str:
    """The unguessable directory a phone fetches from: HMAC(fleet secret, MAC or customer)."""
    mac = hmac.new(fleet_secret.encode(), f"provctl-url-token:{scope}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]
