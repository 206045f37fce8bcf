"""Validate: every file against its pydantic model, then the cross-file rules.

Every problem is collected (not just the first) and carries file:line and field. The result is a
`DesiredState`: typed, checked, with each object's location kept for `explain` and errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

import vendors
from reconciler.core import layout
from reconciler.core.errors import ConfigError, Problem
from reconciler.core.names import did_you_mean
from reconciler.desired.firmware import check_firmware_sources
from reconciler.desired.load import (
    Cancelled,
    Doc,
    Key,
    Limits,
    Path_,
    Source,
    check_cancelled,
    oversize_problem,
    parse_yaml,
)
from reconciler.desired.schema import (
    INHERIT,
    SECRET_REF,
    Assignment,
    Customer,
    Defaults,
    Device,
    FirmwareFile,
    FirmwareImage,
    FirmwarePin,
    Params,
    Profile,
    Provisioning,
)
from reconciler.desired.secrets import MissingSecret, Redaction, Secrets

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Located(Generic[T]):
    """A validated object, where it was written, and a digest of what was written there."""

    value: T
    doc: Doc
    base: Path_ = ()
    digest: str = field(default="", compare=False, repr=False)  # of its YAML data (FileResult)
    refs: tuple[str, ...] = field(default=(), compare=False, repr=False)  # secret refs inside

    @property
    def file(self) -> str:
        return self.doc.file

    def line(self, *path: Key) -> int:
        return self.doc.line((*self.base, *path))


@dataclass
class DesiredState:
    source: Source
    provisioning: Located[Provisioning]
    defaults: Located[Defaults]
    profiles: dict[str, Located[Profile]]
    customers: dict[str, Located[Customer]]
    devices: dict[str, Located[Device]]  # by canonical MAC, in file order
    assignments: list[Located[Assignment]]
    catalog: list[Located[FirmwareImage]]
    pins: list[Located[FirmwarePin]]
    secrets: Secrets
    warnings: list[Problem] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.source.root

    @property
    def revision(self) -> str:
        return self.source.revision


def strip_inherit(value: Any) -> Any:
    """Drop null and "-" values: at a layer they mean "inherit from the layer below"."""
    if isinstance(value, dict):
        return {k: strip_inherit(v) for k, v in value.items() if v is not None and v != INHERIT}
    return value


def _problems(exc: ValidationError, doc: Doc, base: Path_ = ()) -> list[Problem]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        name = ".".join(str(x) for x in loc)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "required field is missing"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        out.append(Problem(doc.file, doc.line((*base, *loc)), name, message))
    return out


def _model(cls: type[T], data: Any, doc: Doc, problems: list[Problem],
           base: Path_ = ()) -> T | None:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc, doc, base))
        return None


def _params(params: dict[str, Any], doc: Doc, base: Path_, problems: list[Problem]) -> None:
    """Check one layer's parameters against the vendor-neutral schema."""
    if params:
        _model(Params, strip_inherit(params), doc, problems, base)


@dataclass(frozen=True)
class FileResult:
    """One file parsed and checked on its own: a function of its path, its bytes and the load
    limits only, so it can be cached by content (desired/filecache.py). `objects` are what the
    file defines, located, each with the digest of its YAML data and the secret references in
    it (render/keys.py keys phones by them)."""

    doc: Doc | None  # None when the file is not valid YAML
    objects: tuple[Located[Any], ...] = ()
    problems: tuple[Problem, ...] = ()

    def with_doc(self, doc: Doc) -> FileResult:
        """The same objects, located in another Doc of the same file (a cached one)."""
        return FileResult(doc, tuple(Located(x.value, doc, x.base, x.digest, x.refs)
                                     for x in self.objects), self.problems)


FileValidator = Callable[[str, bytes, Limits, "Cancelled | None"], FileResult]


def data_digest(value: Any) -> str:
    """Digest of parsed YAML data. repr keeps types apart (1, "1", 1.0, True) and key order."""
    return hashlib.sha1(repr(value).encode("utf-8", "surrogatepass")).hexdigest()


def secret_refs(value: Any) -> tuple[str, ...]:
    """Every secret reference among the values of some YAML data, in order."""
    out: list[str] = []
    _collect_refs(value, out)
    return tuple(out)


def _collect_refs(value: Any, out: list[str]) -> None:
    # not a closure: a recursive one is a reference cycle, garbage only the collector frees
    if isinstance(value, dict):
        for item in value.values():
            _collect_refs(item, out)
    elif isinstance(value, list):
        for item in value:
            _collect_refs(item, out)
    elif isinstance(value, str) and SECRET_REF.match(value):
        out.append(value)


