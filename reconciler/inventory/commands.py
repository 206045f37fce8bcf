"""Inventory: bulk CSV import/export and the `device` edits, as checked changes of the YAML files.

Every operation works on an `edit.Workspace` (in memory): rows or arguments are checked against
the current inventory first (errors name the CSV row and column), the edits are applied, and the
whole resulting repository is validated; the caller writes only when all of that passed, so an
import applies completely or not at all.

Allocation rules (also enforced by validation where one revision suffices):
- a pooled phone (no `customer`) can be allocated to a customer, or assigned to any account;
- a phone allocated to or owned by a customer is assigned only to that customer's accounts;
- an owned phone is not moved to another customer (or the pool) until its ownership is cleared;
- a terminated customer keeps no phone: owned phones are removed, allocated phones return to
  the pool (`device move --all-of ID --pool`), its accounts are removed;
- unassigning a phone or removing an account keeps the phone in the inventory.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

import vendors
from reconciler.core import layout
from reconciler.core.errors import ConfigError, Problem
from reconciler.core.layout import assignments_file, devices_file
from reconciler.core.macs import colon_mac, normalize_mac
from reconciler.core.names import did_you_mean
from reconciler.desired.load import parse_yaml
from reconciler.desired.schema import (
    Assignment,
    Customer,
    Defaults,
    Device,
    Policy,
    Profile,
    Provisioning,
)
from reconciler.inventory.yamledit import (
    ACCOUNT_KEYS,
    DEVICE_KEYS,
    AccountAt,
    DeviceAt,
    Workspace,
    description,
    drop_key,
    flow_map,
    new_account,
    new_device,
    new_port_ref,
    quoted,
    ref_mac,
    set_description,
    set_key,
)
from vendors.zerotouch import can_onboard

HEADER = ("Action", "Device name", "Device model", "MAC address", "Customer",
          "Owned by customer", "Description", "Serial", "Profile")
REQUIRED = HEADER[:4]
ACTIONS = ("add", "update", "delete")
_ALIASES = {"mac": "MAC address", "mac address": "MAC address", "model": "Device model",
            "name": "Device name", "owned": "Owned by customer", "serial number": "Serial"}
_YES = {"yes", "y", "true", "1", "x"}
_NO = {"no", "n", "false", "0", ""}


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


# --- CSV ------------------------------------------------------------------------------------


@dataclass
class Row:
    number: int  # the spreadsheet row: 1 is the header
    values: dict[str, str]  # column -> cell, only the columns the file has

    def get(self, column: str) -> str | None:
        value = self.values.get(column)
        return None if value is None else value.strip()


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.deleted)} "
                f"deleted, {len(self.unchanged)} unchanged")


def template() -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(HEADER)
    return out.getvalue()


def _column(name: str) -> str | None:
    key = re.sub(r"[\s_-]+", " ", name.strip().lower())
    for column in HEADER:
        if column.lower() == key:
            return column
    return _ALIASES.get(key)


def read_csv(text: str, where: str) -> list[Row]:
    """Parse the file; a bad header is an error of row 1."""
    text = text.lstrip("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise ConfigError([Problem(where, 1, "", "the file is empty")]) from None
    problems = []
    columns: list[str | None] = []
    for cell in header:
        column = _column(cell)
        if column is None and cell.strip():
            problems.append(Problem(where, 1, cell.strip(),
                                    f"unknown column (columns: {', '.join(HEADER)})"))
        if column is not None and column in columns:
            problems.append(Problem(where, 1, column, "column appears twice"))
        columns.append(column)
    for column in REQUIRED:
        if column not in columns:
            problems.append(Problem(where, 1, column, "required column is missing"))
    if problems:
        raise ConfigError(problems)
    rows = []
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            number = reader.line_num
            values = {col: cells[i] if i < len(cells) else ""
                      for i, col in enumerate(columns) if col is not None}
            rows.append(Row(number, values))
    except csv.Error as exc:
        raise ConfigError([Problem(where, reader.line_num, "",
                                   f"not valid CSV: {exc}")]) from exc
    return rows


def import_rows(ws: Workspace, rows: list[Row], where: str) -> ImportResult:
    """Check every row, then apply them all to the workspace (nothing is written here)."""
    current = view(ws)
    problems: list[Problem] = []
    plans: list[tuple[Row, str, str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for row in rows:
        errors: list[Problem] = []

        def bad(column: str, message: str, row: Row = row, errors: list = errors) -> None:
            errors.append(Problem(where, row.number, column, message))

        action = (row.get("Action") or "").lower()
        if action not in ACTIONS:
            bad("Action", f"must be add, update or delete, not {row.get('Action')!r}")
        mac: str | None = None
        try:
            mac = normalize_mac(row.get("MAC address") or "")
        except ValueError as exc:
            bad("MAC address", str(exc))
        if mac is not None and mac in seen:
            bad("MAC address", f"{colon_mac(mac)} is also on row {seen[mac]}: one row per phone")
        if mac is not None:
            seen.setdefault(mac, row.number)
        fields = _check_row(ws, current, row, action if action in ACTIONS else "add", mac, bad)
        if not errors and mac is not None:
            plans.append((row, action, mac, fields))
        problems += errors
    if problems:
        raise ConfigError(problems)
    result = ImportResult()
    for _row, action, mac, fields in plans:
        if action == "add":
            ws.add_device(devices_file(fields["customer"]), new_device(
                mac, fields["model"], fields["profile"], customer=fields["customer"],
                owned=fields["owned"], name=fields["name"], serial=fields["serial"],
                description_text=fields["description"]))
            result.added.append(mac)
        elif action == "delete":
            at = ws.device(mac)
            assert at is not None
            ws.remove_device(at)
            result.deleted.append(mac)
        else:
            changed = update_device(ws, mac, fields)
            (result.updated if changed else result.unchanged).append(mac)
    return result


def _check_row(ws: Workspace, current: View, row: Row, action: str, mac: str | None,
               bad: Any) -> dict[str, Any]:
    """The new values of a row's phone (update: absent columns keep the current value).
    Without a valid MAC, the row's other cells are still checked."""
    existing = current.devices.get(mac) if mac else None
    at = ws.device(mac) if mac else None
    if mac and action == "add" and at is not None:
        bad("MAC address", f"{colon_mac(mac)} is already in the inventory ({at.rel}); "
            "use Action update")
        return {}
    if mac and action != "add" and (at is None or existing is None):
        bad("MAC address", f"{colon_mac(mac)} is not in the inventory"
            + ("" if at is None else f" ({at.rel} holds an invalid entry)"))
        return {}
    accounts = current.accounts.get(mac, []) if mac else []
    if action == "delete":
        if mac and accounts:
            bad("Action", f"{colon_mac(mac)} is assigned to {', '.join(accounts)}: unassign it "
                "first (provctl device unassign)")
        return {}

    fields: dict[str, Any] = {}
    model_text = row.get("Device model")
    if model_text:
        try:
            fields["model"] = resolve_model(model_text)
        except ValueError as exc:
            bad("Device model", str(exc))
    elif action == "add":
        bad("Device model", "required for add")
    else:
        fields["model"] = existing.model  # type: ignore[union-attr]

    customer_text = row.get("Customer")
    if customer_text is None:
        fields["customer"] = existing.customer if existing else None
    elif customer_text == "":
        fields["customer"] = None
    elif customer_text not in current.customers:
        bad("Customer", f"unknown customer {customer_text!r}"
                        f"{did_you_mean(customer_text, current.customers)}")
    elif current.customers[customer_text].status == "terminated":
        bad("Customer", f"customer {customer_text!r} is terminated")
    else:
        fields["customer"] = customer_text

    owned_text = row.get("Owned by customer")
    if owned_text is None:
        fields["owned"] = existing.owned_by_customer if existing else False
    elif owned_text.lower() in _YES | _NO:
        fields["owned"] = owned_text.lower() in _YES
    else:
        bad("Owned by customer", f"must be yes or no, not {owned_text!r}")

    for column, key in (("Device name", "name"), ("Serial", "serial"),
                        ("Description", "description")):
        value = row.get(column)  # None: the column is absent (update keeps the value)
        fields[key] = "" if value is None and action == "add" else value

    if "customer" not in fields or "owned" not in fields or "model" not in fields:
        return fields
    customer, owned = fields["customer"], fields["owned"]
    if owned and customer is None:
        bad("Owned by customer", "a customer-owned phone needs a Customer")
    if (mac and existing is not None and existing.owned_by_customer
            and existing.customer != customer):
        bad("Customer", f"{colon_mac(mac)} is owned by customer {existing.customer!r}: clear "
            "Owned by customer first (one import), then move it (another)")
    if mac and customer is not None:
        others = [a for a in accounts if a.split("/", 1)[0] != customer]
        if others:
            bad("Customer", f"{colon_mac(mac)} is assigned to {', '.join(others)}: unassign it "
                f"before allocating it to {customer!r}")

    model = fields["model"]
    profile = row.get("Profile")
    if profile:
        why = current.serves(profile, model)
        if why:
            bad("Profile", why)
    elif existing is not None and current.serves(existing.profile, model) is None:
        profile = existing.profile
    else:
        profile = current.profile_for(model, customer)
        if profile is None:
            where = f"customers/{customer}.yaml or " if customer else ""
            bad("Profile", f"no profile for {model}: fill in Profile, or map the model in "
                f"model_profiles ({where}defaults.yaml)")
        elif current.serves(profile, model):
            bad("Profile", f"model_profiles maps {model} to {profile!r}: "
                f"{current.serves(profile, model)}")
    fields["profile"] = profile
    return fields


