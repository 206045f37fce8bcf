"""Explain: every resolved parameter of one phone, the layer it came from, and file:line."""

from __future__ import annotations

import json
from typing import Any

from reconciler.desired.resolve import Origin
from reconciler.desired.schema import SECRET_REF
from reconciler.render.renderer import Renderer


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        out = []
        for key, child in value.items():
            out += _leaves(child, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, value)]


def _show(renderer: Renderer, value: Any, mac: str | None = None) -> str:
    if isinstance(value, str) and SECRET_REF.match(value):
        try:
            return renderer.state.secrets.redact(value, mac)  # mac: derive's {mac}
        except Exception:  # noqa: BLE001 - a missing secret is reported by validate
            return f"<{value} unresolved>"
    return json.dumps(value, default=str) if not isinstance(value, str) else value


def _origin(origins: dict[str, Origin], key: str) -> Origin | None:
    while key:
        if key in origins:
            return origins[key]
        key = key.rpartition(".")[0]
    return None


def explain(renderer: Renderer, mac: str, only: str | None = None) -> str:
    device = renderer.resolved()[mac]
    d = device.device
    out = [f"{mac}  {d.model}  profile {d.profile}  customer {device.customer or '(pool)'}"
           f"  ({device.located.file}:{device.located.line()})"]
    target = renderer.primary_target(device)
    if target:
        url = renderer.provisioning_url(device, target)
        if renderer.directory(device):
            url = url[:-1].rsplit("/", 1)[0] + "/<token>/"
        out.append(f"  provisioning url: {url}  (target {target})")
    fw = device.firmware.version if device.firmware else "installed"
    if not only or only == "firmware":
        out.append(f"  firmware = {fw}    <- {device.firmware_origin}")
        if device.firmware != device.firmware_wanted:
            wanted = device.firmware_wanted.version if device.firmware_wanted else "installed"
            out.append(f"    (the desired state chooses {wanted} <- {device.wanted_origin}; "
                       "it comes with its wave)")

    def section(title: str, rows: list[tuple[str, Any]], origins: dict[str, Origin]) -> None:
        rows = [(k, v) for k, v in rows if not only or k == only or k.startswith(only + ".")]
        if rows:
            out.append(f"  {title}:")
        for key, value in rows:
            owned = " (user-owned)" if key.split(".")[0] in device.user_owned else ""
            out.append(f"    {key} = {_show(renderer, value, mac)}{owned}    <- "
                       f"{_origin(origins, key) or 'unset'}")

    section("device", _leaves(device.params), device.origins)
    for line in device.lines:
        # Only what the line layer (the assignment's params) sets itself.
        changed = [(k, v) for k, v in _leaves(line.params)
                   if (origin := _origin(line.origins, k)) and origin.layer == "line"]
        out.append(f"  line {line.port}: {line.account} as {line.extension} "
                   f"({_show(renderer, line.password_ref)})")
        section(f"line {line.port} overrides", changed, line.origins)
    return "\n".join(out) + "\n"