def validate_file(rel: str, data: bytes, limits: Limits,
                  cancelled: Cancelled | None = None) -> FileResult:
    """Parse one file and check it against its model (the per-file half of validation)."""
    try:
        doc = parse_yaml(rel, data, limits, cancelled)
    except ConfigError as exc:
        return FileResult(None, (), tuple(exc.problems))
    problems: list[Problem] = []
    found: list[tuple[Path_, BaseModel, Any]] = []  # (base, model, its data)
    body = doc.data
    if rel == layout.PROVISIONING:
        prov = _model(Provisioning, body or {}, doc, problems)
        if prov is not None:
            found.append(((), prov, body))
    elif rel == layout.DEFAULTS:
        defaults = _model(Defaults, body or {}, doc, problems)
        if defaults is not None:
            found.append(((), defaults, body))
            _params(defaults.params, doc, ("params",), problems)
            for key, layer in defaults.model_params.items():
                _params(layer, doc, ("model_params", key), problems)
    elif rel.startswith(layout.PROFILES):
        profile = _model(Profile, body or {}, doc, problems)
        if profile is not None:
            found.append(((), profile, body))
            _params(profile.params, doc, ("params",), problems)
            for key, layer in profile.model_params.items():
                _params(layer, doc, ("model_params", key), problems)
    elif rel.startswith(layout.CUSTOMERS):
        customer = _model(Customer, body or {}, doc, problems)
        if customer is not None:
            found.append(((), customer, body))
            _params(customer.params, doc, ("params",), problems)
    elif rel.startswith(layout.DEVICES):
        for i, item in _items(doc, problems):
            dev = _model(Device, item, doc, problems, (i,))
            if dev is not None:
                found.append(((i,), dev, item))
                _params(dev.params, doc, (i, "params"), problems)
    elif rel.startswith(layout.ASSIGNMENTS):
        for i, item in _items(doc, problems):
            acc = _model(Assignment, item, doc, problems, (i,))
            if acc is not None:
                found.append(((i,), acc, item))
                _params(acc.params, doc, (i, "params"), problems)
    elif rel.startswith(layout.FIRMWARE):
        fw = _model(FirmwareFile, body or {}, doc, problems)
        if fw is not None:
            for part, models in (("catalog", fw.catalog), ("pins", fw.pins)):
                for i, obj in enumerate(models):
                    found.append(((part, i), obj, body[part][i]))
    objects = tuple(Located(obj, doc, base, data_digest(item), secret_refs(item))
                    for base, obj, item in found)
    return FileResult(doc, objects, tuple(problems))


