"""Rollouts, wired into the pipeline (the wave arithmetic itself is rollout.py, pure).

    load_desired  firmware rollouts of the resolved phones + the book → which phones keep their
                  previous firmware (`first_holds`: the waves as the last run left them)
    after observe gate figures from what the phones fetched → decisions → holds again (`decide`)
    make_plan     `policy.rollout` stages the changes of many phones (`stage`)
    apply         `record`: the book (state of each rollout, its gates, which wave each phone
                  was in and when it took the change, the firmware each phone was published with)

The book is `<state>/rollouts.json`; only apply writes it. Everything else here is pure.

- A firmware rollout's phones are those whose chosen version comes with a rollout (from the pin
  that chose it, else from the version's catalog entry). A phone whose wave is not published
  keeps the firmware its files were last published with (the manifest says which; the book
  remembers it between runs), or, if it was never published, the installed one. A phone whose
  previous version left the catalog keeps its published files as they are.
- `policy.rollout` stages a plan whose changes affect more than `above` phones that already
  have published files (a new phone has nothing to keep): the changes of phones in later waves
  are left out of the plan until their wave. Changes that a firmware rollout releases, or that
  roll one back, are not staged again: a revert reaches every phone at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import vendors
from reconciler.core.files import atomic_write
from reconciler.desired.resolve import Held, ResolvedDevice
from reconciler.desired.schema import FirmwareImage, PolicyRollout
from reconciler.pipeline.plan import DesiredFile, FileChange
from reconciler.pipeline.rollout import (
    Decision,
    GateReading,
    RolloutSpec,
    RolloutState,
    Uptake,
    members,
    step,
)
from reconciler.targets.manifest import Manifest

BOOK = "rollouts.json"
FORMAT = 1
KEEP = 20  # rollouts kept in the book; the oldest finished ones go first
EVENTS = ("start", "advance", "halted", "resumed", "removed")  # worth a receipt and a note


def rollout_key(fleet_secret: str) -> bytes:
    """The key of the wave order, derived from the fleet secret (never the secret itself)."""
    return hmac.new(fleet_secret.encode(), b"provctl-rollout-waves", hashlib.sha256).digest()


def _id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


# --- the book (state directory) ----------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """One rollout as the book remembers it."""

    kind: str  # firmware | policy
    subject: str
    version: str | None  # firmware rollouts: the version rolled out
    waves: tuple[float, ...]
    canary: tuple[str, ...]
    state: RolloutState
    phones: Mapping[str, tuple[int, float | None, float | None]]  # mac -> (wave, took, reported)
    members: Mapping[str, str] = field(default_factory=dict)  # policy: "target mac" -> digest
    gates: tuple[Mapping[str, Any], ...] = ()  # {wave, at, action, reading} at each event
    updated: float = 0.0
    closed: str | None = None  # why it no longer runs: finished, superseded, removed

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "subject": self.subject, "version": self.version,
                "waves": list(self.waves), "canary": list(self.canary),
                "state": self.state.to_json(),
                "phones": {m: list(v) for m, v in sorted(self.phones.items())},
                "members": dict(sorted(self.members.items())), "gates": list(self.gates),
                "updated": self.updated, "closed": self.closed}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Stored:
        return cls(str(body["kind"]), str(body.get("subject", "")), body.get("version"),
                   tuple(float(w) for w in body.get("waves", ())),
                   tuple(body.get("canary", ())), RolloutState.from_json(body["state"]),
                   {m: (int(v[0]), v[1], v[2]) for m, v in body.get("phones", {}).items()},
                   dict(body.get("members", {})), tuple(body.get("gates", ())),
                   float(body.get("updated", 0.0)), body.get("closed"))

    def wave_started(self, wave: int) -> float | None:
        started = self.state.started
        return started[wave - 1] if 0 < wave <= len(started) else None


@dataclass(frozen=True)
class Book:
    rollouts: Mapping[str, Stored] = field(default_factory=dict)
    firmware: Mapping[str, str | None] = field(default_factory=dict)  # mac -> last published

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT,
                "rollouts": {i: r.to_json() for i, r in sorted(self.rollouts.items())},
                "firmware": dict(sorted(self.firmware.items()))}
        return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()

    def active(self, kind: str | None = None) -> list[tuple[str, Stored]]:
        return [(i, r) for i, r in self.rollouts.items()
                if r.closed is None and (kind is None or r.kind == kind)]


def load_book(state_dir: Path) -> Book:
    try:
        body = json.loads((state_dir / BOOK).read_text())
    except FileNotFoundError:
        return Book()
    except ValueError as exc:
        raise ValueError(f"{state_dir / BOOK}: not a rollout book: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        shown = body.get("format") if isinstance(body, dict) else type(body).__name__
        raise ValueError(f"{state_dir / BOOK}: format {shown}, this provctl knows {FORMAT}")
    try:
        return Book({i: Stored.from_json(r) for i, r in body.get("rollouts", {}).items()},
                    dict(body.get("firmware", {})))
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError, IndexError) as exc:
        raise ValueError(f"{state_dir / BOOK}: damaged ({type(exc).__name__}: {exc}); move it "
                         "away to start the rollouts afresh") from exc


def save_book(state_dir: Path, book: Book) -> None:
    atomic_write(state_dir / BOOK, book.to_bytes())


# --- what the access logs say of a phone --------------------------------------------------------


class Fetches(Protocol):
    """The latest fetch and failed request of one published path (uptake/store.py `Last`)."""

    @property
    def ok_at(self) -> float | None: ...
    @property
    def ok_sha(self) -> str | None: ...
    @property
    def ok_agent(self) -> str | None: ...
    @property
    def err_at(self) -> float | None: ...


Lasts = Mapping[tuple[str, str], Fetches]  # (target, path) -> its fetches
AgentFirmware = Callable[[str], str | None]  # a User-Agent -> the firmware it reports


def agent_firmware(agent: str) -> str | None:
    ua = vendors.identify_user_agent(agent)
    return ua.firmware if ua is not None else None


def same_version(vendor: str | None, a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    if a == b:
        return True
    try:
        plugin = vendors.get(vendor or "")
        return bool(plugin.firmware_version(a) == plugin.firmware_version(b))
    except (KeyError, ValueError):
        return False


@dataclass(frozen=True)
class Seen:
    """One phone, for a gate: the rollout's Uptake, and when it took / reported the change."""

    uptake: Uptake
    took: float | None = None
    reported: float | None = None


