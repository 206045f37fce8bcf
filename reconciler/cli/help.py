"""Help that ends with an example and the exit codes; shell completion from the same tree.

`finish(parser)` walks every (sub)command once the parser is built: it accepts `-v` and
`--no-color` after any subcommand, and sets each command's epilog from EXAMPLES and EXITS.
`completion(shell, parser)` writes a bash, zsh or fish completion script from the tree, so
completion cannot drift from the commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

USAGE_EXIT = 64  # EX_USAGE (sysexits.h): never argparse's 2, which means "changes pending"

EXITS: dict[str, tuple[tuple[str, str], ...]] = {
    "run": (("0", "nothing to change"), ("2", "changes pending (plan) or made (apply)"),
            ("1", "invalid desired state or a failed operation"),
            ("3", "refused: a safety limit, a lock, a conflict, or apply answered no"),
            ("64", "usage error")),
    "show": (("0", "shown"), ("1", "invalid desired state, or not found"), ("64", "usage error")),
    "edit": (("0", "nothing to change"), ("2", "files changed (or would be, with --dry-run)"),
             ("1", "invalid: nothing written"), ("3", "refused"), ("64", "usage error")),
    "validate": (("0", "valid"), ("1", "invalid (every problem with file:line)"),
                 ("64", "usage error")),
    "status": (("0", "shown; with --exit-code: in sync"),
               ("2", "with --exit-code: changes pending (as plan counts them)"),
               ("1", "with --exit-code: the last run failed, or a target cannot be observed"),
               ("64", "usage error")),
    "daemon": (("0", "stopped by SIGTERM/SIGINT (--once: nothing to change)"),
               ("2", "--once: changes made"), ("1", "--once: invalid or failed"),
               ("3", "another daemon holds the state directory (--once: refused)"),
               ("64", "usage error")),
    "write": (("0", "written"), ("1", "failed (nothing half written)"), ("64", "usage error")),
    "serve": (("0", "stopped by SIGTERM/SIGINT"), ("1", "cannot listen, or invalid desired state"),
              ("64", "a target that is not local, a bad --listen: usage error")),
}

# command path -> (example lines, exit codes key)
EXAMPLES: dict[str, tuple[tuple[str, ...], str]] = {
    "validate": (("provctl validate --repo ./phones", "provctl validate --no-secrets   # CI "
                  "without secrets, the pre-commit hook"), "validate"),
    "render": (("provctl render --out /tmp/files --device 00:15:65:AA:BB:01",), "write"),
    "plan": (("provctl plan --target eu-1 --customer acme",
              "provctl plan --base origin/main --head HEAD --format markdown > comment.md"),
             "run"),
    "apply": (("provctl apply                       # shows the plan, asks, then writes",
               "provctl apply -y --device 00:15:65:AA:BB:01",
               "provctl plan --format json --out plan.json && provctl apply --plan plan.json"),
              "run"),
    "diff": (("provctl diff 00:15:65:AA:BB:01 --target eu-1",), "run"),
    "explain": (("provctl explain 00:15:65:AA:BB:01 --param sip.server",), "show"),
    "status": (("provctl status --live", "provctl status --exit-code || alert",
                "provctl status --devices --state pending --state stale"), "status"),
    "history": (("provctl history 00:15:65:AA:BB:01 --format json",), "show"),
    "unlock": (("provctl unlock --target eu-1 --id 3f2a9c0d",), "run"),
    "import": (("provctl import phones.csv --dry-run", "provctl import --template > phones.csv"),
               "edit"),
    "export": (("provctl export --customer acme --out acme.csv",), "show"),
    "device": (("provctl device add 00:15:65:AA:BB:09 --model yealink/T46U --customer acme",),
               "edit"),
    "device add": (("provctl device add 00:15:65:AA:BB:09 --model yealink/T46U --customer acme",),
                   "edit"),
    "device remove": (("provctl device remove 00:15:65:AA:BB:09 --unassign",), "edit"),
    "device move": (("provctl device move --all-of initech --pool --unassign",), "edit"),
    "device assign": (("provctl device assign 00:15:65:AA:BB:09 --account acme/205",), "edit"),
    "device unassign": (("provctl device unassign 00:15:65:AA:BB:09 --account acme/205",),
                        "edit"),
    "secrets": (("provctl secrets set acme/205 < password.txt",), "edit"),
    "secrets set": (("printf %s 'S3cret' | provctl secrets set acme/205",), "edit"),
    "secrets edit": (("provctl secrets edit    # in $VISUAL or $EDITOR",), "edit"),
    "secrets check": (("provctl secrets check",), "validate"),
    "daemon": (("provctl daemon --repo /srv/phones --interval 60 --metrics-port 9310",
                "provctl daemon --once --repo ssh://git@git.example.net/voice/phones.git "
                "--state-dir /var/lib/provctl"), "daemon"),
    "vendors": (("provctl vendors --markdown > docs/vendors.md",), "show"),
    "init": (("provctl init phones --vendor yealink --vendor snom --customer acme --ci github",),
             "edit"),
    "completion": (("provctl completion bash > /etc/bash_completion.d/provctl",
                    "provctl completion fish > ~/.config/fish/completions/provctl.fish"),
                   "write"),
    "serve": (("provctl serve --target local --listen 127.0.0.1:8080",), "serve"),
    "serve-config": (("provctl serve-config nginx --target eu-1",), "show"),
    "dhcp": (("provctl dhcp --customer acme --format kea",), "show"),
    "onboard": (("provctl onboard 00:15:65:AA:BB:09",), "edit"),
}


def subcommands(parser: argparse.ArgumentParser,
                path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                               argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, the top one first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subcommands(child, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A parser's own arguments (not --help, not the subcommand chooser)."""
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def epilog(path: tuple[str, ...]) -> str | None:
    entry = EXAMPLES.get(" ".join(path))
    if entry is None:
        return None
    examples, exits = entry
    lines = ["example:" if len(examples) == 1 else "examples:"]
    lines += [f"  {e}" for e in examples]
    lines += ["", "exit codes:"]
    lines += [f"  {code:<3} {meaning}" for code, meaning in EXITS[exits]]
    return "\n".join(lines)


