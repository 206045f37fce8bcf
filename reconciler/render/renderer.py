"""Render: every phone's files for every target that serves it, in memory, with digests.

Pure apart from reading firmware binaries' sizes: the output is a function of the desired state
and the resolved secrets. Nothing is published from a state in which any file fails to render:
all problems are collected and raised together as one ConfigError.

Incremental with a cache: a phone whose key (render/keys.py) is in the cache is neither
resolved nor rendered; its artifacts, the SIP users of its lines and its firmware come from the
cache entry, and its bytes are rendered again only if a file must be uploaded. The others are
resolved and rendered, in forked worker processes when there are many, and their bytes are kept
(compressed) for apply, so a first apply renders each file once.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import signal
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.errors import ConfigError, Interrupted, Problem
from reconciler.desired.load import RepoFile, RepoFileError
from reconciler.desired.resolve import (
    Held,
    ResolvedDevice,
    ResolvedLine,
    Resolver,
    sip_user_collisions,
)
from reconciler.desired.schema import SECRET_REF
from reconciler.desired.secrets import CONTROL, CONTROL_TEXT, MissingSecret
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


Firmware = tuple[str, str, str, str | None]  # version, file, sha256, source
SipUsers = tuple[tuple[str, str, int], ...]  # (extension, domain, port) of each line, lowercased


@dataclass(frozen=True)
class Phone:
    """One phone rendered for one target: what a worker process sends back."""

    files: tuple[tuple[str, str, int, bytes], ...] = ()  # name, sha256, size, bytes (packed?)
    firmware: Firmware | None = None
    problems: tuple[Problem, ...] = ()
    packed: bool = False  # bytes are zlib-compressed (many phones kept for apply)
    sip: SipUsers = ()


# A file of a phone: name, sha256, size, and its bytes (bytes, packed?) or None (from the cache)
FileRow = tuple[str, str, int, tuple[bytes, bool] | None]

# What a forked worker inherits (never pickled): the renderer and the phones to render.
_WORKER: Renderer | None = None
_WORK: tuple[str, list[str]] = ("", [])


def _worker_signals() -> None:
    """A forked worker must not keep the daemon's handlers: with its SIGTERM handler (which
    only sets a flag) the pool could not stop it, and the daemon waited for it forever.
    Terminal signals are the parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


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
        assert self.loader is not None or self.source is not None
        data = self.loader() if self.loader is not None else self.source.read_bytes()  # type: ignore[union-attr]
        if hashlib.sha256(data).hexdigest() == self.sha256:
            return data
        if self.source is not None:
            raise ConfigError([Problem(str(self.source), 0, "sha256",
                                       "firmware binary does not match the catalog's sha256")])
        raise ConfigError([Problem(self.path, 0, "", "rendering is not deterministic: "
                                   "the file changed between plan and apply")])


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
    """Renders phones, incrementally when given a cache (see the module docstring)."""

    def __init__(self, state: DesiredState, cache: RenderCache | None = None,
                 held: Mapping[str, Held] | None = None, keys: PhoneKeys | None = None):
        self.state = state
        self.held: dict[str, Held] = dict(held or {})  # phones a rollout holds back (firmware)
        self.resolver = Resolver(state)
        self.fleet_secret = state.secrets.resolve(state.provisioning.value.fleet.secret)
        self.addressing = Addressing(state.provisioning.value, self.fleet_secret)
        self.cache = cache
        if cache is not None and keys is None:
            keys = PhoneKeys(state, self.fleet_secret, self.resolver)
        self.keys = keys if cache is not None else None
        self.cache_keys: set[str] = set()  # keys used in this run, for RenderCache.retain
        self.rendered = 0  # phones rendered (not found in the cache) in this run
        self.sip_users: dict[str, Sequence[Sequence[Any]]] = {}  # mac -> its lines SIP users
        self._resolved: dict[str, ResolvedDevice] | None = None
        self._devices: dict[str, ResolvedDevice] = {}  # resolved one at a time
        self._last: tuple[tuple[str, str], dict[str, bytes]] | None = None
        self.warnings: set[Problem] = set()
        self._unsupported: dict[tuple[str, str, str | None], list[tuple[str, str, int]]] = {}
        self._binaries: dict[str, RepoFile | str] = {}  # firmware source -> file, or why not
        # progress(done, total) of render_target, in phones (the CLI's progress display)
        self.progress: Callable[[int, int], None] | None = None
        self._done = 0
        self.cancelled: Callable[[], bool] | None = None  # polled between phones (SIGTERM)

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Interrupted("stopped while rendering the desired state")

    def device(self, mac: str) -> ResolvedDevice:
        """One phone, resolved (with the firmware a rollout holds it at); ConfigError if it
        cannot be. Only the phones rendered in a run, or asked for, are ever resolved."""
        if self._resolved is not None:
            return self._resolved[mac]
        found = self._devices.get(mac)
        if found is None:
            found = self.resolver.resolve(mac)
            held = self.held.get(mac)
            if held is not None:
                found = found.holding(held)
            self._devices[mac] = found
        return found

    def resolved(self) -> dict[str, ResolvedDevice]:
        """Every phone, resolved: for what needs them all (rollouts, explain, history ...);
        a plan or an apply of a fleet without rollouts never asks."""
        if self._resolved is None:
            problems: list[Problem] = []
            out = {}
            for mac in self.state.devices:
                try:
                    out[mac] = self.device(mac)
                except ConfigError as exc:
                    problems += exc.problems
            problems += sip_user_collisions(out.values())
            if problems:
                raise ConfigError(problems)
            self._resolved = out
        return self._resolved

    def sip_problems(self) -> list[Problem]:
        """SIP users two lines would share (desired/resolve.py sip_user_collisions), over every
        phone: the rendered ones' and the cached ones' lines as their cache entries keep them;
        the few phones that share one are resolved to say exactly where."""
        first: dict[tuple[str, str], tuple[str, int]] = {}
        colliding: set[str] = set()
        for mac in self.state.devices:
            users = self.sip_users.get(mac)
            if users is None:  # served by no target rendered in this run
                try:
                    users = _sip_users(self.device(mac))
                except ConfigError:
                    continue  # reported by whoever resolved it
            for extension, domain, port in users:
                if not domain:
                    continue
                seen = first.setdefault((extension, domain), (mac, port))
                if seen != (mac, port):
                    colliding |= {mac, seen[0]}
        if not colliding:
            return []
        return sip_user_collisions(self.device(m) for m in self.state.devices if m in colliding)

    def hold(self, held: Mapping[str, Held]) -> set[str]:
        """Hold back these phones' firmware (and release the others); the phones whose files
        change because of it, to render again (rerender)."""
        resolved = self.resolved()
        changed = set()
        for mac in set(self.held) | set(held):
            now = held.get(mac)
            if now == self.held.get(mac) or mac not in resolved:
                continue
            before = resolved[mac]
            after = before.holding(now)
            if after.firmware != before.firmware:
                changed.add(mac)
            resolved[mac] = after
        self.held = dict(held)
        return changed

    def rerender(self, target: str, artifacts: Mapping[str, Artifact],
                 macs: Iterable[str]) -> dict[str, Artifact]:
        """`artifacts` of one target with the files of `macs` rendered again (after hold):
        their files replaced, and the firmware binaries those left in use, plus the new ones."""
        macs = set(macs)
        spec = self.state.provisioning.value.targets[target]
        resolved = self.resolved()
        fresh = self.render_target(target, sorted(m for m in macs if m in resolved))
        used = {f"{spec.firmware_dir}/{d.firmware.file}" for d in resolved.values()
                if d.firmware is not None and serves(spec, d.customer)}
        kept = {p: a for p, a in artifacts.items()
                if a.device not in macs and (a.source is None or p in used)}
        return dict(sorted({**kept, **fresh}.items()))

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

    def _held_part(self, mac: str) -> str:
        """What a rollout's hold changes in a phone's files (its firmware): part of its key."""
        held = self.held.get(mac)
        if held is None:
            return ""
        image = held.image
        return "held:installed" if image is None else f"held:{image.version}:{image.file}"

    def render_target(self, target: str, macs: Iterable[str] | None = None) -> dict[str, Artifact]:
        """All files of one target: path -> Artifact. Raises ConfigError with every problem."""
        spec = self.state.provisioning.value.targets[target]
        chosen = list(self.state.devices if macs is None else macs)
        problems: list[Problem] = []
        files: dict[str, Artifact] = {}
        misses: list[tuple[str, str | None]] = []
        key_of = self.keys.key if self.keys is not None else None
        lookup = self.cache.get if self.cache is not None else None
        again = self._rendered_again
        held = self.held
        self._done = 0
        total = len(chosen)
        devices, account_customer = self.state.devices, self.resolver.account_customer
        served = spec.customers  # serves(): None serves every phone
        unsupported = self._unsupported
        keep, sip_users = self.cache_keys.add, self.sip_users
        for i, mac in enumerate(chosen):  # the hot loop of a no-op at 100,000 phones: tight
            if i % 256 == 0:
                self._check_cancelled()
            d = devices[mac].value
            customer = d.customer or account_customer.get(mac)
            if served is not None and customer not in served:
                continue
            key = key_of(mac, target, self._held_part(mac) if mac in held else "", customer) \
                if key_of is not None else None
            entry = lookup(key) if lookup is not None and key else None
            if entry is None:
                misses.append((mac, key))
                continue
            assert key is not None
            keep(key)
            firmware = entry[1]
            # the token directory is kept with the entry: a function of the fleet secret, the
            # url_tokens setting, the MAC and the customer, all in the key
            directory = entry[3] if len(entry) > 3 else self.addressing.directory(mac, customer)
            version = firmware[0] if firmware else None
            for name, sha, size in unpack_files(entry[0]):  # rendered again only if uploaded
                path = f"{directory}/{name}" if directory else name
                files[path] = _cached_artifact(path, sha, size, mac, version,
                                               partial(again, mac, target, name))
            if firmware:
                try:
                    art = self._firmware_artifact(target, tuple(firmware))  # type: ignore[arg-type]
                    files[art.path] = art
                except ConfigError as exc:
                    problems += exc.problems
            sip_users[mac] = entry[2]  # [[extension, domain, port], ...] as kept
            # the warnings of its layers, known for its combination (_warn_cached otherwise)
            found = unsupported.get((d.model, d.profile, customer)) if not d.params else None
            if found is None:
                self._warn_cached(mac, customer)
            else:
                for name, file, line in found:
                    self.warnings.add(_unsupported_warning(d, mac, name, file, line))
            if self.progress is not None:
                self._tick(total)
        rendered = self._render_many([mac for mac, _ in misses], target, total)
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
            self.sip_users[mac] = phone.sip
            if key and self.cache is not None:
                packed = pack_files([(n, sha, size) for n, sha, size, _ in phone.files])
                self.cache.put(key, [packed, list(phone.firmware) if phone.firmware else None,
                                     [list(u) for u in phone.sip],
                                     self.addressing.directory(mac, self.customer_of(mac))])
                self.cache_keys.add(key)
        if problems:
            raise ConfigError(problems)
        return dict(sorted(files.items()))

    def _render_many(self, macs: list[str], target: str, total: int) -> list[Phone]:
        """Render phones, in forked worker processes when there are many.

        The workers inherit the desired state (fork, never pickled), resolve and render their
        share and send back compressed bytes, problems and warnings.
        """
        workers = render_processes()
        if workers < 2 or len(macs) < PARALLEL_MIN:
            out = []
            for i, mac in enumerate(macs):
                if i % 256 == 0:
                    self._check_cancelled()
                out.append(self.render_phone(mac, target))
                self._tick(total)
            return out
        global _WORKER, _WORK
        _WORKER, _WORK = self, (target, macs)
        chunk = max(50, len(macs) // (workers * 8))
        spans = [(i, i + chunk) for i in range(0, len(macs), chunk)]
        rendered: list[Phone] = [Phone()] * len(macs)
        gc.freeze()  # the workers' collector must not touch (and so copy) the inherited state
        try:
            with multiprocessing.get_context("fork").Pool(workers, _worker_signals) as pool:
                batches = pool.imap_unordered(_render_batch, spans)
                while True:
                    # Leaving the block terminates the workers. A stop is seen even while a
                    # batch is out (SIGTERM to the whole service may have ended its worker).
                    self._check_cancelled()
                    try:
                        start, phones, warnings = batches.next(timeout=0.5)
                    except multiprocessing.TimeoutError:
                        continue
                    except StopIteration:
                        break
                    rendered[start:start + len(phones)] = phones
                    self.warnings |= warnings
                    self._tick(total, len(phones))
        finally:
            gc.unfreeze()
            _WORKER, _WORK = None, ("", [])
        return rendered

    def _tick(self, total: int, n: int = 1) -> None:
        self._done += n
        if self.progress is not None:
            self.progress(self._done, total)

    def render_phone(self, mac: str, target: str, *, pack: bool = False) -> Phone:
        """Resolve and render one phone for one target; problems are returned, not raised.
        The resolved phone is not kept (a worker renders 50,000 of them)."""
        try:
            if self._resolved is not None or mac in self._devices:
                device = self.device(mac)
            else:
                device = self.resolver.resolve(mac)
                held = self.held.get(mac)
                if held is not None:
                    device = device.holding(held)
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
        return Phone(tuple(files), firmware, packed=pack, sip=_sip_users(device))

    def render_device(self, device: ResolvedDevice, target: str) -> list[Artifact]:
        """The files of one phone on one target (plus its firmware binary when pinned)."""
        phone = self._render_resolved(device, target, pack=False)
        if phone.problems:
            raise ConfigError(list(phone.problems))
        names = [(name, sha, size, (data, False)) for name, sha, size, data in phone.files]
        return self._artifacts(device.mac, target, names, phone.firmware)

    def _artifacts(self, mac: str, target: str, names: Sequence[FileRow],
                   firmware: Firmware | None) -> list[Artifact]:
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
        built = vendor.build(rin)  # once: the files and what the format cannot carry
        problems = [Problem(located.file, located.line("mac"), device.mac, why)
                    for why in built.problems]
        problems += _control_characters(device, rin)
        out_files = []
        for out in built.files:
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

        def secret(ref: str, where: Callable[[], tuple[str, int]], field: str) -> str:
            try:
                return self.state.secrets.phone_value(ref, mac=device.mac)
            except MissingSecret as exc:  # located only now: lines are looked up lazily
                problems.append(Problem(*where(), field, str(exc)))
                return ""

        params = _resolve_refs(device.params, lambda ref, key: secret(
            ref, lambda: _origin(device.origins, key, located), key))
        lines = []
        def password_at(line: ResolvedLine) -> Callable[[], tuple[str, int]]:
            return lambda: line.at("password") or _origin(line.origins, "", located)

        for line in device.lines:
            password = secret(line.password_ref, password_at(line), f"{line.account}.password")
            line_params = _resolve_refs(line.params, lambda ref, key, o=line.origins: secret(
                ref, lambda: _origin(o, key, located), key))
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

    def _firmware_artifact(self, target: str, firmware: Firmware) -> Artifact:
        """The binary a pin names, once per target in its shared firmware folder."""
        _, file, sha256, source = firmware
        assert source is not None
        spec = self.state.provisioning.value.targets[target]
        found = self._binaries.get(source)
        if found is None:
            try:  # from the revision's tree when a revision was asked for
                found = self._binaries[source] = self.state.source.repo_file(source)
            except RepoFileError as exc:
                found = self._binaries[source] = str(exc)
        if isinstance(found, str):
            raise ConfigError([Problem(str(source), 0, "source",
                                       f"firmware binary missing: {found}")])
        return Artifact(f"{spec.firmware_dir}/{file}", sha256, found.size, source=Path(source),
                        loader=found.read)


def _sip_users(device: ResolvedDevice) -> SipUsers:
    """What sip_user_collisions compares, for each line of a phone."""
    return tuple((line.extension.lower(),
                  str(line.params.get("sip", {}).get("server") or "").lower(), line.port)
                 for line in device.lines)


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


def _control_characters(device: ResolvedDevice, rin: RenderInput) -> list[Problem]:
    """Every value a phone's files are rendered from, checked for control characters: one
    problem per parameter, named (with its file:line), never its value."""
    found: dict[str, tuple[str, int]] = {}
    located = device.located
    device_at = (located.file, located.line("mac"))

    def origin_of(origins: dict[str, Any], path: str, fallback: tuple[str, int]
                  ) -> tuple[str, int]:
        parts = path.split(".")
        for end in range(len(parts), 0, -1):
            origin = origins.get(".".join(parts[:end]))
            if origin is not None and origin.file:
                return origin.file, origin.line
        return fallback

    def walk(value: Any, path: str, prefix: str, origins: dict[str, Any],
             fallback: tuple[str, int]) -> None:
        if isinstance(value, str):
            if CONTROL.search(value):
                found.setdefault(prefix + path, origin_of(origins, path, fallback))
        elif isinstance(value, dict):
            for key, item in value.items():
                shown = str(key).encode("unicode_escape").decode("ascii")
                child = f"{path}.{shown}" if path else shown
                if isinstance(key, str) and CONTROL.search(key):
                    found.setdefault(prefix + child, origin_of(origins, path, fallback))
                walk(item, child, prefix, origins, fallback)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, path, prefix, origins, fallback)

    # raw: only this vendor's keys reach its files
    walk({k: v for k, v in rin.params.items() if k != "raw"}, "", "", device.origins, device_at)
    walk(rin.raw, f"raw.{rin.vendor}", "", device.origins, device_at)
    walk(rin.name, "name", "", {}, (located.file, located.line("name")))
    for line, resolved in zip(rin.lines, device.lines, strict=True):
        line_at = resolved.at() or device_at
        for name in ("display_name", "auth_user", "extension"):
            walk(getattr(line, name), name, f"{line.account}.", {},
                 resolved.at(name if name != "extension" else "account") or line_at)
        own = {k: v for k, v in line.params.items() if k != "raw" and rin.params.get(k) != v}
        walk(own, "", f"{line.account}.", resolved.origins, line_at)
    return [Problem(file, line_no, name, f"holds {CONTROL_TEXT} (phone {device.mac})")
            for name, (file, line_no) in found.items()]


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
