"""The pipeline, in order:

    load → validate → resolve → render → observe → diff → plan → apply → record

`load_desired` does load..render (pure once the files are read), `observe` only reads targets,
`make_plan` is pure, `apply_plan` is the only writer and consumes a plan, `record` writes
receipts and status. The CLI calls `plan()` or `apply()`; nothing else orchestrates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import vendors
from reconciler.core.errors import (
    ConfigError,
    LockHeld,
    NotFound,
    OperationError,
    PlanMismatch,
    Problem,
    ProvctlError,
    Refused,
    UnsafePlan,
)
from reconciler.core.names import did_you_mean
from reconciler.desired.filecache import open_cache as open_file_cache
from reconciler.desired.load import read_source
from reconciler.desired.secrets import index_dir as secrets_index_dir
from reconciler.desired.validate import DesiredState, load_state
from reconciler.gitops import repo as gitrepo
from reconciler.pipeline import bootstrap, narrow, phones, waves
from reconciler.pipeline import receipt as record
from reconciler.pipeline.apply import TargetResult, execute
from reconciler.pipeline.outcome import Failure, Refusal
from reconciler.pipeline.plan import (
    Desired,
    DesiredFile,
    FileChange,
    Observed,
    Plan,
    TargetSummary,
    diff_target,
    orphans,
    published,
)
from reconciler.redirect import stage as redirects
from reconciler.render.addressing import show_path
from reconciler.render.bootstrap import bootstrap_directories, onboarding_problems
from reconciler.render.cache import RenderCache, cache_path
from reconciler.render.renderer import Artifact, Renderer
from reconciler.targets import lock as target_lock
from reconciler.targets import manifest as target_records
from reconciler.targets import meta as target_meta
from reconciler.targets import open_target
from reconciler.targets.base import Target, read_many

log = logging.getLogger(__name__)

LOCK_TTL = 30 * 60.0  # seconds; an apply that dies leaves a lock others may take over after this


@dataclass
class Options:
    repo: Path
    rev: str | None = None
    targets: list[str] | None = None  # None = every target
    prune: bool | None = None  # None = policy.prune
    force: bool = False
    verify: bool = False  # read files back and hash them
    scan: bool | None = None  # scan the whole target for drift; None = when due (policy)
    heal: bool | None = None  # None = policy.drift == "heal"
    state_dir: Path | None = None
    environ: Mapping[str, str] | None = None
    use_cache: bool = True  # incremental rendering (render_cache.py)
    redacting: bool = False  # secrets as placeholders (validate --no-secrets)
    now: datetime | None = None  # the clock, for redirect windows (tests pass one)
    redirect_factory: Callable[..., Any] | None = None  # builds redirect clients (tests)
    fetches: bootstrap.Fetches | None = None  # the phones' fetches, instead of the logs (tests)
    stop: Callable[[], bool] = lambda: False  # checked between batches (daemon SIGTERM)
    cancel: Callable[[], bool] | None = None  # polled while loading (daemon SIGTERM)
    allow_unserved: bool = False  # a phone no target serves is a warning, not an error
    # --device / --customer: limit the changes to these phones (pipeline/narrow.py)
    devices: frozenset[str] | None = None
    customers: frozenset[str] | None = None
    # progress(phase, done, total[, note]): phases "load", "render <target>" (phones),
    # "observe", "publish <target>" and "delete <target>" (files), "register" (redirect
    # changes, with a note: each service's rate, limit and throttled answers)
    progress: Callable[..., None] | None = None
    # confirm(plan) is called with the plan apply is about to carry out, before the first
    # write and under the target locks; False cancels the run (nothing is written)
    confirm: Callable[[Plan], bool] | None = None

    @property
    def narrowed(self) -> bool:
        return self.devices is not None or self.customers is not None

    def report(self, phase: str, done: int = 0, total: int = 0, note: str = "") -> None:
        if self.progress is not None:
            self.progress(phase, done, total, *([note] if note else []))


@dataclass
class RenderedState:
    """The desired state, validated and rendered: per target, path -> artifact."""

    state: DesiredState
    renderer: Renderer
    artifacts: dict[str, dict[str, Artifact]]  # target -> path -> artifact
    groups: dict[str, waves.Group] = field(default_factory=dict)  # firmware rollouts
    book: waves.Book = field(default_factory=waves.Book)  # what the state dir remembers of them

    def addresses(self) -> redirects.Addresses:
        """What the redirect stage needs: addressing and each phone's effective customer."""
        customers = {mac: self.renderer.customer_of(mac) for mac in self.state.devices}
        return redirects.Addresses(self.state, self.renderer.addressing, customers)


