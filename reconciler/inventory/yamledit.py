"""Edit the desired-state files the way an operator would by hand (ruamel.yaml lives here only).

The inventory commands (`provctl import`, `provctl device ...`) change lists of devices and
accounts. A file is rewritten only where it changed: entries that were not touched keep their
exact bytes (comments, quotes, spacing, blank lines); a changed entry is re-emitted by
ruamel.yaml's round-trip dumper, which keeps its key order, quoting and comments, in the style
(indentation) the file already uses. A comment between two entries belongs to the entry below
it and stays in place when the entry above is removed or moved.

`Workspace` holds the edits in memory; `validate()` loads the whole edited repository
(`load_state`, secrets redacted: an edit needs no secrets) before `write()` touches a file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from reconciler.core import layout
from reconciler.core.errors import ConfigError, Problem
from reconciler.core.macs import colon_mac, normalize_mac
from reconciler.desired.load import Source, parse_yaml, read_source
from reconciler.desired.validate import DesiredState, load_state

# Key order of a device entry as the example fleet writes it; a new key goes after the last
# present key that precedes it here.
DEVICE_KEYS = ("mac", "model", "profile", "customer", "name", "owned_by_customer", "serial",
               "redirect", "onboard", "firmware", "allow_downgrade", "params")
ACCOUNT_KEYS = ("account", "display_name", "password", "auth_user", "devices", "params")

# (mapping indent, sequence indent, offset, dedent of the root sequence)
_STYLES = ((2, 2, 0, 0), (2, 4, 2, 2), (4, 4, 2, 2), (4, 2, 0, 0))


def _yaml(style: tuple[int, int, int, int] = _STYLES[0]) -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long line
    y.indent(mapping=style[0], sequence=style[1], offset=style[2])
    return y


def quoted(text: str) -> DoubleQuotedScalarString:
    return DoubleQuotedScalarString(text)


def mac_text(mac: str) -> DoubleQuotedScalarString:
    """How a MAC is written in a new entry: "00:15:65:AA:BB:01", like the example fleet."""
    return quoted(colon_mac(mac).upper())


def _is_indented(line: str) -> bool:
    return line[:1] in (" ", "\t") and line.strip() != ""


def _own_end(lines: list[str], start: int, stop: int) -> int:
    """End of an entry's own lines: after its last indented line (comments at column 0 and
    blank lines after it separate it from the next entry)."""
    end = start + 1
    for i in range(start + 1, stop):
        if _is_indented(lines[i]):
            end = i + 1
    return end


def _clean_comments(node: Any) -> None:
    """Drop, from the comments ruamel attached to an entry, the lines that are not the entry's
    own (column-0 comments and blank lines after it: they belong to what follows)."""
    if isinstance(node, CommentedMap | CommentedSeq):
        ca = node.ca
        for slots in list(ca.items.values()):
            for i, token in enumerate(slots):
                if isinstance(token, CommentToken):
                    slots[i] = _clean_token(token)
                elif isinstance(token, list):
                    slots[i] = [t for t in (_clean_token(t) if isinstance(t, CommentToken) else t
                                            for t in token) if t is not None] or None
        if isinstance(ca.end, list):
            ca.end = [t for t in (_clean_token(t) for t in ca.end) if t is not None] or None
        children = node.values() if isinstance(node, CommentedMap) else node
        for child in children:
            _clean_comments(child)


def _clean_token(token: CommentToken) -> CommentToken | None:
    lines = token.value.split("\n")
    first, rest = lines[0], lines[1:]
    kept = [line for line in rest if line.strip() and not line.startswith("#")]
    if not first.strip() and not kept:
        return None
    token.value = "\n".join([first, *kept]) + "\n"
    return token


def _tokens(node: Any) -> Iterator[CommentToken]:
    if isinstance(node, CommentedMap | CommentedSeq):
        for slots in node.ca.items.values():
            for token in slots:
                if isinstance(token, CommentToken):
                    yield token
                elif isinstance(token, list):
                    yield from (t for t in token if isinstance(t, CommentToken))
        for child in node.values() if isinstance(node, CommentedMap) else node:
            yield from _tokens(child)


def _shift_comments(node: Any, by: int) -> None:
    """Move end-of-line comments `by` columns (they keep their place when an entry is written
    indented, then shifted back)."""
    if by:
        for token in _tokens(node):
            mark = token.start_mark
            if mark is not None and not token.value.startswith("\n"):
                mark.column = max(0, mark.column + by)


Style = tuple[int, int, int, int]


@dataclass
class _Entry:
    item: Any
    index: int | None  # position in the original file; None = added
    changed: bool = False
    style: Style | None = None  # the style of the file an added entry was moved from


class YamlList:
    """A file holding one YAML list (devices/*.yaml, assignments/*.yaml) under edit."""

    def __init__(self, rel: str, text: str | None):
        self.rel = rel
        self.original = text
        self.lines = (text or "").splitlines(keepends=True)
        if text is None or not text.strip():
            seq: Any = CommentedSeq()
        else:
            try:
                seq = _yaml().load(text)
            except YAMLError as exc:
                raise ConfigError([Problem(rel, 0, "", f"invalid YAML: {exc}")]) from exc
            if seq is None:
                seq = CommentedSeq()
        if not isinstance(seq, CommentedSeq):
            raise ConfigError([Problem(rel, 1, "", "must be a list")])
        self.seq = seq
        self.entries = [_Entry(item, i) for i, item in enumerate(seq)]
        self.removed: list[_Entry] = []
        self._spans = self._find_spans()
        for item in seq:
            _clean_comments(item)
        self._style: Style | None = None
        self.decisive = False  # the file's entries told the styles apart
        if self._spans:
            self.style()  # measured before any entry changes

    def _find_spans(self) -> list[tuple[int, int, int]]:
        """Per original entry: (first line, end of its own lines, start of the next entry)."""
        starts = [self.seq.lc.item(i)[0] for i in range(len(self.seq))]
        spans = []
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else len(self.lines)
            spans.append((start, _own_end(self.lines, start, stop), stop))
        return spans

    @property
    def changed(self) -> bool:
        return bool(self.removed) or any(e.changed or e.index is None for e in self.entries)

    def items(self) -> Iterator[Any]:
        return (e.item for e in self.entries)

    def append(self, item: Any, style: Style | None = None) -> None:
        self.entries.append(_Entry(item, None, True, style))

    def remove(self, item: Any) -> None:
        for i, entry in enumerate(self.entries):
            if entry.item is item:
                del self.entries[i]
                if entry.index is not None:
                    self.removed.append(entry)
                return
        raise KeyError("entry not in this file")

    def touch(self, item: Any) -> None:
        for entry in self.entries:
            if entry.item is item:
                entry.changed = True
                return
        raise KeyError("entry not in this file")

    # --- output -------------------------------------------------------------------------------

    def style(self) -> Style:
        """The indentation style that reproduces the most original entries byte for byte."""
        if self._style is None:
            sample = list(range(min(len(self._spans), 8)))
            scores = [sum(self._dump(self.seq[i], style)
                          == "".join(self.lines[self._spans[i][0]:self._spans[i][1]])
                          for i in sample) for style in _STYLES]
            self._style = _STYLES[scores.index(max(scores))]
            self.decisive = max(scores) > min(scores)
        return self._style

    def _dump(self, item: Any, style: Style) -> str:
        out = io.StringIO()
        seq = CommentedSeq([item])
        shift = style[3]  # the root list is written indented by `shift`, then shifted back
        _shift_comments(item, shift)
        try:
            _yaml(style).dump(seq, out)
        finally:
            _shift_comments(item, -shift)
        lines = out.getvalue().splitlines(keepends=True)
        if shift:
            # Full-line comments are written as they were read; everything else moves back.
            lines = [line[shift:] if line.startswith(" " * shift)
                     and not line.lstrip().startswith("#") else line for line in lines]
        return "".join(lines[:_own_end(lines, 0, len(lines))])

    def render(self) -> str:
        if not self.changed and self.original is not None:
            return self.original
        style = self.style()
        lines = self.lines
        spans = self._spans
        out: list[str] = []
        if spans:
            out += lines[:spans[0][0]]
        elif self.original is not None:
            # No entry yet ("[]", or only comments): keep the comments, drop the empty list.
            out += [line for line in lines if line.strip() not in ("[]", "---")]
        by_index = {e.index: e for e in self.entries if e.index is not None}
        for i, (start, own, stop) in enumerate(spans):
            entry = by_index.get(i)
            if entry is not None:
                out.append(self._dump(entry.item, style) if entry.changed
                           else "".join(lines[start:own]))
            out += lines[own:stop]
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        for entry in self.entries:
            if entry.index is None:
                entry_style = entry.style if entry.style and not self.decisive else style
                out.append(self._dump(entry.item, entry_style))
        if not self.entries:
            out.append("[]\n")
        return "".join(out)


def set_key(item: CommentedMap, key: str, value: Any, order: tuple[str, ...]) -> bool:
    """Set `key` (in canonical `order` if new); False if it already had this value."""
    if key in item:
        if item[key] == value:
            return False  # same value: keep the file's spelling and quoting
        item[key] = value
        return True
    rank = order.index(key) if key in order else len(order)
    pos = 0
    for i, existing in enumerate(item):
        if existing in order and order.index(existing) < rank:
            pos = i + 1
    item.insert(pos, key, value)
    return True


def drop_key(item: CommentedMap, key: str) -> bool:
    if key in item:
        del item[key]
        return True
    return False


def description(item: CommentedMap) -> str:
    """The comment at the end of an entry's first line (`- mac: ... # desk by the door`)."""
    slots = item.ca.items.get("mac")
    token = slots[2] if slots and len(slots) > 2 else None
    if isinstance(token, CommentToken):
        first = token.value.split("\n", 1)[0].strip()
        if first.startswith("#"):
            return first[1:].strip()
    return ""


def set_description(item: CommentedMap, text: str) -> bool:
    text = " ".join(text.split())
    if text == description(item):
        return False
    slots = item.ca.items.get("mac")
    token = slots[2] if slots and len(slots) > 2 else None
    if isinstance(token, CommentToken):
        rest = token.value.split("\n", 1)[1] if "\n" in token.value else ""
        if text:
            token.value = f"# {text}\n{rest}"
        elif rest.strip():
            token.value = "\n" + rest
        else:
            slots[2] = None
        return True
    if text:
        item.yaml_add_eol_comment(f"# {text}", "mac")
    return True


# --- the workspace --------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceAt:
    rel: str
    item: CommentedMap


@dataclass(frozen=True)
class AccountAt:
    rel: str
    item: CommentedMap

    @property
    def account(self) -> str:
        return str(self.item.get("account"))


def _mac_of(value: Any) -> str | None:
    try:
        return normalize_mac(value)
    except ValueError:
        return None


def ref_mac(ref: Any) -> str | None:
    """The MAC of an entry of an account's `devices` ("MAC" or {mac: MAC, port: N})."""
    return _mac_of(ref.get("mac") if isinstance(ref, dict) else ref)


class Workspace:
    """In-memory edits of a desired-state directory; nothing is written before `write()`."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.source = read_source(repo)
        self._lists: dict[str, YamlList] = {}
        self._device_file: dict[str, str] | None = None
        self._by_mac: dict[str, dict[str, CommentedMap]] = {}  # rel -> MAC -> entry

    def text(self, rel: str) -> str | None:
        data = self.source.files.get(rel)
        return None if data is None else data.decode("utf-8")

    def yaml_list(self, rel: str) -> YamlList:
        """The list file `rel` (created empty in memory when it does not exist yet)."""
        found = self._lists.get(rel)
        if found is None:
            found = self._lists[rel] = YamlList(rel, self.text(rel))
        return found

    def rels(self, prefix: str) -> list[str]:
        known = {rel for rel in self.source.files if rel.startswith(prefix)}
        known |= {rel for rel in self._lists if rel.startswith(prefix)}
        return sorted(known)

    # --- devices ----------------------------------------------------------------------------

    def _index(self) -> dict[str, str]:
        """MAC -> devices file, read with the fast loader (only edited files go to ruamel)."""
        if self._device_file is None:
            index: dict[str, str] = {}
            for rel in self.rels(layout.DEVICES):
                if rel in self._lists:
                    macs = [_mac_of(item.get("mac")) for item in self._lists[rel].items()
                            if isinstance(item, dict)]
                else:
                    try:
                        data = parse_yaml(rel, self.source.files[rel]).data
                    except ConfigError:
                        data = None
                    macs = [_mac_of(item.get("mac")) for item in data or []
                            if isinstance(item, dict)] if isinstance(data, list) else []
                for mac in macs:
                    if mac:
                        index.setdefault(mac, rel)
            self._device_file = index
        return self._device_file

    def device(self, mac: str) -> DeviceAt | None:
        rel = self._index().get(mac)
        if rel is None:
            return None
        entries = self._by_mac.get(rel)
        if entries is None:
            entries = self._by_mac[rel] = {}
            for item in self.yaml_list(rel).items():
                found = _mac_of(item.get("mac")) if isinstance(item, dict) else None
                if found:
                    entries.setdefault(found, item)
        item = entries.get(mac)
        return None if item is None else DeviceAt(rel, item)

    def devices(self) -> Iterator[DeviceAt]:
        for rel in self.rels(layout.DEVICES):
            for item in self.yaml_list(rel).items():
                if isinstance(item, CommentedMap):
                    yield DeviceAt(rel, item)

    def add_device(self, rel: str, item: CommentedMap, style: Style | None = None) -> None:
        self.yaml_list(rel).append(item, style)
        mac = _mac_of(item.get("mac"))
        if mac:
            self._index().setdefault(mac, rel)
            if rel in self._by_mac:
                self._by_mac[rel].setdefault(mac, item)

    def remove_device(self, at: DeviceAt) -> None:
        self.yaml_list(at.rel).remove(at.item)
        mac = _mac_of(at.item.get("mac"))
        if mac and self._index().get(mac) == at.rel:
            del self._index()[mac]
            self._by_mac.get(at.rel, {}).pop(mac, None)

    def move_device(self, at: DeviceAt, rel: str) -> DeviceAt:
        """Move an entry to another file, with its comments and keys."""
        if rel == at.rel:
            return at
        source = self.yaml_list(at.rel)
        self.remove_device(at)
        self.add_device(rel, at.item, source.style() if source.decisive else None)
        return DeviceAt(rel, at.item)

    def touch(self, at: DeviceAt | AccountAt) -> None:
        self.yaml_list(at.rel).touch(at.item)

    # --- accounts -------------------------------------------------------------------------------

    def accounts(self) -> Iterator[AccountAt]:
        for rel in self.rels(layout.ASSIGNMENTS):
            for item in self.yaml_list(rel).items():
                if isinstance(item, CommentedMap):
                    yield AccountAt(rel, item)

    def account(self, name: str) -> AccountAt | None:
        return next((a for a in self.accounts() if a.account == name), None)

    def accounts_of(self, mac: str) -> list[AccountAt]:
        return [a for a in self.accounts()
                if any(ref_mac(ref) == mac for ref in a.item.get("devices") or [])]

    def add_account(self, rel: str, item: CommentedMap) -> AccountAt:
        self.yaml_list(rel).append(item)
        return AccountAt(rel, item)

    def remove_account(self, at: AccountAt) -> None:
        self.yaml_list(at.rel).remove(at.item)

    # --- result -----------------------------------------------------------------------------

    def changed(self) -> dict[str, bytes]:
        """New content of every changed file."""
        return {rel: lst.render().encode("utf-8") for rel, lst in sorted(self._lists.items())
                if lst.changed}

    def overlay(self) -> Source:
        files = dict(self.source.files)
        files.update(self.changed())
        return Source(self.source.root, self.source.revision, dict(sorted(files.items())))

    def validate(self) -> DesiredState:
        """The whole edited repository, validated in memory (secrets redacted)."""
        return load_state(self.overlay(), redacting=True)

    def check(self) -> list[Problem]:
        """Validate the edited repository against the one before the edits: raise ConfigError
        with the problems the edits add; return those that were there before and remain (so a
        repository made invalid on purpose, e.g. by terminating a customer, can be repaired
        one command at a time)."""
        try:
            load_state(self.overlay(), redacting=True)
            return []
        except ConfigError as exc:
            after = [p for p in exc.problems if p.severity == "error"]
        try:
            load_state(self.source, redacting=True)
            before: set[str] = set()
        except ConfigError as exc:
            before = {p.message for p in exc.problems}
        added = [p for p in after if p.message not in before]
        if added:
            raise ConfigError(added)
        return after

    def write(self) -> list[Path]:
        written = []
        for rel, data in self.changed().items():
            path = self.repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
            written.append(path)
        self.source = read_source(self.repo)
        self._lists.clear()
        self._device_file = None
        self._by_mac.clear()
        return written


def flow_map(**items: Any) -> CommentedMap:
    """A small mapping written on one line, `{until: 2027-01-31}`."""
    value = CommentedMap()
    value.update(items)
    value.fa.set_flow_style()
    return value


def new_device(mac: str, model: str, profile: str, *, customer: str | None = None,
               owned: bool = False, name: str = "", serial: str = "",
               description_text: str = "") -> CommentedMap:
    item = CommentedMap()
    item["mac"] = mac_text(mac)
    item["model"] = model
    item["profile"] = profile
    if customer:
        item["customer"] = customer
    if name:
        item["name"] = name
    if owned:
        item["owned_by_customer"] = True
    if serial:
        item["serial"] = quoted(serial)
    if description_text:
        set_description(item, description_text)
    return item


def new_port_ref(mac: str, port: int) -> Any:
    if port == 1:
        return mac_text(mac)
    ref = CommentedMap()
    ref["mac"] = mac_text(mac)
    ref["port"] = port
    ref.fa.set_flow_style()
    return ref


def new_account(account: str, password: str, display_name: str, devices: list[Any]
                ) -> CommentedMap:
    item = CommentedMap()
    item["account"] = account
    if display_name:
        item["display_name"] = display_name
    item["password"] = password
    seq = CommentedSeq(devices)
    seq.fa.set_flow_style()
    item["devices"] = seq
    return item