def seen(paths: Sequence[tuple[str, str]], manifests: Mapping[str, Manifest], lasts: Lasts,
         since: float, version: str | None, vendor: str | None,
         parse_agent: AgentFirmware) -> Seen:
    """What a phone's files show since `since` (its wave's start). Pure.

    - fetched: every file of it that it ever fetched was fetched with the content published
      now (a phone does not ask for every file a vendor module writes), one of them after
      `since`, and (firmware rollouts) what is published carries `version`;
    - reports the version: the User-Agent of its latest fetch, after `since`, says `version`
      (nothing to report when `version` is None);
    - errors: its latest request failed, after `since`.
    """
    fetched = [(key, last) for key in paths if (last := lasts.get(key)) is not None
               and last.ok_at is not None]
    entries = {key: manifests[key[0]].files.get(key[1]) for key in paths if key[0] in manifests}
    latest_ok = max((last.ok_at or 0.0 for _, last in fetched), default=None)
    current = bool(fetched) and all(
        (entry := entries.get(key)) is not None
        and (last.ok_sha == entry.sha256 if last.ok_sha is not None else (last.ok_at or 0) >= since)
        for key, last in fetched)
    carries = version is None or any(e is not None and e.firmware == version
                                     for e in entries.values())
    fetched_new = current and carries and latest_ok is not None and latest_ok >= since
    reports = version is None
    reported_at = None
    if fetched and latest_ok is not None and latest_ok >= since and version is not None:
        newest = max(fetched, key=lambda kv: kv[1].ok_at or 0.0)[1]
        said = parse_agent(newest.ok_agent) if newest.ok_agent else None
        if same_version(vendor, said, version):
            reports, reported_at = True, latest_ok
    latest_err = max((last.err_at for key in paths if (last := lasts.get(key)) is not None
                      and last.err_at is not None), default=None)
    errors = latest_err is not None and latest_err >= since and (
        latest_ok is None or latest_err > latest_ok)
    return Seen(Uptake(fetched_new, reports, errors), latest_ok if fetched_new else None,
                reported_at if version is not None else (latest_ok if fetched_new else None))


