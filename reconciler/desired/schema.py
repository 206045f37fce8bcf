"""What users write: pydantic models (extra="forbid") for every file of the desired state.

Field names here are the external contract (see docs/desired-state.md). Cross-file checks
(references, MAC uniqueness, ports, ownership) live in validate.py; these models check the
shape of one file at a time.
"""

from __future__ import annotations

import os
import posixpath
import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from reconciler.core.macs import normalize_mac

PROVCTL_ENV = "PROVCTL_"  # provctl's own variables: never readable by a phone's values
SECRET_REF = re.compile(r"^(secret|env|file|derive):\S+$")
FIRMWARE_FILE = re.compile(r"^[A-Za-z0-9._\-()]+$")
INHERIT = "-"  # a value of "-" (or null) at a layer inherits from the layer below


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret_ref(value: str) -> str:
    if not SECRET_REF.match(value):
        raise ValueError(
            "must be a secret reference (secret:NAME, env:NAME, file:PATH or derive:NAME), "
            "never a plaintext value"
        )
    return value


SecretRef = Annotated[str, Field(description="secret:NAME | env:NAME | file:PATH")]


def _inside(value: str) -> str:
    """A path inside the repository or the target root: relative, without '..'."""
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "~")) or ":" in parts[0] or any(p in ("..", "") for p in parts):
        raise ValueError("must be a relative path inside the repository or the target root "
                         "(no leading '/', no '~', no '..')")
    return value


def _no_dots(value: str) -> str:
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError("must be a folder inside the target's root: '.' and '..' are not "
                         "allowed")
    return value


InsidePath = Annotated[str, AfterValidator(_inside)]
# The folder (inside a target's root) that firmware binaries are published to.
FirmwareDir = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"),
                        AfterValidator(_no_dots)]


# --- provisioning.yaml ---------------------------------------------------------------------


class Fleet(Strict):
    name: str
    secret: SecretRef

    _check = field_validator("secret")(_secret_ref)


_HOST_ONLY = ("/proc", "/sys", "/dev", "/run")


def _file_dir(value: str) -> str:
    """secrets.file_dirs: a directory that file:PATH may read from, outside the repository."""
    norm = os.path.normpath(os.path.expanduser(value))
    if norm == "/" or any(norm == d or norm.startswith(d + "/") for d in _HOST_ONLY):
        raise ValueError(f"{value!r} would let file: references read the host's system files "
                         "(the process environment among them); name a directory that holds "
                         "only secrets")
    return value


def _env_name(value: str) -> str:
    """secrets.env: a variable name, or a prefix ending in *, never one of provctl's own."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", value):
        raise ValueError(f"{value!r} is not an environment variable name or a prefix ending in "
                         "* (e.g. PBX_*)")
    stem = value.rstrip("*")
    if stem.startswith(PROVCTL_ENV) or (value.endswith("*") and PROVCTL_ENV.startswith(stem)):
        raise ValueError(f"{value!r} would let phone values read provctl's own settings "
                         f"({PROVCTL_ENV}AGE_IDENTITY, {PROVCTL_ENV}FLEET_SECRET, ...)")
    return value


class SecretsSource(Strict):
    file: str | None = None  # a path, or a reference (env:NAME) that yields the path
    # age-encrypted YAML map in the repository (docs/inventory.md)
    age_file: InsidePath | None = None
    recipients: list[Annotated[str, Field(pattern=r"^(age1[0-9a-z]+|ssh-\S+ \S+.*)$")]] = []
    # directories outside the repository that file:PATH references may read from
    file_dirs: list[Annotated[str, AfterValidator(_file_dir)]] = []
    # environment variables that env:NAME in a phone's values may read: names, or prefixes
    # ending in * (provisioning.yaml's own references read any)
    env: list[Annotated[str, AfterValidator(_env_name)]] = []


class AccessLog(Strict):
    """The access log of the web server that serves a target's root (docs/serving.md)."""

    path: str  # local: relative to the repository or absolute; sftp: a path on the host
    format: Literal["combined", "json"] = "combined"
    scan_threshold: int = Field(default=10, ge=2, le=50)  # unknown paths from one client


