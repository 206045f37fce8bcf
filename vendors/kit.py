"""The vendor kit: the parts every vendor module is built from, written once.

A vendor module subclasses `Builder` (how one phone's settings are worked out) and `VendorBase`
(what is true of the vendor: models, parameters, firmware scheme). The builder collects an
ordered list of `Setting`s, each naming the vendor-neutral parameter it comes from, so that

- `raw` keys replace the generated key they name instead of adding a second one (`raw()`: the
  generated setting is dropped and the raw one appended, or, for formats where the *first*
  occurrence wins, replaced where it stands);
- the checks see exactly the values that will be written (`value_problems()`: a line break is
  refused everywhere, a control character XML cannot carry in the XML formats), and every
  problem names the parameter;
- language and time zone, which every vendor maps, follow one pattern (`language()`,
  `timezone()`); ports beyond the model are refused one way (`ports()`).

`VendorBase.build(device)` builds a phone once and returns its files and problems together
(`Build`), so the renderer never builds a phone twice. A firmware `VersionScheme` parses
versions and words the error the same way for every vendor. Adding a vendor:
docs/adding-a-vendor.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from vendors.base import BootstrapInput, Build, LineInput, ModelInfo, OutputFile, RenderInput
from vendors.common import language_code

XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Setting:
    """One value a phone's file carries, and the neutral parameter it comes from."""

    key: str  # the vendor's name for it
    value: str
    param: str  # e.g. "password of acme/201 on port 1": problems start with it
    section: str = ""  # Yealink: the comment heading above it; Fanvil: its module
    idx: int | None = None  # Snom: the identity index (`<user_name idx="1">`)
    flag: str = ""  # Snom: perm; Cisco: ua


def _int_groups(match: re.Match[str]) -> tuple[int, ...]:
    return tuple(int(part) for part in match.groups() if part is not None)


@dataclass(frozen=True)
class VersionScheme:
    """A vendor's firmware version format: `parse()` gives a tuple that orders versions."""

    name: str  # "Yealink firmware version", as the error starts
    form: str  # what a version looks like, e.g. "<family>.<major>.<custom>.<minor>, e.g. …"
    pattern: re.Pattern[str]
    parts: Callable[[re.Match[str]], tuple[int, ...]] = _int_groups

    def match(self, version: str) -> re.Match[str]:
        found = self.pattern.match(version.strip())
        if not found:
            raise ValueError(f"{self.name} {version!r} is not {self.form}")
        return found

    def parse(self, version: str) -> tuple[int, ...]:
        return self.parts(self.match(version))


