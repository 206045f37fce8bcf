"""The `device` edits (add, remove, move, assign, unassign, onboard) as checked changes of the
YAML files.

Every operation works on a `yamledit.Workspace` (in memory), as the CSV import does (`bulk`;
`device add` is a one-row import): the arguments are checked against the current inventory
first, the edits are applied, and the whole resulting repository is validated; the caller
writes only when all of that passed.

Allocation rules (also enforced by validation where one revision suffices):
- a pooled phone (no `customer`) can be allocated to a customer, or assigned to any account;
- a phone allocated to or owned by a customer is assigned only to that customer's accounts;
- an owned phone is not moved to another customer (or the pool) until its ownership is cleared;
- a terminated customer keeps no phone: owned phones are removed, allocated phones return to
  the pool (`device move --all-of ID --pool`), its accounts are removed;
- unassigning a phone or removing an account keeps the phone in the inventory.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from pydantic import ValidationError

import vendors
from reconciler.core import layout
from reconciler.core.errors import ConfigError, Problem
from reconciler.core.layout import assignments_file, devices_file
from reconciler.core.macs import colon_mac, normalize_mac
from reconciler.core.names import did_you_mean
from reconciler.desired.load import parse_yaml
from reconciler.desired.schema import (
    Policy,
    Provisioning,
)
from reconciler.inventory.bulk import Row, import_rows
from reconciler.inventory.view import view
from reconciler.inventory.yamledit import (
    ACCOUNT_KEYS,
    DEVICE_KEYS,
    AccountAt,
    DeviceAt,
    Workspace,
    drop_key,
    flow_map,
    new_account,
    new_port_ref,
    ref_mac,
    set_key,
)
from vendors.zerotouch import can_onboard

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
