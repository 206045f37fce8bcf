"""Matching requests to what provctl publishes. Pure.

- A request for a published path is a *fetch* when it is a GET answered 200 or 304; anything
  else on a published path is a failed request of that path (the phone's `errors` state).
- The receipts timeline says which content (sha256), and so which revision, the path had at the
  moment of the request: the last publish that started before it. A request during an apply (it
  started, it had not ended) got the new content only if the size sent says so.
- A 403, 404 or 429 on a path *shaped* like a phone's — a token directory provctl does not know,
  or a file named after a MAC outside every known token directory — is an *unknown fetch*:
  someone guessing MACs or tokens, or a phone provctl does not serve. A path provctl published
  once (a retired phone still asking) is not unknown.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.uptake.store import Version

PROBED = frozenset({403, 404, 429})
_TOKEN = re.compile(r"[0-9a-f]{32}")
_MACLIKE = re.compile(r"[0-9A-Fa-f]{12}")


@dataclass(frozen=True)
class PathInfo:
    device: str | None  # the phone whose file it is (None: shared, firmware)
    own: bool  # the phone's own file: only that phone fetches it


@dataclass(frozen=True)
class Index:
    """One target as provctl publishes it: its paths and token directories."""

    files: Mapping[str, PathInfo]
    tokens: frozenset[str] = frozenset()
    former: frozenset[str] = frozenset()  # paths (token shortened) published once, from receipts
    # the customers' bootstrap directories (docs/zero-touch.md): a miss on a MAC-named file
    # there is a probe, though the directory is provctl's
    bootstrap: frozenset[str] = frozenset()
    watch: frozenset[str] = frozenset()  # phones whose fetch addresses are kept (onboarding)

    @classmethod
    def build(cls, files: Mapping[str, PathInfo], former: frozenset[str] = frozenset(),
              bootstrap: frozenset[str] = frozenset(), watch: frozenset[str] = frozenset()
              ) -> Index:
        tokens = frozenset(head for path in files
                           if (head := path.partition("/")[0]) and _TOKEN.fullmatch(head))
        return cls(files, tokens, former, bootstrap, watch)

    def probe(self, path: str) -> bool:
        """Whether a miss on `path` looks like someone looking for a phone's file."""
        head, sep, rest = path.partition("/")
        if sep and head in self.bootstrap:
            return bootstrap_mac(rest) is not None
        if sep and _TOKEN.fullmatch(head):
            return head not in self.tokens and shown(path) not in self.former
        name = path.rpartition("/")[2]
        if not _MACLIKE.search(name) or (sep and head in self.tokens):
            return False
        return shown(path) not in self.former


def bootstrap_mac(name: str) -> str | None:
    """The MAC a bootstrap file name spells (`cfg000b82bb0001.xml`, `Config0080F0CC0002.cfg`),
    lower case; None for a per-model name (`8841-3PCC.xml`) or a common one
    (`y000000000000.boot`)."""
    found = _MACLIKE.search(name)
    if found is None or found.group(0) == "000000000000":
        return None
    return found.group(0).lower()


def own_file(name: str, mac: str, per_device_directory: bool) -> bool:
    """A phone's own file: in its own token directory, or named after its MAC."""
    return per_device_directory or mac in name.lower().replace(":", "").replace("-", "")


def shown(path: str) -> str:
    """show_path (render/addressing.py), faster: receipts name paths this way."""
    head, sep, tail = path.partition("/")
    if sep and len(head) == 32 and _TOKEN.fullmatch(head):
        return f"{head[:6]}…/{tail}"
    return path


@dataclass
class Timeline:
    """The versions of one path in publish order, with a fast path for the newest."""

    versions: Sequence[Version]
    _starts: list[float] | None = None

    def at(self, moment: float, size: int, status: int) -> Version | None:
        """The content a request at `moment` that sent `size` bytes with `status` got.

        Receipts keep whole seconds, so an apply may have ended up to a second after `ended`.
        """
        versions = self.versions
        if not versions:
            return None
        newest = versions[-1]
        if moment >= newest.ended + 1.0:
            return newest if newest.action == "put" else None
        if self._starts is None:
            self._starts = [v.started for v in versions]
        i = bisect.bisect_right(self._starts, moment) - 1
        if i < 0:
            return None
        here = versions[i]
        if moment < here.ended + 1.0 and i > 0 and status == 200 and here.size != size and (
                versions[i - 1].size == size):
            here = versions[i - 1]  # during the apply that replaced it: still the old file
        return here if here.action == "put" else None
