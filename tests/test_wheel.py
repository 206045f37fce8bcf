"""A non-editable install works: the wheel carries templates/ and renders every phone.

Built offline from a copy of the sources (no build isolation: the worktree's setuptools) and
installed into a fresh virtual environment outside the repository. The dependencies come from
the worktree's environment by a .pth line (a plain path entry: its own .pth files, the editable
finder among them, are not run), so the fresh environment imports provctl from the wheel only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "reconciler", "vendors", "templates",
           "contrib")


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--wheel-dir", str(dist), str(src)],
                   check=True, cwd=tmp, capture_output=True)
    (wheel,) = dist.glob("provctl_phones-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    env_dir = tmp / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                              "get_paths()['purelib'])"], check=True, capture_output=True,
                             text=True).stdout.strip()
    (Path(purelib) / "provctl-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


@pytest.mark.integration
def test_the_wheel_installed_elsewhere_validates_plans_and_applies_a_fleet(tmp_path):
    wheel = _build_wheel(tmp_path)
    env_dir = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "desired-state", work / "fleet",
                    ignore=shutil.ignore_patterns("out", ".provctl"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PROVCTL_"))}
    env.update(PROVCTL_FLEET_SECRET="wheel-test-secret",
               PROVCTL_SECRETS_FILE=str(ROOT / "examples" / "demo-secrets.yaml"),
               PATH=f"{env_dir / 'bin'}:{env.get('PATH', '')}")

    def provctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(env_dir / "bin" / "provctl"), *args], cwd=work / "fleet",
                              env=env, capture_output=True, text=True, timeout=120)

    where = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                            "import reconciler, vendors; print(reconciler.__file__); "
                            "print(vendors.TEMPLATES)"], cwd=work, env=env, check=True,
                           capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where  # not the repository's
    assert (Path(where[1]) / "yealink" / "mac.cfg.j2").is_file()

    version = provctl("--version")
    assert version.returncode == 0 and version.stdout.startswith("provctl 0.1.0"), version
    validated = provctl("validate")
    assert validated.returncode == 0, validated.stderr
    assert "template not found" not in validated.stderr
    assert provctl("plan").returncode == 2
    applied = provctl("apply")
    assert applied.returncode == 2, applied.stderr
    published = list((work / "fleet" / "out" / "www").rglob("*.cfg"))
    assert any(p.read_text().startswith("#!version:1.0.0.1") for p in published)  # Yealink
    again = provctl("plan")
    assert again.returncode == 0, again.stdout + again.stderr
