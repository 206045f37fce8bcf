"""What the inventory holds now, read leniently (an invalid entry elsewhere must not block a
fix), and model names as people write them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

import vendors
from reconciler.core import layout
from reconciler.core.errors import ConfigError
from reconciler.core.names import did_you_mean
from reconciler.desired.load import parse_yaml
from reconciler.desired.schema import (
    Assignment,
    Customer,
    Defaults,
    Device,
    Profile,
)
from reconciler.inventory.yamledit import (
    Workspace,
)

# --- what is there now (lenient: an invalid entry elsewhere must not block a fix) -----------


@dataclass
class View:
    devices: dict[str, Device] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)
    accounts: dict[str, list[str]] = field(default_factory=dict)  # MAC -> accounts

    def profile_for(self, model: str, customer: str | None) -> str | None:
        """model_profiles: the customer's table wins over the fleet's (defaults.yaml)."""
        cust = self.customers.get(customer or "")
        if cust is not None and model in cust.model_profiles:
            return cust.model_profiles[model]
        return self.defaults.model_profiles.get(model)

    def serves(self, profile: str, model: str) -> str | None:
        """Why `profile` cannot be used for `model`, or None."""
        p = self.profiles.get(profile)
        if p is None:
            return f"unknown profile {profile!r}{did_you_mean(profile, self.profiles)}"
        vendor, _, name = model.partition("/")
        if p.vendor != vendor or name not in p.models:
            return (f"model {model!r} is not one of profile {profile!r}'s "
                    f"({p.vendor}: {', '.join(p.models)})")
        return None


def _ok(cls: Any, data: Any) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError:
        return None


def view(ws: Workspace) -> View:
    out = View()
    for rel, data in ws.source.files.items():
        try:
            doc = parse_yaml(rel, data).data
        except ConfigError:
            continue
        if rel == "defaults.yaml":
            out.defaults = _ok(Defaults, doc or {}) or Defaults()
        elif rel.startswith(layout.CUSTOMERS):
            c = _ok(Customer, doc or {})
            if c is not None:
                out.customers.setdefault(c.id, c)
        elif rel.startswith(layout.PROFILES):
            p = _ok(Profile, doc or {})
            if p is not None:
                out.profiles.setdefault(p.name, p)
        elif rel.startswith((layout.DEVICES, layout.ASSIGNMENTS)) and isinstance(doc, list):
            for item in doc:
                if rel.startswith(layout.DEVICES):
                    d = _ok(Device, item)
                    if d is not None:
                        out.devices.setdefault(d.mac, d)
                else:
                    a = _ok(Assignment, item)
                    for ref in a.devices if a is not None else []:
                        out.accounts.setdefault(ref.mac, []).append(a.account)
    return out


def resolve_model(text: str) -> str:
    """'yealink/T46U', 'Yealink T46U' or 'T46U' (when one vendor has it) -> 'yealink/T46U'."""
    text = text.strip()
    vendor, sep, name = text.replace(" ", "/", 1).partition("/") if (
        "/" in text or " " in text) else ("", "", text)
    candidates = []
    for known in vendors.KNOWN:
        if sep and vendor.lower() != known:
            continue
        models = vendors.get(known).models
        for model in models:
            if model.lower() == name.strip().lower():
                candidates.append(f"{known}/{model}")
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise ValueError(f"model {text!r} is ambiguous: write one of {', '.join(candidates)}")
    if sep and vendor.lower() not in vendors.KNOWN:
        raise ValueError(f"unknown vendor {vendor!r} (known: {', '.join(vendors.KNOWN)})")
    if sep:
        known = ", ".join(sorted(vendors.get(vendor.lower()).models))
        raise ValueError(f"unknown model {text!r}"
                         f"{did_you_mean(name, vendors.get(vendor.lower()).models)} (known "
                         f"{vendor.lower()} models: {known})")
    raise ValueError(f"unknown model {text!r} (write vendor/MODEL, e.g. yealink/T46U)")