def update_device(ws: Workspace, mac: str, fields: dict[str, Any]) -> bool:
    """Set a phone's fields in place (a new customer moves the entry to that customer's file
    when the phone sits in its customer's file, as an operator would); True if anything
    changed."""
    at = ws.device(mac)
    assert at is not None
    item = at.item
    old_customer = item.get("customer")
    changed = False
    changed |= set_key(item, "model", fields["model"], DEVICE_KEYS)
    changed |= set_key(item, "profile", fields["profile"], DEVICE_KEYS)
    if fields["customer"]:
        changed |= set_key(item, "customer", fields["customer"], DEVICE_KEYS)
    else:
        changed |= drop_key(item, "customer")
    if fields["owned"]:
        changed |= set_key(item, "owned_by_customer", True, DEVICE_KEYS)
    elif "owned_by_customer" in item:
        changed |= set_key(item, "owned_by_customer", False, DEVICE_KEYS)
    for key in ("name", "serial"):
        value = fields.get(key)
        if value is None:
            continue
        if value:
            changed |= set_key(item, key, quoted(value) if key == "serial" else value,
                               DEVICE_KEYS)
        else:
            changed |= drop_key(item, key)
    if fields.get("description") is not None:
        changed |= set_description(item, fields["description"])
    if changed:
        ws.touch(at)
    if (old_customer or None) != (fields["customer"] or None) and at.rel == devices_file(
            old_customer):
        ws.move_device(at, devices_file(fields["customer"]))
        changed = True
    return changed


