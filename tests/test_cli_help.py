"""The command line as a new user meets it: help, usage errors, version, completion."""

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest
from fleet_fixtures import edit, run

from reconciler import __version__
from reconciler.cli import help as cli_help
from reconciler.cli.main import main, parser


def commands():
    return [(path, p) for path, p in cli_help.subcommands(parser()) if path]


def test_every_option_of_every_command_has_help():
    missing = [f"provctl {' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
               for path, p in cli_help.subcommands(parser()) for a in cli_help.options(p)
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []


def test_the_help_check_would_catch_an_option_without_help():
    ap = parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["plan"].add_argument("--undocumented")
    found = [a for path, p in cli_help.subcommands(ap) for a in cli_help.options(p)
             if not a.help]
    assert [a.option_strings for a in found] == [["--undocumented"]]


@pytest.mark.parametrize("path", [" ".join(path) for path, _ in commands()])
def test_each_command_help_ends_with_an_example_and_the_exit_codes(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*path.split(), "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "\nexample" in text
    assert f"provctl {path}" in text[text.rindex("\nexample"):]
    assert "exit codes:" in text
    tail = text.rstrip().split("exit codes:")[-1]
    assert "64" in tail and text.rstrip().endswith("usage error")


@pytest.mark.parametrize("argv", [["plan", "--bogus"], [], ["apply", "--plan"],
                                  ["status", "--format", "yaml"], ["nosuchcommand"],
                                  ["history"]])
def test_usage_errors_exit_64_never_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 64
    assert "usage: provctl" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"provctl {__version__} (provctl-phones")


def test_verbose_and_no_color_after_the_subcommand(fleet, capsys):
    assert run(fleet, "validate", "-v", "--no-color") == 0
    assert run(fleet, "device", "add", "00:15:65:AA:CC:01", "--model", "yealink/T46U",
               "--profile", "office-yealink", "--dry-run", "-v") == 2


def test_host_is_an_alias_of_target(fleet, capsys):
    assert run(fleet, "plan", "--host", "local") == 2
    assert "target local:" in capsys.readouterr().out
    assert run(fleet, "plan", "--host", "locall") == 1
    err = capsys.readouterr().err
    assert "error: unknown target 'locall' (did you mean 'local'?) (known: local)" in err
    assert "desired state is invalid" not in err


def test_errors_not_about_the_desired_state_do_not_blame_it(fleet, tmp_path, capsys):
    bogus = tmp_path / "plan.json"
    bogus.write_text("{}")
    assert run(fleet, "apply", "--plan", str(bogus)) == 1
    err = capsys.readouterr().err
    assert "not a provctl plan" in err and "desired state is invalid" not in err
    assert run(fleet, "explain", "00:15:65:AA:BB:0F") == 1
    err = capsys.readouterr().err
    assert "unknown device 001565aabb0f (not in devices/*.yaml) (did you mean '001565aabb0" in err
    assert "desired state is invalid" not in err
    assert run(fleet, "explain", "not-a-mac") == 1
    assert "not a MAC address" in capsys.readouterr().err


def test_unknown_names_suggest_the_closest_known_one(fleet, capsys):
    path = fleet / "devices" / "acme.yaml"
    text = path.read_text()
    path.write_text(text.replace("profile: office-yealink", "profile: ofice-yealink", 1)
                        .replace("customer: acme", "customer: acmee", 1)
                        .replace("yealink/T54W", "yealink/T54", 1))
    assert run(fleet, "validate") == 1
    path.write_text(text)
    err = capsys.readouterr().err
    assert "desired state is invalid" in err
    assert "unknown profile 'ofice-yealink' (did you mean 'office-yealink'?)" in err
    assert "unknown customer 'acmee' (did you mean 'acme'?)" in err
    assert "unknown model 'yealink/T54' (did you mean 'T54W'?)" in err
    assert run(fleet, "device", "add", "00:15:65:AA:CC:01", "--model", "yealink/T46",
               "--dry-run") == 1
    assert "did you mean 'T46U'?" in capsys.readouterr().err
    assert run(fleet, "plan", "--customer", "globx") == 1
    assert "unknown customer 'globx' (did you mean 'globex'?)" in capsys.readouterr().err


def test_assign_that_creates_an_account_says_which_secret_to_set(fleet, capsys):
    assert run(fleet, "device", "assign", "00:15:65:EE:00:01", "--account", "acme/250",
               "--dry-run") == 2
    out = capsys.readouterr().out
    assert "created account acme/250" in out
    assert "set its password: add the line `acme/250: VALUE` to the secrets file" in out
    # a phone's env: reference must be listed in secrets.env (else the result is invalid)
    assert run(fleet, "device", "assign", "00:15:65:EE:00:01", "--account", "acme/251",
               "--password", "env:ACME_251", "--dry-run") == 1
    assert "secrets.env" in capsys.readouterr().err
    edit(fleet / "provisioning.yaml", "secrets: {file: env:PROVCTL_SECRETS_FILE}",
         "secrets: {file: env:PROVCTL_SECRETS_FILE, env: [ACME_*]}")
    assert run(fleet, "device", "assign", "00:15:65:EE:00:01", "--account", "acme/251",
               "--password", "env:ACME_251", "--dry-run") == 2
    out = capsys.readouterr().out
    assert "export ACME_251=VALUE" in out and "must list ACME_251" in out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_know_every_command(shell, capsys):
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for name in ("validate", "plan", "apply", "diff", "init", "device", "secrets", "daemon"):
        assert name in script
    assert "auto-approve" in script and "customer" in script
    if shell == "bash":
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr
    if shell == "fish" and shutil.which("fish"):
        checked = subprocess.run(["fish", "-n"], input=script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_bash_completion_completes_subcommands_and_flags(capsys):
    main(["completion", "bash"])
    script = capsys.readouterr().out

    def complete(*words: str) -> list[str]:
        line = " ".join(["provctl", *words])
        probe = (f"{script}\nCOMP_WORDS=(provctl {' '.join(words)}); "
                 f"COMP_CWORD={len(words)}; COMP_LINE='{line}'; _provctl; "
                 "printf '%s\\n' \"${COMPREPLY[@]}\"")
        out = subprocess.run(["bash", "-c", probe], text=True, capture_output=True, check=True)
        return out.stdout.split()

    assert "apply" in complete("ap")
    assert complete("apply", "--auto") == ["--auto-approve"]
    assert set(complete("device", "")) >= {"add", "remove", "assign"}
    assert "--model" in complete("device", "add", "--mo")


def test_the_daemon_entry_point_also_exits_64_on_usage_errors():
    from reconciler.daemon.loop import main as daemon_main

    with pytest.raises(SystemExit) as exit_:
        daemon_main(["--bogus"])
    assert exit_.value.code == 64


def test_build_info_metric_names_the_version(tmp_path):
    import platform

    from reconciler.daemon.metrics import Metrics

    path = tmp_path / "provctl.prom"
    Metrics().write_textfile(path)
    assert (f'provctl_build_info{{python="{platform.python_version()}",version="{__version__}"}}'
            " 1.0") in path.read_text()
