"""`provctl init [DIR]`: scaffold a desired-state repository that validates as it is.

One customer, one profile per vendor chosen (with one example phone each, to be replaced), a
secrets file template kept out of git by the `.gitignore`, the CI file (GitHub Actions or
GitLab CI, from contrib/ci — shipped inside the wheel) and a pre-commit config. Existing files
are never overwritten (`--force` does).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import vendors
from reconciler import __version__
from reconciler.core.errors import OperationError
from reconciler.core.names import did_you_mean

# Where the pre-commit hook and the CI templates install provctl from: a pinned git URL, never a
# name on PyPI (another project owns `provctl` there).
PROJECT_GIT = "https://git.example.net/voice/provctl.git"
RELEASE = f"v{__version__}"

# A MAC prefix of each vendor, for the example phones (an OUI of the vendor [I]).
EXAMPLE_OUI = {"yealink": "001565", "snom": "000413", "poly": "0004f2", "grandstream": "000b82",
               "cisco": "00562b", "fanvil": "0c383e", "gigaset": "7c2f80",
               "panasonic": "0080f0"}

_HERE = Path(__file__).resolve().parent


def ci_template(name: str) -> str:
    """contrib/ci/NAME from the wheel (reconciler/cli/ci/) or from the repository."""
    for folder in (_HERE / "ci", _HERE.parent.parent / "contrib" / "ci"):
        if (folder / name).is_file():
            return (folder / name).read_text()
    raise OperationError(f"the CI template {name} is not installed with provctl")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR",
                   help="where to create the repository (default: the current directory)")
    p.add_argument("--vendor", action="append", metavar="NAME",
                   help=f"a vendor to write a profile for (repeatable; default: yealink; known: "
                        f"{', '.join(vendors.KNOWN)})")
    p.add_argument("--customer", default="acme", metavar="ID",
                   help="the first customer's id (default: acme)")
    p.add_argument("--ci", choices=("github", "gitlab", "none"), default="github",
                   help="which CI file to write (default: github)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.add_argument("--no-git", action="store_true", help="do not run git init")


def files(vendor_names: list[str], customer: str, ci: str) -> dict[str, str]:
    out: dict[str, str] = {}
    out["provisioning.yaml"] = (
        "# Fleet settings. Secrets are references: PROVCTL_FLEET_SECRET holds the fleet's HMAC\n"
        "# key (URL tokens), PROVCTL_SECRETS_FILE the path of secrets.yaml (outside git).\n"
        "fleet: {name: my-fleet, secret: env:PROVCTL_FLEET_SECRET}\n"
        "url_tokens: per-device\n"
        "secrets: {file: env:PROVCTL_SECRETS_FILE}\n"
        "targets:\n"
        "  local: {kind: local, root: ./out/www, base_url: \"http://localhost:8080/\"}\n"
        "  # eu-1: {kind: sftp, host: prov1.example.net, user: prov, key: ~/.ssh/prov_ed25519,\n"
        "  #        known_hosts: ./known_hosts, root: /srv/provisioning,\n"
        "  #        base_url: \"https://prov1.example.net/\"}\n"
        "policy: {prune: true, max_delete_percent: 10, redirect_window_days: 7}\n")
    out["defaults.yaml"] = (
        "# Lowest layer: what every phone gets unless a profile, customer or device says "
        "otherwise.\n"
        "params:\n"
        "  codecs: [g722, pcma, pcmu]\n"
        "  ntp: {server: pool.ntp.org}\n"
        "  timezone: Europe/Berlin\n"
        "  language: en\n"
        "  admin_password: secret:admin-password\n"
        "  sip: {port: 5060, transport: udp}\n"
        "firmware: installed\n")
    devices, accounts = [], []
    secrets = ["admin-password: change-me"]
    for n, name in enumerate(vendor_names):
        vendor = vendors.get(name)
        models = list(vendor.models)[:3]
        out[f"profiles/{name}.yaml"] = (
            f"name: {name}\nvendor: {name}\nmodels: [{', '.join(models)}]\n"
            "params: {}\nfirmware: installed\n")
        mac = f"{EXAMPLE_OUI.get(name, '020000')}{n + 1:06x}"
        devices.append(f"- mac: \"{mac}\"          # an example: replace with your phones\n"
                       f"  model: {name}/{models[0]}\n  profile: {name}\n"
                       f"  customer: {customer}\n  name: example-{name}\n")
        ext = 201 + n
        accounts.append(f"- account: {customer}/{ext}\n  display_name: Example {ext}\n"
                        f"  password: secret:{customer}/{ext}\n  devices: [\"{mac}\"]\n")
        secrets.append(f"{customer}/{ext}: change-me")
    out[f"customers/{customer}.yaml"] = (
        f"id: {customer}\nname: {customer.capitalize()}\n"
        f"sip: {{domain: {customer}.pbx.example.net}}\nstatus: active\n")
    out[f"devices/{customer}.yaml"] = "".join(devices)
    out[f"assignments/{customer}.yaml"] = "".join(accounts)
    out["secrets.example.yaml"] = (
        "# Copy to secrets.yaml (ignored by git, or keep it outside the repository) and set\n"
        "# PROVCTL_SECRETS_FILE to its path. NAME: value; referenced as secret:NAME.\n"
        + "\n".join(secrets) + "\n")
    out[".gitignore"] = "secrets.yaml\n/out/\n.provctl/\n"
    out[".pre-commit-config.yaml"] = (
        "# provctl validate --no-secrets before each commit (https://pre-commit.com).\n"
        "repos:\n"
        f"  - repo: {PROJECT_GIT.removesuffix('.git')}\n"
        f"    rev: {RELEASE}\n"
        "    hooks:\n"
        "      - id: provctl-validate\n")
    if ci == "github":
        out[".github/workflows/provctl.yml"] = ci_template("github-actions.yml")
    elif ci == "gitlab":
        out[".gitlab-ci.yml"] = ci_template("gitlab-ci.yml")
    return out


def run(args: argparse.Namespace) -> int:
    names = args.vendor or ["yealink"]
    for name in names:
        if name not in vendors.KNOWN:
            raise OperationError(f"unknown vendor {name!r}{did_you_mean(name, vendors.KNOWN)} "
                                 f"(known: {', '.join(vendors.KNOWN)})")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", args.customer):
        raise OperationError(f"--customer {args.customer!r}: use lower-case letters, digits, "
                             "- and _")
    root: Path = args.dir
    planned = files(list(dict.fromkeys(names)), args.customer, args.ci)
    existing = [rel for rel in planned if (root / rel).exists()]
    if existing and not args.force:
        raise OperationError(f"{root}: {', '.join(existing)} exist(s); nothing was written "
                             "(--force overwrites)")
    for rel, text in planned.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not args.no_git and not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=False)
    print(f"created {len(planned)} file(s) in {root}:")
    for rel in planned:
        print(f"  {rel}")
    print("next:\n"
          f"  cp {root / 'secrets.example.yaml'} ~/provctl-secrets.yaml   # and edit the "
          "values\n"
          "  export PROVCTL_SECRETS_FILE=~/provctl-secrets.yaml PROVCTL_FLEET_SECRET=$(openssl "
          "rand -hex 32)\n"
          f"  provctl validate --repo {root} && provctl plan --repo {root}", file=sys.stdout)
    return 2
