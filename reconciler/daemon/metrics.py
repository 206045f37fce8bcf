"""Prometheus metrics of the reconcile daemon (the only module importing prometheus_client).

Served over HTTP (`--metrics-port`, 127.0.0.1 unless `--metrics-address`) and/or written as a
node-exporter textfile (`--metrics-textfile`, atomically: temporary file, then rename). Metrics
live in a private registry, so the textfile holds provctl's metrics only.

    provctl_target_synced{target}                         1 if the tip is applied there, else 0
    provctl_last_applied_timestamp_seconds{target}        when the last successful apply ended
    provctl_last_applied_revision_timestamp_seconds{target}  commit time of the applied revision
    provctl_run_duration_seconds                          histogram of reconcile runs
    provctl_runs_total{outcome}                           noop|changed|failed|refused|invalid
    provctl_changes_applied_total{target,action}          files put / deleted
    provctl_failures_total{target,reason}                 invalid|failed|refused
    provctl_drift_files{target}                           drifted files seen by the last run
    provctl_redirect_states{state}                        MACs per redirect state (0 if unknown)
    provctl_git_fetch_failures_total                      failed fetches of the followed remote
    provctl_rollout_wave{rollout,kind}                    the highest published wave of a rollout
    provctl_rollout_waves{rollout,kind}                   how many waves it has
    provctl_rollout_halted{rollout,kind}                  1 if its gate failed and it halted
    provctl_rollout_held_phones{rollout,kind}             phones it holds back now
    provctl_build_info{version,python}                    1; which provctl is running
    provctl_devices{state}                                phones per uptake state (access logs)
    provctl_fetches_total{target,status}                  requests in the access log, by status
    provctl_unknown_fetches_total{target}                 misses on paths shaped like a phone's
    provctl_scanning_clients{target}                      addresses asking for many unknown paths
    provctl_access_log_unparsed_lines_total{target}       access-log lines that did not parse
    provctl_publish_to_fetch_seconds                      histogram: publish -> the phone's fetch
    provctl_onboarding_windows{state}                     phones per onboarding window state
    provctl_onboarding_hijack_suspected                   onboarding phones whose own file was
                                                          fetched from more than one address
    provctl_bootstrap_scanning_clients{target}            addresses asking a bootstrap URL for
                                                          MACs that are not onboarding
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client import write_to_textfile as _write_textfile

from reconciler import __version__

REDIRECT_STATES = ("active", "disabled", "provision", "deprovision", "conflict")
FAILURE_REASONS = ("invalid", "failed", "refused")
ACTIONS = ("put", "delete")
OUTCOMES = ("noop", "changed", "failed", "refused", "invalid")
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DEVICE_STATES = ("current", "pending", "stale", "never-fetched", "errors")
WINDOW_STATES = ("waiting", "arrived", "expired")
# publish -> fetch: minutes after a reboot, hours until the nightly resync, days when off
UPTAKE_BUCKETS = (60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


class LogCounts(Protocol):
    """What one run read from one access log (reconciler/uptake/observe.py LogObservation)."""

    target: str
    statuses: Mapping[int, int]
    unknown: int
    unparsed: int
    latencies: Sequence[float]


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: the textfile stays small and stable
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.synced = Gauge("provctl_target_synced",
                            "1 if the newest revision is applied on the target, else 0",
                            ["target"], registry=r)
        self.last_applied = Gauge("provctl_last_applied_timestamp_seconds",
                                  "Unix time the last successful apply on the target ended",
                                  ["target"], registry=r)
        self.revision_time = Gauge("provctl_last_applied_revision_timestamp_seconds",
                                   "Commit time of the revision last applied on the target",
                                   ["target"], registry=r)
        self.duration = Histogram("provctl_run_duration_seconds",
                                  "Duration of reconcile runs (load to record)",
                                  buckets=BUCKETS, registry=r)
        self.runs = Counter("provctl_runs", "Reconcile runs by outcome", ["outcome"],
                            registry=r)
        self.changes = Counter("provctl_changes_applied",
                               "Files written or deleted on targets", ["target", "action"],
                               registry=r)
        self.failures = Counter("provctl_failures",
                                "Runs that failed, per target and reason", ["target", "reason"],
                                registry=r)
        self.drift = Gauge("provctl_drift_files", "Drifted files seen by the last run",
                           ["target"], registry=r)
        self.redirect = Gauge("provctl_redirect_states", "Devices per redirect state",
                              ["state"], registry=r)
        self.fetch_failures = Counter("provctl_git_fetch_failures",
                                      "Failed fetches of the followed git remote", registry=r)
        labels = ["rollout", "kind"]
        self.rollout_wave = Gauge("provctl_rollout_wave",
                                  "Highest published wave of a rollout", labels, registry=r)
        self.rollout_waves = Gauge("provctl_rollout_waves", "Waves of a rollout", labels,
                                   registry=r)
        self.rollout_halted = Gauge("provctl_rollout_halted",
                                    "1 if the rollout halted (its gate failed after soak x 2)",
                                    labels, registry=r)
        self.rollout_held = Gauge("provctl_rollout_held_phones",
                                  "Phones the rollout holds back", labels, registry=r)
        self._rollouts: set[tuple[str, str]] = set()
        self.build_info = Gauge("provctl_build_info", "Always 1; labels say which provctl runs",
                                ["version", "python"], registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.devices = Gauge("provctl_devices", "Phones per uptake state, from the access logs",
                             ["state"], registry=r)
        self.fetches = Counter("provctl_fetches", "Requests in the targets' access logs, by "
                               "HTTP status", ["target", "status"], registry=r)
        self.unknown = Counter("provctl_unknown_fetches", "Requests that missed on a path shaped "
                               "like a phone's (a token directory or a MAC-named file)",
                               ["target"], registry=r)
        self.scanning = Gauge("provctl_scanning_clients", "Client addresses that asked for many "
                              "unknown paths", ["target"], registry=r)
        self.unparsed = Counter("provctl_access_log_unparsed_lines",
                                "Access-log lines that did not parse", ["target"], registry=r)
        self.uptake_time = Histogram("provctl_publish_to_fetch_seconds",
                                     "Time from publishing a phone's file to its first fetch",
                                     buckets=UPTAKE_BUCKETS, registry=r)
        self.windows = Gauge("provctl_onboarding_windows", "Phones per onboarding window state "
                             "(docs/zero-touch.md)", ["state"], registry=r)
        self.hijack = Gauge("provctl_onboarding_hijack_suspected", "Onboarding phones whose own "
                            "file was fetched from more than one address during the window",
                            registry=r)
        self.bootstrap_scanning = Gauge("provctl_bootstrap_scanning_clients", "Addresses that "
                                        "asked a bootstrap URL for MACs that are not onboarding",
                                        ["target"], registry=r)
        for state in WINDOW_STATES:
            self.windows.labels(state).set(0)
        for state in REDIRECT_STATES:
            self.redirect.labels(state).set(0)
        for outcome in OUTCOMES:
            self.runs.labels(outcome)
        self._targets: set[str] = set()
        self._bootstrap_targets: set[str] = set()

    # --- updates ------------------------------------------------------------------------------

    def target(self, name: str) -> None:
        """Create a target's series at zero so alerts see them before anything happens."""
        if name in self._targets:
            return
        self._targets.add(name)
        self.synced.labels(name).set(0)
        self.drift.labels(name).set(0)
        for action in ACTIONS:
            self.changes.labels(name, action)
        for reason in FAILURE_REASONS:
            self.failures.labels(name, reason)

    def run(self, outcome: str, seconds: float) -> None:
        self.runs.labels(outcome).inc()
        self.duration.observe(seconds)

    def applied(self, target: str, *, synced: bool, when: float | None = None,
                revision_time: float | None = None, puts: int = 0, deletes: int = 0,
                drift: int | None = None) -> None:
        self.target(target)
        self.synced.labels(target).set(1 if synced else 0)
        if when is not None:
            self.last_applied.labels(target).set(when)
        if revision_time is not None:
            self.revision_time.labels(target).set(revision_time)
        if puts:
            self.changes.labels(target, "put").inc(puts)
        if deletes:
            self.changes.labels(target, "delete").inc(deletes)
        if drift is not None:
            self.drift.labels(target).set(drift)

    def failed(self, target: str, reason: str) -> None:
        self.target(target)
        self.synced.labels(target).set(0)
        self.failures.labels(target, reason).inc()

    def redirect_states(self, counts: Mapping[str, int] | None) -> None:
        """MACs per redirect state; states not given (or no data at all) read 0."""
        counts = counts or {}
        for state in sorted(set(REDIRECT_STATES) | set(counts)):
            self.redirect.labels(state).set(counts.get(state, 0))

    def rollouts(self, reports: Sequence[Any]) -> None:
        """The rollouts of the last run (pipeline/waves.py Report); others' series go."""
        reports = [r for r in reports if r.action != "removed"]
        now = {(r.id, r.kind) for r in reports}
        for gone in self._rollouts - now:
            for gauge in (self.rollout_wave, self.rollout_waves, self.rollout_halted,
                          self.rollout_held):
                gauge.remove(*gone)
        self._rollouts = now
        for r in reports:
            self.rollout_wave.labels(r.id, r.kind).set(r.wave)
            self.rollout_waves.labels(r.id, r.kind).set(r.waves)
            self.rollout_halted.labels(r.id, r.kind).set(1 if r.action == "halted" else 0)
            self.rollout_held.labels(r.id, r.kind).set(r.held)

    def uptake(self, logs: Iterable[LogCounts], states: Mapping[str, int] | None,
               scanning: Mapping[str, int]) -> None:
        """One observation of the access logs, the phones per state, scanners per target."""
        for obs in logs:
            self.unknown.labels(obs.target).inc(obs.unknown)
            self.unparsed.labels(obs.target).inc(obs.unparsed)
            for status, n in obs.statuses.items():
                self.fetches.labels(obs.target, str(status)).inc(n)
            for seconds in obs.latencies:
                self.uptake_time.observe(seconds)
            self.scanning.labels(obs.target).set(scanning.get(obs.target, 0))
        if states is not None:
            for state in sorted(set(DEVICE_STATES) | set(states)):
                self.devices.labels(state).set(states.get(state, 0))

    def onboarding(self, states: Mapping[str, int], suspected: int,
                   scanning: Mapping[str, int]) -> None:
        """The onboarding windows of one run (pipeline/bootstrap.py Onboarding)."""
        for state in sorted(set(WINDOW_STATES) | set(states)):
            self.windows.labels(state).set(states.get(state, 0))
        self.hijack.set(suspected)
        for target in set(scanning) | self._bootstrap_targets:
            self.bootstrap_scanning.labels(target).set(scanning.get(target, 0))
        self._bootstrap_targets |= set(scanning)

    def fetch_failed(self) -> None:
        self.fetch_failures.inc()

    # --- export -------------------------------------------------------------------------------

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Serve /metrics from a background thread."""
        start_http_server(port, addr=address, registry=self.registry)

    def write_textfile(self, path: Path) -> None:
        """Write the node-exporter textfile atomically (a temporary name, then rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_textfile(str(path), self.registry)