def _meta_root_outside(root: str, meta_root: str | None) -> None:
    """meta_root holds the manifest (every URL token): never servable from the root."""
    if meta_root is None or not root:
        return
    root_n, meta_n = posixpath.normpath(root), posixpath.normpath(meta_root)
    if root_n.startswith("/") != meta_n.startswith("/"):
        return  # one absolute, one relative: they cannot be compared here
    inside = posixpath.relpath(meta_n, root_n)
    if inside == ".":
        raise ValueError("meta_root must not be the root itself")
    if inside != ".." and not inside.startswith("../") and not any(
            part.startswith(".") for part in inside.split("/")):
        raise ValueError(
            "meta_root inside the root must be a dot-directory (e.g. <root>/.provctl), which "
            "the web server denies; better, put it outside the root")


class _Target(Strict):
    """What every target kind has: where files go, how they are served and recorded."""

    root: str
    base_url: str
    customers: list[str] | None = None
    file_mode: int = 0o644
    dir_mode: int = 0o711  # the root too: others may enter directories but not list them
    meta_root: str | None = None  # default: <parent of root>/.provctl-<name of root>
    firmware_dir: FirmwareDir = "firmware"
    access_log: AccessLog | None = None

    @field_validator("meta_root")
    @classmethod
    def _meta_root(cls, value: str | None, info: ValidationInfo) -> str | None:
        _meta_root_outside(info.data.get("root", ""), value)
        return value


class LocalTarget(_Target):
    kind: Literal["local"]


class SftpTarget(_Target):
    kind: Literal["sftp"]
    host: str
    port: int = 22
    user: str
    key: str | None = None  # private key file; None = use the SSH agent
    key_passphrase: SecretRef | None = None
    known_hosts: str
    sessions: int = Field(default=8, ge=1, le=64)
    timeout: float = 15.0


Target = Annotated[LocalTarget | SftpTarget, Field(discriminator="kind")]


class LocalRedirect(Strict):
    kind: Literal["local"]
    path: str


class YealinkRps(Strict):
    kind: Literal["yealink-rps"]
    access_key: SecretRef
    secret: SecretRef
    base_url: str | None = None
    server_name: str = "provctl"
    rate_per_second: float = 5.0


class YealinkYmcs(Strict):
    """Yealink Management Cloud Service v2 (docs/vendors/yealink.md): OAuth2 client
    credentials; `region` picks `https://<region>-api.ymcs.yealink.com`, `base_url` overrides."""

    kind: Literal["yealink-ymcs"]
    client_id: SecretRef
    client_secret: SecretRef
    region: Literal["us", "eu", "au"] = "eu"
    base_url: str | None = None
    batch_size: int = Field(default=100, ge=1, le=100)  # addDevicesByMac takes at most 100
    rate_per_second: float = 5.0


class SnomSraps(Strict):
    kind: Literal["snom-sraps", "gigaset-grape"]
    key_id: SecretRef
    secret: SecretRef
    base_url: str | None = None
    rate_per_second: float = 5.0


class PolyZtp(Strict):
    kind: Literal["poly-ztp"]
    api_key: SecretRef
    base_url: str | None = None
    rate_per_second: float = 5.0


RedirectService = Annotated[
    LocalRedirect | YealinkRps | YealinkYmcs | SnomSraps | PolyZtp, Field(discriminator="kind")
]


# --- rollouts (docs/rollouts.md) --------------------------------------------------------------

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _percent(value: object) -> str:
    """'5%' only: a bare 0.95 could mean 95% or 0.95%, so the sign is required."""
    text = str(value)
    m = _PERCENT.match(text)
    if not m or isinstance(value, bool):
        raise ValueError(f"must be a percentage such as 5% or 95% (got {value!r})")
    if not 0 <= float(m.group(1)) <= 100:
        raise ValueError(f"must be between 0% and 100% (got {value!r})")
    return f"{m.group(1)}%"