def load_desired(opts: Options) -> RenderedState:
    """load → validate → resolve → render, for the targets asked for.

    Incremental unless `use_cache` is off (or secrets are redacted): files whose bytes did not
    change come back from the file cache (desired/filecache.py) already validated, and phones
    whose key did not change (render/keys.py) from the render cache, neither resolved nor
    rendered. The cross-file rules always run on the whole state.
    """
    opts.report("load")
    gc.unfreeze()  # the previous run's state (daemon): collectable again
    source = read_source(opts.repo, opts.rev, opts.cancel)
    state_dir = opts.state_dir or record.default_state_dir(opts.repo)
    environ = dict(opts.environ) if opts.environ is not None else None
    incremental = opts.use_cache and not opts.redacting
    files = open_file_cache(source, environ, state_dir) if incremental else None
    with _collector_paused():
        state = load_state(source, environ, redacting=opts.redacting,
                           allow_unserved=opts.allow_unserved, state_dir=state_dir,
                           cancelled=opts.cancel, validate=files,
                           secrets_index=secrets_index_dir(state_dir) if incremental else None)
        names = target_names(state, opts.targets)
        cache = RenderCache(cache_path(state_dir)) if incremental else None
        renderer = Renderer(state, cache)  # with a cache: phones keyed (render/keys.py)
        renderer.cancelled = opts.cancel
        groups, book = _first_holds(renderer, state_dir, opts)
        artifacts: dict[str, dict[str, Artifact]] = {}
        problems: list[Problem] = []
        for name in names:
            if opts.progress is not None:
                renderer.progress = lambda done, total, n=name: opts.report(
                    f"render {n}", done, total)
            try:
                artifacts[name] = renderer.render_target(name)
            except ConfigError as exc:
                problems += exc.problems
        problems += renderer.sip_problems()
        # a phone asked to onboard that cannot be (docs/zero-touch.md) is invalid, window or
        # not
        asked = [mac for mac, located in state.devices.items()
                 if located.value.onboard not in (None, False)]
        problems += onboarding_problems(renderer, asked)
    if problems:
        raise ConfigError(sorted(set(problems)))
    if cache is not None:
        if opts.targets is None:
            cache.retain(renderer.cache_keys)
        cache.save()
    if files is not None:
        files.prune()
    log.debug("desired state: %d/%d file(s) from the cache, %d phone(s) rendered",
              files.hits if files else 0, len(source.files), renderer.rendered)
    return RenderedState(state, renderer, artifacts, groups, book)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading builds millions of objects and no garbage cycles worth collecting: the cyclic
    collector would walk the growing heap again and again (2-3× the CPU at 100,000 phones).
    What was built is then frozen (gc.freeze), before the collector is enabled again, so that
    observe, plan and apply never walk it either; the next load (the daemon) unfreezes it.
    The same for reading the manifests and planning (150,000 entries, files and changes)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _rollouts_configured(state: DesiredState) -> bool:
    """Whether any firmware rollout is written (a pin's or a catalog entry's)."""
    return any(p.value.rollout is not None for p in state.pins) or any(
        c.value.rollout is not None for c in state.catalog)


def _first_holds(renderer: Renderer, state_dir: Path, opts: Options
                 ) -> tuple[dict[str, waves.Group], waves.Book]:
    """Firmware rollouts: hold back the phones whose wave the last run had not published.
    A fleet with no rollout written and none remembered resolves no phone for it."""
    if opts.redacting:
        return {}, waves.Book()  # validate --no-secrets: no fleet secret, no wave order
    book = _book(state_dir)
    if not _rollouts_configured(renderer.state) and not book.active():
        return {}, book
    try:
        resolved = renderer.resolved()
    except ConfigError:
        return {}, waves.Book()  # rendering reports the problems, with every other one
    groups = waves.firmware_groups(resolved, waves.rollout_key(renderer.fleet_secret))
    if groups:
        catalog = [c.value for c in renderer.state.catalog]
        holds = waves.first_holds(groups, book, resolved, catalog, _now(opts).timestamp())
        renderer.hold(holds.held)
    return groups, book


def _book(state_dir: Path) -> waves.Book:
    try:
        return waves.load_book(state_dir)
    except ValueError as exc:
        raise OperationError(str(exc)) from exc


