"""Supercronic-compatible crontab files: parse them, and find when each schedule fires next.

The rules are supercronic's (its crontab package and its cronexpr library), as written down in
docs/crontab.md; only the standard library is used.
"""
from __future__ import annotations

import calendar
import functools
import os
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_SHELL = "/bin/sh"

_SECOND = timedelta(seconds=1)
# Go's regexp \s and \S, which supercronic splits lines with: no Unicode spaces, no \v.
_SPACE = "\t\n\f\r "
_TOKEN = re.compile(f"[^{_SPACE}]+")
_VARIABLE = re.compile(f"([^{_SPACE}=]+)[{_SPACE}]*=[{_SPACE}]*(.*)")
# One leading zero is allowed, and only before a single digit: 05 yes, 005 and 010 no.
_NUMBER = re.compile(r"0?[0-9]|[1-9][0-9]*")      # ASCII digits: Go's \d, unlike Python's, is [0-9]
_ITEM = re.compile(r"(?:(?P<star>\*)|(?P<low>[0-9a-z]+)(?:-(?P<high>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?")
_NEAREST_WEEKDAY = re.compile(r"([0-9]+)w")
_LAST_WEEKDAY_OF_MONTH = re.compile(r"([0-9a-z]+)l")
_NTH_WEEKDAY = re.compile(r"([0-9a-z]+)#([1-5])")

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Widths a job line's schedule is tried with, widest first (supercronic's order).
_JOB_LINE_WIDTHS = (7, 6, 5, 1)


class CrontabError(ValueError):
    """A crontab file or schedule expression that supercronic would reject."""


# --- fields -----------------------------------------------------------------------------------

def _names(*groups: tuple[str, ...], first: int = 0) -> dict[str, int]:
    return {name: value for value, group in enumerate(groups, start=first) for name in group}


@dataclass(frozen=True, eq=False)
class _FieldKind:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


_SECONDS = _FieldKind("second", 0, 59)
_MINUTES = _FieldKind("minute", 0, 59)
_HOURS = _FieldKind("hour", 0, 23)
_DAYS_OF_MONTH = _FieldKind("day-of-month", 1, 31)
# English names only: cron names do not follow the locale (calendar.month_name would).
_MONTHS = _FieldKind("month", 1, 12, _names(
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "september"), ("oct", "october"),
    ("nov", "november"), ("dec", "december"), first=1,
))
# 7 is Sunday too; it is folded to 0 before ranges are checked, so 5-7 is a reversed range.
_DAYS_OF_WEEK = _FieldKind("day-of-week", 0, 6, {
    **_names(("sun", "sunday"), ("mon", "monday"), ("tue", "tuesday"), ("wed", "wednesday"),
             ("thu", "thursday"), ("fri", "friday"), ("sat", "saturday")),
    "7": 0, "07": 0,
})
_YEARS = _FieldKind("year", 1970, 2099)


def _value(text: str, kind: _FieldKind, item: str) -> int:
    if text in kind.names:
        return kind.names[text]
    if not _NUMBER.fullmatch(text):
        raise CrontabError(f"{kind.name} field: '{item}' is not a valid value")
    value = int(text)
    if not kind.low <= value <= kind.high:
        raise CrontabError(f"{kind.name} field: '{item}' is outside {kind.low}-{kind.high}")
    return value


def _step(text: str, kind: _FieldKind, item: str) -> int:
    if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= kind.high:
        raise CrontabError(f"{kind.name} field: '{item}' needs a step between 1 and {kind.high}")
    return int(text)


def _is_wildcard(item: str) -> bool:
    return item in ("*", "?")


def _items(text: str, kind: _FieldKind) -> list[str]:
    items = [item for item in text.split(",") if item]
    if not items:
        raise CrontabError(f"{kind.name} field: '{text}' has no value")
    return items


def _expand(item: str, kind: _FieldKind) -> range | None:
    """The values of one generic item (`*/n`, `v`, `a-b`, `v/n`, `a-b/n`), None if it is not one."""
    match = _ITEM.fullmatch(item.lower())
    if match is None:
        return None
    star, low, high, step = match.group("star", "low", "high", "step")
    by = 1 if step is None else _step(step, kind, item)
    if star:
        return range(kind.low, kind.high + 1, by)
    first = _value(low, kind, item)
    if high is not None:
        last = _value(high, kind, item)
        if last < first:
            raise CrontabError(f"{kind.name} field: range '{item}' ends before it starts")
    else:
        last = first if step is None else kind.high
    return range(first, last + 1, by)


