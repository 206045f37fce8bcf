"""IANA time-zone names → the time-zone settings of Yealink and Snom phones.

Neither vendor takes an IANA name. Yealink wants a standard UTC offset (`local_time.time_zone`,
"+1", "-5", "+5:30") and, for daylight-saving rules, one of its own zone names
(`local_time.time_zone_name`, "Germany(Berlin)"). Snom wants one code that carries both
("GER+1", "USA-5"). Both are lists baked into the firmware, so the names below are a curated
table; offsets and DST are computed with `zoneinfo`, never typed in.

How a zone is found, in order:

1. The zone's own row of `_TABLE`, when it has a value for that vendor.
2. Otherwise the first row (in table order) whose clock is the same: identical UTC offset at
   every moment of `REFERENCE_YEARS`, transitions included (to the minute). Europe/Vienna gets
   "Germany(Berlin)" / "GER+1" this way, Europe/Istanbul (UTC+3, no DST) gets the UTC+3 row.
3. Otherwise, for Yealink only, a zone without DST is written as its offset alone with
   `summer_time = 0` (exact: there is nothing to switch). A zone with DST and no same-clock row,
   and any Snom zone without a row, is refused with a `ValueError` whose message names the
   zone: a phone showing the wrong hour half of the year is worse than an error the operator
   fixes by adding a row here.

The vendor names in the table are [I] (inferred from production templates and vendor UI lists,
not from the vendors' own documentation); each row's clock is checked against zoneinfo by the
tests (the Snom code's number must equal the zone's standard offset).

`REFERENCE_YEARS` is fixed so that rendering stays a pure function of the desired state and the
installed tz database; bump it when a country changes its rules.

Other vendors describe a zone as a standard offset plus a daylight-saving *rule* ("last Sunday of
March at 02:00"): Poly, Cisco MPP, Fanvil and Panasonic take the rule's parts as separate keys,
Grandstream a POSIX TZ string (`CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00`). `dst_rule()`
derives that rule from the zone's transitions in `REFERENCE_YEARS`, so it is exact for the years
the rule holds; a zone whose switches are not "n-th / last weekday of a month" in both years (or
that switches more than twice a year) is refused with a `ValueError` naming it. Gigaset Nx70 bases
take an IANA name, but only from a fixed list (`GIGASET_ZONES`); `gigaset()` picks the zone itself
or the first listed zone with the same clock.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REFERENCE_YEARS = (2026, 2027)

_YEALINK, _SNOM = 0, 1

# IANA name -> (Yealink local_time.time_zone_name, Snom timezone code); None = not known.
# Order matters for the same-clock fallback: the first matching row wins.
_TABLE: dict[str, tuple[str | None, str | None]] = {
    # Western Europe (UTC+0, EU rules)
    "Europe/London": ("United Kingdom(London)", "GBR-0"),
    "Europe/Dublin": ("United Kingdom(London)", "IRL-0"),
    "Europe/Lisbon": ("Portugal(Lisboa,Porto,Funchal)", "PRT-0"),
    # Central Europe (UTC+1, EU rules)
    "Europe/Berlin": ("Germany(Berlin)", "GER+1"),
    "Europe/Paris": ("France(Paris)", "FRA+1"),
    "Europe/Rome": ("Italy(Rome)", "ITA+1"),
    "Europe/Madrid": ("Spain(Madrid)", "ESP+1"),
    "Europe/Amsterdam": ("Netherlands(Amsterdam)", "NLD+1"),
    "Europe/Brussels": ("France(Paris)", "BEL+1"),
    "Europe/Luxembourg": ("Luxembourg(Luxembourg)", "LUX+1"),
    "Europe/Vienna": ("Germany(Berlin)", "AUT+1"),
    "Europe/Zurich": ("Germany(Berlin)", "GER+1"),
    "Europe/Copenhagen": ("Denmark(Kopenhagen)", "DNK+1"),
    "Europe/Stockholm": ("Denmark(Kopenhagen)", "SWE+1"),
    "Europe/Oslo": ("Germany(Berlin)", "NOR+1"),
    "Europe/Warsaw": ("Germany(Berlin)", "POL+1"),
    "Europe/Prague": ("Czech Republic(Prague)", "CZE+1"),
    "Europe/Bratislava": ("Germany(Berlin)", "SVK+1"),
    "Europe/Budapest": ("Hungary(Budapest)", "HUN+1"),
    "Europe/Zagreb": ("Croatia(Zagreb)", "HRV+1"),
    "Europe/Skopje": ("Macedonia(Skopje)", "MAK+1"),
    "Europe/Tirane": ("Albania(Tirane)", "ALB+1"),
    # Eastern Europe (UTC+2, EU rules; Chisinau switches at other hours)
    "Europe/Athens": ("Greece(Athens)", "GRC+2"),
    "Europe/Helsinki": ("Finland(Helsinki)", "FIN+2"),
    "Europe/Bucharest": ("Romania(Bucharest)", "ROU+2"),
    "Europe/Tallinn": ("Estonia(Tallinn)", "EST+2"),
    "Europe/Riga": ("Latvia(Riga)", None),
    "Europe/Kyiv": ("Ukraine(Kyiv, Odessa)", "UKR+2"),
    "Europe/Chisinau": ("Moldova(Kishinev)", "MDA+2"),
    # UTC+3 without DST
    "Africa/Nairobi": ("East Africa Time", "EAT+3"),
    "Europe/Moscow": ("Russia(Moscow)", "RUS+3"),
    # North America
    "America/New_York": ("United States-Eastern Time", "USA-5"),
    "America/Chicago": ("United States-Central Time", "USA-6"),
    "America/Denver": ("United States-Mountain Time", "USA-7"),
    "America/Phoenix": ("United States-MST no DST", "USA2-7"),
    "America/Los_Angeles": ("United States-Pacific Time", "USA-8"),
    "America/Anchorage": ("United States-Alaska Time", "USA-9"),
    "Pacific/Honolulu": (None, "USA-10"),
    "America/Toronto": ("Canada(Montreal,Ottawa,Quebec)", "CAN-5"),
    "America/Vancouver": ("Canada(Vancouver,Whitehorse)", "CAN-8"),
    "America/Halifax": ("Canada(Halifax,Saint John)", "CAN-4"),
    "America/St_Johns": ("Canada-New Foundland(St.Johns)", "CAN-3.5"),
    # Elsewhere
    "Asia/Jerusalem": ("Israel(Tel Aviv)", "ISR+2"),
    "Asia/Kolkata": ("India(Calcutta)", "IND+5.5"),
    "Asia/Singapore": ("Singapore(Singapore)", "SGP+8"),
    "Asia/Shanghai": ("China(Beijing)", None),
    "Asia/Tokyo": ("Japan(Tokyo)", None),
    "Australia/Perth": ("Australia(Perth)", "AUS+8"),
    "Australia/Sydney": ("Australia(Sydney,Melboume,Canberra)", "AUS+10"),
    "Pacific/Auckland": ("New Zealand(Wellington,Auckland)", "NZL+12"),
}


@dataclass(frozen=True)
class Clock:
    """What a zone does during REFERENCE_YEARS."""

    standard_minutes: int  # the lowest UTC offset seen (standard time), in minutes
    dst: bool  # the offset changes during the reference years
    transitions: tuple[tuple[int, int], ...]  # (minute since epoch, new offset in minutes)


@dataclass(frozen=True)
class YealinkZone:
    time_zone: str  # "+1", "0", "-5", "+5:30"
    time_zone_name: str | None  # None: leave the phone's name (only when there is no DST)
    summer_time: int  # 2 = automatic from time_zone_name, 0 = disabled [I]


# Old spellings still in the tz database as links: look up the row of the current name.
_ALIASES = {"Europe/Kiev": "Europe/Kyiv", "Asia/Calcutta": "Asia/Kolkata",
            "US/Eastern": "America/New_York", "US/Central": "America/Chicago",
            "US/Mountain": "America/Denver", "US/Pacific": "America/Los_Angeles",
            "US/Arizona": "America/Phoenix", "US/Alaska": "America/Anchorage",
            "US/Hawaii": "Pacific/Honolulu", "GB": "Europe/London"}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as "
                         "Europe/Berlin)") from exc


def _offset(zone: ZoneInfo, minute: int) -> int:
    moment = datetime.fromtimestamp(minute * 60, tz=UTC).astimezone(zone)
    delta = moment.utcoffset() or timedelta(0)
    return int(delta.total_seconds() // 60)


@cache
def clock(name: str) -> Clock:
    """Standard offset, DST and exact transitions of an IANA zone during REFERENCE_YEARS."""
    zone = _zone(name)
    first = int(datetime(REFERENCE_YEARS[0], 1, 1, tzinfo=UTC).timestamp()) // 60
    last = int(datetime(REFERENCE_YEARS[-1] + 1, 1, 1, tzinfo=UTC).timestamp()) // 60
    day = 24 * 60
    offsets = {_offset(zone, first)}
    transitions = []
    previous, before = first, _offset(zone, first)
    for minute in range(first + day, last + 1, day):
        now = _offset(zone, minute)
        if now != before:
            low, high = previous, minute  # offset(low) == before, offset(high) != before
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(zone, middle) == before:
                    low = middle
                else:
                    high = middle
            transitions.append((high, now))
            offsets.add(now)
        previous, before = minute, now
    return Clock(min(offsets), len(offsets) > 1, tuple(transitions))


def _same_clock(name: str) -> tuple[int, tuple[tuple[int, int], ...]]:
    c = clock(name)
    return c.standard_minutes, c.transitions


def _vendor_value(name: str, column: int) -> str | None:
    row = _TABLE.get(_ALIASES.get(name, name))
    if row is not None and row[column] is not None:
        return row[column]
    wanted = _same_clock(name)
    for other, values in _TABLE.items():
        if values[column] is not None and _same_clock(other) == wanted:
            return values[column]
    return None


def format_offset(minutes: int) -> str:
    """Yealink's offset spelling: "0", "+1", "-5", "+5:30", "-3:30"."""
    if minutes == 0:
        return "0"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours}" + (f":{rest:02d}" if rest else "")