def load_state(source: Source, environ: dict[str, str] | None = None, *,
               redacting: bool = False, allow_unserved: bool = False,
               state_dir: Path | None = None, redaction: Redaction | None = None,
               cancelled: Cancelled | None = None,
               validate: FileValidator | None = None,
               secrets_index: Path | None = None) -> DesiredState:
    """Parse and validate everything; raise ConfigError with every problem found.

    `allow_unserved`: a phone no target serves is a warning, not an error. `state_dir` keeps
    the firmware digests (by size and mtime, or blob id). `redaction` is shared by the two
    sides of a comparison. `cancelled` is polled while parsing (raises Interrupted).
    `validate` checks one file on its own (validate_file); a cache of its results by content
    (desired/filecache.py) may stand in for it. The cross-file rules always run on the whole
    state. `secrets_index`: where the digests of the secrets file's values are kept by its
    content (secrets.SecretsIndex), so that an unchanged file is not parsed.
    """
    check_file = validate or validate_file
    problems: list[Problem] = [oversize_problem(rel, size, source.limits)
                               for rel, size in source.oversize.items()]
    results: dict[str, FileResult] = {}
    for rel, data in source.files.items():
        result = check_file(rel, data, source.limits, cancelled)
        problems.extend(result.problems)
        if result.doc is not None:
            results[rel] = result

    def located(rel: str, base: Path_ = ()) -> list[Located[Any]]:
        result = results.get(rel)
        if result is None:
            return []
        if not base:
            return list(result.objects)
        return [x for x in result.objects if x.base[:len(base)] == base]

    prov_list = located(layout.PROVISIONING)
    if ("provisioning.yaml" not in source.files
            and "provisioning.yaml" not in source.oversize):
        problems.append(Problem("provisioning.yaml", 0, "", "file is missing"))
    defaults_list = located(layout.DEFAULTS)
    if defaults_list:
        defaults = defaults_list[0]
    else:
        doc = results[layout.DEFAULTS].doc if layout.DEFAULTS in results else None
        empty = Doc("defaults.yaml", {}, {(): 1})
        defaults = Located(Defaults(), doc or empty, (), data_digest(None))

    profiles = _named(results, layout.PROFILES, "name", problems, located)
    customers = _named(results, layout.CUSTOMERS, "id", problems, located)
    devices: dict[str, Located[Device]] = {}
    assignments: list[Located[Assignment]] = []
    catalog: list[Located[FirmwareImage]] = []
    pins: list[Located[FirmwarePin]] = []

    for rel in results:
        check_cancelled(cancelled)
        if rel.startswith(layout.DEVICES):
            for here in located(rel):
                dev = here.value
                if dev.mac in devices:
                    first = devices[dev.mac]
                    problems.append(Problem(rel, here.line("mac"), "mac",
                                            f"duplicate MAC {dev.mac}: also in "
                                            f"{first.file}:{first.line('mac')}"))
                    continue
                devices[dev.mac] = here
        elif rel.startswith(layout.ASSIGNMENTS):
            assignments += located(rel)
        elif rel.startswith(layout.FIRMWARE):
            catalog += located(rel, ("catalog",))
            pins += located(rel, ("pins",))

    if not prov_list:
        raise ConfigError(problems)
    prov = prov_list[0]
    secrets = secrets_for(source, prov.value, environ, redacting=redacting,
                          redaction=redaction, index_dir=secrets_index)
    state = DesiredState(source, prov, defaults, profiles, customers,
                         devices, assignments, catalog, pins, secrets)
    problems += cross_check(state, allow_unserved=allow_unserved)
    problems += check_firmware_sources(state, state_dir)
    errors = [p for p in problems if p.severity == "error"]
    state.warnings = [p for p in problems if p.severity == "warning"]
    if errors:
        raise ConfigError(problems)
    return state


def secrets_for(source: Source, provisioning: Provisioning,
                environ: dict[str, str] | None = None, *, redacting: bool = False,
                redaction: Redaction | None = None, index_dir: Path | None = None) -> Secrets:
    """The secrets of a desired state, as provisioning.yaml says where they live."""
    host_refs = [(ref, ".".join(map(str, where)))
                 for ref, where in _provisioning_refs(provisioning)]
    return Secrets(source.root, provisioning.secrets.file, environ, redacting=redacting,
                   fleet_secret=provisioning.fleet.secret,
                   age_file=provisioning.secrets.age_file,
                   file_dirs=provisioning.secrets.file_dirs, source=source,
                   host_refs=host_refs, redaction=redaction, index_dir=index_dir,
                   env_names=provisioning.secrets.env)


def _items(doc: Doc, problems: list[Problem]) -> Iterable[tuple[int, Any]]:
    if doc.data is None:
        return []
    if not isinstance(doc.data, list):
        problems.append(Problem(doc.file, 1, "", "must be a list"))
        return []
    return enumerate(doc.data)


def _named(results: dict[str, FileResult], prefix: str, key: str, problems: list[Problem],
           located: Callable[[str], list[Located[Any]]]) -> dict[str, Located[Any]]:
    out: dict[str, Located[Any]] = {}
    for rel in results:
        if not rel.startswith(prefix):
            continue
        for here in located(rel):
            name = getattr(here.value, key)
            if name in out:
                problems.append(Problem(rel, here.doc.line((key,)), key,
                                        f"duplicate {key} {name!r}: also in {out[name].file}"))
                continue
            out[name] = here
    return out


# --- cross-file rules ----------------------------------------------------------------------


def extension_for(extension: str, index: int) -> str:
    """The SIP user of an account's n-th phone: 201, 91201, 92201, ... 97201."""
    return extension if index == 0 else f"9{index}{extension}"


