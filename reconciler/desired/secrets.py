"""Secrets: resolved only by reference, shown only redacted.

References:

- `secret:NAME` — a value in the secrets file(s): `secrets.age_file`, an age-encrypted YAML map
  kept in the repository (identity from PROVCTL_AGE_IDENTITY or PROVCTL_AGE_IDENTITY_FILE),
  then `secrets.file`, a plain YAML map kept outside the repository;
- `env:NAME` — an environment variable (in a phone's values only those listed in `secrets.env`,
  never `PROVCTL_*`: see `Secrets.confine`);
- `file:PATH` — a file's content: PATH relative to the repository (read from the revision's
  tree when a revision is asked for), or inside a directory named in `secrets.file_dirs`.
  Anything else (an absolute path elsewhere, `..`, a symlink that leaves them) is refused;
- `derive:NAME` — a strong password derived from the fleet secret (HMAC): stable for as long as
  NAME, the fleet secret and the rotation stay the same. `{mac}` in NAME is the phone's MAC, so
  `derive:admin-{mac}` gives every phone its own admin password from one line of defaults.yaml.
  `derive:NAME@rotation=N` (N = 0, 1, 2 ...; no suffix = 0) changes the value: raise N to rotate.

Every resolved value is refused if it holds a control character (C0, DEL, C1, U+2028/2029):
no phone format carries one safely. A phone's value may never equal a secret of the host (the
fleet secret, a redirect credential, a key passphrase): that would publish it.

A redacted value names the reference and, when the fleet secret is at hand, a digest keyed with
it, so a rotation is visible in a plan and the value cannot be guessed offline from it:
`<secret:acme/201 hmac:3f9a1c0b>`. Without the fleet secret (CI of a fork) no digest is shown:
`<secret:acme/201>`, or `<secret:acme/201 changed>` when the base of a comparison had another
value (see `Redaction`).

For incremental runs the values of `secrets.file` are also known by their keyed digests, kept in
the state directory under the file's content (`SecretsIndex`): validation and the phones' keys
never parse a file that did not change, and a phone rendered again finds its value by its line.

pyrage (age) is used here only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import pickle
import re
import string
import time
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

from reconciler.desired.load import RepoFileError, Source
from reconciler.desired.schema import PROVCTL_ENV

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


# C0 controls (tab and line breaks included), DEL, C1 controls, the Unicode line separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_TEXT = ("a control character (U+0000-U+001F, U+007F-U+009F, U+2028 or U+2029), which "
                "no phone format carries safely")


class Redaction:
    """How secret values are shown; one instance may serve both sides of a comparison.

    With a key (derived from the fleet secret): `<NAME hmac:1a2b3c4d>`, 32 bits of
    HMAC-SHA256(key, NAME, value): the same value under the same name always shows the same,
    a rotation shows, and without the fleet secret nobody can test guesses against it. The
    name is part of the message, so two accounts with one password do not show alike.

    Without a key: `<NAME>`, or `<NAME changed>` when a value shown earlier under the same name
    in this process (the base of `plan --base/--head`, rendered first) differs. The values are
    compared under a random key that never leaves the process.
    """

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._ephemeral = os.urandom(32)
        self._first: dict[str, bytes] = {}

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def set_key(self, fleet_secret: str) -> None:
        if self._key is None:
            self._key = hmac.new(fleet_secret.encode(), b"provctl-redaction-key",
                                 hashlib.sha256).digest()

    def show(self, name: str, value: str) -> str:
        message = name.encode() + b"\0" + value.encode()
        if self._key is not None:
            return f"<{name} hmac:{hmac.new(self._key, message, hashlib.sha256).hexdigest()[:8]}>"
        seen = hmac.new(self._ephemeral, message, hashlib.sha256).digest()
        first = self._first.setdefault(name, seen)
        return f"<{name}>" if hmac.compare_digest(first, seen) else f"<{name} changed>"


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
    """Resolves references. `environ` and the secrets files are injected so tests stay pure.

    `source` is where repository files come from (the revision's tree, or the directory);
    without one they are read from `base_dir`. `host_refs` name the references of the host's
    own secrets (provisioning.yaml) that a phone's value must never equal.
    """

    def __init__(self, base_dir: Path, secrets_file: str | None,
                 environ: Mapping[str, str] | None = None, *, redacting: bool = False,
                 fleet_secret: str | None = None, age_file: str | None = None,
                 file_dirs: Iterable[str] = (), source: Source | None = None,
                 host_refs: Iterable[tuple[str, str]] = (),
                 redaction: Redaction | None = None, index_dir: Path | None = None,
                 env_names: Iterable[str] = ()):
        self.base_dir = base_dir
        # Redacting mode (plans between revisions): every value is its redacted form, and a
        # reference that does not resolve becomes a placeholder, so CI needs no secrets.
        self.redacting = redacting
        self.environ = os.environ if environ is None else environ
        self.source = source if source is not None else Source(base_dir, "worktree", {})
        self._file_ref = secrets_file
        self._age_file = age_file
        self._fleet_ref = fleet_secret
        self._file_dirs = [self._path(d) for d in file_dirs]
        self._host_refs = [(ref, where) for ref, where in host_refs if ref]
        self._host_values: list[tuple[str, str]] | None = None
        self.redaction = redaction if redaction is not None else Redaction()
        self._keyed = False
        self._map: dict[str, str] | None = None
        self._age_map: dict[str, str] | None = None
        self._cache: dict[tuple[str, str | None], str] = {}
        # The digests of the secrets file's values, kept in the state directory under its
        # content (SecretsIndex): validation and phone keys then never parse an unchanged file.
        self._env_names = tuple(env_names)
        self._index_dir = index_dir if not redacting else None
        self._index: dict[str, bytes] | None = None
        self._indexed_yet = False
        self._text: str | None = None
        self._digest_key: bytes | None = None
        self._host_digests: set[bytes] | None = None
        self._quick_left = QUICK_LOOKUPS

    # --- the secrets files --------------------------------------------------------------------

    def _secrets_map(self) -> dict[str, str]:
        if self._map is not None:
            return self._map
        text, where = self._file_text()
        self._map = parse_secrets_map(text, where, "secrets.file")
        return self._map

    def _file_text(self) -> tuple[str, str]:
        """The text of secrets.file (read once) and where it is."""
        if not self._file_ref:
            raise MissingSecret("secrets.file", "no secrets file is configured")
        path_text = self._file_ref
        if path_text.startswith(("env:", "file:")):
            path_text = self._resolve(path_text)
        path = self._path(path_text)
        if self._text is not None:
            return self._text, str(path)
        rel = self._in_repository(path)
        if rel is not None:  # kept in the repository: the revision's copy
            try:
                text = self.source.repo_file(rel).read().decode("utf-8", "replace")
            except RepoFileError as exc:
                raise MissingSecret("secrets.file", f"cannot read {exc}") from exc
        else:
            try:
                text = path.read_text()
            except OSError as exc:
                raise MissingSecret("secrets.file",
                                    f"cannot read {path}: {exc.strerror}") from exc
        self._text = text
        return text, str(path)

    # --- the index of secrets.file: keyed digests of its values ------------------------------

    def _indexed(self) -> dict[str, bytes] | None:
        """NAME -> keyed digest of its value, for every usable value of secrets.file as it is
        now, from the state directory when the file did not change (else parsed once and
        kept there). None without an index: no state directory given, an age file (looked up
        first), a fleet secret that is not at hand or kept in the secrets file, a file that
        cannot be read or parsed (the lookups then say why)."""
        if self._indexed_yet:
            return self._index
        self._indexed_yet = True
        fleet = self._fleet_ref
        if (self._index_dir is None or self._age_file or not self._file_ref or not fleet
                or fleet.startswith(("secret:", "derive:"))):
            return None
        try:
            key = self._digest_key = hmac.digest(self._resolve(fleet).encode(),
                                                 b"provctl-secret-digest", "sha256")
            text, _ = self._file_text()
        except MissingSecret:
            return None
        index = SecretsIndex(self._index_dir, key)
        found = index.load(text)
        if found is None:
            try:
                values = self._secrets_map()
            except MissingSecret:
                return None
            found = {name: self._digest(value) for name, value in values.items()
                     if value and not CONTROL.search(value)}
            index.store(text, found)
        self._index = found
        return found

    def _digest(self, value: str) -> bytes:
        assert self._digest_key is not None
        return hmac.digest(self._digest_key, value.encode("utf-8", "surrogatepass"), "sha256")

    def value_digest(self, ref: str) -> bytes | None:
        """A keyed digest of the value of `secret:NAME` in secrets.file, from its index (the
        file is not parsed); None when there is none (then `phone_value` gives the value, or
        says why not). None too when the value is that of a host secret: `phone_value` refuses
        it. Equal digests, equal values: what a phone's key needs (render/keys.py)."""
        if not ref.startswith("secret:"):
            return None
        index = self._indexed()
        if index is None:
            return None
        digest = index.get(ref[7:])
        if digest is None or digest in self._host_secret_digests(index):
            return None
        return digest

    def _host_secret_digests(self, index: dict[str, bytes]) -> set[bytes]:
        if self._host_digests is None:
            found = set()
            for ref, _ in self._host_refs:
                digest = index.get(ref[7:]) if ref.startswith("secret:") else None
                if digest is None:
                    try:
                        digest = self._digest(self._resolve(ref))
                    except MissingSecret:
                        continue  # reported where it is written
                found.add(digest)
            self._host_digests = found
        return self._host_digests

    def _quick_value(self, name: str) -> str | None:
        """One value of an indexed secrets file without parsing all of it: the line `NAME:
        value`, parsed alone, taken only if its digest is the one indexed (so it is exactly
        what parsing the whole file gives). None: parse the file (a few lookups only)."""
        index = self._indexed()
        if index is None or self._quick_left <= 0 or self._text is None:
            return None
        digest = index.get(name)
        if digest is None:
            return None
        self._quick_left -= 1
        value = find_value(self._text, name)
        if value is None or not hmac.compare_digest(self._digest(value), digest):
            return None
        return value

    def age_path(self) -> Path | None:
        """The age file in the work tree (where `secrets set` writes)."""
        return self._path(self._age_file) if self._age_file else None

    def _age_secrets(self) -> dict[str, str]:
        if self._age_map is not None:
            return self._age_map
        assert self._age_file is not None
        try:
            data = self.source.repo_file(self._age_file).read()
        except RepoFileError as exc:
            if exc.missing:
                self._age_map = {}  # not created yet: `provctl secrets set` creates it
                return self._age_map
            raise MissingSecret("secrets.age_file", f"cannot read {exc}") from exc
        except OSError as exc:
            raise MissingSecret("secrets.age_file",
                                f"cannot read {self._age_file}: {exc.strerror}") from exc
        text = age_decrypt(data, age_identities(self.environ), self._age_file)
        self._age_map = parse_secrets_map(text, self._age_file, "secrets.age_file")
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
            found = self._quick_value(name) if self._map is None else None
            if found is not None:
                return found
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

    def _in_repository(self, path: Path) -> str | None:
        """`path` (absolute or under base_dir) relative to the repository, if inside it."""
        norm = Path(os.path.normpath(path))
        root = Path(os.path.normpath(self.base_dir.absolute()))
        norm = norm if norm.is_absolute() else Path(os.path.normpath(norm.absolute()))
        if norm.is_relative_to(root) and norm != root:
            return norm.relative_to(root).as_posix()
        return None

    def _read_file_ref(self, ref: str, text: str) -> str:
        """file:PATH, confined to the repository (the revision's tree) and secrets.file_dirs."""
        path = Path(os.path.normpath(self._path(text).absolute()))
        rel = self._in_repository(path)
        if rel is not None:
            try:
                data = self.source.repo_file(rel).read()
            except RepoFileError as exc:
                if exc.missing:
                    raise MissingSecret(ref, str(exc)) from exc
                raise BadReference(ref, str(exc)) from exc
            except OSError as exc:
                raise MissingSecret(ref, exc.strerror or str(exc)) from exc
        else:
            base = next((d for d in self._file_dirs
                         if path.is_relative_to(Path(os.path.normpath(d.absolute())))), None)
            if base is None:
                raise BadReference(ref, "a file: reference must name a file inside the "
                                   "repository, or inside a directory listed in "
                                   "secrets.file_dirs (provisioning.yaml)")
            try:
                real = path.resolve(strict=True)
            except FileNotFoundError as exc:
                raise MissingSecret(ref, "no such file") from exc
            except (OSError, RuntimeError) as exc:
                raise MissingSecret(ref, f"cannot be read: {exc}") from exc
            if not real.is_relative_to(base.resolve()):
                raise BadReference(ref, "is a symbolic link that leaves its secrets.file_dirs "
                                   "directory")
            try:
                data = real.read_bytes()
            except OSError as exc:
                raise MissingSecret(ref, exc.strerror or str(exc)) from exc
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise BadReference(ref, "the file is not UTF-8 text") from exc

    # --- resolving ----------------------------------------------------------------------------

    def resolve(self, ref: str, mac: str | None = None) -> str:
        """The value of a reference (redacted in redacting mode); `mac` fills derive's {mac}."""
        if not self.redacting:
            return self._resolve(ref, mac)
        shown = _shown(ref, mac)
        try:
            return self._show(shown, self._resolve(ref, mac))
        except BadReference:
            raise
        except MissingSecret:
            return f"<{shown}>"

    def confine(self, ref: str) -> None:
        """A phone's value reads only the environment variables listed in secrets.env, never
        provctl's own (PROVCTL_*): anyone who can edit an assignment could otherwise publish
        the host's environment (an age identity, a cloud token) into a phone's file."""
        if not ref.startswith("env:"):
            return
        name = ref[4:]
        if not name.startswith(PROVCTL_ENV) and any(
                name == allowed or (allowed.endswith("*") and name.startswith(allowed[:-1]))
                for allowed in self._env_names):
            return
        raise BadReference(ref, "a phone's value may read only the environment variables "
                           "listed in secrets.env of provisioning.yaml (a name, or a prefix "
                           f"such as PBX_*), never {PROVCTL_ENV}*")

    def phone_value(self, ref: str, mac: str | None = None) -> str:
        """`resolve` for a value that goes into a phone's files: never a host secret."""
        self.confine(ref)
        if not self._host_refs:
            return self.resolve(ref, mac)
        try:
            value = self._resolve(ref, mac)
        except BadReference:
            raise
        except MissingSecret:
            if self.redacting:
                return f"<{_shown(ref, mac)}>"
            raise
        for where, host in self._host_secret_values():
            if hmac.compare_digest(value.encode(), host.encode()):
                raise BadReference(ref, f"resolves to the value of {where}, which must never "
                                   "reach a phone")
        return self._show(_shown(ref, mac), value) if self.redacting else value

    def _host_secret_values(self) -> list[tuple[str, str]]:
        if self._host_values is None:
            values = []
            for ref, where in self._host_refs:
                try:
                    values.append((where, self._resolve(ref)))
                except MissingSecret:
                    continue  # reported where it is written
            self._host_values = values
        return self._host_values

    def show(self, shown: str, value: str) -> str:
        """The redacted form of `value` under the name `shown` (see Redaction)."""
        return self._show(shown, value)

    def _show(self, shown: str, value: str) -> str:
        if not self._keyed:
            self._keyed = True
            if self._fleet_ref and not self._fleet_ref.startswith("derive:"):
                try:
                    self.redaction.set_key(self._resolve(self._fleet_ref))
                except MissingSecret:
                    pass  # no fleet secret here (CI of a fork): no digests
        return self.redaction.show(shown, value)

    def check(self, ref: str, *, device: bool = False, host: bool = False) -> None:
        """Raise MissingSecret if `ref` does not resolve (only a bad reference when redacting).

        `device`: the reference is a phone's parameter, where derive's {mac} is allowed.
        `host`: a reference of provisioning.yaml (the host's own); any other is a phone's
        value, confined (see `confine`).
        """
        if not host:
            self.confine(ref)
        if ref.startswith("secret:") and (ref, None) not in self._cache:
            index = self._indexed()
            if index is not None and ref[7:] in index:
                return  # in the secrets file, usable (the index holds only those)
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
            value = self._read_file_ref(ref, name)
        elif kind == "secret":
            value = self._lookup(ref, name)
        elif kind == "derive":
            value = self._derive(ref, mac)
        else:
            raise MissingSecret(ref, f"unknown kind {kind!r}")
        if value == "":
            raise MissingSecret(ref, "empty value")
        if CONTROL.search(value):
            raise BadReference(ref, f"its value holds {CONTROL_TEXT}")
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
        return self._show(_shown(ref, mac), self._resolve(ref, mac))


def _shown(ref: str, mac: str | None) -> str:
    """How a reference is named in redacted output: a derived one with its MAC filled in."""
    if mac and ref.startswith("derive:"):
        return ref.replace("{mac}", mac)
    return ref


try:  # libyaml: a 50,000-entry secrets file in a tenth of the time
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader

_STR = "tag:yaml.org,2002:str"


def parse_secrets_map(text: str, where: str, ref: str = "secrets") -> dict[str, str]:
    """A secrets file: a YAML map NAME -> scalar value (the value is never shown in errors).

    The same values as yaml.safe_load: libyaml composes, and a scalar whose tag resolved to a
    string is taken as is; only the others (numbers, booleans, dates) go through PyYAML's safe
    constructor."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        if not isinstance(node, yaml.MappingNode) or any(
                k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
            loaded = _constructed(node) or {}
        else:
            loaded = {_scalar(k): _scalar(v) for k, v in node.value}
    except yaml.YAMLError as exc:
        raise MissingSecret(ref, f"{where} is not valid YAML") from exc
    if not isinstance(loaded, dict) or any(
            isinstance(v, dict | list) or v is None for v in loaded.values()):
        raise MissingSecret(ref, f"{where} must be a map NAME: value")
    return {str(k): str(v) for k, v in loaded.items()}


def _constructed(node: yaml.Node | None) -> object:
    if node is None:
        return None
    return yaml.constructor.SafeConstructor().construct_document(node)


def _scalar(node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
        return node.value
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


def find_value(text: str, name: str) -> str | None:
    """The value of `NAME: value` on a line of its own in a secrets file, as parse_secrets_map
    reads it; None when there is no such line or it does not parse alone. Callers check the
    result against the value's digest: the line may be another than the one parsing the whole
    file takes (a duplicate, a line inside a block scalar)."""
    found = re.search(f"^{re.escape(name)}:[ \t](.*)$", text, re.MULTILINE)
    if found is None:
        return None
    try:
        node = yaml.compose(found.group(0), Loader=_Loader)
        if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
            return None
        key, value = node.value[0]
        if str(_scalar(key)) != name:
            return None
        loaded = _scalar(value)
    except yaml.YAMLError:
        return None
    if isinstance(loaded, dict | list) or loaded is None:
        return None
    return str(loaded)


QUICK_LOOKUPS = 32  # values found by their line before the whole file is parsed instead
INDEX_FORMAT = b"provctl-secrets-index/1"
INDEX_KEEP = 24 * 3600.0  # seconds an index of another version of the file is kept


@cache
def _index_version() -> bytes:
    """What an index depends on besides the file: how this code and PyYAML read it."""
    h = hashlib.sha256(INDEX_FORMAT)
    h.update(Path(__file__).read_bytes())
    h.update(f"{yaml.__version__} {getattr(yaml, '__with_libyaml__', False)}".encode())
    return h.digest()


def index_dir(state_dir: Path) -> Path:
    """Where the secrets file's index lives in a state directory."""
    return state_dir / f"secrets-index-{os.getuid() if hasattr(os, 'getuid') else 0}"


class SecretsIndex:
    """The keyed digests of a secrets file's values, stored under the file's content.

    An entry is named by an HMAC of the file's text (and of this code), keyed like the digests
    with the fleet secret, and carries an HMAC of its body: a planted or torn entry is never
    unpickled, and neither the names nor the digests can be tested against guesses without
    the fleet secret. It holds NAME -> digest only, never a value (nor a value's length). An
    optimisation only: a missing or unreadable entry means the file is parsed.
    """

    def __init__(self, directory: Path, key: bytes):
        self.directory = directory
        self._key = key

    def _path(self, text: str) -> Path:
        name = hmac.new(self._key, _index_version(), hashlib.sha256)
        name.update(text.encode("utf-8", "surrogatepass"))
        return self.directory / name.hexdigest()[:40]

    def load(self, text: str) -> dict[str, bytes] | None:
        try:
            raw = self._path(text).read_bytes()
        except OSError:
            return None
        mac, body = raw[:32], raw[32:]
        if not hmac.compare_digest(mac, hmac.digest(self._key, body, "sha256")):
            return None
        try:
            found = pickle.loads(body)
        except Exception:  # noqa: BLE001 - a stale or corrupt entry is only a miss
            return None
        return found if isinstance(found, dict) else None

    def store(self, text: str, digests: dict[str, bytes]) -> None:
        path = self._path(text)
        body = pickle.dumps(digests, protocol=pickle.HIGHEST_PROTOCOL)
        now = time.time()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(hmac.digest(self._key, body, "sha256") + body)
            os.replace(tmp, path)  # no fsync: a torn entry fails its HMAC and is a miss
            for entry in os.scandir(self.directory):
                if entry.name != path.name:
                    with contextlib.suppress(OSError):
                        if now - entry.stat().st_mtime > INDEX_KEEP:
                            os.unlink(entry.path)
        except OSError:
            pass


def dump_secrets_map(values: Mapping[str, str]) -> str:
    return str(yaml.safe_dump(dict(sorted(values.items())), default_flow_style=False,
                              allow_unicode=True, width=1000))


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
    return bytes(pyrage.encrypt(text.encode(), age_recipients(recipients), armored=True))


def age_decrypt(data: bytes, identities: list[object], where: str) -> str:
    import pyrage

    try:
        return bytes(pyrage.decrypt(data, identities)).decode("utf-8")
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
