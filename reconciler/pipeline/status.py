"""`status --live`: observe every target read-only — what a plan would do, drift, and who holds
the lock. Orchestration lives here; the CLI only prints the result."""

from __future__ import annotations

from reconciler.core.errors import ProvctlError
from reconciler.pipeline import receipt as record
from reconciler.pipeline.run import (
    Options,
    decide_rollouts,
    load_desired,
    make_plan,
    observe_onboarding,
    observe_phones,
    observe_target,
    opened,
)
from reconciler.targets.lock import holder


def live_status(opts: Options) -> dict[str, dict[str, object]]:
    """target -> {"pending", "drift", "lock"} or {"error"} when it cannot be observed."""
    desired = load_desired(opts)
    out: dict[str, dict[str, object]] = {}
    with opened(desired) as targets:
        observed = {n: observe_target(t, desired.artifacts[n], False) for n, t in targets.items()}
        # what a rollout holds back is not pending: it waits for its wave; a bootstrap file
        # due to be withdrawn (its window closed, as last observed) is
        state_dir = opts.state_dir or record.default_state_dir(opts.repo)
        uptake = observe_phones(desired, targets, observed, state_dir, opts, read_logs=False)
        rollouts = decide_rollouts(desired, observed, uptake, opts)
        onboarding = observe_onboarding(desired, opts, state_dir)
        the_plan = make_plan(desired, observed, opts, rollouts=rollouts, onboarding=onboarding)
        for name, target in targets.items():
            if observed[name].error:
                out[name] = {"error": observed[name].error}
                continue
            try:
                lock = holder(target)
            except ProvctlError as exc:
                lock = f"unknown ({exc})"
            out[name] = {"pending": sum(1 for c in the_plan.changes if c.target == name),
                         "drift": sum(1 for d in the_plan.drift if d.target == name),
                         "lock": lock}
    return out