class Builder:
    """Works out one phone's settings; a vendor subclass fills in `steps()` and `files()`."""

    label: ClassVar[str] = ""  # "Yealink": how problems name the vendor
    carrier: ClassVar[str] = ""  # "the Yealink text format": what cannot carry a line break
    xml: ClassVar[bool] = False  # XML formats also refuse control characters
    true: ClassVar[str] = "1"  # how the format writes booleans
    false: ClassVar[str] = "0"
    raw_in_place: ClassVar[bool] = False  # True where the first of two equal keys wins
    languages: ClassVar[Mapping[str, Any]] = {}  # ISO 639-1 code -> the vendor's value

    def __init__(self, device: RenderInput):
        self.device = device
        self.params = device.params
        self.owned = device.user_owned
        self.settings: list[Setting] = []
        self.problems: list[str] = []
        self.current_section = ""

    # --- the build ----------------------------------------------------------------------------

    def build(self) -> Build:
        self.steps()
        self.raw()
        problems = [*self.problems, *self.value_problems()]
        return Build(tuple(self.files()), tuple(problems))

    def steps(self) -> None:
        """Add the settings, in file order (common settings, lines, keys)."""
        raise NotImplementedError

    def files(self) -> list[OutputFile]:
        """The phone's files from the settings (template and context each)."""
        raise NotImplementedError

    # --- writing ------------------------------------------------------------------------------

    def text(self, value: Any) -> str:
        if isinstance(value, bool):
            return self.true if value else self.false
        return str(value)

    def section(self, title: str) -> None:
        """Settings put from now on belong under this heading (or module)."""
        self.current_section = title

    def put(self, key: str, value: Any, param: str, *, idx: int | None = None,
            flag: str = "", section: str | None = None) -> None:
        self.settings.append(Setting(key, self.text(value), param,
                                     self.current_section if section is None else section,
                                     idx, flag))

    def problem(self, text: str) -> None:
        self.problems.append(text)

    # --- shared steps -------------------------------------------------------------------------

    def line_codecs(self, line: LineInput) -> list[str] | None:
        """The line's codec preference, else the phone's; None when neither sets one."""
        codecs = (line.params or {}).get("codecs")
        if codecs is None:
            codecs = self.params.get("codecs")
        return None if codecs is None else list(codecs)

    def codec_choice(self, codecs: Iterable[str], table: Mapping[str, Any], where: str,
                     phones: str) -> list[Any]:
        """The vendor's name of each wanted codec, in order and once; a codec not in `table`
        is a problem naming `phones` and what they support."""
        chosen: list[Any] = []
        for codec in codecs:
            if codec not in table:
                self.problem(f"codecs{where}: {codec} is not supported by {phones} "
                             f"(supported: {', '.join(sorted(table))})")
            elif table[codec] not in chosen:
                chosen.append(table[codec])
        return chosen

    def ports(self, noun: str) -> dict[int, LineInput]:
        """The phone's lines by port; a port the model does not have is a problem."""
        model: ModelInfo = self.device.model
        by_port: dict[int, LineInput] = {}
        for line in self.device.lines:
            if not 1 <= line.port <= model.lines:
                self.problem(f"port {line.port} ({line.account}): {model.name} has {noun} 1 to "
                             f"{model.lines}")
                continue
            by_port[line.port] = line
        return by_port

    def language(self, *, skip_owned: bool = True) -> Any | None:
        """The vendor's value for the `language` parameter; None when unset, user-owned (unless
        the vendor can mark a default the user may change) or unknown (a problem)."""
        language = self.params.get("language")
        if not language or (skip_owned and "language" in self.owned):
            return None
        value = self.language_table().get(language_code(str(language)))
        if value is None:
            self.problem(self.unknown_language(str(language)))
        return value

    def language_table(self) -> Mapping[str, Any]:
        """ISO 639-1 code -> the vendor's value, for this phone (some vendors differ per model)."""
        return self.languages

    def unknown_language(self, language: str) -> str:
        return (f"language: {language!r} has no {self.label} equivalent (known: "
                f"{', '.join(sorted(self.language_table()))})")

    def timezone(self) -> None:
        """Write the `timezone` parameter with `put_timezone`; what it refuses is a problem."""
        tz = self.params.get("timezone")
        if tz:
            try:
                self.put_timezone(str(tz))
            except ValueError as exc:
                self.problem(f"timezone: {exc}")

    def put_timezone(self, name: str) -> None:
        raise NotImplementedError

    # --- raw keys -----------------------------------------------------------------------------

    def raw(self) -> None:
        """`params.raw.<vendor>`: each key replaces the generated setting it names."""
        added: list[Setting] = []
        for key, value in (self.device.raw or {}).items():
            setting = self.raw_setting(str(key), value)
            if setting is not None:
                added.append(setting)
        if not added:
            return
        if self.raw_in_place:
            where = {self.key_of(s): i for i, s in enumerate(self.settings)}
            for setting in added:
                i = where.get(self.key_of(setting))
                if i is None:
                    where[self.key_of(setting)] = len(self.settings)
                    self.settings.append(setting)
                else:
                    self.settings[i] = setting
            return
        replaced = {self.key_of(s) for s in added}
        self.settings = [s for s in self.settings if self.key_of(s) not in replaced] + added

    def raw_setting(self, key: str, value: Any) -> Setting | None:
        """The setting a raw key writes, or None after reporting a key the format cannot take."""
        raise NotImplementedError

    def key_of(self, setting: Setting) -> Hashable:
        """What makes two settings the same key on the phone."""
        return (setting.key, setting.idx)

    # --- checks -------------------------------------------------------------------------------

    def values(self) -> Iterable[tuple[str, str, str]]:
        """(parameter, key, value) of everything written, for the checks."""
        return [(s.param, s.key, s.value) for s in self.settings]

    def value_problems(self) -> list[str]:
        out = []
        for param, key, value in self.values():
            if "\n" in value or "\r" in value:
                out.append(f"{param}: contains a line break, which {self.carrier} cannot "
                           f"carry ({key})")
            elif self.xml and XML_ILLEGAL.search(value):
                out.append(f"{param}: contains a control character XML cannot carry ({key})")
        return out


# The common parameters (docs/desired-state.md) a desk-phone module expresses in full.
DESK_PHONE = frozenset({
    "sip", "codecs", "ntp", "timezone", "language", "admin_password", "call_waiting", "vlan",
    "line_keys", "provisioning", "raw",
})


class VendorBase:
    """What a vendor module declares; `build()` runs its Builder once per phone."""

    name: ClassVar[str]
    models: Mapping[str, ModelInfo]
    autoescape: ClassVar[bool]  # XML formats escape; text formats must not
    supported: ClassVar[frozenset[str]]
    redirect_kinds: ClassVar[tuple[str, ...]] = ()
    notes: Mapping[str, str] = {}
    # What a phone with no account assigned (a pooled phone) gets and can do. No vendor's
    # common settings include a registrar: an account without credentials would try, fail and
    # retry to register, and an SBC may block the phone's address for it [I].
    without_account: ClassVar[str] = (
        "common settings only (provisioning, time, language, VLAN, admin password); every "
        "account is switched off and emptied, registrar included, so it registers nowhere and "
        "cannot call, not even an emergency number, until a line is assigned and it resyncs")
    builder: ClassVar[type[Builder]]
    versions: ClassVar[VersionScheme]

    def build(self, device: RenderInput) -> Build:
        return self.builder(device).build()

    def firmware_version(self, version: str) -> tuple[int, ...]:
        return self.versions.parse(version)

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        return None  # every version that parses fits every model, unless the vendor says

    def bootstrap_files(self, model: ModelInfo, directory_url: str) -> tuple[OutputFile, ...]:
        """The files a factory-fresh phone of this model asks for first, by the names it asks
        for, to be published where its DHCP option points: each sends the phone on to its own
        per-MAC file in `directory_url` (with the vendor's MAC macro, so one file serves every
        phone of the model). No credentials, nothing of any one phone. () when the vendor's
        factory firmware asks for a per-MAC name straight away."""
        return ()

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """One phone's files in the customer's bootstrap directory (docs/zero-touch.md): only
        what moves it to its own directory, `phone.provisioning_url`, and the common settings
        it needs to get there. () when the vendor cannot be onboarded behind DHCP."""
        return ()
