"""Resolve: layer the parameters of every phone, remembering where each value came from.

Layers, lowest first: defaults < vendor < model < profile < profile model < customer < device <
line. A null or "-" at a layer inherits from the layer below; dictionaries (sip, ntp, vlan, ...)
merge key by key, lists (codecs, keys) replace. Pure: no I/O, secrets stay references.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import vendors
from reconciler.core.errors import ConfigError, Problem
from reconciler.desired.schema import Assignment, Device, FirmwareImage, Rollout
from reconciler.desired.validate import DesiredState, Located, extension_for, strip_inherit
from vendors.base import ModelInfo


class Origin:
    """Where a resolved value was written: the layer, the file and the line.

    The line is looked up only when asked for (`Origin.at`): resolving 100,000 phones makes
    millions of origins and reads a handful (explain, a problem, a warning), so a cached file's
    line marks are never decoded for the rest. Never mutated.
    """

    __slots__ = ("layer", "_where", "_path", "_line")

    def __init__(self, layer: str, file: str, line: int):
        self.layer = layer
        self._where: Any = file
        self._path: tuple[Any, ...] | None = None
        self._line: int | None = line

    @classmethod
    def at(cls, layer: str, located: Located[Any], path: tuple[Any, ...]) -> Origin:
        origin = cls.__new__(cls)
        origin.layer, origin._where, origin._path, origin._line = layer, located, path, None
        return origin

    @property
    def file(self) -> str:
        return str(self._where if self._path is None else self._where.file)

    @property
    def line(self) -> int:
        if self._line is None:
            self._line = int(self._where.line(*(self._path or ())))
        return self._line

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Origin):
            return NotImplemented
        return (self.layer, self.file, self.line) == (other.layer, other.file, other.line)

    def __hash__(self) -> int:
        return hash((self.layer, self.file, self.line))

    def __repr__(self) -> str:
        return f"Origin({self.layer!r}, {self.file!r}, {self.line!r})"

    def __str__(self) -> str:
        return f"{self.layer} ({self.file}:{self.line})"


@dataclass(frozen=True)
class ResolvedLine:
    port: int
    account: str
    extension: str
    auth_user: str
    display_name: str
    password_ref: str
    params: dict[str, Any]
    origins: dict[str, Origin]
    assignment: Located[Assignment] | None = None  # where the account is written
    entry: int = 0  # the index of this port in the assignment's devices

    def at(self, field: str | None = None) -> tuple[str, int] | None:
        """file:line of one of the assignment's fields, else of this port's devices entry."""
        if self.assignment is None:
            return None
        path = (field,) if field else ("devices", self.entry)
        return self.assignment.file, self.assignment.line(*path)


@dataclass(frozen=True)
class FirmwareRollout:
    """A firmware choice that reaches its phones in waves (docs/rollouts.md): the rollout of
    the pin that chose the version, else the rollout of the version's catalog entry."""

    scope: str  # what it is attached to, stable across edits elsewhere in the file
    subject: str  # for people: "firmware 108.86.0.95 for yealink/T46U (pin)"
    rollout: Rollout
    file: str
    line: int


@dataclass(frozen=True)
class Held:
    """The firmware a phone keeps while its wave of a rollout is not published."""

    image: FirmwareImage | None  # None: the installed firmware (no firmware key)
    why: str  # "rollout 3f2a9c01b7e4: wave 3/3 not yet published"


@dataclass(frozen=True)
class ResolvedDevice:
    mac: str
    device: Device
    located: Located[Device]
    model: ModelInfo
    customer: str | None  # allocated customer, else the customer of its accounts, else pool
    params: dict[str, Any]
    origins: dict[str, Origin]
    lines: tuple[ResolvedLine, ...]
    user_owned: frozenset[str]
    firmware: FirmwareImage | None  # what its files pin now (held back by a rollout, or wanted)
    firmware_origin: Origin | None
    firmware_wanted: FirmwareImage | None = None  # what the desired state chooses ...
    wanted_origin: Origin | None = None  # ... and where
    rollout: FirmwareRollout | None = None  # the rollout that governs the wanted version

    @property
    def vendor(self) -> str:
        return self.device.vendor

    def holding(self, held: Held | None) -> ResolvedDevice:
        """This phone with the firmware it keeps (held) or the one it wants (None)."""
        if held is None:
            if self.firmware == self.firmware_wanted:
                return self
            return replace(self, firmware=self.firmware_wanted, firmware_origin=self.wanted_origin)
        where = self.rollout
        origin = Origin(f"held ({held.why})", where.file if where else self.located.file,
                        where.line if where else 0)
        return replace(self, firmware=held.image, firmware_origin=origin)


Layer = tuple[str, dict[str, Any], Located[Any], tuple[str | int, ...]]


@dataclass(frozen=True)
class _Port:
    port: int
    extension: str
    assignment: Located[Assignment]
    entry: int  # index in the assignment's devices list