def decide_rollouts(desired: RenderedState, observed: Mapping[str, Observed],
                    uptake: phones.FleetUptake | None, opts: Options) -> waves.Inputs | None:
    """After observing: step each rollout with the gate the phones show, render again the
    phones whose wave starts now, and what make_plan needs to stage the rest."""
    state = desired.state
    policy = state.provisioning.value.policy.rollout
    book = desired.book
    if not desired.groups and policy is None and not book.active():
        return None
    now = _now(opts).timestamp()
    renderer = desired.renderer
    resolved = renderer.resolved()
    manifests = {n: o.manifest for n, o in observed.items() if o.error is None}
    paths: dict[str, list[tuple[str, str]]] = {}
    for target, artifacts in desired.artifacts.items():
        for path, art in artifacts.items():
            if art.device:
                paths.setdefault(art.device, []).append((target, path))
    for mac, owned in paths.items():  # the primary target first: its manifest says "previous"
        primary = renderer.addressing.primary_target(resolved[mac].customer) if mac in resolved \
            else None
        owned.sort(key=lambda tp: (tp[0] != primary, tp))
    lasts = uptake.lasts if uptake is not None else {}
    catalog = [c.value for c in state.catalog]
    holds, reports = waves.decide(desired.groups, book, resolved, catalog, paths, manifests,
                                  lasts, now)
    changed = renderer.hold(holds.held)
    if changed:
        for target in desired.artifacts:
            desired.artifacts[target] = renderer.rerender(target, desired.artifacts[target],
                                                          changed)
    phones = frozenset(m for g in desired.groups.values() for ms in g.waves.values() for m in ms)
    return waves.Inputs(book, waves.rollout_key(renderer.fleet_secret), now, lasts, policy,
                        tuple(reports), holds.frozen, phones,
                        waves.rollback_versions(book, desired.groups))


def target_names(state: DesiredState, wanted: list[str] | None) -> list[str]:
    known = list(state.provisioning.value.targets)
    if not wanted:
        return known
    unknown = [w for w in wanted if w not in known]
    if unknown:  # a name on the command line, not a fault of the desired state
        raise NotFound(f"unknown target {unknown[0]!r}{did_you_mean(unknown[0], known)} "
                       f"(known: {', '.join(known)})")
    return wanted


@contextlib.contextmanager
def opened(desired: RenderedState) -> Iterator[dict[str, Target]]:
    state = desired.state
    targets: dict[str, Target] = {}
    try:
        for name in desired.artifacts:
            spec = state.provisioning.value.targets[name]
            targets[name] = open_target(name, spec, state.root, state.secrets.resolve)
        yield targets
    finally:
        for target in targets.values():
            with contextlib.suppress(Exception):
                target.close()


def _directories(paths: Any) -> set[str]:
    return {p.rpartition("/")[0] for p in paths}


def observe_target(target: Target, desired: Mapping[str, Artifact], verify: bool,
                   scan: bool = True) -> Observed:
    """Read-only: the manifest with the journal folded in; with `scan`, what is in every
    managed directory (drift), with `verify` also the hashes. Without a scan, only the
    directories of files to be created are listed: someone else's file there must not be
    overwritten."""
    try:
        journal = target_records.read_state(target)
        manifest, pending = journal.manifest, journal.pending
        verified = None
        if scan or verify:
            wanted = set(desired) | set(manifest.files)
            present = target.scan(_directories(wanted))
        else:
            creates = [p for p in desired if p not in manifest.files]
            found = target.scan(_directories(creates)) if creates else {}
            present = {p: found[p] for p in creates if p in found}
        if verify:
            contents = read_many(target, sorted(manifest.files))
            verified = {p: None if data is None else hashlib.sha256(data).hexdigest()
                        for p, data in contents.items()}
        return Observed(target.name, manifest, present, verified, None, pending,
                        scanned=scan or verify, journal=journal.records)
    except ProvctlError as exc:
        return Observed(target.name, error=str(exc))


def scan_due(opts: Options, state: DesiredState, state_dir: Path, target: str) -> bool:
    """A full scan now? Asked for (--scan, --verify, --heal: find and fix drift now); else when
    policy.drift_scan_every has passed since the last one, or the last one found drift (until
    it is gone)."""
    if opts.scan is not None:
        return opts.scan or opts.verify or bool(opts.heal)
    if opts.verify or opts.heal:
        return True
    every = state.provisioning.value.policy.drift_scan_every
    last = record.last_scan(state_dir, target)
    return every <= 0 or last is None or last[1] > 0 or time.time() - last[0] >= every


def _observe_all(desired: RenderedState, targets: Mapping[str, Target], opts: Options,
                 state_dir: Path) -> dict[str, Observed]:
    """Observe each target; a full scan only when due, and heal reads the files back (it must
    see what it heals) only on those."""
    out = {}
    for name, target in targets.items():
        scan = scan_due(opts, desired.state, state_dir, name)
        verify = opts.verify or (scan and heals(desired.state, opts))
        out[name] = observe_target(target, desired.artifacts[name], verify, scan)
    return out


def _record_scans(the_plan: Plan, observed: Mapping[str, Observed], state_dir: Path) -> None:
    now = time.time()
    for name, obs in observed.items():
        if obs.scanned and obs.error is None:
            drift = sum(1 for d in the_plan.drift if d.target == name)
            with contextlib.suppress(OSError):
                record.record_scan(state_dir, name, now, drift)


