"""Rendering many phones in worker processes gives the same files, and the same errors."""

from __future__ import annotations

import pytest
from fleet_fixtures import edit

from reconciler.core.errors import ConfigError
from reconciler.pipeline.run import Options, load_desired
from reconciler.render.renderer import PARALLEL_MIN


def many_phones(fleet, n: int = PARALLEL_MIN + 50) -> None:
    rows = "".join(
        f"- {{mac: '001565{i:06x}', model: yealink/T46U, profile: office-yealink, "
        f"customer: acme, params: {{vlan: {{id: {1 + i % 4000}}}}}}}\n" for i in range(n))
    (fleet / "devices" / "bulk.yaml").write_text(rows)


def digests(fleet, processes: str, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("PROVCTL_RENDER_PROCESSES", processes)
    rendered = load_desired(Options(repo=fleet, use_cache=False))
    return {p: a.sha256 for p, a in rendered.artifacts["local"].items()}


def test_parallel_rendering_is_byte_identical(fleet, monkeypatch):
    many_phones(fleet)
    one = digests(fleet, "1", monkeypatch)
    two = digests(fleet, "2", monkeypatch)
    assert len(one) > 2 * PARALLEL_MIN and one == two


def test_parallel_rendering_reports_the_same_problems(fleet, monkeypatch):
    many_phones(fleet)
    edit(fleet / "devices" / "bulk.yaml", "- {mac: '001565000007', model: yealink/T46U, "
         "profile: office-yealink, customer: acme, params: {vlan: {id: 8}}}",
         "- {mac: '001565000007', model: yealink/T46U, profile: office-yealink, "
         "customer: acme, params: {timezone: Mars/Olympus_Mons}}")
    errors = {}
    for processes in ("1", "2"):
        monkeypatch.setenv("PROVCTL_RENDER_PROCESSES", processes)
        with pytest.raises(ConfigError) as err:
            load_desired(Options(repo=fleet, use_cache=False))
        errors[processes] = [str(p) for p in err.value.problems]
    assert errors["1"] == errors["2"]
    assert any("devices/bulk.yaml:8" in e and "Mars/Olympus_Mons" in e for e in errors["2"])