def export_csv(ws: Workspace, action: str = "update", customer: str | None = None) -> str:
    """The inventory as CSV, in the import's columns; descriptions are the entries' comments."""
    state = ws.validate()
    comments = {}
    for at in ws.devices():
        try:
            comments[normalize_mac(at.item.get("mac"))] = description(at.item)
        except ValueError:
            continue
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for mac, located in state.devices.items():
        d = located.value
        if customer is not None and d.customer != customer:
            continue
        writer.writerow([action, d.name, d.model, colon_mac(mac).upper(), d.customer or "",
                         "yes" if d.owned_by_customer else "no", comments.get(mac, ""),
                         d.serial or "", d.profile])
    return out.getvalue()


# --- device commands --------------------------------------------------------------------------


def _problem(command: str, field_: str, message: str) -> Problem:
    return Problem(f"device {command}", 0, field_, message)


def _device(ws: Workspace, command: str, mac_text: str) -> tuple[str, DeviceAt]:
    try:
        mac = normalize_mac(mac_text)
    except ValueError as exc:
        raise ConfigError([_problem(command, "MAC", str(exc))]) from exc
    at = ws.device(mac)
    if at is None:
        raise ConfigError([_problem(command, "MAC", f"{colon_mac(mac)} is not in the inventory")])
    return mac, at


def device_add(ws: Workspace, mac_text: str, model_text: str, *, profile: str | None = None,
               customer: str | None = None, owned: bool = False, name: str = "",
               serial: str = "", description_text: str = "") -> list[str]:
    values = {"Action": "add", "MAC address": mac_text, "Device model": model_text,
              "Customer": customer or "", "Owned by customer": "yes" if owned else "no",
              "Device name": name, "Serial": serial, "Description": description_text,
              "Profile": profile or ""}
    try:
        result = import_rows(ws, [Row(0, values)], "device add")
    except ConfigError as exc:
        raise ConfigError([Problem("device add", 0, p.field, p.message)
                           for p in exc.problems]) from None
    mac = result.added[0]
    at = ws.device(mac)
    assert at is not None
    return [f"added {colon_mac(mac)} ({at.item['model']}, profile {at.item['profile']}) "
            f"to {at.rel}"]