def make_plan(desired: RenderedState, observed: Mapping[str, Observed], opts: Options,
              snapshot: redirects.RedirectSnapshot | None = None,
              now: datetime | None = None, arrived: Mapping[str, float] | None = None,
              rollouts: waves.Inputs | None = None,
              onboarding: bootstrap.Onboarding | None = None) -> Plan:
    """Pure: desired artifacts + observed snapshots (targets, redirect services, the phones'
    fetches: `arrived`, mac -> unix time; rollouts as decided from what the phones fetched; the
    onboarding windows and their bootstrap files) -> Plan. Without `onboarding`, bootstrap
    files already published are left as they are."""
    state = desired.state
    policy = state.provisioning.value.policy
    prune = policy.prune if opts.prune is None else opts.prune
    heal = heals(state, opts)
    changes, drift, summaries, refusals, orphaned = [], [], [], [], []
    wants: dict[str, dict[str, DesiredFile]] = {}
    selection = None
    if opts.narrowed:
        selection = narrow.select(desired.renderer, desired.artifacts, opts.devices or (),
                                  opts.customers or ())
        unknown = narrow.unknown_macs(selection, state.devices, observed)
        if unknown:
            raise NotFound(f"unknown device {unknown[0]} (not in devices/*.yaml and no file of "
                           f"it is published){did_you_mean(unknown[0], state.devices)}")

    def downgrade(mac: str, old: str, new: str) -> str | None:
        device = state.devices.get(mac)
        if device is None or policy.allow_downgrade or device.value.allow_downgrade:
            return None
        if rollouts is not None and old in rollouts.rollbacks:
            return None  # back from a halted or reverted rollout: a rollback, not a downgrade
        vendor = vendors.get(device.value.vendor)
        try:
            if vendor.firmware_version(new) < vendor.firmware_version(old):
                return (f"firmware downgrade of {mac} from {old} to {new} refused (set "
                        "allow_downgrade: true on the device or in policy)")
        except ValueError:
            return None
        return None

    is_bootstrap = onboarding.is_bootstrap if onboarding is not None else lambda path: False
    unobserved = bootstrap_directories(desired.renderer) if onboarding is None else frozenset()
    for name, artifacts in desired.artifacts.items():
        obs = observed[name]
        if obs.error is not None:
            summaries.append(TargetSummary(name, 0, 0, obs.error))
            continue
        want: dict[str, DesiredFile] = dict(artifacts)  # an Artifact reads as a Desired
        boot = onboarding.files.get(name, {}) if onboarding is not None else {}
        want.update((p, Desired(f.artifact.sha256, f.artifact.size, f.artifact.device))
                    for p, f in boot.items())
        if onboarding is None:  # not observed: what is published stays
            want.update((p, Desired(e.sha256, e.size)) for p, e in obs.manifest.files.items()
                        if p not in want and p.partition("/")[0] in unobserved)
        if selection is not None:
            # a shared bootstrap file (Cisco $PSN.xml) belongs to the selected phones it serves
            mine = dataclasses.replace(selection, paths=selection.paths | {
                (name, p) for p, f in boot.items() if f.phones & selection.macs})
            want = mine.narrow(name, want, obs)
        # rollouts stage the phones' own files; bootstrap files follow the onboarding windows
        if rollouts is not None:
            wants[name] = {p: d for p, d in want.items() if not is_bootstrap(p)} \
                if onboarding is not None and onboarding.directories else want
        c, d, s, r = diff_target(want, obs, prune=prune, heal=heal,
                                 max_delete_percent=policy.max_delete_percent, force=opts.force,
                                 downgrade=downgrade, bootstrap=is_bootstrap)
        if selection is not None:
            c = [x for x in c if mine.owns(name, x.path)]
            d = [x for x in d if mine.owns(name, x.path)]
        if onboarding is not None:
            c = [onboarding.named(x) if x.reason == "withdraw" else x for x in c]
        changes += c
        drift += d
        summaries.append(s)
        refusals += r
        if not prune:
            orphaned += orphans(want, obs, is_bootstrap)
    held: list[FileChange] = []
    reports: tuple[waves.Report, ...] = ()
    if rollouts is not None:
        manifests = {n: o.manifest for n, o in observed.items() if o.error is None}
        # a bootstrap file is never held back: a withdrawal closes a window on the network
        boots = [c for c in changes if is_bootstrap(c.path)]
        staged = waves.stage([c for c in changes if not is_bootstrap(c.path)], rollouts, wants,
                             manifests)
        changes, held, reports = sorted(staged.kept + boots), staged.held, staged.reports
    redirect_changes: list[Any] = []
    if snapshot is not None and now is not None:
        from reconciler.redirect.plan import raise_if_unsafe

        came = {mac: datetime.fromtimestamp(at, UTC) for mac, at in (arrived or {}).items()}
        redirect_changes = redirects.plan(snapshot, now, policy.redirect_window_days, came)
        if selection is not None:
            redirect_changes = [r for r in redirect_changes if r.mac in selection.macs]
        try:
            raise_if_unsafe(redirect_changes, snapshot.records, policy.max_delete_percent,
                            force=opts.force)
        except UnsafePlan as exc:
            refusals.append(str(exc))
        for service, error in sorted(snapshot.errors.items()):
            summaries.append(TargetSummary(f"redirect:{service}", 0, 0, error))
    return Plan(state.revision, tuple(changes), tuple(redirect_changes), tuple(drift),
                tuple(summaries), tuple(refusals), tuple(orphaned), tuple(held), reports)