def yealink(name: str) -> YealinkZone:
    """Yealink settings for an IANA zone; ValueError (naming the zone) when not expressible."""
    c = clock(name)
    zone_name = _vendor_value(name, _YEALINK)
    if zone_name is None and c.dst:
        raise ValueError(f"time zone {name!r} has daylight saving time but no Yealink zone "
                         "name with the same rules is known (add it to vendors/timezones.py)")
    return YealinkZone(format_offset(c.standard_minutes), zone_name, 2 if c.dst else 0)


def snom(name: str) -> str:
    """Snom `timezone` code for an IANA zone; ValueError (naming the zone) when unknown."""
    clock(name)  # raises for names that are not IANA zones
    code = _vendor_value(name, _SNOM)
    if code is None:
        raise ValueError(f"time zone {name!r}: no Snom time-zone code with the same clock is "
                         "known (add it to vendors/timezones.py)")
    return code


def table() -> dict[str, tuple[str | None, str | None]]:
    """The curated rows (for tests and documentation)."""
    return dict(_TABLE)


# --- daylight-saving rules (Poly, Cisco, Fanvil, Panasonic, Grandstream) ----------------------


@dataclass(frozen=True)
class Change:
    """One yearly switch, as "the n-th (or last) weekday of a month, at a local time"."""

    month: int  # 1-12
    week: int  # 1-4, or 5 = the last such weekday of the month
    weekday: int  # 0 = Sunday ... 6 = Saturday (POSIX numbering)
    minutes: int  # local wall-clock time just before the switch, minutes after midnight

    @property
    def last(self) -> bool:
        return self.week == 5


