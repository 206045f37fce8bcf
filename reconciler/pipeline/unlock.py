"""`provctl unlock`: remove a stale target lock by its id.

It needs no secrets and renders nothing: the desired state is read with secrets as
placeholders, and only the target's own connection credential (an SSH key passphrase) is
resolved, when it has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.desired.load import read_source
from reconciler.desired.schema import SftpTarget as SftpSpec
from reconciler.desired.secrets import Secrets
from reconciler.desired.validate import load_state
from reconciler.pipeline.run import target_names
from reconciler.targets import lock as target_lock
from reconciler.targets import open_target


def unlock(
    repo: Path, name: str, lock_id: str, environ: Mapping[str, str] | None = None
) -> target_lock.LockInfo:
    env = None if environ is None else dict(environ)
    state = load_state(read_source(repo, None), env, redacting=True)
    prov = state.provisioning.value
    target_names(state, [name])  # an unknown name: NotFound, with the closest one
    spec = prov.targets[name]
    resolve = None
    if isinstance(spec, SftpSpec) and spec.key_passphrase:
        resolve = Secrets(
            state.root,
            prov.secrets.file,
            env,
            fleet_secret=prov.fleet.secret,
            age_file=prov.secrets.age_file,
        ).resolve
    target = open_target(name, spec, state.root, resolve)
    try:
        return target_lock.break_lock(target, lock_id)
    finally:
        target.close()