def observe_onboarding(desired: RenderedState, opts: Options, state_dir: Path
                       ) -> bootstrap.Onboarding:
    """The onboarding windows now and their bootstrap files on the targets asked for, from
    what the phones fetched as far as the observation store knows (plan and apply read the
    access logs into it first). Read-only: apply saves the memory (bootstrap.save) after it
    ran."""
    if opts.fetches is not None:
        return bootstrap.observe(desired.renderer, list(desired.artifacts), state_dir,
                                 opts.fetches, _now(opts))
    with phones.fetches(state_dir) as fetches:
        return bootstrap.observe(desired.renderer, list(desired.artifacts), state_dir, fetches,
                                 _now(opts))


def heals(state: DesiredState, opts: Options) -> bool:
    """Whether drifted files are written again (--heal, else policy.drift)."""
    return state.provisioning.value.policy.drift == "heal" if opts.heal is None else opts.heal


def verifies(state: DesiredState, opts: Options) -> bool:
    """Whether observing reads the files back: asked for, or needed to heal. A hand edit that
    keeps size and mtime is only seen by reading the file, and heal must see what it heals."""
    return opts.verify or heals(state, opts)


@contextlib.contextmanager
def redirect_clients(desired: RenderedState, opts: Options) -> Iterator[redirects.Clients | None]:
    if not desired.state.provisioning.value.redirect or opts.targets:
        yield None  # no services, or a run limited to some targets: registrations untouched
        return
    clients = (redirects.Clients(desired.state, opts.redirect_factory)
               if opts.redirect_factory else redirects.Clients(desired.state))
    try:
        yield clients
    finally:
        clients.close()


def _now(opts: Options) -> datetime:
    return opts.now or datetime.now(UTC)


# --- commands ---------------------------------------------------------------------------------


@dataclass
class PlanResult:
    plan: Plan
    desired: RenderedState
    uptake: phones.FleetUptake | None = None
    onboarding: bootstrap.Onboarding | None = None

    @property
    def exit_code(self) -> int:
        if any(t.error for t in self.plan.targets):
            return 1
        if self.plan.refusals or any(r.action == "conflict" for r in self.plan.redirects):
            return 3
        # Drift that this run would not heal is reported, not pending: apply would change
        # nothing, so plan and apply both exit 0 (docs/operations.md, "Exit codes").
        return 0 if self.plan.empty else 2


def plan(opts: Options) -> PlanResult:
    desired = load_desired(opts)
    state_dir = opts.state_dir or record.default_state_dir(opts.repo)
    with opened(desired) as targets, redirect_clients(desired, opts) as clients:
        opts.report("observe")
        with _collector_paused():  # the manifests: 150,000 entries each, no cycles
            observed = _observe_all(desired, targets, opts, state_dir)
        uptake = observe_phones(desired, targets, observed, state_dir, opts)
        snapshot = redirects.observe(desired.addresses(), clients, state_dir) if clients else None
        rollouts = decide_rollouts(desired, observed, uptake, opts)
    onboarding = observe_onboarding(desired, opts, state_dir)
    with _collector_paused():
        the_plan = make_plan(desired, observed, opts, snapshot, _now(opts), uptake.arrived,
                             rollouts, onboarding)
    _record_scans(the_plan, observed, state_dir)
    return PlanResult(the_plan, desired, uptake, onboarding)


def observe_phones(desired: RenderedState, targets: Mapping[str, Target],
                   observed: Mapping[str, Observed], state_dir: Path, opts: Options,
                   read_logs: bool = True, stale_after: float = phones.STALE_AFTER
                   ) -> phones.FleetUptake:
    """Read-only towards the targets: their access logs, from where the last run stopped."""
    manifests = {n: o.manifest for n, o in observed.items() if o.error is None}
    targets = {n: t for n, t in targets.items() if n in manifests}  # unreachable: said already
    clock: Callable[[], float] = time.time
    if opts.now is not None:  # tests pass a clock
        fixed = opts.now.timestamp()
        clock = lambda: fixed  # noqa: E731
    return phones.observe_phones(desired, targets, state_dir, manifests, read_logs=read_logs,
                                 stale_after=stale_after, now=clock,
                                 bootstrap=bootstrap_directories(desired.renderer),
                                 watch=bootstrap.watched(desired.renderer, state_dir))