def _duration(value: object) -> str:
    m = _DURATION.match(str(value))
    if not m or isinstance(value, bool):
        raise ValueError(f"must be a duration such as 30m, 24h or 2d (got {value!r})")
    return f"{m.group(1)}{m.group(2)}"


def percent_value(text: str) -> float:
    """'5%' -> 0.05 (for a value the schema accepted)."""
    m = _PERCENT.match(text)
    assert m is not None
    return float(m.group(1)) / 100


def duration_value(text: str) -> float:
    """'24h' -> 86400.0 seconds (for a value the schema accepted)."""
    m = _DURATION.match(text)
    assert m is not None
    return float(m.group(1)) * _UNITS[m.group(2)]


Percent = Annotated[str, BeforeValidator(_percent)]
Duration = Annotated[str, BeforeValidator(_duration)]


class RolloutGate(Strict):
    """What a wave must show before the next one starts; a figure left out is not checked."""

    fetched: Percent | None = None  # of its phones fetched the config that carries the change
    reports_version: Percent | None = None  # report the new firmware in their User-Agent
    errors_max: Percent | None = None  # at most this share with failed requests


class Rollout(Strict):
    """Waves of a change: `waves` are cumulative shares of the phones it applies to."""

    canary: list[str] = []  # MACs always in wave 1
    waves: list[Percent] = Field(min_length=1, max_length=20)
    soak: Duration = "24h"  # at least this long between two waves
    gate: RolloutGate = RolloutGate()

    @field_validator("canary", mode="before")
    @classmethod
    def _macs(cls, value: object) -> object:
        if isinstance(value, list):
            return [normalize_mac(v) for v in value]
        return value

    @field_validator("waves")
    @classmethod
    def _ascending(cls, value: list[str]) -> list[str]:
        shares = [percent_value(v) for v in value]
        if any(b <= a for a, b in zip(shares, shares[1:], strict=False)) or shares[0] <= 0:
            raise ValueError("waves must grow from wave to wave, e.g. [5%, 25%, 100%]")
        if shares[-1] != 1.0:
            raise ValueError("the last wave must be 100% (every phone gets the change)")
        return value


def _phones(value: object) -> object:
    """`above: 500 phones` or `above: 500`."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(phones?)?\s*", value)
        if not m:
            raise ValueError(f"must be a number of phones such as 500 or '500 phones' "
                             f"(got {value!r})")
        return int(m.group(1))
    return value


class PolicyRollout(Rollout):
    """Stage any plan whose changes affect more phones than `above`."""

    above: Annotated[int, BeforeValidator(_phones), Field(ge=1)]


class LoadLimits(Strict):
    """What one YAML file of the desired state may cost (desired/load.py Limits)."""

    file_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    nodes: int = Field(default=1_000_000, ge=1000)
    alias_nodes: int = Field(default=10_000, ge=0)
    depth: int = Field(default=64, ge=8, le=500)


_SCAN_EVERY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)$")
_SCAN_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_scan_interval(value: object) -> float:
    """Seconds from 90, "90s", "30m", "1h" or "2d" (0 = every time)."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 1h or 0")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _SCAN_EVERY.match(str(value).strip())
        if match is None:
            raise ValueError("a duration such as 30m, 1h or 0")
        seconds = float(match[1]) * _SCAN_UNITS[match[2]]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


class Policy(Strict):
    prune: bool = True
    max_delete_percent: float = Field(default=10, ge=0, le=100)
    redirect_window_days: int = Field(default=7, ge=1, le=30)
    onboarding_window_days: int = Field(default=7, ge=1, le=30)  # docs/zero-touch.md
    max_phones_per_account: int = Field(default=8, ge=1, le=8)
    drift: Literal["report", "heal"] = "report"
    # How often plan/apply (and so the daemon) scan the whole target for drift; in between
    # they trust the manifest and the journal, and look only where files are to be created.
    drift_scan_every: float = 3600.0
    allow_downgrade: bool = False
    rollout: PolicyRollout | None = None
    load_limits: LoadLimits = LoadLimits()

    _scan_every = field_validator("drift_scan_every", mode="before")(parse_scan_interval)