def merge(params: dict[str, Any], origins: dict[str, Origin], layer: dict[str, Any],
          origin_of: Any, prefix: tuple[str, ...] = ()) -> None:
    """Merge one layer into params in place; origin_of(path) -> Origin for a leaf path.

    Copy-on-write: a nested map is copied before the layer changes it, so phones can share the
    maps and values of the layers below (resolved parameters are never mutated afterwards).
    """
    for key, value in strip_inherit(layer).items():
        path = (*prefix, key)
        current = params.get(key)
        if isinstance(value, dict):
            current = params[key] = dict(current) if isinstance(current, dict) else {}
            merge(current, origins, value, origin_of, path)
            continue
        if isinstance(current, dict):  # a map replaced by a value: forget its leaves' origins
            below = ".".join(path) + "."
            for old in [k for k in origins if k.startswith(below)]:
                del origins[old]
        params[key] = value
        origins[".".join(path)] = origin_of(path)


def _apply(layers: list[Layer], params: dict[str, Any], origins: dict[str, Origin]) -> None:
    for name, values, located, base in layers:
        if values:
            merge(params, origins, values,
                  lambda path, lo=located, b=base, n=name: Origin.at(n, lo, (*b, *path)))


def _customer_layer(state: DesiredState, customer: str | None) -> list[Layer]:
    located = state.customers.get(customer or "")
    if located is None:
        return []
    c = located.value
    layers: list[Layer] = []
    if c.sip is not None:
        sip = {"server": c.sip.domain, "transport": c.sip.transport, "port": c.sip.port,
               "outbound_proxy": c.sip.outbound_proxy}
        layers.append(("customer", {"sip": sip}, located, ()))
    layers.append(("customer", c.params, located, ("params",)))
    return layers


class Resolver:
    """Resolves devices, caching the shared layers (defaults .. customer) per combination."""

    def __init__(self, state: DesiredState):
        self.state = state
        self._shared: dict[tuple[str, str, str | None],
                           tuple[dict[str, Any], dict[str, Origin]]] = {}
        self.account_customer: dict[str, str] = {}  # mac -> customer of its first account
        self.accounts: dict[str, list[Located[Assignment]]] = {}  # mac -> accounts, in order
        accounts, account_customer = self.accounts, self.account_customer
        for located in state.assignments:  # 50,000 accounts: a tight loop
            a = located.value
            refs = a.devices
            customer = a.customer
            for mac in (refs[0].mac,) if len(refs) == 1 else dict.fromkeys([r.mac for r in refs]):
                mine = accounts.get(mac)
                if mine is None:
                    accounts[mac] = [located]
                    account_customer[mac] = customer
                else:
                    mine.append(located)

    def _ports(self, mac: str) -> list[_Port]:
        """The ports of the phone's accounts, in the order they are written (on demand: the
        phones of a run that are not rendered never need theirs)."""
        ports = []
        for located in self.accounts.get(mac, ()):
            a = located.value
            phones = list(dict.fromkeys(ref.mac for ref in a.devices))
            extension = extension_for(a.extension, phones.index(mac))
            ports += [_Port(ref.port, extension, located, i)
                      for i, ref in enumerate(a.devices) if ref.mac == mac]
        return ports

    def customer(self, mac: str) -> str | None:
        """The effective customer: allocated, else that of the phone's first account."""
        return self.state.devices[mac].value.customer or self.account_customer.get(mac)

    def shared(self, d: Device, customer: str | None
               ) -> tuple[dict[str, Any], dict[str, Origin]]:
        """Parameters and origins of the layers below the device (shared; never mutate)."""
        return self._shared_layers(d, customer)

    def _shared_layers(self, d: Device, customer: str | None
                       ) -> tuple[dict[str, Any], dict[str, Origin]]:
        key = (d.model, d.profile, customer)
        cached = self._shared.get(key)
        if cached is None:
            state = self.state
            defaults = state.defaults
            profile = state.profiles[d.profile]
            layers: list[Layer] = [
                ("defaults", defaults.value.params, defaults, ("params",)),
                ("vendor", defaults.value.model_params.get(d.vendor, {}), defaults,
                 ("model_params", d.vendor)),
                ("model", defaults.value.model_params.get(d.model, {}), defaults,
                 ("model_params", d.model)),
                ("profile", profile.value.params, profile, ("params",)),
                ("profile model", profile.value.model_params.get(d.model_name, {}), profile,
                 ("model_params", d.model_name)),
                *_customer_layer(state, customer),
            ]
            params: dict[str, Any] = {}
            origins: dict[str, Origin] = {}
            _apply(layers, params, origins)
            cached = self._shared[key] = (params, origins)
        return cached

    def resolve(self, mac: str) -> ResolvedDevice:
        state = self.state
        located = state.devices[mac]
        d = located.value
        customer = d.customer or self.account_customer.get(mac)
        shared_params, shared_origins = self._shared_layers(d, customer)
        params = dict(shared_params)
        origins = dict(shared_origins)
        _apply([("device", d.params, located, ("params",))], params, origins)

        lines = []
        for port in sorted(self._ports(mac), key=lambda p: p.port):
            a = port.assignment.value
            line_params = dict(params)
            line_origins = dict(origins)
            _apply([("line", a.params, port.assignment, ("params",))], line_params, line_origins)
            lines.append(ResolvedLine(
                port=port.port, account=a.account, extension=port.extension,
                auth_user=a.auth_user or port.extension,
                display_name=a.display_name or port.extension, password_ref=a.password,
                params=line_params, origins=line_origins,
                assignment=port.assignment, entry=port.entry,
            ))
        profile = state.profiles[d.profile].value
        firmware, fw_origin, rollout = self._firmware(located, customer)
        return ResolvedDevice(
            mac=mac, device=d, located=located,
            model=vendors.get(d.vendor).models[d.model_name], customer=customer,
            params=params, origins=origins, lines=tuple(lines),
            user_owned=frozenset(profile.user_owned), firmware=firmware,
            firmware_origin=fw_origin, firmware_wanted=firmware, wanted_origin=fw_origin,
            rollout=rollout,
        )

    def _firmware(self, located: Located[Device], customer: str | None
                  ) -> tuple[FirmwareImage | None, Origin | None, FirmwareRollout | None]:
        """defaults < model pin < profile < customer pin < device; "installed" = no firmware.

        The rollout is the one of the pin that made the choice, else the catalog entry's."""
        state = self.state
        d = located.value
        choice = state.defaults.value.firmware
        origin = Origin("defaults", state.defaults.file, state.defaults.line("firmware"))
        chosen_by: Located[Any] | None = None
        for pin in state.pins:
            if d.model in pin.value.models and pin.value.customer is None:
                choice, origin = pin.value.version, Origin("pin", pin.file, pin.line("version"))
                chosen_by = pin
        profile = state.profiles[d.profile]
        if profile.value.firmware is not None:
            choice = profile.value.firmware
            origin = Origin("profile", profile.file, profile.line("firmware"))
            chosen_by = None
        for pin in state.pins:
            if d.model in pin.value.models and pin.value.customer == customer and customer:
                choice = pin.value.version
                origin = Origin("customer pin", pin.file, pin.line("version"))
                chosen_by = pin
        if d.firmware is not None:
            choice, origin = d.firmware, Origin("device", located.file, located.line("firmware"))
            chosen_by = None
        if choice == "installed":
            return None, origin, None
        for img in state.catalog:
            v = img.value
            if v.vendor == d.vendor and d.model_name in v.models and v.version == choice:
                return v, origin, _rollout(chosen_by, img)
        raise ConfigError([Problem(origin.file, origin.line, "firmware",
                                   f"firmware {choice} for {d.model} is not in the catalog")])

    def all(self) -> list[ResolvedDevice]:
        return [self.resolve(mac) for mac in self.state.devices]


