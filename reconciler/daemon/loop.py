"""The reconcile daemon: follow a branch and keep the targets at its newest revision.

One cycle:

    follow (watch .git refs, or fetch the remote) → settle (coalesce a burst of commits)
    → read the tip → apply (reconcile.apply: load … record) → metrics → wait

- **Newest revision only.** A burst of commits is coalesced (the refs must be quiet for a short
  debounce); the tip is read again right before a run starts, so a run never starts on a stale
  revision when a newer one is known.
- **Keep last good.** A revision that fails to validate or render applies nothing; its attempt
  and error are recorded per target in status.json (last attempted ≠ last applied) and it is not
  retried until a new commit arrives (or SIGHUP). Meanwhile each interval only *reports* drift
  against the last applied revision (read-only plan): nothing is written on behalf of a desired
  state that is no longer the newest.
- **Drift.** Every `--interval` seconds the tip is applied again even without a new commit: a
  no-op when nothing drifted; policy (`policy.drift`) decides whether drift is reported or healed.
- **Failures back off** exponentially (BACKOFF_MIN doubling up to BACKOFF_MAX); a new commit or
  SIGHUP retries at once.
- **One daemon per state directory**: an fcntl lock on `<state>/daemon.lock` holding the pid; a
  second daemon exits 3 naming the holder.
- **Signals.** SIGTERM/SIGINT set the stop flag: a load in progress stops at once (it is
  polled while parsing; nothing was written), the apply in flight finishes its batch, records
  what was done and releases the target locks; the daemon exits 0. SIGHUP reloads: forgets
  invalid revisions and back-off, re-opens the repository, fetches and runs now.

The followed repository lives in daemon/source.py: a local work tree watched with watchdog,
with polling as a fallback, or a remote URL cloned once into `<state>/repo` and fetched every
interval, the notes recorded after an apply pushed back to it. The daemon's own lock is
daemon/lock.py. The git operations themselves live in desired/load.py (reading) and
gitops/repo.py (notes, fetching).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.errors import (
    ConfigError,
    Interrupted,
    OperationError,
    ProvctlError,
    Refused,
)
from reconciler.daemon import logs
from reconciler.daemon.lock import daemon_lock
from reconciler.daemon.source import (
    LocalRepo,
    RemoteRepo,
    _local_desired,
    _problem,
    is_url,
)
from reconciler.pipeline import receipt as record
from reconciler.pipeline.outcome import Refusal
from reconciler.pipeline.run import ApplyResult, Options, apply, plan

log = logging.getLogger("provctl.daemon")

DEBOUNCE = 0.4  # seconds the refs must stay quiet before a run starts on a new commit
DEBOUNCE_MAX = 5.0  # ... but a steady stream of commits is not waited out longer than this
POLL = 5.0  # local repository: read the tip at least this often (watchdog fallback)
BACKOFF_MIN = 2.0
BACKOFF_MAX = 300.0


# --- configuration ----------------------------------------------------------------------------


@dataclass
class Config:
    repo: str  # a path, or a URL to clone
    branch: str = "main"
    subdir: str | None = None
    interval: float = 60.0
    state_dir: Path | None = None
    log_format: str = "text"
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    metrics_textfile: Path | None = None
    once: bool = False
    batch_pause: float = 0.0
    verbose: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", required=True,
                   help="git work tree to watch, or a URL (ssh/https/file) to clone and fetch")
    p.add_argument("--subdir", help="the desired state's directory inside the repository")
    p.add_argument("--branch", default="main", help="branch to follow (default: main)")
    p.add_argument("--interval", type=_positive, default=60.0,
                   help="seconds between drift checks and fetches (default: 60)")
    p.add_argument("--state-dir", type=Path,
                   help="status, receipts, lock, clone (default: $PROVCTL_STATE_DIR, "
                        "$STATE_DIRECTORY, or <repo>/.provctl for a local repository)")
    p.add_argument("--log-format", choices=logs.FORMATS, default="text",
                   help="text, or json: one object per line (journald keeps them as they are)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    p.add_argument("--metrics-address", default="127.0.0.1",
                   help="address of the metrics server (default: 127.0.0.1)")
    p.add_argument("--metrics-textfile", type=Path,
                   help="write metrics to this node-exporter textfile (*.prom)")
    p.add_argument("--batch-pause", type=float, default=0.0,
                   help="seconds to pause between batches of files (throttle uploads)")
    p.add_argument("--once", action="store_true",
                   help="one cycle (fetch, apply the tip) and exit with apply's exit code")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(repo=args.repo, branch=args.branch, subdir=args.subdir,
                  interval=args.interval, state_dir=args.state_dir, log_format=args.log_format,
                  metrics_port=args.metrics_port, metrics_address=args.metrics_address,
                  metrics_textfile=args.metrics_textfile, once=args.once,
                  batch_pause=args.batch_pause, verbose=getattr(args, "verbose", False))


def state_dir_for(cfg: Config) -> Path:
    if cfg.state_dir is not None:
        return cfg.state_dir
    env = os.environ.get("PROVCTL_STATE_DIR") or os.environ.get("STATE_DIRECTORY", "")
    if env:
        return Path(env.split(":")[0])  # systemd's StateDirectory= may list several
    if is_url(cfg.repo):
        raise ConfigError([_problem("--state-dir", "a remote --repo needs --state-dir "
                                    "(the clone, status and receipts live there)")])
    return record.default_state_dir(_local_desired(cfg))


# --- the loop ---------------------------------------------------------------------------------


_OUTCOME = {0: "noop", 2: "changed", 1: "failed", 3: "refused"}


class Daemon:
    def __init__(self, cfg: Config, state_dir: Path, metrics: Any = None):
        self.cfg = cfg
        self.state_dir = state_dir
        self.metrics = metrics
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.reload = threading.Event()
        self.source: LocalRepo | RemoteRepo = self._source()
        self.last_rev: str | None = None  # the revision of the daemon's last run (good or not)
        self.applied_rev: str | None = _applied_revision(record.read_status(state_dir))
        self.invalid: dict[str, str] = {}  # revision -> why it was refused; not retried
        self.backoff = BACKOFF_MIN
        self.retry_at: float | None = None
        self.next_drift = 0.0
        self.next_fetch = 0.0
        self.fetch_backoff = BACKOFF_MIN
        self.known_targets: set[str] = set(record.read_status(state_dir))
        self.stopped_by = "stop"
        self.fetch_failed = False

    def _source(self) -> LocalRepo | RemoteRepo:
        if is_url(self.cfg.repo):
            return RemoteRepo(self.cfg, self.state_dir)
        return LocalRepo(self.cfg)

    # signals (main thread) --------------------------------------------------------------------

    def install_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            # No logging here: the handler may interrupt a logging call of the main thread.
            self.stopped_by = signal.Signals(signum).name
            self.stopping.set()
            self.wake.set()

        def hup(_signum: int, _frame: Any) -> None:
            self.reload.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)

    # the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Loop until SIGTERM (exit 0); with --once, one cycle and apply's exit code."""
        log.info("daemon started", extra={"repo": self.cfg.repo, "branch": self.cfg.branch,
                                          "state_dir": str(self.state_dir),
                                          "interval": self.cfg.interval, "pid": os.getpid()})
        if not self.cfg.once:
            self.source.watch(self.wake)
        try:
            if self.cfg.once:
                return self._once()
            while not self.stopping.is_set():
                if self.reload.is_set():
                    self._reload()
                try:
                    self.cycle()
                except Exception:  # a bug outside a run: log it, back off, keep following
                    log.exception("cycle crashed; retrying in %.0fs", self.backoff)
                    self.retry_at = time.monotonic() + self.backoff
                    self.backoff = min(self.backoff * 2, BACKOFF_MAX)
                self._sleep()
            log.info("%s: daemon stopped (the batch in flight was finished and recorded)",
                     self.stopped_by, extra={"revision": self.last_rev})
            return 0
        finally:
            self.source.close()

    def _once(self) -> int:
        self._fetch(time.monotonic())
        tip = self.source.tip()
        if tip is None:
            log.error("branch %s not found in %s", self.cfg.branch, self.cfg.repo)
            return 1
        code = self._run(tip, "once")
        if self.stopping.is_set():
            return 0  # stopped by a signal: what was done is recorded; the next run completes it
        # The last fetched revision was reconciled, but a timer or cron job must see the failure.
        return 1 if self.fetch_failed and code in (0, 2) else code

    def cycle(self) -> None:
        """Fetch if due, settle a burst, read the tip, and run if there is something to do."""
        now = time.monotonic()
        self._fetch(now)
        tip = self.source.tip()
        if tip is None:
            log.debug("branch %s has no commit yet", self.cfg.branch)
            return
        if tip != self.last_rev and isinstance(self.source, LocalRepo):
            tip = self._settle(tip)
            if self.stopping.is_set() or tip is None:
                return
        now = time.monotonic()
        if tip != self.last_rev:
            reason = "commit" if self.last_rev else "start"
        elif tip in self.invalid:
            if now >= self.next_drift:
                self._report_last_good(tip)
                self.next_drift = time.monotonic() + self.cfg.interval
            return
        elif self.retry_at is not None and now >= self.retry_at:
            reason = "retry"
        elif now >= self.next_drift:
            reason = "drift"
        else:
            return
        if self.source.tip() != tip:
            # Right before starting: a newer commit came in; never run the stale one. The next
            # cycle (at once) settles the new burst.
            self.wake.set()
            return
        self._track(tip, self._run(tip, reason))

    def _settle(self, tip: str) -> str | None:
        """Wait until the refs are quiet for DEBOUNCE (bounded): a burst becomes one run."""
        deadline = time.monotonic() + DEBOUNCE_MAX
        while not self.stopping.is_set() and time.monotonic() < deadline:
            self.wake.clear()
            if self.wake.wait(DEBOUNCE):
                continue  # more activity: keep waiting
            newer = self.source.tip()
            if newer == tip:
                break
            tip = newer  # type: ignore[assignment]
        return tip

    def _sleep(self) -> None:
        now = time.monotonic()
        until = [self.next_drift]
        if self.retry_at is not None:
            until.append(self.retry_at)
        if isinstance(self.source, RemoteRepo):
            until.append(self.next_fetch)
        else:
            until.append(now + POLL)
        timeout = max(0.0, min(until) - now)
        if not self.stopping.is_set():
            self.wake.wait(timeout)
        self.wake.clear()

    def _reload(self) -> None:
        self.reload.clear()
        log.info("SIGHUP: reloading (forgetting invalid revisions and back-off, running now)")
        try:
            source = self._source()
        except ProvctlError as exc:
            log.error("reload: %s (keeping the repository as it was)", exc)
        else:
            self.source.close()
            self.source = source
            self.source.watch(self.wake)
        self.invalid.clear()
        self.last_rev = None
        self.retry_at = None
        self.backoff = BACKOFF_MIN
        self.next_fetch = 0.0
        self.fetch_backoff = BACKOFF_MIN
        self.known_targets |= set(record.read_status(self.state_dir))

    def _fetch(self, now: float) -> None:
        if not isinstance(self.source, RemoteRepo) or now < self.next_fetch:
            return
        try:
            self.source.refresh()
        except OperationError as exc:
            self.fetch_failed = True
            delay = min(self.fetch_backoff, self.cfg.interval)
            self.fetch_backoff = min(self.fetch_backoff * 2, BACKOFF_MAX)
            self.next_fetch = now + delay
            log.warning("%s (retrying in %.0fs)", exc, delay, extra={"retry_in": delay})
            if self.metrics is not None:
                self.metrics.fetch_failed()
                self._export()
            return
        self.fetch_failed = False
        self.fetch_backoff = BACKOFF_MIN
        self.next_fetch = now + self.cfg.interval

    def _track(self, rev: str, code: int) -> None:
        """Remember how the run on `rev` went: back off on failure, never retry invalid."""
        if self.stopping.is_set():
            return  # a run cut short by SIGTERM: the next daemon completes it
        self.last_rev = rev
        self.invalid = {r: why for r, why in self.invalid.items() if r == rev}
        self.next_drift = time.monotonic() + self.cfg.interval
        if rev in self.invalid:
            self.retry_at = None
        elif code in (0, 2):
            self.applied_rev = rev
            self.retry_at = None
            self.backoff = BACKOFF_MIN
        else:
            self.retry_at = time.monotonic() + self.backoff
            log.warning("run failed; retrying in %.0fs unless a new commit comes first",
                        self.backoff, extra={"revision": rev, "retry_in": self.backoff})
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    # one run ----------------------------------------------------------------------------------

    def _stop_check(self) -> Callable[[], bool]:
        """`Options.stop`: checked before each batch; honours --batch-pause between batches."""
        calls = 0

        def stop() -> bool:
            nonlocal calls
            calls += 1
            if self.cfg.batch_pause > 0 and calls > 1:
                self.stopping.wait(self.cfg.batch_pause)
            return self.stopping.is_set()

        return stop

    def _run(self, rev: str, reason: str) -> int:
        """Apply `rev` once; record, log and count the outcome. Returns apply's exit code."""
        started = time.monotonic()
        extra = {"revision": rev, "reason": reason}
        # A periodic drift check that changes nothing is routine: DEBUG, not a journal line a
        # minute.
        routine = reason == "drift"
        log.log(logging.DEBUG if routine else logging.INFO, "run started at %s (%s)", rev[:12],
                reason, extra=extra)
        try:
            self.source.prepare(rev)
            result = apply(Options(repo=self.source.desired, rev=rev, state_dir=self.state_dir,
                                   stop=self._stop_check(), cancel=self.stopping.is_set))
        except Interrupted:
            # SIGTERM while loading: nothing was written; the next daemon starts over.
            code, outcome = 1, "failed"
            log.info("%s while loading %s: nothing applied", self.stopped_by, rev[:12],
                     extra=extra)
        except ConfigError as exc:
            code, outcome = 1, "invalid"
            self._invalid(rev, exc)
        except ProvctlError as exc:
            code, outcome = exc.exit_code, _OUTCOME.get(exc.exit_code, "failed")
            self._failed(rev, str(exc), "refused" if isinstance(exc, Refused) else "failed")
        except Exception as exc:  # a bug: log it with its traceback, keep the daemon alive
            log.exception("run crashed", extra=extra)
            code, outcome = 1, "failed"
            self._failed(rev, f"internal error: {exc!r}", "failed")
        else:
            code = result.exit_code
            outcome = _OUTCOME.get(code, "failed")
            self._applied(rev, result)
        if self.stopping.is_set() and code != 0 and outcome != "invalid":
            outcome = "failed"
        seconds = time.monotonic() - started
        log.log(logging.DEBUG if routine and outcome == "noop" else logging.INFO,
                "run finished: %s in %.2fs", outcome, seconds,
                extra={**extra, "outcome": outcome, "exit_code": code,
                       "duration": round(seconds, 3)})
        if self.metrics is not None:
            self.metrics.run(outcome, seconds)
            self._export()
        return code

    def _applied(self, rev: str, result: ApplyResult) -> None:
        now = time.time()
        tip = self.source.tip()
        drift: dict[str, int] = {}
        for d in result.plan.drift:
            drift[d.target] = drift.get(d.target, 0) + 1
        for name, r in sorted(result.results.items()):
            self.known_targets.add(name)
            puts = sum(1 for i in r.done if i.action == "put")
            deletes = sum(1 for i in r.done if i.action == "delete")
            fields = {"revision": rev, "target": name, "changes": len(r.done),
                      "failed": len(r.failed), "drift": drift.get(name, 0),
                      "error": None if r.error is None else str(r.error)}
            if not r.ok:
                log.error("%s: %s", name, r.error or f"{len(r.failed)} change(s) failed",
                          extra=fields)
            elif drift.get(name):
                log.warning("%s: %d file(s) drifted on the target; %d change(s) applied at %s",
                            name, drift[name], len(r.done), rev[:12], extra=fields)
            else:
                log.log(logging.INFO if r.done else logging.DEBUG,
                        "%s: %d change(s) applied at %s", name, len(r.done), rev[:12],
                        extra=fields)
            if self.metrics is None:
                continue
            if r.ok:
                self.metrics.applied(name, synced=rev == tip, when=now,
                                     revision_time=self.source.commit_time(rev), puts=puts,
                                     deletes=deletes, drift=drift.get(name, 0))
            else:
                self.metrics.applied(name, synced=False, puts=puts, deletes=deletes,
                                     drift=drift.get(name, 0))
                refused = isinstance(r.error, Refusal)
                self.metrics.failed(name, "refused" if refused else "failed")
        self._rollouts(rev, result)
        if any(r.ok for r in result.results.values()) and not result.plan.empty:
            self.source.after_apply()
        if self.metrics is not None and result.uptake is not None:
            self._uptake(result.uptake)
        if self.metrics is not None and result.onboarding is not None:
            self._onboarding(result.onboarding)

    def _onboarding(self, onboarding: Any) -> None:
        """The onboarding windows of this run (pipeline/bootstrap.py Onboarding)."""
        assert self.metrics is not None
        states: dict[str, int] = {}
        for window in onboarding.windows.values():
            states[window.state] = states.get(window.state, 0) + 1
        scanning: dict[str, int] = {}
        for probe in onboarding.probes:
            scanning[probe.target] = scanning.get(probe.target, 0) + 1
        self.metrics.onboarding(states, len(onboarding.suspicious), scanning)

    def _uptake(self, uptake: Any) -> None:
        """The access logs read on this drift check (pipeline/phones.py FleetUptake)."""
        if not uptake.configured:
            return
        scanning: dict[str, int] = {}
        for client in uptake.scanners:
            scanning[client.target] = scanning.get(client.target, 0) + 1
        counts: dict[str, int] = {}
        for device in uptake.devices.values():
            counts[device.state] = counts.get(device.state, 0) + 1
        self.metrics.uptake(uptake.logs, counts, scanning)

    def _rollouts(self, rev: str, result: ApplyResult) -> None:
        """A wave started, a rollout halted (naming the phones) or resumed: one line each."""
        for r in result.plan.rollouts:
            if not r.event:
                continue
            lagging = list(r.reading.lagging[:50]) if r.reading else []
            fields = {"revision": rev, "rollout": r.id, "kind": r.kind, "wave": r.wave,
                      "waves": r.waves, "action": r.action, "held": r.held,
                      "gate": r.reading.to_json() if r.reading else None}
            if r.action == "halted":
                log.warning("rollout %s (%s): %s", r.id, r.subject, r.message,
                            extra={**fields, "phones": lagging})
            else:
                log.info("rollout %s (%s): %s", r.id, r.subject, r.message, extra=fields)
        if self.metrics is not None:
            self.metrics.rollouts(result.plan.rollouts)

    def _invalid(self, rev: str, exc: ConfigError) -> None:
        """Keep last good: nothing was applied; record the attempt per target with the error."""
        problems = [str(p) for p in exc.problems]
        summary = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)"
                                              if len(problems) > 5 else "")
        error = f"invalid desired state: {summary}"
        self.invalid[rev] = error
        log.error("revision %s is invalid; nothing applied, keeping %s (%d problem(s))",
                  rev[:12], (self.applied_rev or "nothing")[:12], len(problems),
                  extra={"revision": rev, "problems": problems,
                         "last_applied": self.applied_rev})
        self._record_attempt(rev, error, "invalid")

    def _failed(self, rev: str, error: str, reason: str) -> None:
        log.error("run on %s failed: %s", rev[:12], error, extra={"revision": rev,
                                                                   "error": error})
        self._record_attempt(rev, error, reason)

    def _record_attempt(self, rev: str, error: str, reason: str) -> None:
        targets = self.known_targets | _targets_at(self.source.desired, rev)
        now = time.time()
        for name in sorted(targets):
            record.update_status(self.state_dir, name, rev, False, now, error)
            if self.metrics is not None:
                self.metrics.failed(name, reason)

    def _report_last_good(self, tip: str) -> None:
        """The tip is invalid: report (never heal) drift against the last applied revision."""
        if self.applied_rev is None:
            log.warning("revision %s is invalid and nothing was applied before; waiting for a "
                        "new commit", tip[:12], extra={"revision": tip})
            return
        try:
            result = plan(Options(repo=self.source.desired, rev=self.applied_rev,
                                  state_dir=self.state_dir))
        except ProvctlError as exc:
            log.warning("drift check on %s failed: %s", self.applied_rev[:12], exc,
                        extra={"revision": self.applied_rev})
            return
        drift: dict[str, int] = {}
        for d in result.plan.drift:
            drift[d.target] = drift.get(d.target, 0) + 1
        for summary in result.plan.targets:
            name = summary.target
            pending = sum(1 for c in result.plan.changes if c.target == name)
            log.warning("%s: tip %s is invalid; keeping %s (%d drifted file(s), %d change(s) "
                        "not made until the tip is fixed)", name, tip[:12],
                        self.applied_rev[:12], drift.get(name, 0), pending,
                        extra={"revision": tip, "target": name, "drift": drift.get(name, 0),
                               "pending": pending, "last_applied": self.applied_rev})
            if self.metrics is not None:
                self.metrics.applied(name, synced=False, drift=drift.get(name, 0))
        if self.metrics is not None:
            if result.uptake is not None:
                self._uptake(result.uptake)
            if result.onboarding is not None:
                self._onboarding(result.onboarding)
            self._export()

    def _export(self) -> None:
        assert self.metrics is not None
        self.metrics.redirect_states(_redirect_states(self.state_dir))
        if self.cfg.metrics_textfile is not None:
            try:
                self.metrics.write_textfile(self.cfg.metrics_textfile)
            except OSError as exc:
                log.warning("cannot write the metrics textfile %s: %s",
                            self.cfg.metrics_textfile, exc)