# --- rollouts of the desired state --------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One rollout of the desired state, with its phones in their waves."""

    id: str
    kind: str  # firmware | policy
    subject: str
    spec: RolloutSpec
    version: str | None  # firmware rollouts
    vendor: str | None
    waves: Mapping[int, list[str]]
    origin: str = ""  # file:line of its rollout block

    @property
    def phones(self) -> int:
        return sum(len(m) for m in self.waves.values())

    def wave_of(self) -> dict[str, int]:
        return {mac: w for w, macs in self.waves.items() for mac in macs}


def firmware_groups(resolved: Mapping[str, ResolvedDevice], key: bytes) -> dict[str, Group]:
    """The firmware rollouts the resolved phones are part of, by id.

    The id is derived from what is rolled out: where the rollout is attached (a pin, a catalog
    entry), the version and its sha256, and the waves. A fix (a new version) or a revert is a
    new id; a new gate, soak or canary is the same rollout."""
    found: dict[str, tuple[Any, FirmwareImage, RolloutSpec, list[str]]] = {}
    ids: dict[tuple[str, str, str, int], str] = {}  # phones share a few rollouts
    for mac, device in resolved.items():
        ref, image = device.rollout, device.firmware_wanted
        if ref is None or image is None:
            continue
        same = (ref.scope, image.version, image.sha256, id(ref.rollout))
        gid = ids.get(same)
        if gid is None:
            spec = RolloutSpec.of(ref.rollout)
            gid = ids[same] = _id("firmware", ref.scope, image.version, image.sha256,
                                 list(spec.waves))
            found.setdefault(gid, (ref, image, spec, []))
        found[gid][3].append(mac)
    return {gid: Group(gid, "firmware", ref.subject, spec, image.version, image.vendor,
                       members(spec, key, macs), f"{ref.file}:{ref.line}")
            for gid, (ref, image, spec, macs) in sorted(found.items())}


def _catalog_image(catalog: Iterable[FirmwareImage], device: ResolvedDevice,
                   version: str) -> FirmwareImage | None:
    for image in catalog:
        if (image.vendor == device.vendor and device.model.name in image.models
                and image.version == version):
            return image
    return None


@dataclass(frozen=True)
class Holds:
    """Phones a firmware rollout holds back: rendered with their previous firmware (`held`),
    or, when that version is gone from the catalog, kept as published (`frozen`)."""

    held: Mapping[str, Held] = field(default_factory=dict)
    frozen: Mapping[str, str] = field(default_factory=dict)  # mac -> why


def holds_for(group: Group, published: frozenset[int], previous: Callable[[str], str | None],
              resolved: Mapping[str, ResolvedDevice],
              catalog: Sequence[FirmwareImage]) -> Holds:
    held: dict[str, Held] = {}
    frozen: dict[str, str] = {}
    last = len(group.spec.waves)
    for wave, macs in group.waves.items():
        if wave in published:
            continue
        why = f"rollout {group.id}: wave {wave}/{last} not yet published"
        for mac in macs:
            before = previous(mac)
            if before == group.version:
                continue  # it has the version already
            if before is None:
                held[mac] = Held(None, why)
                continue
            image = _catalog_image(catalog, resolved[mac], before)
            if image is None:
                frozen[mac] = (f"{why}; its previous firmware {before} is no longer in the "
                               "catalog, so its files stay as published")
            else:
                held[mac] = Held(image, why)
    return Holds(held, frozen)


def _merge(parts: Iterable[Holds]) -> Holds:
    held: dict[str, Held] = {}
    frozen: dict[str, str] = {}
    for h in parts:
        held.update(h.held)
        frozen.update(h.frozen)
    return Holds(held, frozen)


def first_holds(groups: Mapping[str, Group], book: Book,
                resolved: Mapping[str, ResolvedDevice], catalog: Sequence[FirmwareImage],
                now: float) -> Holds:
    """Before observing: the waves as the last run left them (a new rollout: its start)."""
    parts = []
    for gid, group in groups.items():
        stored = book.rollouts.get(gid)
        if stored is not None:
            published = frozenset(range(1, stored.state.wave + 1))
        else:
            published = step(group.spec, None, gid, group.waves, {}, now).published
        parts.append(holds_for(group, published, lambda m: book.firmware.get(m), resolved,
                               catalog))
    return _merge(parts)


