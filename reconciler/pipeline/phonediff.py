"""`provctl diff MAC`: what would be published for one phone against what is published now.

Read-only: load and render (as plan does), read the phone's files from each target, and diff
them as text. Both sides are redacted before they are compared: every secret value the render
resolved is replaced by its redacted form (`<secret:NAME hmac:…>`), and on the published side
a line that no longer matches the desired file has the value of a secret-looking key (password,
pin, secret, auth ...) replaced by a keyed digest (`<redacted hmac:…>`), so a rotated or removed
secret is not shown either.
URL tokens are shortened on both sides.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reconciler.core.errors import NotFound
from reconciler.core.names import did_you_mean
from reconciler.desired.secrets import Secrets
from reconciler.pipeline import narrow
from reconciler.pipeline.run import Options, load_desired, opened
from reconciler.render.addressing import shorten_tokens, show_path
from reconciler.targets import manifest as target_records


@dataclass(frozen=True)
class PhoneFileDiff:
    target: str
    path: str
    status: Literal["added", "changed", "removed", "unchanged"]
    diff: str = ""  # unified diff of the redacted texts ("" for binaries)
    note: str = ""  # for binaries: the digests


_KEY = r"[\w.\-]*(?:pass|pwd|secret|pin|auth|credential)[\w.\-]*"
_ATTRIBUTE = re.compile(rf'(?i)(\b{_KEY}\s*=\s*")([^"]*)(")')
_ELEMENT = re.compile(rf"(?i)(<{_KEY}(?:\s[^>]*)?>)([^<]*)(</)")
_ASSIGNMENT = re.compile(rf"(?i)^(\s*{_KEY}\s*[=:]\s*)(.*?)(\s*)$")


def mask_secret_looking(line: str, secrets: Secrets) -> str:
    """The values of secret-looking keys in one line of a phone file, as keyed digests."""
    def sub(m: re.Match[str]) -> str:
        value = secrets.show("redacted", m.group(2)) if m.group(2) else ""
        return m.group(1) + value + m.group(3)

    masked = _ATTRIBUTE.sub(sub, line)
    masked = _ELEMENT.sub(sub, masked)
    if "<" not in line:
        masked = _ASSIGNMENT.sub(sub, masked)
    return masked


def redactor(secrets: Secrets) -> Callable[[str], str]:
    """A function hiding every secret value resolved so far in a text (longest first)."""
    pairs = sorted(((value, secrets.show(shown, value)) for shown, value in secrets.resolved()
                    if value), key=lambda p: -len(p[0]))

    def redact(text: str) -> str:
        for value, shown in pairs:
            if len(value) >= 6:
                text = text.replace(value, shown)
            else:  # short values only as whole words: "1" must not eat every digit
                text = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", shown, text)
        return shorten_tokens(text)

    return redact


def _lines(data: bytes | None) -> list[str] | None:
    if data is None:
        return []
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def phone_diff(opts: Options, mac: str, target: str | None = None,
               context: int = 3) -> list[PhoneFileDiff]:
    opts.targets = [target] if target else None
    opts.devices = None
    opts.customers = None
    desired = load_desired(opts)
    selection = narrow.select(desired.renderer, desired.artifacts, [mac])
    redact = redactor(desired.state.secrets)
    out: list[PhoneFileDiff] = []
    with opened(desired) as targets:
        for name, tgt in targets.items():
            manifest = target_records.read_state(tgt).manifest
            mine = desired.artifacts[name]
            paths = sorted({p for p in mine if selection.owns(name, p)}
                           | {p for p in manifest.files if selection.owns(name, p)})
            for path in paths:
                art = mine.get(path)
                have = tgt.read(path)
                out.append(_diff_one(name, path, art.content() if art else None, have, redact,
                                     context, desired.state.secrets))
    if not out and mac not in desired.state.devices:
        raise NotFound(f"unknown device {mac} (not in devices/*.yaml and no file of it is "
                       f"published){did_you_mean(mac, desired.state.devices)}")
    return out


def _diff_one(target: str, path: str, want: bytes | None, have: bytes | None,
              redact: Callable[[str], str], context: int,
              secrets: Secrets) -> PhoneFileDiff:
    status: Literal["added", "changed", "removed", "unchanged"] = (
        "unchanged" if want == have else "added" if have is None
        else "removed" if want is None else "changed")
    if status == "unchanged":
        return PhoneFileDiff(target, path, status)
    a, b = _lines(have), _lines(want)
    if a is None or b is None:
        def sha(data: bytes | None) -> str:
            return hashlib.sha256(data).hexdigest()[:12] if data is not None else "none"
        return PhoneFileDiff(target, path, status,
                             note=f"binary: published sha256 {sha(have)}, desired {sha(want)}")
    new = [redact(line) for line in b]
    wanted = set(new)
    old = []
    for line in a:
        shown = redact(line)
        old.append(shown if shown in wanted else mask_secret_looking(shown, secrets))
    shown_path = show_path(path)
    label_a = f"published/{shown_path}" if have is not None else "/dev/null"
    label_b = f"desired/{shown_path}" if want is not None else "/dev/null"
    diff = "".join(difflib.unified_diff(old, new, label_a, label_b, n=context))
    if diff and not diff.endswith("\n"):
        diff += "\n"
    return PhoneFileDiff(target, path, status, diff)
