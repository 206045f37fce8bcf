"""Strict parsers of every vendor's files, for the vendor tests; they read a file as the phone does.

Strict means: anything a phone might misread is an error here, not silently skipped. A test that
parses a file back with these functions checks the syntax of the whole file as well as the values
it asserts. Where a phone has a rule for a key written twice, the parser follows it and reports
the key in `duplicates` (provctl itself writes each key once; the contract test checks that):
the *last* value wins for Yealink and Cisco, the *first* for Panasonic, and for Poly the file
listed first in CONFIG_FILES wins (`poly_phone`). A Cisco element written self-closing
(`<X ua="na"/>`) is not taken as an empty value (the admin guide leaves that form ambiguous): it
is reported in `unset` and left out of the values. Formats without a documented rule (Snom,
Grandstream, Fanvil, Gigaset) refuse a duplicate outright.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

YEALINK_HEADER = "#!version:1.0.0.1"
_YEALINK_LINE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-\[\]]*) = (.*)$")
_INCLUDE = re.compile(r'^include:config "([^"]+)"$')
XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


class FormatError(AssertionError):
    """The rendered text is not valid in the vendor's format."""


def _lines(text: str) -> list[str]:
    if "\r" in text:
        raise FormatError("carriage return in a Yealink file")
    if not text.endswith("\n"):
        raise FormatError("file does not end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != YEALINK_HEADER:
        raise FormatError(f"line 1 must be exactly {YEALINK_HEADER!r}, got {lines[0]!r}")
    return lines


def _setting(line: str, number: int, out: dict[str, str], duplicates: list[str]) -> None:
    match = _YEALINK_LINE.match(line)
    if not match:
        raise FormatError(f"line {number}: not 'key = value': {line!r}")
    key, value = match.groups()
    if key in out:  # the phone takes the last value [V reference: later overrides earlier]
        duplicates.append(key)
        del out[key]
    out[key] = value


def parse_yealink_cfg(text: str, duplicates: list[str] | None = None) -> dict[str, str]:
    """`key -> value` of a Yealink cfg file as the phone applies it (a repeated key: the last
    value); comments and blank lines are skipped."""
    out: dict[str, str] = {}
    seen = [] if duplicates is None else duplicates
    for number, line in enumerate(_lines(text)[1:], start=2):
        if line == "" or line.startswith("#"):
            continue
        _setting(line, number, out, seen)
    return out


def parse_yealink_boot(text: str, duplicates: list[str] | None = None
                       ) -> tuple[list[str], dict[str, str]]:
    """(included cfg files in order, settings) of a Yealink boot file."""
    includes: list[str] = []
    settings: dict[str, str] = {}
    seen = [] if duplicates is None else duplicates
    for number, line in enumerate(_lines(text)[1:], start=2):
        if line == "" or line.startswith("#"):
            continue
        match = _INCLUDE.match(line)
        if match:
            includes.append(match.group(1))
        else:
            _setting(line, number, settings, seen)
    return includes, settings


def yealink_phone(boot: str, files: dict[str, str]) -> dict[str, str]:
    """What the phone ends up with: the boot file's cfg files in include order, a later file's
    value overriding an earlier one's [V reference: include:config order]."""
    includes, _ = parse_yealink_boot(boot)
    out: dict[str, str] = {}
    for name in includes:
        out.update(parse_yealink_cfg(files[name]))
    return out


@dataclass
class SnomFile:
    settings: dict[tuple[str, int | None], tuple[str, str]] = field(default_factory=dict)
    fkeys: dict[int, dict[str, str]] = field(default_factory=dict)

    def value(self, name: str, idx: int | None = None) -> str:
        return self.settings[(name, idx)][0]

    def perm(self, name: str, idx: int | None = None) -> str:
        return self.settings[(name, idx)][1]


def _declaration(text: str) -> None:
    first = text.split("\n", 1)[0]
    if first != XML_DECLARATION:
        raise FormatError(f"line 1 must be exactly {XML_DECLARATION!r}, got {first!r}")


def _attributes(element: ET.Element, allowed: set[str], required: set[str]) -> None:
    unknown = set(element.attrib) - allowed
    missing = required - set(element.attrib)
    if unknown or missing:
        raise FormatError(f"<{element.tag}>: unknown attributes {sorted(unknown)}, missing "
                          f"{sorted(missing)}")


def parse_snom(text: str) -> SnomFile:
    """Settings `(name, idx) -> (value, perm)` and function keys `idx -> attributes + value`."""
    _declaration(text)
    root = ET.fromstring(text.encode("utf-8"))
    if root.tag != "settings" or root.attrib or (root.text or "").strip():
        raise FormatError(f"root must be a bare <settings>, got <{root.tag}>")
    out = SnomFile()
    seen: set[str] = set()
    for section in root:
        if section.tag not in ("phone-settings", "functionKeys") or section.tag in seen:
            raise FormatError(f"unexpected or repeated section <{section.tag}>")
        seen.add(section.tag)
        for element in section:
            if len(element):
                raise FormatError(f"<{element.tag}> must hold text only")
            if section.tag == "phone-settings":
                _attributes(element, {"idx", "perm"}, {"perm"})
                idx = element.get("idx")
                key = (element.tag, int(idx) if idx is not None else None)
                if key in out.settings:
                    raise FormatError(f"duplicate setting {key}")
                out.settings[key] = (element.text or "", element.attrib["perm"])
            else:
                if element.tag != "fkey":
                    raise FormatError(f"<functionKeys> holds only <fkey>, got <{element.tag}>")
                _attributes(element, {"idx", "context", "label", "perm"},
                            {"idx", "context", "perm"})
                number = int(element.attrib["idx"])
                if number in out.fkeys:
                    raise FormatError(f"duplicate fkey idx {number}")
                out.fkeys[number] = {**element.attrib, "value": element.text or ""}
    if "phone-settings" not in seen:
        raise FormatError("no <phone-settings>")
    return out


def parse_snom_firmware(text: str) -> str:
    """The firmware URL of a Snom firmware settings file."""
    _declaration(text)
    root = ET.fromstring(text.encode("utf-8"))
    if root.tag != "firmware-settings" or root.attrib or len(root) != 1:
        raise FormatError("expected <firmware-settings> holding exactly one element")
    (child,) = list(root)
    if child.tag != "firmware" or len(child) or child.attrib:
        raise FormatError(f"expected <firmware>URL</firmware>, got <{child.tag}>")
    return child.text or ""


# --- shared XML helpers for the vendors that declare "UTF-8" in upper case ------------------

XML_DECLARATION_UPPER = '<?xml version="1.0" encoding="UTF-8"?>'
POLY_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'


def _xml_root(text: str, declaration: str, tag: str, attributes: dict[str, str]) -> ET.Element:
    first = text.split("\n", 1)[0]
    if first != declaration:
        raise FormatError(f"line 1 must be exactly {declaration!r}, got {first!r}")
    if "\r" in text:
        raise FormatError("carriage return in an XML file")
    root = ET.fromstring(text.encode("utf-8"))  # rejects duplicate attributes, bad escaping
    if root.tag != tag or dict(root.attrib) != attributes:
        raise FormatError(f"root must be <{tag}> with {attributes}, got <{root.tag}> "
                          f"{dict(root.attrib)}")
    if (root.text or "").strip() or (root.tail or "").strip():
        raise FormatError(f"<{tag}> must not hold text")
    return root


def _leaf(element: ET.Element) -> str:
    if len(element):
        raise FormatError(f"<{element.tag}> must hold text only")
    if (element.tail or "").strip():
        raise FormatError(f"text after <{element.tag}>")
    return element.text or ""


# --- Poly ----------------------------------------------------------------------------------

POLY_MASTER_ATTRIBUTES = {"APP_FILE_PATH", "CONFIG_FILES", "MISC_FILES", "LOG_FILE_DIRECTORY",
                          "OVERRIDES_DIRECTORY", "CONTACTS_DIRECTORY", "LICENSE_DIRECTORY"}
_POLY_PARAM = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


def parse_poly_master(text: str) -> dict[str, str]:
    """Attributes of the master file's `<APPLICATION/>` (all seven, nothing else)."""
    first = text.split("\n", 1)[0]
    if first != POLY_DECLARATION:
        raise FormatError(f"line 1 must be exactly {POLY_DECLARATION!r}")
    root = ET.fromstring(text.encode("utf-8"))
    if root.tag != "APPLICATION" or len(root) or (root.text or "").strip():
        raise FormatError("the master file holds one empty <APPLICATION/>")
    if set(root.attrib) != POLY_MASTER_ATTRIBUTES:
        raise FormatError(f"<APPLICATION> attributes {sorted(root.attrib)}")
    files = root.attrib["CONFIG_FILES"]
    if len(root.attrib["APP_FILE_PATH"]) > 255 or any(len(f) > 255 for f in files.split(",")):
        raise FormatError("APP_FILE_PATH and each CONFIG_FILES entry hold at most 255 chars")
    return dict(root.attrib)


def parse_poly_config(text: str) -> dict[str, str]:
    """Parameters (the attributes of the one empty `<polycomConfig/>`)."""
    first = text.split("\n", 1)[0]
    if first != POLY_DECLARATION:
        raise FormatError(f"line 1 must be exactly {POLY_DECLARATION!r}")
    root = ET.fromstring(text.encode("utf-8"))  # a repeated parameter is a duplicate attribute
    if root.tag != "polycomConfig" or len(root) or (root.text or "").strip():
        raise FormatError("a Poly configuration file holds one empty <polycomConfig/>")
    for name in root.attrib:
        if not _POLY_PARAM.match(name):
            raise FormatError(f"not a Poly parameter name: {name!r}")
    return dict(root.attrib)


def poly_phone(master: str, files: dict[str, str]) -> dict[str, str]:
    """What the phone ends up with: the CONFIG_FILES in order, a parameter taking its value
    from the first file that sets it [V reference: file listed first wins]. A listed file that
    is not there is skipped, as the phone skips it."""
    out: dict[str, str] = {}
    for name in (n.strip() for n in parse_poly_master(master)["CONFIG_FILES"].split(",")):
        if name and name in files:
            for key, value in parse_poly_config(files[name]).items():
                out.setdefault(key, value)
    return out


# --- Grandstream ---------------------------------------------------------------------------

_P_VALUE = re.compile(r"^P\d+$")


def parse_grandstream(text: str) -> tuple[str, dict[str, str]]:
    """(the `<mac>` element, P-value -> value) of a `cfg<mac>.xml`."""
    root = _xml_root(text, XML_DECLARATION_UPPER, "gs_provision", {"version": "1"})
    children = list(root)
    if [c.tag for c in children] != ["mac", "config"]:
        raise FormatError(f"<gs_provision> holds <mac> then <config>, got "
                          f"{[c.tag for c in children]}")
    mac_element, config = children
    if mac_element.attrib or not re.fullmatch(r"[0-9a-f]{12}", _leaf(mac_element)):
        raise FormatError("<mac> must hold 12 lowercase hex digits")
    if dict(config.attrib) != {"version": "1"} or (config.text or "").strip():
        raise FormatError('<config version="1"> expected')
    out: dict[str, str] = {}
    for element in config:
        if not _P_VALUE.match(element.tag) or element.attrib:
            raise FormatError(f"<config> holds only <Pnnn> elements, got <{element.tag}>")
        if element.tag in out:
            raise FormatError(f"duplicate {element.tag}")
        out[element.tag] = _leaf(element)
    return mac_element.text or "", out


# --- Cisco ---------------------------------------------------------------------------------

_CISCO_ELEMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


_SELF_CLOSING = re.compile(r"<([A-Za-z][A-Za-z0-9_.\-]*)(?:\s[^<>]*)?/>")


def parse_cisco(text: str, duplicates: list[str] | None = None,
                unset: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """Element -> (value, ua) of a `<flat-profile>` as the phone applies it; every element
    carries `ua`. A repeated element: the last one wins [V reference]. A self-closing element
    sets nothing certain (the guide only documents `<X></X>` as an empty value): it is left out
    and named in `unset`."""
    root = _xml_root(text, XML_DECLARATION_UPPER, "flat-profile", {})
    self_closing = [m.group(1) for m in _SELF_CLOSING.finditer(text)]
    pending = list(self_closing)
    out: dict[str, tuple[str, str]] = {}
    for element in root:
        if not _CISCO_ELEMENT.match(element.tag):
            raise FormatError(f"not a Cisco element name: {element.tag!r}")
        if set(element.attrib) != {"ua"} or element.attrib["ua"] not in ("na", "ro", "rw"):
            raise FormatError(f"<{element.tag}> must carry exactly ua=na|ro|rw")
        value = _leaf(element)
        if element.tag in pending and value == "":
            pending.remove(element.tag)
            if unset is not None:
                unset.append(element.tag)
            continue
        if element.tag in out:
            if duplicates is not None:
                duplicates.append(element.tag)
            del out[element.tag]
        out[element.tag] = (value, element.attrib["ua"])
    return out


# --- Gigaset -------------------------------------------------------------------------------


@dataclass
class GigasetFile:
    params: dict[str, str] = field(default_factory=dict)
    handsets: list[str] = field(default_factory=list)  # add_hs operations, in order
    firmware: dict[str, str] | None = None


def parse_gigaset(text: str) -> GigasetFile:
    root = _xml_root(text, XML_DECLARATION_UPPER, "provisioning",
                     {"version": "1.1", "productID": "e2"})
    out = GigasetFile()
    tags = [c.tag for c in root]
    if tags not in (["nvm"], ["firmware", "nvm"]):
        raise FormatError(f"<provisioning> holds [<firmware>] <nvm>, got {tags}")
    for section in root:
        if section.attrib or (section.text or "").strip():
            raise FormatError(f"<{section.tag}> takes no attributes or text")
        if section.tag == "firmware":
            files = list(section)
            if len(files) != 1 or files[0].tag != "file" or len(files[0]):
                raise FormatError("<firmware> holds one <file/>")
            if set(files[0].attrib) != {"version", "url"}:
                raise FormatError("<file> carries version and url")
            out.firmware = dict(files[0].attrib)
            continue
        for element in section:
            if element.tag == "param":
                if set(element.attrib) != {"name", "value"} or len(element):
                    raise FormatError("<param> is empty with exactly name and value")
                name = element.attrib["name"]
                if name in out.params:
                    raise FormatError(f"duplicate parameter {name}")
                out.params[name] = element.attrib["value"]
            elif element.tag == "oper":
                if element.attrib.get("name") != "add_hs" or set(element.attrib) != {"name",
                                                                                     "value"}:
                    raise FormatError(f"unexpected operation {element.attrib}")
                inner = list(element)
                if len(inner) != 1 or inner[0].attrib != {"name": "hs.RegStatus",
                                                          "value": "ToReg"}:
                    raise FormatError("add_hs holds one hs.RegStatus=ToReg parameter")
                if not re.fullmatch(r"\d{5}", element.attrib["value"]):
                    raise FormatError("handset numbers are five digits")
                out.handsets.append(element.attrib["value"])
            else:
                raise FormatError(f"<nvm> holds <param> and <oper>, got <{element.tag}>")
    return out


# --- Fanvil (text dialect) -----------------------------------------------------------------

FANVIL_HEADER = "<<VOIP CONFIG FILE>>Version:2.0000000000"
FANVIL_FOOTER = "<<END OF FILE>>"
_FANVIL_MODULE = re.compile(r"^<([A-Z0-9 ]+ MODULE)>$")
_FANVIL_LINE = re.compile(r"^([^:\s][^:]*?) *:(.*)$")


def parse_fanvil(text: str) -> dict[str, dict[str, str]]:
    """module -> key -> value. Header first, footer last, every setting inside a module."""
    if "\r" in text:
        raise FormatError("carriage return in a Fanvil text file")
    if not text.endswith("\n"):
        raise FormatError("file does not end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != FANVIL_HEADER:
        raise FormatError(f"line 1 must be exactly {FANVIL_HEADER!r}")
    if lines[-1] != FANVIL_FOOTER:
        raise FormatError(f"last line must be exactly {FANVIL_FOOTER!r}")
    out: dict[str, dict[str, str]] = {}
    module: dict[str, str] | None = None
    for number, line in enumerate(lines[1:-1], start=2):
        if line == "":
            continue
        header = _FANVIL_MODULE.match(line)
        if header:
            if header.group(1) in out:
                raise FormatError(f"line {number}: module {header.group(1)} repeated")
            module = out[header.group(1)] = {}
            continue
        match = _FANVIL_LINE.match(line)
        if not match or module is None:
            raise FormatError(f"line {number}: not 'Key :value' inside a module: {line!r}")
        key, value = match.groups()
        if key in module:
            raise FormatError(f"line {number}: duplicate key {key!r}")
        module[key] = value
    return out


# --- Panasonic -----------------------------------------------------------------------------

PANASONIC_MAGIC = ("# Panasonic SIP Phone Standard Format File #", "# PCC Standard Format File #")
_PANASONIC_LINE = re.compile(r'^([A-Z][A-Z0-9_]{0,31})="([^"]*)"$')


def parse_panasonic(data: bytes, duplicates: list[str] | None = None
                    ) -> tuple[str, dict[str, str]]:
    """(first line, NAME -> value) of a Panasonic text file as the phone applies it (a repeated
    name: the first value), checking every documented limit."""
    if len(data) > 120 * 1024:
        raise FormatError(f"{len(data)} bytes: over the 120 KB limit")
    if not data.endswith(b"\r\n\r\n"):
        raise FormatError("the file must end with an empty line (CRLF CRLF)")
    lines = data.split(b"\r\n")[:-1]  # split leaves "" after the final CRLF
    if any(b"\n" in line or b"\r" in line for line in lines):
        raise FormatError("every line must end with CRLF (bare LF or CR found)")
    text = [line.decode("utf-8") for line in lines]
    if not any(magic in text[0] for magic in PANASONIC_MAGIC):
        raise FormatError(f"line 1 must hold the magic comment, got {text[0]!r}")
    out: dict[str, str] = {}
    for number, (raw, line) in enumerate(zip(lines[1:], text[1:], strict=True), start=2):
        if len(raw) + 2 > 537:
            raise FormatError(f"line {number}: {len(raw) + 2} bytes with CRLF, over 537")
        if line == "" or line.startswith("#"):
            continue
        match = _PANASONIC_LINE.match(line)
        if not match:
            raise FormatError(f'line {number}: not NAME="value": {line!r}')
        name, value = match.groups()
        if len(value) > 500:
            raise FormatError(f"line {number}: value over 500 characters")
        if name in out:  # the phone takes the first [V reference]
            if duplicates is not None:
                duplicates.append(name)
            continue
        out[name] = value
    return text[0], out


# --- flat views: every vendor's files as {file: {key: value}}, for the contract test data ---
#
# Keys are the vendor's own names; where a value has attributes the view adds "key@attribute"
# (Snom perm, Cisco ua, Snom function keys). Each view parses strictly first, and says which keys
# the file wrote twice (`duplicates`) or left ambiguous (`unset`: Cisco's self-closing elements).


class FileView(dict[str, str]):
    def __init__(self, values: dict[str, str], duplicates: list[str] | None = None,
                 unset: list[str] | None = None):
        super().__init__(values)
        self.duplicates = list(duplicates or [])
        self.unset = list(unset or [])


def _view_yealink(name: str, text: str) -> FileView:
    duplicates: list[str] = []
    if name.endswith(".boot"):
        includes, settings = parse_yealink_boot(text, duplicates)
        return FileView({**{f"include[{i}]": f for i, f in enumerate(includes, start=1)},
                         **settings}, duplicates)
    return FileView(parse_yealink_cfg(text, duplicates), duplicates)


def _view_snom(name: str, text: str) -> FileView:
    if name.endswith("-firmware.xml"):
        return FileView({"firmware": parse_snom_firmware(text)})
    parsed = parse_snom(text)
    out: dict[str, str] = {}
    for (setting, idx), (value, perm) in parsed.settings.items():
        key = setting if idx is None else f"{setting}[{idx}]"
        out[key] = value
        out[f"{key}@perm"] = perm
    for number, attributes in parsed.fkeys.items():
        for attribute, value in attributes.items():
            if attribute == "value":
                out[f"fkey[{number}]"] = value
            elif attribute != "idx":
                out[f"fkey[{number}]@{attribute}"] = value
    return FileView(out)


def _view_poly(name: str, text: str) -> FileView:
    if name.endswith("-provctl.cfg"):
        return FileView(parse_poly_config(text))
    return FileView(parse_poly_master(text))


def _view_grandstream(name: str, text: str) -> FileView:
    mac, values = parse_grandstream(text)
    return FileView({"mac": mac, **values})


def _view_cisco(name: str, text: str) -> FileView:
    duplicates: list[str] = []
    unset: list[str] = []
    out: dict[str, str] = {}
    for element, (value, ua) in parse_cisco(text, duplicates, unset).items():
        out[element] = value
        out[f"{element}@ua"] = ua
    return FileView(out, duplicates, unset)


def _view_fanvil(name: str, text: str) -> FileView:
    return FileView({f"{module}/{key}": value for module, keys in parse_fanvil(text).items()
                     for key, value in keys.items()})


def _view_gigaset(name: str, text: str) -> FileView:
    parsed = parse_gigaset(text)
    out = dict(parsed.params)
    out["handsets"] = ",".join(parsed.handsets)
    if parsed.firmware is not None:
        out.update({f"firmware@{k}": v for k, v in parsed.firmware.items()})
    return FileView(out)


def _view_panasonic(name: str, text: str) -> FileView:
    duplicates: list[str] = []
    first, values = parse_panasonic(text.encode("utf-8"), duplicates)
    return FileView({"@line1": first, **values}, duplicates)


VIEWS = {"yealink": _view_yealink, "snom": _view_snom, "poly": _view_poly,
         "grandstream": _view_grandstream, "cisco": _view_cisco, "fanvil": _view_fanvil,
         "gigaset": _view_gigaset, "panasonic": _view_panasonic}


def view(vendor: str, files: dict[str, str]) -> dict[str, FileView]:
    """Every rendered file of one phone parsed strictly, as file -> key -> value. For Poly,
    "@phone" is what the phone ends up with from its master file's CONFIG_FILES."""
    out = {name: VIEWS[vendor](name, text) for name, text in files.items()}
    if vendor == "poly":
        for name, text in files.items():
            if "CONFIG_FILES" in out[name]:
                out["@phone"] = FileView(poly_phone(text, files))
    return out
