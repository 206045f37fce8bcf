"""Render: every phone's files for every target that serves it, in memory, with digests.

Pure apart from reading firmware binaries' sizes: the output is a function of the desired state
and the resolved secrets. Nothing is published from a state in which any file fails to render:
all problems are collected and raised together as one ConfigError.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.resolve import ResolvedDevice, Resolver
from reconciler.desired.schema import SECRET_REF
from reconciler.desired.secrets import MissingSecret
from reconciler.desired.validate import DesiredState
from reconciler.render.addressing import Addressing, serves
from reconciler.render.cache import RenderCache, pack_files, unpack_files
from reconciler.render.keys import PhoneKeys
from reconciler.render.templating import TemplateError, render
from vendors.base import FirmwareInput, LineInput, RenderInput

PARALLEL_MIN = 400  # below this many phones to render, worker processes cost more than they save


def render_processes() -> int:
    """Worker processes for rendering: PROVCTL_RENDER_PROCESSES, else the cores (at most 8)."""
    configured = os.environ.get("PROVCTL_RENDER_PROCESSES")
    if configured:
        return max(1, int(configured))
    return min(os.cpu_count() or 1, 8)


@dataclass(frozen=True)
class Phone:
    """One phone rendered for one target: what a worker process sends back."""

    files: tuple[tuple[str, str, int, bytes], ...] = ()  # name, sha256, size, bytes (packed?)
    firmware: tuple[str, str, str, str | None] | None = None  # version, file, sha256, source
    problems: tuple[Problem, ...] = ()
    packed: bool = False  # bytes are zlib-compressed (many phones kept for apply)


# A file of a phone: name, sha256, size, and its bytes (bytes, packed?) or None (from the cache)
FileRow = tuple[str, str, int, tuple[bytes, bool] | None]

# What a forked worker inherits (never pickled): the renderer and the phones to render.
_WORKER: Renderer | None = None
_WORK: tuple[str, list[str]] = ("", [])


def _render_batch(span: tuple[int, int]) -> tuple[int, list[Phone], set[Problem]]:
    renderer = _WORKER
    assert renderer is not None
    target, macs = _WORK
    phones = [renderer.render_phone(mac, target, pack=True) for mac in macs[span[0]:span[1]]]
    return span[0], phones, renderer.warnings


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file to publish; firmware binaries are read from `source` only when uploaded."""

    path: str
    sha256: str
    size: int
    data: bytes | None = None
    source: Path | None = None
    device: str | None = None
    firmware: str | None = None  # version a config file pins, for downgrade checks
    loader: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    def content(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.loader is not None:
            data = self.loader()
            if hashlib.sha256(data).hexdigest() != self.sha256:
                raise ConfigError([Problem(self.path, 0, "", "rendering is not deterministic: "
                                           "the file changed between plan and apply")])
            return data
        assert self.source is not None
        data = self.source.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ConfigError([Problem(str(self.source), 0, "sha256",
                                       "firmware binary does not match the catalog's sha256")])
        return data


_ARTIFACT_FIELDS = ("path", "sha256", "size", "data", "source", "device", "firmware", "loader")
assert tuple(f.name for f in fields(Artifact)) == _ARTIFACT_FIELDS


_SET_PATH, _SET_SHA, _SET_SIZE, _SET_DATA, _SET_SOURCE, _SET_DEVICE, _SET_FW, _SET_LOADER = (
    Artifact.__dict__[name].__set__ for name in _ARTIFACT_FIELDS)  # the slots' descriptors


def _cached_artifact(path: str, sha256: str, size: int, device: str, firmware: str | None,
                     loader: Callable[[], bytes]) -> Artifact:
    """Artifact(path, sha256, size, device=, firmware=, loader=) without the frozen __init__'s
    object.__setattr__ per field, 150,000 times on a no-op."""
    art = object.__new__(Artifact)
    _SET_PATH(art, path)
    _SET_SHA(art, sha256)
    _SET_SIZE(art, size)
    _SET_DATA(art, None)
    _SET_SOURCE(art, None)
    _SET_DEVICE(art, device)
    _SET_FW(art, firmware)
    _SET_LOADER(art, loader)
    return art


class Renderer:
    """Renders phones, incrementally when given a cache and the phones' keys.

    A phone whose key (render/keys.py) is in the cache is neither resolved nor rendered: its
    artifacts come from the cache entry and its bytes are rendered again only if a file must be
    uploaded. The others are rendered, in forked worker processes when there are many, and their
    bytes are kept (compressed) for apply, so the first apply renders each file once.
    """

    def __init__(self, state: DesiredState, cache: RenderCache | None = None,
                 keys: PhoneKeys | None = None):
        self.state = state
        self.resolver = Resolver(state)
        self.fleet_secret = state.secrets.resolve(state.provisioning.value.fleet.secret)
        self.addressing = Addressing(state.provisioning.value, self.fleet_secret)
        self.cache = cache
        if cache is not None and keys is None:
            keys = PhoneKeys(state, self.fleet_secret, self.resolver)
        self.keys = keys if cache is not None else None
        self.cache_keys: set[str] = set()  # keys used in this run, for RenderCache.retain
        self.rendered = 0  # phones rendered (not found in the cache) in this run
        self._resolved: dict[str, ResolvedDevice] | None = None
        self._last: tuple[tuple[str, str], dict[str, bytes]] | None = None
        self.warnings: set[Problem] = set()
        self._unsupported: dict[tuple[str, str, str | None], list[tuple[str, str, int]]] = {}
        self._binaries: dict[Path, int | str] = {}  # firmware source -> size, or why not

    def resolved(self) -> dict[str, ResolvedDevice]:
        if self._resolved is None:
            problems: list[Problem] = []
            out = {}
            for mac in self.state.devices:
                try:
                    out[mac] = self.resolver.resolve(mac)
                except ConfigError as exc:
                    problems += exc.problems
            if problems:
                raise ConfigError(problems)
            self._resolved = out
        return self._resolved

    def customer_of(self, mac: str) -> str | None:
        """A phone's effective customer, without resolving it."""
        return self.resolver.customer(mac)

    def directory(self, device: ResolvedDevice) -> str:
        """The token directory of a phone ("" when url_tokens is none)."""
        return self.addressing.directory(device.mac, device.customer)

    def primary_target(self, device: ResolvedDevice) -> str | None:
        return self.addressing.primary_target(device.customer)

    def provisioning_url(self, device: ResolvedDevice, target: str) -> str:
        return self.addressing.provisioning_url(device.mac, device.customer, target)

    def render_target(self, target: str, macs: Iterable[str] | None = None) -> dict[str, Artifact]:
        """All files of one target: path -> Artifact. Raises ConfigError with every problem."""
        spec = self.state.provisioning.value.targets[target]
        chosen = self.state.devices if macs is None else list(macs)
        problems: list[Problem] = []
        files: dict[str, Artifact] = {}
        misses: list[tuple[str, str | None]] = []
        key_of = self.keys.key if self.keys is not None else None
        lookup = self.cache.get if self.cache is not None else None
        again = self._rendered_again
        for mac in chosen:  # the hot loop of a no-op at 100,000 phones: kept tight
            customer = self.resolver.customer(mac)
            if not serves(spec, customer):
                continue
            key = key_of(mac, target) if key_of is not None else None
            entry = lookup(key) if lookup is not None and key else None
            if entry is None:
                misses.append((mac, key))
                continue
            assert key is not None
            self.cache_keys.add(key)
            firmware = entry[1]
            directory = self.addressing.directory(mac, customer)
            version = firmware[0] if firmware else None
            for name, sha, size in unpack_files(entry[0]):  # rendered again only if uploaded
                path = f"{directory}/{name}" if directory else name
                files[path] = _cached_artifact(path, sha, size, mac, version,
                                               partial(again, mac, target, name))
            if firmware:
                try:
                    art = self._firmware_artifact(target, tuple(firmware))
                    files[art.path] = art
                except ConfigError as exc:
                    problems += exc.problems
            self._warn_cached(mac, customer)
        rendered = self._render_many([mac for mac, _ in misses], target)
        self.rendered += len(misses)
        for (mac, key), phone in zip(misses, rendered, strict=True):
            if phone.problems:
                problems += phone.problems
                continue
            names = [(name, sha, size, (data, phone.packed))
                     for name, sha, size, data in phone.files]
            try:
                arts = self._artifacts(mac, target, names, phone.firmware)
            except ConfigError as exc:
                problems += exc.problems
                continue
            for art in arts:
                files[art.path] = art
            if key and self.cache is not None:
                packed = pack_files([(n, sha, size) for n, sha, size, _ in phone.files])
                self.cache.put(key, [packed, list(phone.firmware) if phone.firmware else None])
                self.cache_keys.add(key)
        if problems:
            raise ConfigError(problems)
        return dict(sorted(files.items()))

    def _render_many(self, macs: list[str], target: str) -> list[Phone]:
        """Render phones, in forked worker processes when there are many.

        The workers inherit the desired state (fork, never pickled), resolve and render their
        share and send back compressed bytes, problems and warnings.
        """
        workers = render_processes()
        if workers < 2 or len(macs) < PARALLEL_MIN:
            return [self.render_phone(mac, target) for mac in macs]
        global _WORKER, _WORK
        _WORKER, _WORK = self, (target, macs)
        chunk = max(50, len(macs) // (workers * 8))
        spans = [(i, i + chunk) for i in range(0, len(macs), chunk)]
        out: list[Phone] = [Phone()] * len(macs)
        gc.freeze()  # the workers' collector must not touch (and so copy) the inherited state
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for start, phones, warnings in pool.imap_unordered(_render_batch, spans):
                    out[start:start + len(phones)] = phones
                    self.warnings |= warnings
        finally:
            gc.unfreeze()
            _WORKER, _WORK = None, ("", [])
        return out

    def render_phone(self, mac: str, target: str, *, pack: bool = False) -> Phone:
        """Resolve and render one phone for one target; problems are returned, not raised."""
        try:
            device = self.resolver.resolve(mac)
            return self._render_resolved(device, target, pack)
        except ConfigError as exc:
            return Phone(problems=tuple(exc.problems))

    def _render_resolved(self, device: ResolvedDevice, target: str, pack: bool) -> Phone:
        rin = self.render_input(device, target)
        files = []
        for name, data in self._render_files(device, rin):
            sha = hashlib.sha256(data).hexdigest()
            files.append((name, sha, len(data), zlib.compress(data, 1) if pack else data))
        firmware = None
        image = device.firmware
        if image is not None:
            if image.source is None:
                origin = device.firmware_origin
                located = device.located
                return Phone(problems=(Problem(
                    origin.file if origin else located.file, origin.line if origin else 0,
                    "source", f"firmware {image.file} has no source to publish"),))
            firmware = (image.version, image.file, image.sha256, image.source)
        return Phone(tuple(files), firmware, packed=pack)

    def render_device(self, device: ResolvedDevice, target: str) -> list[Artifact]:
        """The files of one phone on one target (plus its firmware binary when pinned)."""
        phone = self._render_resolved(device, target, pack=False)
        if phone.problems:
            raise ConfigError(list(phone.problems))
        names = [(name, sha, size, (data, False)) for name, sha, size, data in phone.files]
        return self._artifacts(device.mac, target, names, phone.firmware)

    def _artifacts(self, mac: str, target: str,
                   names: Sequence[FileRow],
                   firmware: tuple[str, str, str, str | None] | None) -> list[Artifact]:
        directory = self.addressing.directory(mac, self.customer_of(mac))
        version = firmware[0] if firmware else None
        out = []
        for name, sha, size, kept in names:
            path = f"{directory}/{name}" if directory else name
            if kept is None:  # from the cache: rendered again only if it must be uploaded
                out.append(Artifact(path, sha, size, device=mac, firmware=version,
                                    loader=partial(self._rendered_again, mac, target, name)))
            elif kept[1]:
                out.append(Artifact(path, sha, size, device=mac, firmware=version,
                                    loader=partial(zlib.decompress, kept[0])))
            else:
                out.append(Artifact(path, sha, size, kept[0], device=mac, firmware=version))
        if firmware is not None:
            out.append(self._firmware_artifact(target, firmware))
        return out

    def _rendered_again(self, mac: str, target: str, name: str) -> bytes:
        """Bytes of a cached phone's file; the last phone is kept, as apply asks file by file."""
        if self._last is None or self._last[0] != (mac, target):
            phone = self.render_phone(mac, target)
            if phone.problems:
                raise ConfigError(list(phone.problems))
            self._last = ((mac, target), {n: data for n, _, _, data in phone.files})
        return self._last[1][name]

    def _render_files(self, device: ResolvedDevice, rin: RenderInput) -> list[tuple[str, bytes]]:
        vendor = vendors.get(device.vendor)
        located = device.located
        problems = [Problem(located.file, located.line("mac"), device.mac, why)
                    for why in vendor.check(rin)]
        out_files = []
        for out in vendor.files(rin):
            try:
                text = render(out.template, out.context, autoescape=vendor.autoescape,
                              line_ending=out.line_ending)
            except TemplateError as exc:
                problems.append(Problem(located.file, located.line("mac"), device.mac,
                                        f"cannot render {out.name}: {exc}"))
                continue
            out_files.append((out.name, text.encode("utf-8")))
        if problems:
            raise ConfigError(problems)
        return out_files

    def render_input(self, device: ResolvedDevice, target: str) -> RenderInput:
        """Resolve secrets and build what the vendor module renders from."""
        located = device.located
        problems: list[Problem] = []
        spec = self.state.provisioning.value.targets[target]
        base = spec.base_url if spec.base_url.endswith("/") else spec.base_url + "/"

        def secret(ref: str, origins: dict[str, Any], key: str, field: str) -> str:
            try:
                return self.state.secrets.resolve(ref, mac=device.mac)
            except MissingSecret as exc:  # located only now: lines are looked up lazily
                problems.append(Problem(*_origin(origins, key, located), field, str(exc)))
                return ""

        params = _resolve_refs(device.params, lambda ref, key: secret(
            ref, device.origins, key, key))
        lines = []
        for line in device.lines:
            password = secret(line.password_ref, line.origins, "", f"{line.account}.password")
            line_params = _resolve_refs(line.params, lambda ref, key, o=line.origins: secret(
                ref, o, key, key))
            sip = line_params.get("sip", {})
            if not sip.get("server"):
                problems.append(Problem(located.file, located.line("mac"), "sip.server",
                                        f"account {line.account} on {device.mac} has no SIP "
                                        "server (set the customer's sip.domain or params.sip"
                                        ".server)"))
            lines.append(LineInput(
                port=line.port, account=line.account, extension=line.extension,
                auth_user=line.auth_user, password=password, display_name=line.display_name,
                label=line.extension, sip=sip, params=line_params,
            ))
        firmware = None
        if device.firmware is not None:
            firmware = FirmwareInput(device.firmware.version, device.firmware.file,
                                     f"{base}{spec.firmware_dir}/{device.firmware.file}")
        if problems:
            raise ConfigError(problems)
        self._warn_unsupported(device)
        return RenderInput(
            mac=device.mac, vendor=device.vendor, model=device.model, name=device.device.name,
            customer=device.customer, params=params, lines=tuple(lines),
            user_owned=device.user_owned, provisioning_url=self.provisioning_url(device, target),
            firmware=firmware, raw=params.get("raw", {}).get(device.vendor, {}),
        )

    def _warn_unsupported(self, device: ResolvedDevice) -> None:
        """A parameter the vendor cannot express is a warning naming device and parameter."""
        for key, file, line in _unsupported(device.vendor, device.params, device.origins,
                                            device.located):
            self.warnings.add(_unsupported_warning(device.device, device.mac, key, file, line))

    def _warn_cached(self, mac: str, customer: str | None) -> None:
        """The warnings of a phone found in the cache (it is not resolved): those of its shared
        layers, computed once per combination. A phone whose own parameters could change them
        (an unsupported one, or one that overrides a layer's unsupported one) is resolved."""
        located = self.state.devices[mac]
        d = located.value
        combo = (d.model, d.profile, customer)
        found = self._unsupported.get(combo)
        if found is None:
            found = []
            if self._may_warn(d, customer):  # cheap: the layers' top-level keys
                params, origins = self.resolver.shared(d, customer)
                found = _unsupported(d.vendor, params, origins, located)
            self._unsupported[combo] = found
        if d.params:
            supported = vendors.get(d.vendor).supported
            flagged = {key for key, _, _ in found}
            if any(key != "raw" and (key not in supported or key in flagged) for key in d.params):
                self._warn_unsupported(self.resolver.resolve(mac))
                return
        for key, file, line in found:
            self.warnings.add(_unsupported_warning(d, mac, key, file, line))

    def _may_warn(self, d: Any, customer: str | None) -> bool:
        """Whether a layer below the device sets a parameter the vendor cannot express."""
        state = self.state
        defaults = state.defaults.value
        profile = state.profiles[d.profile].value
        layers = [defaults.params, defaults.model_params.get(d.vendor, {}),
                  defaults.model_params.get(d.model, {}), profile.params,
                  profile.model_params.get(d.model_name, {})]
        cust = state.customers.get(customer or "")
        if cust is not None:
            layers.append(cust.value.params)
        supported = vendors.get(d.vendor).supported
        return any(key != "raw" and key not in supported for layer in layers for key in layer)

    def _firmware_artifact(self, target: str,
                           firmware: tuple[str, str, str, str | None]) -> Artifact:
        """The binary a pin names, once per target in its shared firmware folder."""
        _, file, sha256, source_name = firmware
        assert source_name is not None
        spec = self.state.provisioning.value.targets[target]
        source = self.state.root / source_name
        size = self._binaries.get(source)
        if size is None:
            try:
                size = self._binaries[source] = source.stat().st_size
            except OSError as exc:
                size = self._binaries[source] = exc.strerror or str(exc)
        if isinstance(size, str):
            raise ConfigError([Problem(str(source_name), 0, "source",
                                       f"firmware binary missing: {size}")])
        return Artifact(f"{spec.firmware_dir}/{file}", sha256, size, source=source)


def _unsupported(vendor_name: str, params: Mapping[str, Any], origins: Mapping[str, Any],
                 located: Any) -> list[tuple[str, str, int]]:
    """(parameter, file, line) of every resolved parameter the vendor cannot express."""
    supported = vendors.get(vendor_name).supported
    out = []
    for key in params:
        if key != "raw" and key not in supported and params[key] not in (None, [], {}):
            origin = origins.get(key) or next(
                (o for k, o in origins.items() if k.startswith(key + ".")), None)
            file, line = (origin.file, origin.line) if origin else (located.file, 0)
            out.append((key, file, line))
    return out


def _unsupported_warning(device: Any, mac: str, key: str, file: str, line: int) -> Problem:
    return Problem(file, line, key, f"{device.model} ({mac}) cannot express parameter "
                   f"{key!r}; it is left out of this phone's files", "warning")


def _origin(origins: dict[str, Any], key: str, located: Any) -> tuple[str, int]:
    origin = origins.get(key)
    if origin is not None and origin.file:
        return origin.file, origin.line
    return located.file, located.line()


def _resolve_refs(value: Any, resolve: Any, key: str = "") -> Any:
    """Replace secret references among parameter values by their values (derive: included,
    with the phone's MAC for {mac})."""
    if isinstance(value, dict):
        return {k: _resolve_refs(v, resolve, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, resolve, key) for v in value]
    if isinstance(value, str) and SECRET_REF.match(value):
        return resolve(value, key)
    return value