def cross_check(state: DesiredState, *, allow_unserved: bool = False) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append
    prov = state.provisioning
    policy = prov.value.policy

    for name, target in prov.value.targets.items():
        for cust in target.customers or []:
            if cust not in state.customers:
                add(Problem(prov.file, prov.line("targets", name, "customers"),
                            f"targets.{name}.customers", f"unknown customer {cust!r}"
                            f"{did_you_mean(cust, state.customers)}"))

    for ref in _provisioning_refs(prov.value):
        _check_secret(state, ref, prov, ref[1], problems, host=True)

    for prof in state.profiles.values():
        p = prof.value
        try:
            vendor = vendors.get(p.vendor)
        except KeyError:
            add(Problem(prof.file, prof.line("vendor"), "vendor",
                        f"unknown vendor {p.vendor!r} (known: {', '.join(vendors.KNOWN)})"))
            continue
        for i, model in enumerate(p.models):
            if model not in vendor.models:
                add(Problem(prof.file, prof.line("models", i), f"models.{i}",
                            f"unknown {p.vendor} model {model!r}"
                            f"{did_you_mean(model, vendor.models)}"))
        if p.params.get("admin_password"):
            _check_secret(state, (p.params["admin_password"], ("params", "admin_password")),
                          prof, ("params", "admin_password"), problems, device=True)

    if not state.devices:
        add(Problem("devices/", 0, "", "no devices in the desired state: refusing to treat an "
                    "empty inventory as 'remove everything'"))

    # The rules below read a phone's profile, model, customer and owned_by_customer only: a
    # combination found without a problem is not checked again (100,000 phones, a few
    # thousand combinations); one with a problem is, so that every phone is named.
    fine: set[tuple[str, str, str | None, bool]] = set()
    for mac, located in state.devices.items():
        d = located.value
        combo = (d.profile, d.model, d.customer, d.owned_by_customer)
        if combo in fine:
            continue
        before = len(problems)
        profile = state.profiles.get(d.profile)
        if profile is None:
            add(Problem(located.file, located.line("profile"), "profile",
                        f"unknown profile {d.profile!r}{did_you_mean(d.profile, state.profiles)}"))
        try:
            vendor = vendors.get(d.vendor)
        except KeyError:
            add(Problem(located.file, located.line("model"), "model",
                        f"unknown vendor {d.vendor!r} in model {d.model!r}"))
            continue
        if d.model_name not in vendor.models:
            add(Problem(located.file, located.line("model"), "model",
                        f"unknown model {d.model!r}"
                        f"{did_you_mean(d.model_name, vendor.models)} (known {d.vendor} "
                        f"models: {', '.join(sorted(vendor.models))})"))
        elif profile is not None and (profile.value.vendor != d.vendor
                                      or d.model_name not in profile.value.models):
            add(Problem(located.file, located.line("model"), "model",
                        f"model {d.model!r} is not one of profile {d.profile!r}'s "
                        f"({profile.value.vendor}: {', '.join(profile.value.models)})"))
        if d.customer is not None and d.customer not in state.customers:
            add(Problem(located.file, located.line("customer"), "customer",
                        f"unknown customer {d.customer!r}"
                        f"{did_you_mean(d.customer, state.customers)}"))
        if d.owned_by_customer and d.customer is None:
            add(Problem(located.file, located.line("owned_by_customer"), "owned_by_customer",
                        "a phone owned by a customer must name that customer"))
        customer = state.customers.get(d.customer or "")
        if customer and customer.value.status == "terminated" and d.owned_by_customer:
            add(Problem(located.file, located.line("mac"), "mac",
                        f"customer {d.customer!r} is terminated: its owned phone {mac} must be "
                        "removed from the inventory"))
        elif customer and customer.value.status == "terminated":
            add(Problem(located.file, located.line("customer"), "customer",
                        f"customer {d.customer!r} is terminated: its allocated phone {mac} must "
                        "return to the pool (provctl device move --pool)"))
        if len(problems) == before:
            fine.add(combo)

    _check_model_profiles(state, problems)
    _check_assignments(state, policy.max_phones_per_account, problems)
    _check_served(state, allow_unserved, problems)
    _check_firmware(state, problems)
    _check_rollouts(state, problems)
    return problems


def _check_rollouts(state: DesiredState, problems: list[Problem]) -> None:
    """A canary names a phone of the inventory: a typo would silently make no canary."""
    places: list[tuple[Any, Located[Any], Path_]] = []
    policy = state.provisioning.value.policy
    if policy.rollout is not None:
        places.append((policy.rollout, state.provisioning, ("policy", "rollout")))
    places += [(img.value.rollout, img, ("rollout",)) for img in state.catalog
               if img.value.rollout is not None]
    places += [(pin.value.rollout, pin, ("rollout",)) for pin in state.pins
               if pin.value.rollout is not None]
    logs = any(getattr(t, "access_log", None) for t in state.provisioning.value.targets.values())
    for rollout, located, base in places:
        g = rollout.gate
        if not logs and (g.fetched or g.reports_version or g.errors_max):
            problems.append(Problem(
                located.file, located.line(*base, "gate"), ".".join((*map(str, base), "gate")),
                "the gate reads what phones fetched, but no target names an access_log: "
                "nothing will be seen and the rollout will halt (docs/serving.md)", "warning"))
        for i, mac in enumerate(rollout.canary):
            if mac not in state.devices:
                problems.append(Problem(located.file, located.line(*base, "canary", i),
                                        ".".join((*map(str, base), "canary", str(i))),
                                        f"unknown device {mac} (not in devices/)"))