# --- decisions (after observing) ---------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A rollout as the plan shows it, and what apply records of it."""

    id: str
    kind: str
    subject: str
    action: str  # start | advance | soaking | waiting | halted | resumed | done
    message: str
    wave: int  # the highest published wave after this run
    waves: int
    phones: int
    per_wave: tuple[int, ...]
    reading: GateReading | None  # the gate of the wave it waits on
    held: int  # phones held back in this plan
    held_changes: int = 0  # their files left out of the plan (policy)
    next_phones: int = 0  # what the next wave would change: phones ...
    next_changes: int = 0  # ... and files (policy)
    state: RolloutState | None = None
    version: str | None = None
    spec: RolloutSpec | None = None
    phone_waves: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)
    seen: Mapping[str, Seen] = field(default_factory=dict, repr=False, compare=False)
    member_digests: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    changed: bool = False  # the decision moved the rollout (it started, advanced, halted ...)

    @property
    def event(self) -> bool:
        """A wave started, or the rollout halted or resumed, in this run (not: still halted)."""
        return self.changed and self.action in EVENTS

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "subject": self.subject,
                "action": self.action, "message": self.message, "wave": self.wave,
                "waves": self.waves, "phones": self.phones, "per_wave": list(self.per_wave),
                "gate": self.reading.to_json() if self.reading else None,
                "held": self.held, "held_changes": self.held_changes,
                "next": ({"wave": self.wave + 1, "phones": self.next_phones,
                          "changes": self.next_changes} if self.wave < self.waves else None),
                "halted": self.state.halted if self.state else None}


def _previous(mac: str, paths: Mapping[str, Sequence[tuple[str, str]]],
              manifests: Mapping[str, Manifest], book: Book) -> str | None:
    """The firmware a phone's files were last published with: the book (recorded when they
    were), else the manifest entry of its file published last (an entry's firmware is
    written when the file is put: a file whose content did not change with the firmware keeps
    an older one), else None (installed)."""
    if mac in book.firmware:
        return book.firmware[mac]
    entries = [entry for target, path in paths.get(mac, ())
               if (manifest := manifests.get(target)) is not None
               and (entry := manifest.files.get(path)) is not None]
    if not entries:
        return None
    return max(entries, key=lambda e: (e.mtime, e.firmware is not None)).firmware


def _seen_all(group: Group, state: RolloutState,
              paths: Mapping[str, Sequence[tuple[str, str]]], manifests: Mapping[str, Manifest],
              lasts: Lasts, now: float, parse_agent: AgentFirmware,
              version_of: Callable[[str], str | None]) -> dict[str, Seen]:
    """Every phone of the published waves, seen since its wave started."""
    out = {}
    for wave in range(1, state.wave + 1):
        since = state.started[wave - 1] if wave <= len(state.started) else now
        for mac in group.waves.get(wave, []):
            out[mac] = seen(paths.get(mac, ()), manifests, lasts, since, version_of(mac),
                            group.vendor, parse_agent)
    return out


def _report(group: Group, previous: RolloutState | None, decision: Decision,
            reading_of: dict[str, Seen], held: int, next_phones: int, held_changes: int = 0,
            next_changes: int = 0, digests: Mapping[str, str] | None = None) -> Report:
    state = decision.state
    return Report(group.id, group.kind, group.subject, decision.action, decision.message,
                  state.wave, len(group.spec.waves), group.phones,
                  tuple(len(group.waves.get(w, [])) for w in range(1, len(group.spec.waves) + 1)),
                  decision.reading, held, held_changes, next_phones, next_changes, state,
                  group.version, group.spec, group.wave_of(), reading_of, digests or {},
                  changed=previous is None or previous.id != state.id
                  or (previous.wave, previous.halted) != (state.wave, state.halted))


