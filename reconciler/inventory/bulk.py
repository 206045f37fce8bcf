"""Bulk CSV import and export of the inventory (docs/inventory.md): one row a device, checked
against the current inventory first (errors name the row and column), applied completely or
not at all: the caller writes the `yamledit.Workspace` only when the whole resulting
repository validates. The allocation rules are in `devices`."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.errors import ConfigError, Problem
from reconciler.core.layout import devices_file
from reconciler.core.macs import colon_mac, normalize_mac
from reconciler.core.names import did_you_mean
from reconciler.inventory.view import View, resolve_model, view
from reconciler.inventory.yamledit import (
    DEVICE_KEYS,
    Workspace,
    description,
    drop_key,
    new_device,
    quoted,
    set_description,
    set_key,
)

HEADER = ("Action", "Device name", "Device model", "MAC address", "Customer",
          "Owned by customer", "Description", "Serial", "Profile")
REQUIRED = HEADER[:4]
ACTIONS = ("add", "update", "delete")
_ALIASES = {"mac": "MAC address", "mac address": "MAC address", "model": "Device model",
            "name": "Device name", "owned": "Owned by customer", "serial number": "Serial"}
_YES = {"yes", "y", "true", "1", "x"}
_NO = {"no", "n", "false", "0", ""}


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