def _parse_values(text: str, kind: _FieldKind) -> tuple[int, ...]:
    values: set[int] = set()
    for item in _items(text, kind):
        expanded = range(kind.low, kind.high + 1) if _is_wildcard(item) else _expand(item, kind)
        if expanded is None:
            raise CrontabError(f"{kind.name} field: '{item}' is not valid")
        values.update(expanded)
    return tuple(sorted(values))


# --- days -------------------------------------------------------------------------------------

def _weekday(year: int, month: int, day: int) -> int:
    """Day of the week with cron's numbering: Sunday is 0."""
    return (calendar.weekday(year, month, day) + 1) % 7


def _nearest_weekday(year: int, month: int, day: int, last_day: int) -> int:
    """The weekday closest to `day` that stays inside the month (cronexpr's `nW`)."""
    weekday = _weekday(year, month, day)
    if weekday == 6:
        return day - 1 if day > 1 else day + 2
    if weekday == 0:
        return day + 1 if day < last_day else day - 2
    return day


@dataclass(frozen=True)
class _DayOfMonth:
    restricted: bool
    days: frozenset[int] = frozenset()
    last: bool = False
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def matches(self, year: int, month: int, last_day: int) -> set[int]:
        found = {day for day in self.days if day <= last_day}
        if self.last:
            found.add(last_day)
        if self.last_weekday:
            found.add(_nearest_weekday(year, month, last_day, last_day))
        found.update(_nearest_weekday(year, month, day, last_day)
                     for day in self.nearest_weekday if day <= last_day)
        return found


@dataclass(frozen=True)
class _DayOfWeek:
    restricted: bool
    weekdays: frozenset[int] = frozenset()
    last: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def matches(self, year: int, month: int, last_day: int) -> set[int]:
        first = _weekday(year, month, 1)
        final = _weekday(year, month, last_day)
        found = {day for weekday in self.weekdays
                 for day in range(1 + (weekday - first) % 7, last_day + 1, 7)}
        found.update(last_day - (final - weekday) % 7 for weekday in self.last)
        found.update(day for weekday, k in self.nth
                     if (day := 1 + (weekday - first) % 7 + 7 * (k - 1)) <= last_day)
        return found


def _parse_day_of_month(text: str) -> _DayOfMonth:
    kind = _DAYS_OF_MONTH
    days: set[int] = set()
    nearest: set[int] = set()
    last = last_weekday = False
    items = _items(text, kind)
    for item in items:
        key = item.lower()
        if key == "l":
            last = True
        elif key == "lw":
            last_weekday = True
        elif match := _NEAREST_WEEKDAY.fullmatch(key):
            nearest.add(_value(match[1], kind, item))
        else:
            days.update(_parse_values(item, kind))
    # A wildcard item makes the field unrestricted (`*/2` does not): then the other day field decides.
    restricted = not any(_is_wildcard(item) for item in items)
    return _DayOfMonth(restricted, frozenset(days), last, last_weekday, frozenset(nearest))


def _parse_day_of_week(text: str) -> _DayOfWeek:
    kind = _DAYS_OF_WEEK
    weekdays: set[int] = set()
    last: set[int] = set()
    nth: set[tuple[int, int]] = set()
    items = _items(text, kind)
    for item in items:
        key = item.lower()
        if match := _LAST_WEEKDAY_OF_MONTH.fullmatch(key):
            last.add(_value(match[1], kind, item))
        elif match := _NTH_WEEKDAY.fullmatch(key):
            nth.add((_value(match[1], kind, item), int(match[2])))
        else:
            weekdays.update(_parse_values(item, kind))
    restricted = not any(_is_wildcard(item) for item in items)
    return _DayOfWeek(restricted, frozenset(weekdays), frozenset(last), frozenset(nth))


@functools.lru_cache(maxsize=4096)
def _days_in_month(dom: _DayOfMonth, dow: _DayOfWeek, year: int, month: int) -> tuple[int, ...]:
    """The matching days of one month: either day field may match when both are restricted."""
    last_day = calendar.monthrange(year, month)[1]
    if not dom.restricted and not dow.restricted:
        return tuple(range(1, last_day + 1))
    found: set[int] = set()
    if dom.restricted:
        found |= dom.matches(year, month, last_day)
    if dow.restricted:
        found |= dow.matches(year, month, last_day)
    return tuple(sorted(found))