def decide(groups: Mapping[str, Group], book: Book, resolved: Mapping[str, ResolvedDevice],
           catalog: Sequence[FirmwareImage], paths: Mapping[str, Sequence[tuple[str, str]]],
           manifests: Mapping[str, Manifest], lasts: Lasts, now: float,
           parse_agent: AgentFirmware = agent_firmware) -> tuple[Holds, list[Report]]:
    """Firmware rollouts: step each one with its gate as observed, then which phones keep
    their previous firmware. `paths`: mac -> its (target, path) files. Pure."""
    parts = []
    reports = []
    for gid, group in groups.items():
        stored = book.rollouts.get(gid)
        previous = stored.state if stored is not None else None
        if previous is not None:
            seen_now = _seen_all(group, previous, paths, manifests, lasts, now,
                                 parse_agent, _constant(group.version))
        else:
            seen_now = {}
        decision = step(group.spec, previous, gid, group.waves,
                        {m: s.uptake for m, s in seen_now.items()}, now)
        holds = holds_for(group, decision.published,
                          lambda m: _previous(m, paths, manifests, book), resolved, catalog)
        parts.append(holds)
        following = group.waves.get(decision.state.wave + 1, [])
        nxt = sum(1 for m in following if m in holds.held or m in holds.frozen)
        reports.append(_report(group, previous, decision, seen_now,
                               len(holds.held) + len(holds.frozen), nxt))
    for gid, stored in sorted(book.rollouts.items()):
        if stored.kind == "firmware" and stored.closed is None and gid not in groups:
            reports.append(_removed(gid, stored))
    return _merge(parts), reports


def _removed(gid: str, stored: Stored) -> Report:
    """A firmware rollout whose pin left the desired state (a revert, or a new version): its
    phones get what the desired state gives them now, all at once (the plan lists them)."""
    given = sum(1 for w, _, _ in stored.phones.values() if w <= stored.state.wave)
    waves = len(stored.waves)
    per_wave = tuple(sum(1 for w, _, _ in stored.phones.values() if w == i)
                     for i in range(1, waves + 1))
    return Report(gid, stored.kind, stored.subject, "removed",
                  f"left the desired state at wave {stored.state.wave}/{waves}: the {given} "
                  f"phone(s) it gave {stored.version} get what the desired state gives them now, "
                  "at once", stored.state.wave, waves, len(stored.phones), per_wave, None, 0,
                  state=stored.state, version=stored.version, changed=True)


def _constant(value: str | None) -> Callable[[str], str | None]:
    return lambda _mac: value


def rollback_versions(book: Book, groups: Mapping[str, Group]) -> frozenset[str]:
    """Versions delivered by a firmware rollout that was halted or left the desired state: a
    phone going back from one of them is a rollback, not a downgrade to refuse."""
    out = set()
    for gid, stored in book.rollouts.items():
        if stored.kind == "firmware" and stored.version and (
                gid not in groups or stored.state.halted):
            out.add(stored.version)
    return frozenset(out)


# --- policy.rollout: stage a plan that affects many phones --------------------------------------


_MAC_IN_NAME = re.compile(r"[0-9a-f]{12}")


def owner_of(path: str, dirs: Mapping[str, str], macs: Container[str]) -> str | None:
    """The phone a published path belongs to: its token directory, else a MAC in its name."""
    head, sep, name = path.rpartition("/")
    if sep and head in dirs:
        return dirs[head]
    for m in _MAC_IN_NAME.finditer(name.lower()):
        if m.group(0) in macs:
            return m.group(0)
    return None


@dataclass(frozen=True)
class Inputs:
    """What make_plan needs to stage changes (everything observed or remembered)."""

    book: Book
    key: bytes
    now: float
    lasts: Lasts
    policy: PolicyRollout | None
    firmware: tuple[Report, ...] = ()
    frozen: Mapping[str, str] = field(default_factory=dict)  # mac -> why (firmware rollouts)
    members: frozenset[str] = frozenset()  # phones of firmware rollouts
    rollbacks: frozenset[str] = frozenset()
    parse_agent: AgentFirmware = agent_firmware


@dataclass(frozen=True)
class Staged:
    kept: list[FileChange]
    held: list[FileChange]
    reports: tuple[Report, ...]