@dataclass(frozen=True)
class DstRule:
    standard_minutes: int  # UTC offset of standard time
    save_minutes: int  # what daylight-saving time adds
    start: Change  # into daylight-saving time
    end: Change  # back to standard time


def _candidates(local: datetime) -> set[tuple[int, int, int, int]]:
    days = calendar.monthrange(local.year, local.month)[1]
    weekday = (local.weekday() + 1) % 7  # Monday=0 -> Sunday=0
    minutes = local.hour * 60 + local.minute
    nth = (local.day - 1) // 7 + 1
    out = set()
    if nth <= 4:
        out.add((local.month, nth, weekday, minutes))
    if local.day + 7 > days:
        out.add((local.month, 5, weekday, minutes))
    return out


@cache
def dst_rule(name: str) -> DstRule | None:
    """The zone's daylight-saving rule; None without DST; ValueError when no weekday rule fits."""
    c = clock(name)
    if not c.dst:
        return None
    starts: list[set[tuple[int, int, int, int]]] = []
    ends: list[set[tuple[int, int, int, int]]] = []
    saves = set()
    before = _offset(_zone(name), c.transitions[0][0] - 1) if c.transitions else 0
    for minute, after in c.transitions:
        local = datetime.fromtimestamp((minute + before) * 60, tz=UTC).replace(tzinfo=None)
        (starts if after > before else ends).append(_candidates(local))
        saves.add(abs(after - before))
        before = after
    years = len(REFERENCE_YEARS)
    if len(starts) != years or len(ends) != years or len(saves) != 1:
        raise ValueError(f"time zone {name!r} does not switch to and from daylight saving time "
                         "once a year, which a phone's DST rule cannot express")
    rules = []
    for found in (starts, ends):
        common = set.intersection(*found)
        if not common:
            raise ValueError(f"time zone {name!r} switches on dates that are not the same "
                             "weekday of the month every year, which a phone's DST rule cannot "
                             "express")
        rules.append(Change(*max(common, key=lambda r: r[1])))  # "last" wins over "4th"
    return DstRule(c.standard_minutes, saves.pop(), rules[0], rules[1])