# --- expressions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Fields:
    """A parsed expression, independent of any time zone."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    day_of_month: _DayOfMonth
    months: tuple[int, ...]
    day_of_week: _DayOfWeek
    years: tuple[int, ...]

    def first_at_or_after(self, start: datetime) -> datetime | None:
        """The earliest matching wall-clock time >= `start` (naive), skipping field by field."""
        y, mo, d, h, mi, s = start.year, start.month, start.day, start.hour, start.minute, start.second
        for year in self.years[bisect_left(self.years, y):]:
            if year != y:
                mo, d, h, mi, s = 1, 1, 0, 0, 0
            for month in self.months[bisect_left(self.months, mo):]:
                if month != mo:
                    d, h, mi, s = 1, 0, 0, 0
                days = _days_in_month(self.day_of_month, self.day_of_week, year, month)
                for day in days[bisect_left(days, d):]:
                    if day != d:
                        h, mi, s = 0, 0, 0
                    if clock := self._first_time_at_or_after(h, mi, s):
                        return datetime(year, month, day, *clock)
        return None

    def _first_time_at_or_after(self, h: int, mi: int, s: int) -> tuple[int, int, int] | None:
        for hour in self.hours[bisect_left(self.hours, h):]:
            if hour != h:
                mi, s = 0, 0
            for minute in self.minutes[bisect_left(self.minutes, mi):]:
                if minute != mi:
                    s = 0
                i = bisect_left(self.seconds, s)
                if i < len(self.seconds):
                    return hour, minute, self.seconds[i]
        return None


def _parse_fields(expression: str) -> _Fields:
    tokens = _TOKEN.findall(expression)
    if len(tokens) == 1 and tokens[0].startswith("@"):
        if tokens[0] not in _ALIASES:
            raise CrontabError(f"'{tokens[0]}' is not supported (use one of {', '.join(_ALIASES)})")
        tokens = _ALIASES[tokens[0]].split()
    if len(tokens) not in (5, 6, 7):
        raise CrontabError(f"'{expression}' has {len(tokens)} field(s), expected 5, 6 or 7 or an @alias")
    seconds = tokens.pop(0) if len(tokens) == 7 else "0"
    minute, hour, dom, month, dow, *year = tokens
    return _Fields(
        seconds=_parse_values(seconds, _SECONDS),
        minutes=_parse_values(minute, _MINUTES),
        hours=_parse_values(hour, _HOURS),
        day_of_month=_parse_day_of_month(dom),
        months=_parse_values(month, _MONTHS),
        day_of_week=_parse_day_of_week(dow),
        years=_parse_values(year[0] if year else "*", _YEARS),
    )


# --- time zones -------------------------------------------------------------------------------

def _offset(instant: datetime, zone: tzinfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)


def _resolve(wall: datetime, zone: tzinfo) -> datetime:
    """The instant Go's time.Date gives a wall time: `u - off(u - off(u))`, u = wall read as UTC.

    A wall time skipped by daylight saving, or repeated by it, gets exactly one instant this way.
    """
    u = wall.replace(tzinfo=timezone.utc)
    return u - _offset(u - _offset(u, zone), zone)


def _effective_offset(wall: datetime, zone: tzinfo) -> timedelta:
    return wall.replace(tzinfo=timezone.utc) - _resolve(wall, zone)


def _first_offset_change(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The first wall time in (low, high] resolved with another offset than `low` (bisection)."""
    offset = _effective_offset(low, zone)
    while (span := int((high - low).total_seconds())) > 1:
        middle = low + timedelta(seconds=span // 2)
        if _effective_offset(middle, zone) == offset:
            low = middle
        else:
            high = middle
    return high


def process_zone() -> tzinfo:
    """The zone Go's time.Local would use: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ")
    try:
        if name is None:
            with open("/etc/localtime", "rb") as handle:
                return ZoneInfo.from_file(handle, key="localtime")
        name = name.removeprefix(":")
        if name.startswith("/"):
            with open(name, "rb") as handle:
                return ZoneInfo.from_file(handle, key=name)
        return load_zone(name)
    except (OSError, ValueError):        # ValueError: not a zone file, or an unknown name (CrontabError)
        return timezone.utc


def load_zone(name: str) -> tzinfo:
    """An IANA zone by name (empty = UTC, like Go's LoadLocation); CrontabError if unknown."""
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, ZoneInfoNotFoundError):
        raise CrontabError(f"unknown time zone '{name}'") from None


@dataclass(frozen=True)
class Schedule:
    """A schedule expression bound to the time zone its wall-clock fields are read in."""

    expression: str
    tz: tzinfo
    fields: _Fields = field(repr=False)

    def __str__(self) -> str:
        return self.expression

    def next(self, after: datetime) -> datetime | None:
        """The first run strictly after `after` (aware), in the schedule's zone; None if none before 2100.

        Wall times are walked in order and resolved as Go does; one that resolves to an instant not
        after `after` (a repeated or skipped hour) is passed over, jumping the rest of its offset's span.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("Schedule.next needs an aware datetime")
        reference = after.astimezone(timezone.utc).replace(microsecond=0)
        if reference.year > _YEARS.high:
            return None
        cursor = reference.astimezone(self.tz).replace(tzinfo=None) + _SECOND
        while (wall := self.fields.first_at_or_after(cursor)) is not None:
            instant = _resolve(wall, self.tz)
            if instant > reference:
                return instant.astimezone(self.tz)
            cursor = self._skip_stale(wall, instant, reference)
        return None

    def _skip_stale(self, wall: datetime, instant: datetime, reference: datetime) -> datetime:
        # Wall times resolved with this same offset stay at or before the reference up to `limit`;
        # if the offset changes before that (a zone changes at most once in such a span), resume there.
        offset = wall.replace(tzinfo=timezone.utc) - instant
        limit = (reference + offset).replace(tzinfo=None)
        if _effective_offset(limit, self.tz) == offset:
            return limit + _SECOND
        return _first_offset_change(wall, limit, self.tz)


def parse_schedule(expression: str, tz: tzinfo | None = None) -> Schedule:
    """Parse a 5-, 6- (year last) or 7-field (seconds first, year last) expression or an @alias.

    `tz` is the zone the fields are read in; None means the process zone (from $TZ).
    Raises CrontabError when supercronic would reject the expression.
    """
    expression = expression.strip(_SPACE)
    return Schedule(expression, tz if tz is not None else process_zone(), _parse_fields(expression))


# --- crontab files ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One job line: when, what, and its place among the file's jobs (0-based, as supercronic)."""

    schedule: Schedule
    command: str
    position: int
    line: int


@dataclass(frozen=True)
class Crontab:
    env: dict[str, str]
    tz: tzinfo | None
    jobs: list[Job]

    @property
    def shell(self) -> str:
        return self.env.get("SHELL") or DEFAULT_SHELL


def _unquote(value: str) -> str:
    if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0]:
        return value[1:-1]
    return value