def finish(parser: argparse.ArgumentParser) -> None:
    """-v and --no-color after any subcommand; epilogs with examples and exit codes."""
    for path, p in subcommands(parser):
        if not path:
            continue
        flags = {s for a in p._actions for s in a.option_strings}
        if "-v" not in flags:
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="log every write (also accepted before the subcommand)")
        if "--no-color" not in flags:
            p.add_argument("--no-color", action="store_true", default=argparse.SUPPRESS,
                           help="no colour (also: the NO_COLOR environment variable)")
        text = epilog(path)
        if text is not None and not p.epilog:
            p.epilog = text
            p.formatter_class = argparse.RawDescriptionHelpFormatter


# --- completion ---------------------------------------------------------------------------


def _flags(p: argparse.ArgumentParser) -> list[str]:
    return sorted(s for a in options(p) for s in a.option_strings)


def _children(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_of(p: argparse.ArgumentParser, name: str) -> str:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def bash(parser: argparse.ArgumentParser) -> str:
    cases = []
    for path, p in subcommands(parser):
        words = " ".join([*_children(p), *_flags(p)])
        cases.append(f'    "{" ".join(path)}") words="{words}" ;;')
    return f"""# bash completion for provctl (generated by `provctl completion bash`)
_provctl() {{
  local cur path="" w i
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    [[ $w == -* ]] && continue
    case "${{path:+$path }}$w" in
{chr(10).join('      "' + ' '.join(q) + '") path="' + ' '.join(q) + '" ;;'
              for q, _ in subcommands(parser) if q)}
    esac
  done
  local words
  case "$path" in
{chr(10).join(cases)}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  if [[ ${{#COMPREPLY[@]}} -eq 0 && $cur != -* ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}}
complete -o filenames -F _provctl provctl
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    return ("#compdef provctl\n# zsh completion for provctl (generated by `provctl completion "
            "zsh`): the bash\n# function, through zsh's bashcompinit.\nautoload -U +X "
            "bashcompinit && bashcompinit\n" + bash(parser).split("\n", 1)[1])


def fish(parser: argparse.ArgumentParser) -> str:
    out = ["# fish completion for provctl (generated by `provctl completion fish`)",
           "complete -c provctl -f"]
    for path, p in subcommands(parser):
        if len(path) > 1:
            continue  # nested groups: their names below, their flags after the group's
        if path:
            cond = f"__fish_seen_subcommand_from {path[0]}"
        else:
            cond = "__fish_use_subcommand"
        for name, child in _children(p).items():
            desc = _help_of(p, name).replace("'", "\\'")
            out.append(f"complete -c provctl -n '{cond}' -a {name} -d '{desc}'")
            if path:
                for flag in _flags(child):
                    out.append(_fish_flag(f"{cond}; and __fish_seen_subcommand_from {name}",
                                          flag, child))
        for flag in _flags(p):
            out.append(_fish_flag(cond, flag, p))
    return "\n".join(out) + "\n"


def _fish_flag(cond: str, flag: str, p: argparse.ArgumentParser) -> str:
    action = next(a for a in p._actions if flag in a.option_strings)
    desc = (action.help or "").replace("'", "\\'").replace("%(default)s", "")
    spec = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
    takes = "" if action.nargs == 0 else " -r"
    return f"complete -c provctl -n '{cond}' {spec}{takes} -d '{desc}'"


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}