def _check_served(state: DesiredState, allow_unserved: bool, problems: list[Problem]) -> None:
    """A phone outside every target's `customers:` filter would silently get nothing."""
    targets = state.provisioning.value.targets.values()
    if any(t.customers is None for t in targets):
        return  # a target without a filter serves every phone
    account_customer: dict[str, str] = {}
    for assignment in state.assignments:
        for ref in assignment.value.devices:
            account_customer.setdefault(ref.mac, assignment.value.customer)
    served = {c for t in targets for c in t.customers or []}
    for mac, located in state.devices.items():
        customer = located.value.customer or account_customer.get(mac)
        if customer in served:
            continue
        whose = f"customer {customer!r}" if customer else "the pool (no customer)"
        problems.append(Problem(
            located.file, located.line("mac"), "mac",
            f"no target serves phone {mac} of {whose}: every target in provisioning.yaml has a "
            "customers: filter and none lists it (add it to one, or pass --allow-unserved)",
            "warning" if allow_unserved else "error"))


def _provisioning_refs(prov: Provisioning) -> list[tuple[str, Path_]]:
    refs: list[tuple[str, Path_]] = [(prov.fleet.secret, ("fleet", "secret"))]
    for name, svc in prov.redirect.items():
        for key in ("access_key", "secret", "key_id", "api_key"):
            value = getattr(svc, key, None)
            if value:
                refs.append((value, ("redirect", name, key)))
    for name, target in prov.targets.items():
        value = getattr(target, "key_passphrase", None)
        if value:
            refs.append((value, ("targets", name, "key_passphrase")))
    return refs


def _check_model_profiles(state: DesiredState, problems: list[Problem]) -> None:
    """model_profiles (defaults, customers): vendor/MODEL -> a profile that serves the model."""
    tables: list[tuple[Located[Defaults] | Located[Customer], dict[str, str]]] = [
        (state.defaults, state.defaults.value.model_profiles)]
    tables += [(c, c.value.model_profiles) for c in state.customers.values()]
    for located, table in tables:
        for model, name in table.items():
            where = located.line("model_profiles", model)
            fieldname = f"model_profiles.{model}"
            vendor_name, _, model_name = model.partition("/")
            profile = state.profiles.get(name)
            if profile is None:
                problems.append(Problem(located.file, where, fieldname,
                                        f"unknown profile {name!r}"
                                        f"{did_you_mean(name, state.profiles)}"))
            elif profile.value.vendor != vendor_name or model_name not in profile.value.models:
                problems.append(Problem(located.file, where, fieldname,
                                        f"model {model!r} is not one of profile {name!r}'s "
                                        f"({profile.value.vendor}: "
                                        f"{', '.join(profile.value.models)})"))


def _check_secret(state: DesiredState, ref: tuple[str, Path_], where: Located[Any],
                  path: Path_, problems: list[Problem], *, device: bool = False,
                  host: bool = False) -> None:
    try:
        state.secrets.check(ref[0], device=device, host=host)
    except MissingSecret as exc:  # located only now: 100,000 phones, few problems
        problems.append(Problem(where.file, where.line(*path), ".".join(map(str, path)),
                                str(exc)))