def _posix_name(name: str | None, fallback: str) -> str:
    return name if name and name.isalpha() and len(name) >= 3 else fallback


def _posix_offset(minutes: int) -> str:
    sign = "-" if minutes > 0 else ""  # POSIX counts west of UTC as positive
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _posix_change(change: Change) -> str:
    hours, minutes = divmod(change.minutes, 60)
    return f"M{change.month}.{change.week}.{change.weekday}/{hours:02d}:{minutes:02d}:00"


def posix(name: str) -> str:
    """A POSIX TZ string, e.g. "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00".

    Abbreviations are the zone's own when they are POSIX-valid (three or more letters), else
    "STD" / "DST": only the offsets and the rule matter to a phone, and numeric abbreviations
    ("+03") would need the <...> quoting not every firmware parses [I].
    """
    rule = dst_rule(name)
    zone = _zone(name)
    first = datetime(REFERENCE_YEARS[0], 1, 15, tzinfo=UTC)
    if rule is None:
        std = _posix_name(first.astimezone(zone).tzname(), "STD")
        return std + _posix_offset(clock(name).standard_minutes)
    c = clock(name)
    names = {}
    for minute, after in c.transitions[:2]:
        moment = datetime.fromtimestamp(minute * 60, tz=UTC).astimezone(zone)
        names[after] = moment.tzname()
    std = _posix_name(names.get(rule.standard_minutes), "STD")
    dst = _posix_name(names.get(rule.standard_minutes + rule.save_minutes), "DST")
    if std == dst:
        std, dst = "STD", "DST"
    return (f"{std}{_posix_offset(rule.standard_minutes)}"
            f"{dst}{_posix_offset(rule.standard_minutes + rule.save_minutes)},"
            f"{_posix_change(rule.start)},{_posix_change(rule.end)}")


@dataclass(frozen=True)
class PosixZone:
    """A POSIX TZ string read back: its abbreviations, its standard offset and its rule."""

    std_name: str
    dst_name: str | None
    standard_minutes: int  # east of UTC, as Clock counts (POSIX counts west)
    rule: DstRule | None  # None: no daylight-saving time


_POSIX_NAME = r"(?:[A-Za-z]{3,}|<[^>]+>)"
_POSIX_OFFSET = r"[+-]?\d{1,2}(?::\d{1,2}){0,2}"
_POSIX_CHANGE = r"M(\d{1,2})\.([1-5])\.([0-6])(?:/(" + _POSIX_OFFSET + r"))?"
_POSIX = re.compile(rf"^({_POSIX_NAME})({_POSIX_OFFSET})(?:({_POSIX_NAME})({_POSIX_OFFSET})?"
                    rf"(?:,{_POSIX_CHANGE},{_POSIX_CHANGE})?)?$")


