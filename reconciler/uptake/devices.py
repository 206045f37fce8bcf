"""Per phone: what is published for it, what it last fetched, and so its state. Pure.

States (docs/serving.md), the first that holds:

- `never-fetched`: no request for any of its own files was ever seen;
- `errors`: the latest request for one of its files failed (4xx/5xx), or none ever succeeded;
- `stale`: its latest fetch is older than `stale_after` (phones resync at least nightly, so it
  is probably off, unplugged, or fetching from elsewhere);
- `pending`: a file it fetches was published with content it has not fetched since;
- `current`: it has fetched what is published.

A file counts for `pending` only once the phone has fetched it at least once: phones do not
ask for every file a vendor module writes (a factory bootstrap, say).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import vendors
from reconciler.uptake.store import Last, Version
from vendors.base import UserAgent

STATES = ("current", "pending", "stale", "never-fetched", "errors")


@dataclass(frozen=True)
class Phone:
    """A phone as the desired state has it, with its own files on each target."""

    mac: str
    vendor: str
    model: str
    name: str
    customer: str | None
    firmware: str | None  # the version it is pinned to (None: keep the installed one)
    files: tuple[tuple[str, str], ...]  # (target, path) of its own files


@dataclass(frozen=True)
class Fetch:
    """A phone's latest fetch: when (`at`, of any of its files) and what it holds (the other
    fields: the file whose fetched content was published last)."""

    at: float
    target: str
    path: str
    status: int
    sha: str | None
    rev: str | None
    ip: str | None
    agent: str | None
    ua: UserAgent | None


@dataclass(frozen=True)
class Uptake:
    mac: str
    name: str
    customer: str | None
    model: str
    state: str
    published_rev: str | None  # the revision of its newest published file
    published_at: float | None
    last: Fetch | None
    error: tuple[float, int, str] | None  # latest failed request: (at, status, ip)
    pending: tuple[str, ...]  # its files with content it has not fetched
    notes: tuple[str, ...]  # firmware or MAC the phone reports that differ from git
    unapplied: bool = False  # the desired state has files for it that are not published yet


def device_uptake(phone: Phone, lasts: Mapping[tuple[str, str], Last],
                  newest: Mapping[tuple[str, str], Version], published: Mapping[tuple[str, str],
                  str], now: float, stale_after: float) -> Uptake:
    """`newest`: each file's latest publish from the receipts; `published`: its sha256 on the
    target now (the manifest), when observed."""
    seen = [(key, lasts[key]) for key in phone.files if key in lasts]
    oks = [(last.ok_at, key, last) for key, last in seen if last.ok_at is not None]
    errs = [(last.err_at, key, last) for key, last in seen if last.err_at is not None]
    versions = [newest[key] for key in phone.files if key in newest]
    latest_version = max(versions, key=lambda v: v.ended) if versions else None
    fetch = None
    if oks:
        # when it last fetched; what it holds: the newest content among the files it fetched
        at = max(t[0] for t in oks)
        _, (target, path), last = max(oks, key=lambda t: (
            t[2].ok_published or 0.0, t[2].ok_seq or 0, t[0]))
        fetch = Fetch(at, target, path, last.ok_status or 0, last.ok_sha, last.ok_rev,
                      last.ok_ip, last.ok_agent,
                      vendors.identify_user_agent(last.ok_agent) if last.ok_agent else None)
    error = None
    if errs:
        at, _, last = max(errs, key=lambda t: t[0])
        error = (at, last.err_status or 0, last.err_ip or "")
    pending = []
    for key, last in seen:
        if last.ok_at is None:
            continue
        sha = published.get(key) or (newest[key].sha if key in newest else None)
        if last.ok_sha is not None and sha is not None:
            behind = last.ok_sha != sha
        else:  # a receipt without digests: compare times
            behind = key in newest and newest[key].action == "put" and (
                last.ok_at < newest[key].ended)
        if behind:
            pending.append(key[1])
    if not seen:
        state = "never-fetched"
    elif fetch is None or (error is not None and error[0] > fetch.at):
        state = "errors"
    elif now - fetch.at > stale_after:
        state = "stale"
    elif pending:
        state = "pending"
    else:
        state = "current"
    return Uptake(phone.mac, phone.name, phone.customer, phone.model, state,
                  latest_version.rev if latest_version else None,
                  latest_version.ended if latest_version else None, fetch, error,
                  tuple(sorted(pending)), tuple(_notes(phone, fetch)))


def _notes(phone: Phone, fetch: Fetch | None) -> list[str]:
    ua = fetch.ua if fetch else None
    if ua is None:
        return []
    out = []
    if ua.vendor != phone.vendor:
        out.append(f"fetched by a {ua.vendor} phone, not {phone.vendor}")
    if ua.mac and ua.mac != phone.mac:
        out.append(f"fetched by a phone reporting MAC {ua.mac}")
    if ua.model and ua.vendor == phone.vendor and ua.model != phone.model:
        out.append(f"reports model {ua.model}, inventory says {phone.model}")
    if phone.firmware and ua.firmware and ua.firmware != phone.firmware:
        out.append(f"runs firmware {ua.firmware}, pinned to {phone.firmware}")
    return out


def arrived(phone: Phone, lasts: Mapping[tuple[str, str], Last]) -> float | None:
    """When the phone last fetched one of its own files, with a User-Agent that does not say it
    is another phone (another vendor, another MAC): its arrival, for the redirect window."""
    best = None
    for key in phone.files:
        last = lasts.get(key)
        if last is None or last.ok_at is None:
            continue
        ua = vendors.identify_user_agent(last.ok_agent) if last.ok_agent else None
        if ua is not None and (ua.vendor != phone.vendor or (ua.mac and ua.mac != phone.mac)):
            continue
        best = last.ok_at if best is None else max(best, last.ok_at)
    return best


def summary(uptakes: Sequence[Uptake]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for u in uptakes:
        counts[u.state] += 1
    return counts
