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
import signal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.errors import ConfigError, Interrupted, Problem
from reconciler.desired.load import RepoFileError
from reconciler.desired.resolve import Held, ResolvedDevice, Resolver, sip_user_collisions
from reconciler.desired.schema import SECRET_REF
from reconciler.desired.secrets import CONTROL, CONTROL_TEXT, MissingSecret
from reconciler.desired.validate import DesiredState
from reconciler.render.addressing import Addressing, serves
from reconciler.render.cache import RenderCache
from reconciler.render.templating import TemplateError, render
from vendors.base import FirmwareInput, LineInput, RenderInput

PARALLEL_MIN = 400  # below this many phones to render, worker processes cost more than they save


def render_processes() -> int:
    """Worker processes for rendering: PROVCTL_RENDER_PROCESSES, else the cores (at most 8)."""
    configured = os.environ.get("PROVCTL_RENDER_PROCESSES")
    if configured:
        return max(1, int(configured))
    return min(os.cpu_count() or 1, 8)


# What a forked worker inherits (never pickled): the renderer and the phones to render.
_WORKER: Renderer | None = None
_WORK: list[tuple[str, str, RenderInput]] = []

Rendered = list[tuple[str, bytes]]  # (file name, bytes) of one phone


def _worker_signals() -> None:
    """A forked worker must not keep the daemon's handlers: with its SIGTERM handler (which
    only sets a flag) the pool could not stop it, and the daemon waited for it forever.
    Terminal signals are the parent's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _render_batch(span: tuple[int, int]) -> list[tuple[tuple[str, str], Rendered]]:
    renderer = _WORKER
    assert renderer is not None
    out = []
    for mac, target, rin in _WORK[span[0]:span[1]]:
        try:
            out.append(((mac, target), renderer._render_files(renderer.resolved()[mac], rin)))
        except ConfigError:
            pass  # found again, and reported, by render_device in the parent
    return out


@dataclass(frozen=True)
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


class Renderer:
    def __init__(self, state: DesiredState, cache: RenderCache | None = None,
                 held: Mapping[str, Held] | None = None):
        self.state = state
        self.held: dict[str, Held] = dict(held or {})  # phones a rollout holds back (firmware)
        self.resolver = Resolver(state)
        self.fleet_secret = state.secrets.resolve(state.provisioning.value.fleet.secret)
        self.addressing = Addressing(state.provisioning.value, self.fleet_secret)
        self.cache = cache
        self.cache_keys: set[str] = set()  # keys used in this run, for RenderCache.retain
        self._resolved: dict[str, ResolvedDevice] | None = None
        self._last: tuple[str | None, dict[str, bytes]] | None = None
        self.warnings: set[Problem] = set()
        # (mac, target) -> (input, cache key), computed by the parallel pass
        self._inputs: dict[tuple[str, str], tuple[RenderInput, str | None]] = {}
        self._prerendered: dict[tuple[str, str], Rendered] = {}  # (mac, target): from workers
        # progress(done, total) of render_target, in phones (the CLI's progress display)
        self.progress: Callable[[int, int], None] | None = None
        self._done = 0
        self.cancelled: Callable[[], bool] | None = None  # polled between phones (SIGTERM)

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Interrupted("stopped while rendering the desired state")

    def resolved(self) -> dict[str, ResolvedDevice]:
        if self._resolved is None:
            problems: list[Problem] = []
            out = {}
            for mac in self.state.devices:
                try:
                    out[mac] = self.resolver.resolve(mac)
                except ConfigError as exc:
                    problems += exc.problems
            problems += sip_user_collisions(out.values())
            if problems:
                raise ConfigError(problems)
            for mac, held in self.held.items():
                if mac in out:
                    out[mac] = out[mac].holding(held)
            self._resolved = out
        return self._resolved

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
        resolved = self.resolved()
        wanted = resolved.values() if macs is None else [resolved[m] for m in macs]
        problems: list[Problem] = []
        files: dict[str, Artifact] = {}
        served = [d for d in wanted if serves(spec, d.customer)]
        self._done = 0
        self._render_misses_in_parallel(served, target)
        for i, device in enumerate(served):
            if i % 256 == 0:
                self._check_cancelled()
            counted = (device.mac, target) in self._prerendered  # the workers count theirs
            try:
                for artifact in self.render_device(device, target):
                    files[artifact.path] = artifact
            except ConfigError as exc:
                problems += exc.problems
            if not counted:
                self._tick(len(served))
        if problems:
            raise ConfigError(problems)
        return dict(sorted(files.items()))

    def _render_misses_in_parallel(self, devices: list[ResolvedDevice], target: str) -> None:
        """Render the phones the cache does not know in worker processes, when there are many.

        The workers are forked (they inherit the resolved state) and send back bytes; the
        results wait in `_prerendered` for render_device. Problems are left for render_device
        to find again in this process, so errors read the same either way.
        """
        workers = render_processes()
        if workers < 2 or len(devices) < PARALLEL_MIN:
            return
        misses: list[tuple[str, str, RenderInput]] = []
        for device in devices:
            try:
                rin = self.render_input(device, target)
            except ConfigError:
                continue
            key = self.cache.key(rin) if self.cache is not None else None
            self._inputs[(device.mac, target)] = (rin, key)
            if key is None or self.cache is None or self.cache.get(key) is None:
                misses.append((device.mac, target, rin))
        if len(misses) < PARALLEL_MIN:
            return
        global _WORKER, _WORK
        _WORKER, _WORK = self, misses
        chunk = max(50, len(misses) // (workers * 8))
        spans = [(i, i + chunk) for i in range(0, len(misses), chunk)]
        gc.freeze()  # the workers' collector must not touch (and so copy) the inherited state
        try:
            with multiprocessing.get_context("fork").Pool(workers, _worker_signals) as pool:
                batches = pool.imap_unordered(_render_batch, spans)
                while True:
                    # Leaving the block terminates the workers. A stop is seen even while a
                    # batch is out (SIGTERM to the whole service may have ended its worker).
                    self._check_cancelled()
                    try:
                        done = batches.next(timeout=0.5)
                    except multiprocessing.TimeoutError:
                        continue
                    except StopIteration:
                        break
                    self._prerendered.update(done)
                    self._tick(len(devices), len(done))
        finally:
            gc.unfreeze()
            _WORKER, _WORK = None, []

    def _tick(self, total: int, n: int = 1) -> None:
        self._done += n
        if self.progress is not None:
            self.progress(self._done, total)

    def render_device(self, device: ResolvedDevice, target: str) -> list[Artifact]:
        """The files of one phone on one target (plus its firmware binary when pinned)."""
        prepared = self._inputs.pop((device.mac, target), None)
        if prepared is None:
            rin = self.render_input(device, target)
            key = self.cache.key(rin) if self.cache is not None else None
        else:
            rin, key = prepared
        directory = self.directory(device)
        version = rin.firmware.version if rin.firmware else None

        def path(name: str) -> str:
            return f"{directory}/{name}" if directory else name

        hit = self.cache.get(key) if self.cache is not None and key else None

        def loader(name: str) -> Callable[[], bytes]:
            return lambda: self._rendered_again(key, device, rin)[name]

        artifacts = []
        if hit is not None:
            for name, sha, size in hit:
                artifacts.append(Artifact(
                    path(name), sha, size, device=device.mac, firmware=version,
                    loader=loader(name)))
        else:
            files = (self._prerendered.pop((device.mac, target), None)
                     or self._render_files(device, rin))
            entry = []
            for name, data in files:
                sha = hashlib.sha256(data).hexdigest()
                artifacts.append(Artifact(path(name), sha, len(data), data, device=device.mac,
                                          firmware=version))
                entry.append([name, sha, len(data)])
            if self.cache is not None and key:
                self.cache.put(key, entry)
        if key:
            self.cache_keys.add(key)
        if rin.firmware is not None:
            artifacts.append(self._firmware_artifact(device, target))
        return artifacts

    def _rendered_again(self, key: str | None, device: ResolvedDevice,
                        rin: RenderInput) -> dict[str, bytes]:
        """Bytes of a cached phone's files; the last phone is kept, as apply asks file by file."""
        if self._last is None or self._last[0] != key:
            self._last = (key, dict(self._render_files(device, rin)))
        return self._last[1]

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

        def secret(ref: str, file: str, line: int, field: str) -> str:
            try:
                return self.state.secrets.phone_value(ref, mac=device.mac)
            except MissingSecret as exc:
                problems.append(Problem(file, line, field, str(exc)))
                return ""

        params = _resolve_refs(device.params, lambda ref, key: secret(
            ref, *(_origin(device.origins, key, located)), key))
        lines = []
        for line in device.lines:
            a_file, a_line = line.at("password") or _origin(line.origins, "", located)
            password = secret(line.password_ref, a_file, a_line, f"{line.account}.password")
            line_params = _resolve_refs(line.params, lambda ref, key, o=line.origins: secret(
                ref, *(_origin(o, key, located)), key))
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
        supported = vendors.get(device.vendor).supported
        for key in device.params:
            if key != "raw" and key not in supported and device.params[key] not in (None, [], {}):
                origin = device.origins.get(key) or next(
                    (o for k, o in device.origins.items() if k.startswith(key + ".")), None)
                file, line = (origin.file, origin.line) if origin else (device.located.file, 0)
                self.warnings.add(Problem(
                    file, line, key, f"{device.device.model} ({device.mac}) cannot express "
                    f"parameter {key!r}; it is left out of this phone's files", "warning"))

    def _firmware_artifact(self, device: ResolvedDevice, target: str) -> Artifact:
        """The binary a pin names, once per target in its shared firmware folder."""
        image = device.firmware
        assert image is not None
        located = device.located
        spec = self.state.provisioning.value.targets[target]
        path = f"{spec.firmware_dir}/{image.file}"
        if image.source is None:
            origin = device.firmware_origin
            raise ConfigError([Problem(origin.file if origin else located.file,
                                       origin.line if origin else 0, "source",
                                       f"firmware {image.file} has no source to publish")])
        try:  # from the revision's tree when a revision was asked for
            found = self.state.source.repo_file(image.source)
        except RepoFileError as exc:
            raise ConfigError([Problem(str(image.source), 0, "source",
                                       f"firmware binary missing: {exc}")]) from exc
        return Artifact(path, image.sha256, found.size, source=Path(image.source),
                        loader=found.read)


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