@dataclass
class ApplyResult:
    plan: Plan
    results: dict[str, TargetResult] = field(default_factory=dict)
    receipt: record.Receipt | None = None
    redirect: redirects.RedirectResult | None = None
    cancelled: bool = False  # confirm() said no: nothing was written
    uptake: phones.FleetUptake | None = None  # the phones after this run (daemon metrics)
    onboarding: bootstrap.Onboarding | None = None
    desired: RenderedState | None = field(default=None, repr=False)  # what it applied

    @property
    def exit_code(self) -> int:
        if any(isinstance(r.error, Refusal) for r in self.results.values()):
            return 3
        if any(not r.ok for r in self.results.values()) or any(
                t.error for t in self.plan.targets) or (self.redirect and self.redirect.failed):
            return 1
        if self.redirect and self.redirect.conflicts:
            return 3
        return 0 if self.plan.empty else 2


def apply(opts: Options, expected_checksum: str | None = None) -> ApplyResult:
    """Lock the targets, observe, plan, check the plan, then write in this order: files put,
    redirect registrations (deregistrations first), files deleted; record; unlock.

    Every target run records its attempt in the status, a refused one included."""
    desired = load_desired(opts)
    state_dir = opts.state_dir or record.default_state_dir(opts.repo)
    revision = desired.state.revision
    started = time.time()
    now = _now(opts)
    locks: dict[str, target_lock.LockInfo] = {}
    takeovers: dict[str, str] = {}
    results: dict[str, TargetResult] = {}
    with opened(desired) as targets, redirect_clients(desired, opts) as clients:
        try:
            for name, target in targets.items():
                try:
                    held = target_lock.acquire(target, record.trigger(), LOCK_TTL)
                    locks[name] = held.info
                    if held.took_over:
                        takeovers[name] = held.took_over
                    target_meta.prepare(target)  # records out of the served tree, root 0711
                except LockHeld as exc:
                    results[name] = TargetResult(name, error=Refusal(str(exc)))
                except ProvctlError as exc:
                    results[name] = TargetResult(name, error=Failure(str(exc)))
            live = {n: t for n, t in targets.items() if n in locks and n not in results}
            opts.report("observe")
            with _collector_paused():  # the manifests: 150,000 entries each, no cycles
                observed = _observe_all(desired, live, opts, state_dir)
            uptake = observe_phones(desired, live, observed, state_dir, opts)
            snapshot = (redirects.observe(desired.addresses(), clients, state_dir)
                        if clients and not results else None)
            rollouts = decide_rollouts(desired, observed, uptake, opts)
            desired_live = RenderedState(desired.state, desired.renderer,
                                         {n: desired.artifacts[n] for n in live},
                                         desired.groups, desired.book)
            onboarding = observe_onboarding(desired_live, opts, state_dir)
            with _collector_paused():
                the_plan = make_plan(desired_live, observed, opts, snapshot, now,
                                     uptake.arrived, rollouts, onboarding)
            # A target that could not be locked is shown as failed, never as matching.
            the_plan = dataclasses.replace(the_plan, targets=the_plan.targets + tuple(
                TargetSummary(n, 0, 0, str(r.error)) for n, r in sorted(results.items())))
            refused = _refusal(the_plan, opts, expected_checksum)
            if refused is not None:
                for name in live:
                    results[name] = TargetResult(name, error=Refusal(str(refused)))
                _record_status(state_dir, revision, results)
                raise refused
            if opts.confirm is not None and not opts.confirm(the_plan):
                return ApplyResult(the_plan, results, cancelled=True, desired=desired)
            _record_scans(the_plan, observed, state_dir)
            journals = {n: target_records.Journal.resume(
                t, observed[n].manifest, observed[n].pending, observed[n].journal)
                for n, t in live.items() if observed[n].error is None}
            manifests = {n: observed[n].manifest for n in journals}

            def run_phase(action: str) -> None:
                # Puts leave their journal records as the checkpoint; the delete phase
                # (after the redirect stage) writes the manifest, at most once.
                finish = action == "delete"
                for name, target in live.items():
                    obs = observed[name]
                    if obs.error is not None:
                        results[name] = TargetResult(name, error=Failure(obs.error))
                        continue
                    if name in results and results[name].error:
                        continue
                    changes = [c for c in the_plan.changes
                               if c.target == name and c.action == action]
                    journal = journals[name]
                    manifest = manifests[name]
                    target_revision = manifest.revision if opts.narrowed else revision
                    if not changes and (not finish or (
                            journal.idle and manifest.revision == target_revision)):
                        results.setdefault(name, TargetResult(name))
                        continue
                    phase = f"{'publish' if action == 'put' else 'delete'} {name}"

                    def progress(done: int, total: int, phase: str = phase) -> None:
                        opts.report(phase, done, total)

                    # A narrowed run leaves the manifest at the revision it had: the target
                    # as a whole is not at the new one.
                    artifacts = {**desired.artifacts[name], **{
                        p: f.artifact for p, f in onboarding.files.get(name, {}).items()}}
                    result, manifests[name] = execute(
                        target, changes, artifacts, manifest, target_revision,
                        pending=obs.pending if action == "put" else frozenset(),
                        stop=opts.stop, progress=progress, journal=journal, finish=finish,
                        complete=name not in results or results[name].ok)
                    if name in results:
                        results[name].items += result.items
                        results[name].error = results[name].error or result.error
                    else:
                        results[name] = result

            run_phase("put")
            redirect_result = None
            if snapshot is not None and clients is not None and not opts.stop():
                waiting = unpublished_devices(desired_live, the_plan, observed, results, live)
                redirect_result = redirects.apply(list(the_plan.redirects), snapshot, clients,
                                                  state_dir, now, waiting,
                                                  progress=lambda done, total: opts.report(
                                                      "register", done, total,
                                                      clients.rate_note()))
            run_phase("delete")
            receipt = record.Receipt.of(the_plan, results, redirect_result, started=started,
                                        ended=time.time(), revision=revision,
                                        takeovers=takeovers)
            if opts.narrowed:
                receipt = dataclasses.replace(receipt, only={
                    "devices": sorted(opts.devices or ()),
                    "customers": sorted(opts.customers or ())})
            events = [r for r in the_plan.rollouts if r.event]
            if not the_plan.empty or takeovers or events:
                record.write_receipt(state_dir, receipt, live)
            bootstrap.save(state_dir, onboarding)
            now_ts = _record_status(state_dir, revision, results, applied=not opts.narrowed)
            for name, result in results.items():
                if result.ok and not the_plan.empty and not opts.narrowed:
                    gitrepo.note_applied(
                        opts.repo, revision,
                        f"applied to {name} at {record.iso(now_ts)} by {receipt.trigger} "
                        f"(receipt {receipt.id}, {len(result.done)} change(s), plan "
                        f"{receipt.plan_checksum[:12]})")
            if rollouts is not None:
                _record_rollouts(state_dir, opts, desired_live, the_plan, observed, results,
                                 rollouts, receipt, now.timestamp())
            if not the_plan.empty and uptake.configured:  # what was published changed
                fresh = {n: Observed(n, target_records.read_state(targets[n]).manifest)
                         for n in live if observed[n].error is None}
                uptake_after = observe_phones(desired, live, fresh, state_dir, opts,
                                              read_logs=False)
                uptake_after.logs = uptake.logs
                uptake = uptake_after
            return ApplyResult(the_plan, results, receipt, redirect_result, uptake=uptake,
                               onboarding=onboarding, desired=desired)
        finally:
            for name, lock in locks.items():
                with contextlib.suppress(ProvctlError, OSError):
                    target_lock.release(targets[name], lock)