def _unassign(ws: Workspace, mac: str, accounts: Iterable[AccountAt],
              port: int | None = None) -> list[str]:
    """Take a phone (or one port) off accounts; an account left with no phone is removed."""
    done = []
    for acc in accounts:
        refs = acc.item.get("devices") or []
        drop = [i for i, r in enumerate(refs) if ref_mac(r) == mac and (
            port is None or (r.get("port", 1) if isinstance(r, dict) else 1) == port)]
        if not drop:
            continue
        if len(drop) < len(refs):
            for i in reversed(drop):
                del refs[i]
            ws.touch(acc)
            done.append(f"unassigned {colon_mac(mac)} from {acc.account}")
        else:
            ws.remove_account(acc)
            done.append(f"removed account {acc.account} (its last phone was {colon_mac(mac)})")
    return done


def device_remove(ws: Workspace, macs: list[str], *, unassign: bool = False) -> list[str]:
    done: list[str] = []
    problems = []
    for text in macs:
        mac, at = _device(ws, "remove", text)
        accounts = ws.accounts_of(mac)
        if accounts and not unassign:
            problems.append(_problem("remove", colon_mac(mac), "assigned to "
                                     f"{', '.join(a.account for a in accounts)}: unassign it "
                                     "first, or pass --unassign"))
            continue
        done += _unassign(ws, mac, accounts)
        ws.remove_device(at)
        done.append(f"removed {colon_mac(mac)} from {at.rel}")
    if problems:
        raise ConfigError(problems)
    return done


def device_move(ws: Workspace, macs: list[str], customer: str | None, *,
                all_of: str | None = None, unassign: bool = False) -> list[str]:
    """Allocate phones to `customer` (None: return them to the pool), keeping their settings."""
    current = view(ws)
    problems = []
    if customer is not None:
        c = current.customers.get(customer)
        if c is None:
            raise ConfigError([_problem("move", "--customer", f"unknown customer {customer!r}"
                                        f"{did_you_mean(customer, current.customers)}")])
        if c.status == "terminated":
            raise ConfigError([_problem("move", "--customer",
                                        f"customer {customer!r} is terminated")])
    selected = list(macs)
    if all_of is not None:
        if all_of not in current.customers:
            raise ConfigError([_problem("move", "--all-of", f"unknown customer {all_of!r}"
                                        f"{did_you_mean(all_of, current.customers)}")])
        selected += [mac for mac, d in current.devices.items()
                     if d.customer == all_of and not d.owned_by_customer]
    done: list[str] = []
    for text in dict.fromkeys(selected):
        mac, at = _device(ws, "move", text)
        item = at.item
        old = item.get("customer") or None
        where = colon_mac(mac)
        if item.get("owned_by_customer") and old != customer:
            problems.append(_problem("move", where, f"owned by customer {old!r}: clear its "
                                     "ownership first (owned_by_customer: false)"))
            continue
        if old == customer:
            continue
        stale = [a for a in ws.accounts_of(mac)
                 if customer is not None and a.account.split("/", 1)[0] != customer]
        if stale and not unassign:
            problems.append(_problem("move", where, "assigned to "
                                     f"{', '.join(a.account for a in stale)}: unassign it "
                                     "first, or pass --unassign"))
            continue
        if unassign:
            done += _unassign(ws, mac, [a for a in ws.accounts_of(mac)
                                        if a.account.split("/", 1)[0] != customer])
        if customer is None:
            drop_key(item, "customer")
        else:
            set_key(item, "customer", customer, DEVICE_KEYS)
        ws.touch(at)
        if at.rel == devices_file(old):
            at = ws.move_device(at, devices_file(customer))
        done.append(f"moved {where} from {old or 'the pool'} to {customer or 'the pool'} "
                    f"({at.rel})")
    if problems:
        raise ConfigError(problems)
    return done