def _digest(items: Iterable[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()[:16]


def stage(changes: Sequence[FileChange], inputs: Inputs,
          desired: Mapping[str, Mapping[str, DesiredFile]],
          manifests: Mapping[str, Manifest]) -> Staged:
    """Leave out of the plan what rollouts hold back. Pure."""
    devices = {a.device for want in desired.values() for a in want.values() if a.device}
    dirs: dict[str, str] = {}
    shared: set[str] = set()
    for want in desired.values():
        for path, a in want.items():
            head = path.rpartition("/")[0]
            if a.device and head:
                if dirs.setdefault(head, a.device) != a.device:
                    shared.add(head)
    for head in shared:
        del dirs[head]

    def whose(c: FileChange) -> str | None:
        return c.device or owner_of(c.path, dirs, devices)

    kept: list[FileChange] = []
    held: list[FileChange] = []
    candidates: dict[str, list[FileChange]] = {}
    exempt: set[str] = set()
    for c in changes:
        mac = whose(c)
        if mac is not None and mac in inputs.frozen:
            held.append(c)
            continue
        if mac is None or mac not in devices:
            kept.append(c)  # a shared file, or a phone no longer desired: nothing to stage
            continue
        candidates.setdefault(mac, []).append(c)
        entry = manifests[c.target].files.get(c.path) if c.target in manifests else None
        wanted = desired.get(c.target, {}).get(c.path)
        if entry is not None and wanted is not None and entry.firmware != wanted.firmware and (
                mac in inputs.members or entry.firmware in inputs.rollbacks):
            exempt.add(mac)  # released by a firmware rollout, or rolled back: not staged again
    present = {a.device for target, want in desired.items() if target in manifests
               for path, a in want.items() if a.device and path in manifests[target].files}
    # a phone with files on a target already: an update, a delete, or a create beside them
    established = {mac for mac, cs in candidates.items()
                   if mac in present or any(c.reason != "create" for c in cs)}
    staged = {m: cs for m, cs in candidates.items() if m in established and m not in exempt}
    for mac, cs in candidates.items():
        if mac not in staged:
            kept += cs
    policy = inputs.policy
    report = None
    if policy is None:
        for cs in staged.values():
            kept += cs
    else:
        report, later = _policy(policy, staged, desired, manifests, inputs)
        for mac, cs in staged.items():
            (held if mac in later else kept).extend(cs)
    reports = inputs.firmware + ((report,) if report is not None else ())
    return Staged(sorted(kept), sorted(held), reports)


def _policy(policy: PolicyRollout, staged: Mapping[str, Sequence[FileChange]],
            desired: Mapping[str, Mapping[str, DesiredFile]], manifests: Mapping[str, Manifest],
            inputs: Inputs) -> tuple[Report | None, set[str]]:
    """The policy rollout's decision and the phones whose changes wait for a later wave.

    A rollout that is under way goes on while the phones it does not know (or whose change
    changed again) are at most `above`; those few go out at once. More of them start a new
    rollout with everything that is pending. Nothing pending ends it."""
    if not staged:
        return None, set()
    spec = RolloutSpec.of(policy)
    owned: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (target, mac) -> (path, sha)
    firmware: dict[str, str | None] = {}
    for target, want in desired.items():
        for path, a in want.items():
            if a.device is None:
                continue
            if a.firmware:
                firmware.setdefault(a.device, a.firmware)
            if a.device in staged:
                owned.setdefault((target, a.device), []).append((path, a.sha256))
    digests = {}
    for mac, cs in staged.items():
        for target in sorted({c.target for c in cs}):
            files = owned.get((target, mac), [])
            files += [(c.path, "-") for c in cs if c.target == target and c.action == "delete"]
            digests[f"{target} {mac}"] = _digest(files)
    active = next((r for r in inputs.book.active("policy")), None)
    fresh = {k for k, d in digests.items()
             if active is None or active[1].members.get(k) != d}
    fresh_phones = {k.split(" ", 1)[1] for k in fresh}
    if active is not None and len(fresh_phones) <= policy.above:
        gid, stored = active
        member_digests = dict(stored.members)
        phones = {k.split(" ", 1)[1] for k in member_digests}
        previous: RolloutState | None = stored.state
    elif len(staged) > policy.above:
        member_digests = digests
        phones = set(staged)
        gid = "policy-" + _digest(digests.items())[:12]
        previous = None
    else:
        return None, set()
    waves = members(spec, inputs.key, phones)
    group = Group(gid, "policy", f"policy.rollout: a change to {len(phones)} phones "
                  f"(above {policy.above})", spec, None, None, waves)
    seen_now: dict[str, Seen] = {}
    if previous is not None and previous.id == gid:
        seen_now = _seen_all(group, previous, _paths_of(desired), manifests, inputs.lasts,
                             inputs.now,
                             inputs.parse_agent, firmware.get)
    decision = step(spec, previous, gid, waves, {m: s.uptake for m, s in seen_now.items()},
                    inputs.now)
    wave_of = group.wave_of()
    later = {mac for mac in staged if mac in phones
             and wave_of.get(mac, 1) not in decision.published}
    following = decision.state.wave + 1
    nxt = [mac for mac in later if wave_of.get(mac) == following]
    report = _report(group, previous, decision, seen_now, len(later), len(nxt),
                     sum(len(staged[m]) for m in later), sum(len(staged[m]) for m in nxt),
                     member_digests)
    return report, later


def _paths_of(desired: Mapping[str, Mapping[str, DesiredFile]]
              ) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for target, want in desired.items():
        for path, a in want.items():
            if a.device:
                out.setdefault(a.device, []).append((target, path))
    return out


# --- record (apply) ----------------------------------------------------------------------------


def record(book: Book, reports: Sequence[Report], groups: Mapping[str, Group],
           published_firmware: Mapping[str, str | None], now: float,
           moves: bool = True) -> Book:
    """The book after an apply: each rollout's new state, the gate figures of its events,
    which wave each phone was in and when it took the change, what each phone of a firmware
    rollout was published with. Rollouts no longer in the desired state are closed (unless
    not `moves`: then only the firmware is recorded). Pure."""
    rollouts = dict(book.rollouts)
    seen_ids = set()
    for r in reports:
        if r.state is None or r.spec is None:
            continue
        seen_ids.add(r.id)
        old = rollouts.get(r.id)
        phones: dict[str, tuple[int, float | None, float | None]] = {}
        before = old.phones if old is not None and old.state.id == r.id else {}
        for mac, wave in r.phone_waves.items():
            took, reported = before.get(mac, (wave, None, None))[1:]
            s = r.seen.get(mac)
            if s is not None:
                took = took or s.took
                reported = reported or s.reported
            phones[mac] = (wave, took, reported)
        gates = tuple(old.gates) if old is not None else ()
        if r.event:
            gates += ({"wave": r.wave, "at": now, "action": r.action, "message": r.message,
                       "reading": r.reading.to_json() if r.reading else None},)
        rollouts[r.id] = Stored(r.kind, r.subject, r.version, r.spec.waves,
                                tuple(sorted(r.spec.canary)), r.state, phones,
                                r.member_digests or (old.members if old else {}), gates[-50:],
                                now)
    for gid, stored in list(rollouts.items()):
        if moves and stored.closed is None and gid not in seen_ids:
            # A firmware rollout ends when its pin leaves the desired state (a revert, a new
            # version); a policy rollout when nothing of it is pending (or a new one began).
            why = ("nothing of it left to publish, or superseded by a newer change"
                   if stored.kind == "policy" else
                   "removed from the desired state (a revert, or a new version)")
            rollouts[gid] = replace(stored, closed=why, updated=now)
    if len(rollouts) > KEEP:
        finished = sorted((r.updated, gid) for gid, r in rollouts.items() if r.closed)
        for _, gid in finished[:len(rollouts) - KEEP]:
            del rollouts[gid]
    members = {m for g in groups.values() if g.kind == "firmware" for ms in g.waves.values()
               for m in ms}
    firmware = {m: v for m, v in book.firmware.items() if m in members}
    firmware.update({m: v for m, v in published_firmware.items() if m in members})
    return Book(rollouts, firmware)


# --- for people: status, history ---------------------------------------------------------------


def phone_rollouts(book: Book, mac: str) -> list[dict[str, Any]]:
    """Which wave of which rollout a phone was in, when that wave started, when it took it."""
    out = []
    for gid, stored in sorted(book.rollouts.items(), key=lambda kv: kv[1].state.started[:1]):
        entry = stored.phones.get(mac)
        if entry is None:
            continue
        wave, took, reported = entry
        out.append({"rollout": gid, "kind": stored.kind, "subject": stored.subject,
                    "wave": wave, "waves": len(stored.waves),
                    "wave_started": stored.wave_started(wave)
                    if wave <= stored.state.wave else None,
                    "took": took, "reported": reported, "halted": stored.state.halted,
                    "closed": stored.closed})
    return out
