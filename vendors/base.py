"""What a vendor module provides, and the resolved input it is given.

A vendor module (`vendors/<name>/__init__.py`) holds what is true of one vendor: its models and
line counts, the files a phone requests (names, MAC spelling), how vendor-neutral parameters map
to its keys, its user-owned mechanism and its firmware version scheme. It does no I/O: `build()`
returns, per phone, the file names with the template and the context to render them with, and
the problems; the renderer (reconciler/render/templating.py, the only jinja2 user) does the
rest. Templates live in `templates/<name>/` and hold layout only. vendors/kit.py holds the parts
every vendor shares; docs/adding-a-vendor.md says how a vendor is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelInfo:
    name: str  # as written after "vendor/" in the desired state, e.g. "T46U"
    lines: int  # SIP accounts (or DECT handsets) the model can carry
    family: str = ""  # vendor-specific grouping, e.g. Yealink firmware family "108"
    keys: int = 0  # programmable line keys on the phone itself (0 = unknown / none)


@dataclass(frozen=True)
class LineInput:
    """One port of a phone with an account assigned to it."""

    port: int  # 1-based
    account: str  # "acme/201"
    extension: str  # the SIP user on this phone: "201" on the first phone, "91201" on the 2nd
    auth_user: str
    password: str  # resolved secret
    display_name: str
    label: str
    sip: Mapping[str, Any]  # resolved sip.* for this line: server, port, transport, ...
    params: Mapping[str, Any]  # every resolved parameter at the line layer


@dataclass(frozen=True)
class FirmwareInput:
    version: str
    file: str
    url: str  # where the phone downloads it


@dataclass(frozen=True)
class RenderInput:
    """Everything a vendor needs to build one phone's files; secrets already resolved."""

    mac: str  # 12 lowercase hex digits
    vendor: str
    model: ModelInfo
    name: str
    customer: str | None
    params: Mapping[str, Any]  # resolved device-level parameters (nested plain data)
    lines: tuple[LineInput, ...]  # sorted by port; empty = common settings only
    user_owned: frozenset[str]
    provisioning_url: str  # the directory the phone fetches from, ending in "/"
    firmware: FirmwareInput | None = None  # None = keep the installed firmware
    raw: Mapping[str, Any] = field(default_factory=dict)  # params.raw[<vendor>], passed as is


@dataclass(frozen=True)
class BootstrapInput:
    """What a phone's bootstrap files (docs/zero-touch.md) may carry: where its own files are,
    and the common settings it needs to get there. There is no field for anything secret, so
    a vendor module cannot put a credential into one."""

    mac: str  # 12 lowercase hex digits
    vendor: str
    model: ModelInfo
    provisioning_url: str  # the phone's own directory, ending in "/" (its token inside)
    bootstrap_url: str  # the customer's bootstrap directory these files are published in
    ntp_server: str | None = None  # a host name or address (checked), when one is set


@dataclass(frozen=True)
class OutputFile:
    name: str  # file name inside the phone's directory on the target
    template: str  # path under templates/, e.g. "yealink/mac.cfg.j2"
    context: Mapping[str, Any]
    line_ending: str = "\n"  # Panasonic wants "\r\n"


@dataclass(frozen=True)
class UserAgent:
    """What a phone says about itself in the User-Agent of its provisioning requests.

    `model` is the phone's spelling mapped to provctl's model names where the mapping is known
    (Yealink "SIP-T46U" -> "T46U", Poly "VVX_450" -> "VVX450"), else as the phone sends it.
    `firmware` is the running version in the vendor's scheme (None when the request does not
    carry it reliably); `mac` is 12 lowercase hex digits, or None when the UA carries none.
    """

    vendor: str
    model: str | None
    firmware: str | None
    mac: str | None


@dataclass(frozen=True)
class Build:
    """One phone, built once: its files, and what its vendor's format cannot carry."""

    files: tuple[OutputFile, ...]
    problems: tuple[str, ...]  # each starts with the vendor-neutral parameter it concerns


class Vendor(Protocol):
    """What every vendor module's `VENDOR` is (vendors/kit.py `VendorBase` gives the common
    parts). Optionally also `redirect_url(directory_url, mac) -> str`, when the vendor's redirect
    service must hand the phone a file URL rather than its directory (Snom, Gigaset). The module
    itself also has `parse_user_agent(text) -> UserAgent | None`."""

    name: str
    models: Mapping[str, ModelInfo]
    autoescape: bool  # XML formats escape; text formats must not
    supported: frozenset[str]  # vendor-neutral parameter names it can express
    redirect_kinds: tuple[str, ...]  # redirect services that serve its phones ("" = none)
    notes: Mapping[str, str]  # parameter -> what of it the vendor expresses only partly
    without_account: str  # what a phone with no account assigned gets and can do

    def build(self, device: RenderInput) -> Build:
        """The files this phone requests (template and context each) and the problems. Pure."""
        ...

    def firmware_version(self, version: str) -> tuple[int, ...]:
        """Parse a version under the vendor's scheme; ValueError when it does not parse."""
        ...

    def check_firmware(self, model: ModelInfo, version: str) -> str | None:
        """Why this version cannot go on this model (e.g. wrong Yealink family), or None.

        Called only with a version that `firmware_version` parses (validate reports the rest).
        """
        ...

    def bootstrap_files(self, model: ModelInfo, directory_url: str) -> tuple[OutputFile, ...]:
        """The per-model files a factory phone asks for first, pointing it at its per-MAC file
        in `directory_url` (for the zero-touch bootstrap root); () when there are none."""
        ...

    def bootstrap_phone_files(self, phone: BootstrapInput) -> tuple[OutputFile, ...]:
        """One phone's bootstrap files, published in the customer's bootstrap directory while
        its onboarding window is open: they move a factory phone (or one the per-model file
        sent there) to its own directory. () when the vendor cannot be onboarded this way."""
        ...