def _record_rollouts(state_dir: Path, opts: Options, desired: RenderedState, the_plan: Plan,
                     observed: Mapping[str, Observed], results: Mapping[str, TargetResult],
                     rollouts: waves.Inputs, receipt: record.Receipt, now: float) -> None:
    """The book after this run, and a note on the revision for each wave that started,
    halted or resumed."""
    firmware = _published_firmware(desired, the_plan, observed, results)
    if opts.narrowed:
        # --device/--customer publishes some phones only: no wave starts or halts on their
        # account; what those phones were published with is still what they have.
        book = waves.record(rollouts.book, (), desired.groups, firmware, now, moves=False)
    else:
        book = waves.record(rollouts.book, the_plan.rollouts, desired.groups, firmware, now)
    if book != rollouts.book:
        waves.save_book(state_dir, book)
    if opts.narrowed:
        return
    for report in the_plan.rollouts:
        if report.event:
            gitrepo.note_applied(opts.repo, desired.state.revision,
                                 f"rollout {report.id} ({report.subject}): {report.message} "
                                 f"at {record.iso(now)} (receipt {receipt.id})")


def _published_firmware(desired: RenderedState, the_plan: Plan,
                        observed: Mapping[str, Observed],
                        results: Mapping[str, TargetResult]) -> dict[str, str | None]:
    """mac -> the firmware its files carry, for the phones whose files are all published as
    desired after this run (on the targets of the run)."""
    out: dict[str, str | None] = {}
    unsure: set[str] = set()
    for name, artifacts in desired.artifacts.items():
        obs = observed.get(name)
        if obs is None:
            continue
        result = results.get(name, TargetResult(name))
        done = {i.path for i in result.done if i.action == "put"}
        want = {p: Desired(a.sha256, a.size, a.device) for p, a in artifacts.items()}
        ready = published(want, obs, the_plan.changes, the_plan.drift, done)
        for path, art in artifacts.items():
            if art.device is None:
                continue
            if path not in ready:
                unsure.add(art.device)
            else:
                out.setdefault(art.device, art.firmware)
    return {m: v for m, v in out.items() if m not in unsure}