class Provisioning(Strict):
    fleet: Fleet
    url_tokens: Literal["per-device", "per-customer", "none"] = "per-device"
    secrets: SecretsSource = SecretsSource()
    targets: dict[str, Target] = Field(min_length=1)
    redirect: dict[str, RedirectService] = {}
    policy: Policy = Policy()


# --- parameters (every layer) -------------------------------------------------------------

Codec = Literal["opus", "g722", "pcmu", "pcma", "g729", "g726", "ilbc", "gsm"]
Transport = Literal["udp", "tcp", "tls"]


class SipParams(Strict):
    server: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    transport: Transport | None = None
    outbound_proxy: str | None = None
    outbound_proxy_port: int | None = Field(default=None, ge=1, le=65535)
    expires: int | None = Field(default=None, ge=30, le=86400)


class NtpParams(Strict):
    server: str | None = None
    server2: str | None = None


class VlanParams(Strict):
    id: int | None = Field(default=None, ge=1, le=4094)
    priority: int | None = Field(default=None, ge=0, le=7)
    pc_id: int | None = Field(default=None, ge=1, le=4094)


class Key(Strict):
    """A programmable key: line, BLF, speed dial, call park, DTMF or nothing."""

    type: Literal["line", "blf", "speed_dial", "park", "dtmf", "none"]
    value: str = ""
    label: str = ""
    line: int = Field(default=1, ge=1)


class Screensaver(Strict):
    url: str | None = None
    timeout: int | None = Field(default=None, ge=15)


class Resync(Strict):
    """Nightly re-fetch window; the phone picks a random time between start and end."""

    start: str = "02:00"
    end: str = "04:00"
    on_boot: bool = True

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", value):
            raise ValueError("must be HH:MM (24 h)")
        return value


class ProvisioningParams(Strict):
    resync: Resync | None = None


class Params(Strict):
    """Vendor-neutral parameters; every field optional because each layer is partial."""

    sip: SipParams | None = None
    codecs: list[Codec] | None = None
    ntp: NtpParams | None = None
    timezone: str | None = None
    language: str | None = None
    admin_password: SecretRef | None = None
    call_waiting: bool | None = None
    vlan: VlanParams | None = None
    line_keys: list[Key] | None = None
    soft_keys: list[Key] | None = None
    expansion_keys: list[Key] | None = None
    screensaver: Screensaver | None = None
    provisioning: ProvisioningParams | None = None
    raw: dict[str, dict[str, str | int | float | bool]] | None = None

    _check = field_validator("admin_password")(lambda v: v if v is None else _secret_ref(v))


PARAM_NAMES = tuple(Params.model_fields)
USER_OWNABLE = ("line_keys", "soft_keys", "expansion_keys", "language", "screensaver",
                "call_waiting")
FirmwareChoice = str  # "installed" or a catalog version


# --- defaults.yaml, profiles, customers -------------------------------------------------------


class Defaults(Strict):
    params: dict[str, Any] = {}
    model_params: dict[str, dict[str, Any]] = {}  # "yealink" or "yealink/T46U" -> params
    firmware: FirmwareChoice = "installed"
    model_profiles: dict[str, str] = {}  # "yealink/T46U" -> profile, for imports and BYOD


class Profile(Strict):
    name: str
    vendor: str
    models: list[str] = Field(min_length=1)
    params: dict[str, Any] = {}
    model_params: dict[str, dict[str, Any]] = {}
    user_owned: list[Literal[USER_OWNABLE]] = []  # type: ignore[valid-type]
    firmware: FirmwareChoice | None = None


class CustomerSip(Strict):
    domain: str
    transport: Transport | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    outbound_proxy: str | None = None