def _rollout(pin: Located[Any] | None, image: Located[FirmwareImage]) -> FirmwareRollout | None:
    if pin is not None and pin.value.rollout is not None:
        p = pin.value
        who = f" of customer {p.customer}" if p.customer else ""
        return FirmwareRollout(
            f"pin {','.join(sorted(p.models))} customer={p.customer or '*'}",
            f"firmware {p.version} for {', '.join(p.models)}{who} (pin, {pin.file}:"
            f"{pin.line('rollout')})", p.rollout, pin.file, pin.line("rollout"))
    v = image.value
    if v.rollout is None:
        return None
    return FirmwareRollout(
        f"catalog {v.vendor} {v.version}",
        f"firmware {v.version} for {v.vendor} {', '.join(v.models)} (catalog, {image.file}:"
        f"{image.line('rollout')})", v.rollout, image.file, image.line("rollout"))


def sip_user_collisions(devices: Iterable[ResolvedDevice]) -> list[Problem]:
    """Two lines that would register the same user at the same SIP domain (acme/91201 next to
    acme/201's second phone, which registers as 91201): the registrar cannot tell them apart,
    so calls and voicemail go to whichever registered last."""
    first: dict[tuple[str, str], tuple[ResolvedDevice, ResolvedLine]] = {}
    problems: list[Problem] = []
    for device in devices:
        for line in device.lines:
            domain = str(line.params.get("sip", {}).get("server") or "")
            if not domain:
                continue  # reported by the renderer: a line needs a SIP server
            key = (line.extension.lower(), domain.lower())
            seen = first.setdefault(key, (device, line))
            if seen[1] is line:
                continue
            other_device, other = seen
            file, line_no = line.at() or (device.located.file, device.located.line("mac"))
            o_file, o_line = other.at() or (other_device.located.file, 0)
            problems.append(Problem(
                file, line_no, "devices",
                f"{line.account} on {device.mac} port {line.port} registers as "
                f"{line.extension}@{domain}, as does {other.account} on {other_device.mac} "
                f"port {other.port} ({o_file}:{o_line}); a registrar cannot tell them apart "
                "(choose another extension)"))
    return problems