def _refusal(the_plan: Plan, opts: Options, expected_checksum: str | None) -> Refused | None:
    """Why apply must not run this plan at all: a stale plan file, or a safety rule."""
    if expected_checksum is not None and the_plan.checksum() != expected_checksum:
        return PlanMismatch(
            f"the plan file ({expected_checksum[:12]}…) no longer matches a fresh plan "
            f"({the_plan.checksum()[:12]}…): the desired state or a target changed; "
            "plan again")
    if the_plan.refusals and not opts.force:
        return UnsafePlan("; ".join(the_plan.refusals))
    return None


def _record_status(state_dir: Path, revision: str, results: Mapping[str, TargetResult],
                   applied: bool = True) -> float:
    """Each target's attempt, with why it failed or was refused; returns the time recorded.
    `applied=False` (a narrowed run): an attempt only, never `last_applied`."""
    now_ts = time.time()
    for name, result in sorted(results.items()):
        error = None if result.error is None else str(result.error)
        if error is None and result.failed:
            first = result.failed[0]
            error = (f"{len(result.failed)} change(s) failed, first: {first.action} "
                     f"{show_path(first.path)}: {first.error}")
        record.update_status(state_dir, name, revision, result.ok and applied, now_ts, error)
    return now_ts


def unpublished_devices(desired: RenderedState, the_plan: Plan, observed: Mapping[str, Observed],
                        results: Mapping[str, TargetResult],
                        targets: Mapping[str, Target] | None = None) -> dict[str, str]:
    """Phones that must not be registered now (MAC -> why), after the put phase.

    A registration sends a phone to its files on its primary target, so those files must be
    published there: put by this run, or already, per the manifest (plan.published). A target
    that failed as a whole (unreachable, a path that escapes the root, ...) publishes nothing
    this run has not confirmed."""
    addresses = desired.addresses()
    wanted = {c.mac for c in the_plan.redirects if c.action in ("register", "update")}
    ready: dict[str, set[str]] = {}
    waiting: dict[str, str] = {}
    for mac in sorted(wanted):
        name = addresses.addressing.primary_target(addresses.customer_of.get(mac))
        if name is None or name not in observed:
            waiting[mac] = f"its primary target {name} was not observed in this run"
            continue
        artifacts = desired.artifacts[name]
        if name not in ready:
            result = results.get(name, TargetResult(name))
            done = {i.path for i in result.done if i.action == "put"}
            want = {p: Desired(a.sha256, a.size, a.device) for p, a in artifacts.items()}
            ready[name] = published(want, observed[name], the_plan.changes, the_plan.drift,
                                    done)
        mine = sorted(p for p, a in artifacts.items() if a.device == mac)
        missing = [p for p in mine if p not in ready[name]] if mine else ["(no file)"]
        if not missing and targets is not None and not observed[name].scanned:
            # Not scanned in full this run (policy.drift_scan_every): a phone is sent to its
            # files only once they are seen there, those this run did not put included.
            missing = _not_on_host(targets.get(name), mine, artifacts, results.get(name))
        if missing:
            waiting[mac] = _not_published(name, missing[0], observed[name], results.get(name))
    return waiting


def _not_on_host(target: Target | None, paths: Sequence[str], artifacts: Mapping[str, Artifact],
                 result: TargetResult | None) -> list[str]:
    """Of a phone's files, those not on the host with their size (a stat each)."""
    done = {i.path for i in result.done if i.action == "put"} if result else set()
    if target is None:
        return list(paths)
    out = []
    for path in paths:
        if path in done:
            continue
        try:
            found = target.stat(path)
        except ProvctlError:
            found = None
        if found is None or found.size != artifacts[path].size:
            out.append(path)
    return out


def _not_published(target: str, path: str, obs: Observed, result: TargetResult | None) -> str:
    why = f"its file {show_path(path)} is not published on target {target}"
    failed = {i.path: i.error for i in result.failed} if result else {}
    if obs.error is not None:
        return f"{why} ({obs.error})"
    if result is not None and result.error is not None:
        return f"{why} ({result.error})"
    if path in failed:
        return f"{why} ({failed[path]})"
    return why


def read_plan_file(path: Path) -> str:
    """The checksum of a plan written by `plan --format json`."""
    import json

    try:
        body = json.loads(path.read_text())
        return str(body["checksum"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError([Problem(str(path), 0, "--plan", f"not a provctl plan: {exc}")]) from exc