class CustomerBootstrap(Strict):
    """The customer's bootstrap URL for zero-touch behind DHCP (docs/zero-touch.md)."""

    rotation: int = Field(default=0, ge=0)  # raise it to move the URL (a leaked DHCP value)


class Customer(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    sip: CustomerSip | None = None
    params: dict[str, Any] = {}
    status: Literal["active", "terminated"] = "active"
    model_profiles: dict[str, str] = {}  # "yealink/T46U" -> profile; wins over defaults'
    bootstrap: CustomerBootstrap = CustomerBootstrap()


# --- inventory and assignments ------------------------------------------------------------


class RedirectWindow(Strict):
    until: date | None = None
    steal: bool = False


class OnboardWindow(Strict):
    """`onboard: {until: DATE}`: the window stays open until the end of that day (UTC)."""

    until: date


class Device(Strict):
    mac: str
    model: str = Field(pattern=r"^[a-z0-9-]+/[A-Za-z0-9_.+-]+$")  # vendor/MODEL
    profile: str
    customer: str | None = None
    owned_by_customer: bool = False
    name: str = ""
    serial: str | None = None
    redirect: bool | RedirectWindow = False
    # zero-touch behind DHCP (docs/zero-touch.md): None = the default rule (a new phone of a
    # vendor without a redirect client onboards), True/False, or a window ending on a date
    onboard: bool | OnboardWindow | None = None
    params: dict[str, Any] = {}
    firmware: FirmwareChoice | None = None
    allow_downgrade: bool = False

    @field_validator("mac", mode="before")
    @classmethod
    def _mac(cls, value: object) -> str:
        return normalize_mac(value)

    @property
    def vendor(self) -> str:
        return self.model.split("/", 1)[0]

    @property
    def onboard_value(self) -> bool | dict[str, str] | None:
        """`onboard` as plain data (the onboarding rules take it: pipeline/onboarding.py)."""
        if isinstance(self.onboard, OnboardWindow):
            return {"until": self.onboard.until.isoformat()}
        return self.onboard

    @property
    def model_name(self) -> str:
        return self.model.split("/", 1)[1]


class PortRef(Strict):
    mac: str
    port: int = Field(default=1, ge=1)

    @field_validator("mac", mode="before")
    @classmethod
    def _mac(cls, value: object) -> str:
        return normalize_mac(value)


class Assignment(Strict):
    account: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*/[0-9A-Za-z_.+-]+$")  # customer/extension
    display_name: str = ""
    password: SecretRef
    auth_user: str | None = None
    devices: list[PortRef] = Field(min_length=1)
    params: dict[str, Any] = {}

    _check = field_validator("password")(_secret_ref)

    @field_validator("devices", mode="before")
    @classmethod
    def _ports(cls, value: object) -> object:
        if isinstance(value, list):  # a MAC alone (a number: an unquoted one, refused by mac)
            return [item if isinstance(item, dict) else {"mac": item} for item in value]
        return value

    @property
    def customer(self) -> str:
        return self.account.split("/", 1)[0]

    @property
    def extension(self) -> str:
        return self.account.split("/", 1)[1]


# --- firmware ---------------------------------------------------------------------------------


class FirmwareImage(Strict):
    vendor: str
    models: list[str] = Field(min_length=1)
    version: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source: InsidePath | None = None  # path of the binary, relative to the repository
    rollout: Rollout | None = None  # every phone that gets this version gets it in waves

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        if not FIRMWARE_FILE.match(value):
            raise ValueError("firmware file names may use only letters, digits and ._-()")
        return value


class FirmwarePin(Strict):
    """Pin a version for models, optionally only for one customer."""

    models: list[str] = Field(min_length=1)  # vendor/MODEL
    version: str
    customer: str | None = None
    rollout: Rollout | None = None  # the phones this pin applies to get it in waves


class FirmwareFile(Strict):
    catalog: list[FirmwareImage] = []
    pins: list[FirmwarePin] = []