def _split_job_line(line: str) -> tuple[str, _Fields, str]:
    """Split a job line into schedule and command, trying schedule widths 7, 6, 5 and 1."""
    spans = [match.span() for match in _TOKEN.finditer(line)]
    failures: list[str] = []
    for width in _JOB_LINE_WIDTHS:
        if len(spans) <= width:
            continue  # a command must follow the schedule
        expression = line[:spans[width - 1][1]]
        try:
            return expression, _parse_fields(expression), line[spans[width][0]:]
        except CrontabError as exc:
            if width > 1 or expression.startswith("@"):
                failures.append(f"as {width} fields: {exc}" if width > 1 else str(exc))
    if not failures:
        raise CrontabError("expected a schedule (5, 6 or 7 fields, or an @alias) and a command")
    raise CrontabError("no schedule found: " + "; ".join(failures))


def parse_crontab(text: str) -> Crontab:
    """Parse a supercronic crontab; CrontabError names the line of the first problem.

    Variable lines apply to the whole file (the last assignment wins), so CRON_TZ is applied
    after every line has been read.
    """
    env: dict[str, str] = {}
    tz_line = 0
    pending: list[tuple[int, str, _Fields, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        if variable := _VARIABLE.fullmatch(line):
            env[variable[1]] = _unquote(variable[2])
            tz_line = number if variable[1] == "CRON_TZ" else tz_line
            continue
        try:
            pending.append((number, *_split_job_line(line)))
        except CrontabError as exc:
            raise CrontabError(f"line {number}: {line!r}: {exc}") from None
    zone: tzinfo | None = None
    if "CRON_TZ" in env:
        try:
            zone = load_zone(env["CRON_TZ"])
        except CrontabError as exc:
            raise CrontabError(f"line {tz_line}: CRON_TZ: {exc}") from None
    schedule_zone = zone if zone is not None else process_zone()
    jobs = [Job(Schedule(expression, schedule_zone, fields), command, position, number)
            for position, (number, expression, fields, command) in enumerate(pending)]
    return Crontab(env=env, tz=zone, jobs=jobs)