def _applied_revision(status: dict[str, Any]) -> str | None:
    """The revision last applied on every target (None if they differ or none was)."""
    revs = {(entry.get("last_applied") or {}).get("revision") for entry in status.values()}
    return revs.pop() if len(revs) == 1 else None


def _targets_at(desired: Path, rev: str) -> set[str]:
    """Best effort: the target names of an (invalid) revision's provisioning.yaml."""
    from reconciler.desired.load import parse_yaml, read_source

    try:
        source = read_source(desired, rev)
        data = parse_yaml("provisioning.yaml", source.files["provisioning.yaml"]).data
        return {str(t) for t in (data.get("targets") or {})}
    except (ProvctlError, KeyError, AttributeError, TypeError):
        return set()


def _redirect_states(state_dir: Path) -> dict[str, int] | None:
    from reconciler.redirect.state import load_records, records_path

    path = records_path(state_dir)
    if not path.exists():
        return None
    try:
        records = load_records(path)
    except ProvctlError:
        return None
    counts: dict[str, int] = {}
    for rec in records.values():
        counts[rec.state] = counts.get(rec.state, 0) + 1
    return counts


# --- entry points -----------------------------------------------------------------------------


def run_daemon(cfg: Config) -> int:
    """Set up logging, lock the state directory, serve metrics, loop. Returns the exit code."""
    logs.setup(cfg.log_format, logging.DEBUG if cfg.verbose else logging.INFO)
    for noisy in ("watchdog", "git"):  # their debug output is every inotify event and git call
        logging.getLogger(noisy).setLevel(logging.INFO)
    try:
        state_dir = state_dir_for(cfg)
        with daemon_lock(state_dir):
            metrics = None
            if cfg.metrics_port is not None or cfg.metrics_textfile is not None:
                from reconciler.daemon.metrics import Metrics

                metrics = Metrics()
                if cfg.metrics_port is not None:
                    metrics.serve(cfg.metrics_port, cfg.metrics_address)
            daemon = Daemon(cfg, state_dir, metrics)
            daemon.install_signals()
            if metrics is not None:
                for name in daemon.known_targets:
                    metrics.target(name)
                daemon._export()
            return daemon.run()
    except ProvctlError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except OSError as exc:  # state directory, metrics port
        log.error("%s", exc)
        return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="provctl daemon",
                                description="follow a branch and reconcile its newest revision")
    add_arguments(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # a usage error exits 64, never 2 ("changes made")
        raise SystemExit(64 if exc.code == 2 else exc.code) from None
    return run_daemon(config_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