def _posix_minutes(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    parts = [int(p) for p in text.lstrip("+-").split(":")]
    return sign * (parts[0] * 60 + (parts[1] if len(parts) > 1 else 0))


def posix_zone(text: str) -> PosixZone | None:
    """Read a POSIX TZ string ("CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00"); None when it
    has daylight-saving time but no rule (the rule is then the C library's default, which a
    phone's firmware does not document), ValueError when it is not a POSIX TZ string of the
    "M month.week.day" kind."""
    match = _POSIX.match(text.strip())
    if not match:
        raise ValueError(f"not a POSIX TZ string: {text!r}")
    std, std_off, dst, dst_off, *rule = match.groups()
    standard = -_posix_minutes(std_off)  # POSIX: west of UTC is positive
    if dst is None:
        return PosixZone(std, None, standard, None)
    if rule[0] is None:
        return None
    daylight = -_posix_minutes(dst_off) if dst_off else standard + 60
    changes = []
    for month, week, day, at in (rule[0:4], rule[4:8]):
        changes.append(Change(int(month), int(week), int(day),
                              _posix_minutes(at) if at else 120))
    return PosixZone(std, dst, standard, DstRule(standard, daylight - standard, *changes))


def same_rules(name: str, listed: str) -> bool:
    """Whether a POSIX TZ string says exactly what the IANA zone does: the same standard offset
    and, field by field, the same daylight-saving rule (so "4th Sunday" is not "last Sunday",
    even in years where they fall on the same day)."""
    zone = posix_zone(listed)
    if zone is None:
        return False
    c = clock(name)
    rule = dst_rule(name)
    return zone.standard_minutes == c.standard_minutes and zone.rule == rule


# --- Gigaset Nx70: IANA names, from a fixed list --------------------------------------------

# The zones an N670/N870 base accepts in DmGlobal.0.TimeZone [V wazo Nx70 common.py
# _VALID_TZ_GIGASET]. Order matters for the same-clock fallback: the first match wins, so the
# most common zone of each clock comes first.
GIGASET_ZONES = (
    "Europe/Berlin", "Europe/Paris", "Europe/Rome", "Europe/Madrid", "Europe/Amsterdam",
    "Europe/Brussels", "Europe/Vienna", "Europe/Zurich", "Europe/Luxembourg",
    "Europe/Copenhagen", "Europe/Stockholm", "Europe/Oslo", "Europe/Prague",
    "Europe/Bratislava", "Europe/Budapest", "Europe/Warsaw", "Europe/Zagreb",
    "Europe/Ljubljana", "Europe/Belgrade", "Europe/Sarajevo", "Europe/Skopje",
    "Europe/Podgorica", "Europe/Tirane", "Europe/Andorra", "Europe/Gibraltar", "Europe/Malta",
    "Europe/Monaco", "Europe/San_Marino", "Europe/Vatican", "Europe/Vaduz", "Europe/Busingen",
    "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Guernsey", "Europe/Isle_of_Man",
    "Europe/Jersey", "Europe/Belfast", "Greenwich",
    "Europe/Athens", "Europe/Helsinki", "Europe/Bucharest", "Europe/Sofia", "Europe/Riga",
    "Europe/Tallinn", "Europe/Vilnius", "Europe/Kiev", "Europe/Chisinau", "Europe/Nicosia",
    "Europe/Mariehamn", "Europe/Uzhgorod", "Europe/Zaporozhye", "Europe/Tiraspol",
    "Africa/Cairo", "Europe/Kaliningrad",
    "Europe/Istanbul", "Europe/Moscow", "Europe/Minsk", "Europe/Kirov", "Europe/Simferopol",
    "Europe/Volgograd",
    "Asia/Dubai", "Europe/Astrakhan", "Europe/Samara", "Europe/Ulyanovsk",
    "Asia/Karachi", "Asia/Dhaka", "Asia/Hong_Kong", "Asia/Tokyo",
    "Australia/Adelaide", "Australia/Darwin", "Australia/Brisbane", "Australia/Sydney",
    "Pacific/Noumea",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Caracas", "America/Sao_Paulo",
)


def gigaset(name: str) -> str:
    """Gigaset `DmGlobal.0.TimeZone` for an IANA zone; ValueError (naming it) when none fits."""
    clock(name)  # raises for names that are not IANA zones
    if name in GIGASET_ZONES:
        return name
    current = _ALIASES.get(name, name)
    if current in GIGASET_ZONES:
        return current
    wanted = _same_clock(name)
    for other in GIGASET_ZONES:
        try:
            if _same_clock(other) == wanted:
                return other
        except ValueError:  # a listed name this tz database does not know
            continue
    raise ValueError(f"time zone {name!r}: no zone with the same clock is in the Gigaset "
                     "list (see GIGASET_ZONES in vendors/timezones.py)")