def _check_assignments(state: DesiredState, max_phones: int, problems: list[Problem]) -> None:
    """The accounts against the devices and each other (50,000 accounts: a tight loop; a
    line is looked up only for a problem)."""
    add = problems.append
    taken: dict[tuple[str, int], str] = {}
    device_customer: dict[str, tuple[str, str]] = {}
    lines_of: dict[str, int | None] = {}  # vendor/MODEL -> lines (None: reported elsewhere)
    customers, devices, secrets = state.customers, state.devices, state.secrets
    for located in state.assignments:
        a = located.value
        account_customer = a.customer
        customer = customers.get(account_customer)
        if customer is None:
            add(Problem(located.file, located.line("account"), "account",
                        f"unknown customer {account_customer!r} in account {a.account!r}"
                        f"{did_you_mean(account_customer, customers)}"))
        elif customer.value.status == "terminated":
            add(Problem(located.file, located.line("account"), "account",
                        f"customer {account_customer!r} is terminated: remove account "
                        f"{a.account!r}"))
        try:
            secrets.check(a.password)
        except MissingSecret as exc:
            add(Problem(located.file, located.line("password"), "password", str(exc)))
        refs = a.devices
        if len(refs) > max_phones:  # distinct phones are at most as many as the entries
            n = len(dict.fromkeys(ref.mac for ref in refs))
            if n > max_phones:
                add(Problem(located.file, located.line("devices"), "devices",
                            f"account {a.account} has {n} phones; at most {max_phones} "
                            f"(extensions {a.extension}, {extension_for(a.extension, 1)} … "
                            f"{extension_for(a.extension, max_phones - 1)})"))
        mine = (account_customer, a.account)
        for i, ref in enumerate(refs):
            mac = ref.mac
            dev = devices.get(mac)
            if dev is None:
                add(Problem(located.file, _device_line(located, i), f"devices.{i}",
                            f"unknown device {mac} (not in devices/)"))
                continue
            d = dev.value
            if d.customer is not None and d.customer != account_customer:
                what = "owned by" if d.owned_by_customer else "allocated to"
                add(Problem(located.file, _device_line(located, i), f"devices.{i}",
                            f"device {mac} is {what} customer {d.customer!r} and cannot be "
                            f"assigned to account {a.account} of customer {account_customer!r}"))
            first = device_customer.setdefault(mac, mine)
            if first[0] != account_customer:
                add(Problem(located.file, _device_line(located, i), f"devices.{i}",
                            f"device {mac} is also assigned to {first[1]} of another "
                            "customer"))
            model = d.model
            if model in lines_of:
                lines = lines_of[model]
            else:
                try:
                    lines = vendors.get(d.vendor).models[d.model_name].lines
                except KeyError:
                    lines = None
                lines_of[model] = lines
            if lines is None:
                continue  # reported with the device
            port = ref.port
            if port > lines:
                add(Problem(located.file, _device_line(located, i), f"devices.{i}.port",
                            f"{model} has {lines} line(s); port {port} does not exist"))
            key = (mac, port)
            if key in taken:
                add(Problem(located.file, _device_line(located, i), f"devices.{i}",
                            f"port {port} of {mac} is already assigned to {taken[key]}"))
            else:
                taken[key] = a.account


def _device_line(located: Located[Assignment], i: int) -> int:
    return located.line("devices", i)


def _check_firmware(state: DesiredState, problems: list[Problem]) -> None:
    add = problems.append
    known: set[tuple[str, str, str]] = set()  # (vendor, model, version)
    for located in state.catalog:
        img = located.value
        try:
            vendor = vendors.get(img.vendor)
        except KeyError:
            add(Problem(located.file, located.line("vendor"), "vendor",
                        f"unknown vendor {img.vendor!r}"))
            continue
        try:
            vendor.firmware_version(img.version)
        except ValueError as exc:
            add(Problem(located.file, located.line("version"), "version", str(exc)))
            continue
        for i, model in enumerate(img.models):
            info = vendor.models.get(model)
            if info is None:
                add(Problem(located.file, located.line("models", i), f"models.{i}",
                            f"unknown {img.vendor} model {model!r}"))
                continue
            why = vendor.check_firmware(info, img.version)
            if why:
                add(Problem(located.file, located.line("version"), "version", why))
            known.add((img.vendor, model, img.version))

    def check_choice(choice: str | None, models: Iterable[str], where: Located[Any],
                     fieldname: str) -> None:
        if choice is None or choice == "installed":
            return
        for model in models:
            vendor, _, name = model.partition("/")
            if (vendor, name, choice) not in known:
                add(Problem(where.file, where.line(fieldname), fieldname,
                            f"firmware {choice} for {model} is not in the firmware catalog"))

    for pin in state.pins:
        check_choice(pin.value.version, pin.value.models, pin, "version")
        if pin.value.customer and pin.value.customer not in state.customers:
            add(Problem(pin.file, pin.line("customer"), "customer",
                        f"unknown customer {pin.value.customer!r}"))
    for prof in state.profiles.values():
        p = prof.value
        check_choice(p.firmware, [f"{p.vendor}/{m}" for m in p.models], prof, "firmware")
    for dev in state.devices.values():
        check_choice(dev.value.firmware, [dev.value.model], dev, "firmware")
