"""Hub timestamps: parsing (ISO 8601, naive local, Unix seconds) and the UTC form kept in state."""
from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.core.jsonutil import describe

_DIGITS = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Python 3.11's fromisoformat accepts most forms; normalise the few it does not (Z, a space separator
# is fine, fractions longer than 6 digits are cut, ',' as decimal mark).
_FRACTION = re.compile(r"([.,])([0-9]+)")
# Instants outside this span are refused: no dataset predates Unix time, and inside it every zone
# conversion and day-scale arithmetic stays within datetime's range (years 1-9999).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)


def get_zone(name: str) -> tzinfo:
    """An IANA zone by name ("UTC" in any case); ValueError, and nothing else, when there is none."""
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:      # OSError: a zone file it cannot read
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_timestamp(value: object, naive_zone: tzinfo = timezone.utc) -> datetime:
    """Read a hub `last_updated` into an aware UTC datetime between EARLIEST and LATEST.

    ValueError (and nothing else) when the value is unreadable or out of that range.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {describe(value)}")
    if isinstance(value, (int, float)):
        return _in_range(_from_epoch(value), value)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {describe(value)}")
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return _in_range(_from_epoch(float(text)), value)
    normalised = text
    if normalised.endswith(("Z", "z")):
        normalised = normalised[:-1] + "+00:00"
    normalised = _FRACTION.sub(lambda m: "." + m.group(2)[:6].ljust(6, "0"), normalised, count=1)
    try:
        parsed = datetime.fromisoformat(normalised)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {describe(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    try:
        moment = parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):     # year 1 or 9999 moved past datetime's range
        raise ValueError(f"timestamp out of range: {describe(value)}") from None
    return _in_range(moment, value)


def _from_epoch(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"Unix time out of range: {describe(seconds)}") from None


def _in_range(moment: datetime, value: object) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"timestamp out of range (before 1970 or after 9998): {describe(value)}")
    return moment


def to_iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z, microseconds kept only when present."""
    moment = moment.astimezone(timezone.utc)
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def from_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        return None


def utcnow() -> datetime:
    """Now, as an aware UTC datetime: the program's one clock (tests pass their own where it is a parameter)."""
    return datetime.now(timezone.utc)