def device_assign(ws: Workspace, mac_text: str, account: str, *, port: int = 1,
                  password: str | None = None, display_name: str = "") -> list[str]:
    mac, at = _device(ws, "assign", mac_text)
    customer, sep, extension = account.partition("/")
    if not sep or not extension:
        raise ConfigError([_problem("assign", "--account", "must be CUSTOMER/EXTENSION")])
    owner = at.item.get("customer")
    if owner and owner != customer:
        what = "owned by" if at.item.get("owned_by_customer") else "allocated to"
        raise ConfigError([_problem("assign", colon_mac(mac), f"{what} customer {owner!r}: "
                                    f"cannot be assigned to {account}")])
    acc = ws.account(account)
    ref = new_port_ref(mac, port)
    if acc is None:
        ws.add_account(assignments_file(customer), new_account(
            account, password or f"secret:{account}", display_name, [ref]))
        return [f"created account {account} with {colon_mac(mac)}"
                + (f" port {port}" if port != 1 else "")]
    refs = acc.item.get("devices")
    for r in refs or []:
        if ref_mac(r) == mac and (r.get("port", 1) if isinstance(r, dict) else 1) == port:
            return []
    refs.append(ref)
    if password:
        set_key(acc.item, "password", password, ACCOUNT_KEYS)
    if display_name:
        set_key(acc.item, "display_name", display_name, ACCOUNT_KEYS)
    ws.touch(acc)
    return [f"assigned {colon_mac(mac)}" + (f" port {port}" if port != 1 else "")
            + f" to {account}"]


def device_unassign(ws: Workspace, mac_text: str | None, account: str | None = None,
                    port: int | None = None) -> list[str]:
    """Take a phone off its accounts (or one), or remove an account; phones stay."""
    if mac_text is None:
        if account is None:
            raise ConfigError([_problem("unassign", "", "name a MAC, --account, or both")])
        acc = ws.account(account)
        if acc is None:
            raise ConfigError([_problem("unassign", "--account", f"no account {account}")])
        ws.remove_account(acc)
        return [f"removed account {account}; its phones stay in the inventory"]
    mac, _ = _device(ws, "unassign", mac_text)
    accounts = ws.accounts_of(mac)
    if account is not None:
        accounts = [a for a in accounts if a.account == account]
        if not accounts:
            raise ConfigError([_problem("unassign", "--account",
                                        f"{colon_mac(mac)} is not assigned to {account}")])
    return _unassign(ws, mac, accounts, port)


# --- onboarding -------------------------------------------------------------------------------


def window_days(ws: Workspace) -> int:
    """policy.onboarding_window_days of provisioning.yaml (its default when it cannot be read:
    the whole repository is validated before anything is written)."""
    text = ws.text(layout.PROVISIONING)
    try:
        doc = parse_yaml(layout.PROVISIONING, (text or "").encode())
        return int(Provisioning.model_validate(doc.data or {}).policy.onboarding_window_days)
    except (ConfigError, ValidationError, ValueError, TypeError):
        return int(Policy().onboarding_window_days)


def device_onboard(ws: Workspace, macs: list[str], until: date) -> list[str]:
    """Open (again) the onboarding windows of phones, e.g. factory-reset ones: `onboard:
    {until: DATE}` on each (docs/zero-touch.md). A new value opens a new window."""
    problems: list[Problem] = []
    found: list[tuple[str, DeviceAt]] = []
    for text in macs:
        try:
            mac, at = _device(ws, "onboard", text)
        except ConfigError as exc:
            problems += [Problem("onboard", 0, p.field, p.message) for p in exc.problems]
            continue
        vendor = str(at.item.get("model", "")).partition("/")[0]
        if vendor not in vendors.KNOWN or not can_onboard(vendor):
            problems.append(Problem("onboard", 0, "MAC", f"{colon_mac(mac)} is a {vendor} "
                                    "phone: provctl has no bootstrap files for it (use its "
                                    "redirect service: redirect: true)"))
        elif not at.item.get("customer") and not ws.accounts_of(mac):
            problems.append(Problem("onboard", 0, "MAC", f"{colon_mac(mac)} is in the pool: "
                                    "its bootstrap URL is its customer's; allocate it first "
                                    "(provctl device move MAC --customer ID)"))
        else:
            found.append((mac, at))
    if problems:
        raise ConfigError(problems)
    done = []
    for mac, at in found:
        if set_key(at.item, "onboard", flow_map(until=until), DEVICE_KEYS):
            ws.touch(at)
            done.append(f"{colon_mac(mac)}: onboarding window open until {until.isoformat()} "
                        f"({at.rel})")
        else:
            done.append(f"{colon_mac(mac)}: already onboard until {until.isoformat()}")
    return done
