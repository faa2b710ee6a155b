"""Hub timestamps: every form docs/hub-api.md section 1 allows, read as exact UTC instants."""
from __future__ import annotations

import time
import zoneinfo
from datetime import datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.jsonutil import describe
from app.core.timeutil import from_iso, get_zone, parse_timestamp, to_iso, utcnow

UTC = timezone.utc
SHANGHAI = get_zone("Asia/Shanghai")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-28T08:30:00Z", utc(2026, 11, 28, 8, 30)),
    ("2026-11-28T08:30:00z", utc(2026, 11, 28, 8, 30)),
    ("2026-11-28T16:30:00+08:00", utc(2026, 11, 28, 8, 30)),
    ("2026-11-28T03:30:00-05:00", utc(2026, 11, 28, 8, 30)),
    ("2026-11-28T08:30:00.118Z", utc(2026, 11, 28, 8, 30, 0, 118000)),
    ("2026-11-28 08:30:00", utc(2026, 11, 28, 8, 30)),
    ("2026-11-28T08:30:00.123456789Z", utc(2026, 11, 28, 8, 30, 0, 123456)),
    ("2026-11-28T08:30:00,5Z", utc(2026, 11, 28, 8, 30, 0, 500000)),
    ("  2026-11-28T08:30:00Z  ", utc(2026, 11, 28, 8, 30)),
])
def test_iso_forms(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_naive_time_is_read_in_the_given_zone() -> None:
    # the original hub: naive local time at +08:00, with microseconds
    parsed = parse_timestamp("2025-02-04T20:16:03.118000", SHANGHAI)
    assert parsed == utc(2025, 2, 4, 12, 16, 3, 118000)
    assert parse_timestamp("2025-02-04 20:16:03", SHANGHAI) == utc(2025, 2, 4, 12, 16, 3)
    # without a zone a naive time is UTC
    assert parse_timestamp("2025-02-04T20:16:03") == utc(2025, 2, 4, 20, 16, 3)


def test_explicit_offset_wins_over_the_zone() -> None:
    assert parse_timestamp("2025-02-04T20:16:03Z", SHANGHAI) == utc(2025, 2, 4, 20, 16, 3)


def test_zone_with_daylight_saving() -> None:
    new_york = get_zone("America/New_York")
    assert parse_timestamp("2026-07-01 12:00:00", new_york) == utc(2026, 7, 1, 16)
    assert parse_timestamp("2026-12-01 12:00:00", new_york) == utc(2026, 12, 1, 17)


@pytest.mark.parametrize("value", [1795854600, 1795854600.0, "1795854600", " 1795854600 "])
def test_unix_seconds(value: object) -> None:
    assert parse_timestamp(value, SHANGHAI) == utc(2026, 11, 28, 8, 30)


def test_unix_seconds_with_fraction() -> None:
    assert parse_timestamp("1795854600.25") == utc(2026, 11, 28, 8, 30, 0, 250000)


@pytest.mark.parametrize("value", ["yesterday", "", "2026-13-01T00:00:00", "2026-11-28T25:00:00",
                                   "28/11/2026 08:30", None, True, [], {"t": 1}])
def test_garbage_is_a_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_to_iso_uses_z_and_keeps_microseconds() -> None:
    moment = utc(2025, 2, 4, 12, 16, 3, 118000)
    assert to_iso(moment) == "2025-02-04T12:16:03.118000Z"
    assert parse_timestamp(to_iso(moment)) == moment
    assert to_iso(utc(2026, 11, 28, 8, 30)) == "2026-11-28T08:30:00Z"


def test_to_iso_converts_other_zones_to_utc() -> None:
    local = datetime(2025, 2, 4, 20, 16, 3, 1, tzinfo=SHANGHAI)
    assert to_iso(local) == "2025-02-04T12:16:03.000001Z"
    assert parse_timestamp(to_iso(local)) == local


def test_round_trip_at_full_precision() -> None:
    for micro in (0, 1, 999999, 118000):
        moment = utc(2026, 1, 2, 3, 4, 5, micro)
        assert from_iso(to_iso(moment)) == moment


def test_from_iso_is_lenient() -> None:
    assert from_iso(None) is None
    assert from_iso("") is None
    assert from_iso("not a time") is None
    assert from_iso("2026-11-28T08:30:00Z") == utc(2026, 11, 28, 8, 30)


def test_get_zone() -> None:
    assert get_zone("UTC") is UTC
    assert get_zone("utc") is UTC
    assert get_zone("Asia/Shanghai").utcoffset(datetime(2026, 1, 1)) == timedelta(hours=8)
    with pytest.raises(ValueError, match="Mars/Base"):
        get_zone("Mars/Base")
    with pytest.raises(ValueError):
        get_zone("../../etc/passwd")


@pytest.mark.parametrize("value", [10**20, float("inf"), "99999999999999999999", 1732780800000000000, 1732780800000])
def test_out_of_range_epoch_is_a_value_error(value: object) -> None:
    """A hub sending milli/nanoseconds or junk digits: unreadable, reported as ValueError like any other."""
    with pytest.raises(ValueError):
        parse_timestamp(value)


@pytest.mark.parametrize("value", [
    "0001-01-01T00:00:00+08:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59-08:00", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", -1, "-1", -62135596800, 253402300799,
    float("nan"), float("-inf"), 1e400, 10**400, 10**5000, "1" * 5000, "١٧٩٥٨٥٤٦٠٠", "2026-11-28T08:30:00Z\n\x00",
], ids=lambda v: describe(v)[:30])
def test_every_out_of_range_or_unreadable_value_is_a_value_error(value: object) -> None:
    """Year 1 and 9999 overflow datetime when moved between zones; they must never leave as OverflowError."""
    with pytest.raises(ValueError):
        parse_timestamp(value, SHANGHAI)


def test_the_range_ends_are_readable() -> None:
    assert parse_timestamp(0) == utc(1970, 1, 1)
    assert parse_timestamp("1970-01-01T08:00:00", SHANGHAI) == utc(1970, 1, 1)
    assert parse_timestamp("9998-12-31T23:59:59.999999Z") == utc(9998, 12, 31, 23, 59, 59, 999999)
    assert to_iso(parse_timestamp("9998-12-31T23:59:59+14:00")) == "9998-12-31T09:59:59Z"


timestamps = st.one_of(
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.integers(), st.floats(), st.text(), st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{1,9})?", fullmatch=True),
    st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(timestamps, st.sampled_from([UTC, SHANGHAI, get_zone("Pacific/Kiritimati"), get_zone("America/Adak")]))
def test_any_value_is_a_utc_instant_in_range_or_a_value_error(value: object, zone: tzinfo) -> None:
    try:
        parsed = parse_timestamp(value, zone)
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 200
        return
    assert parsed.utcoffset() == timedelta(0)
    assert datetime(1970, 1, 1, tzinfo=UTC) <= parsed < datetime(9999, 1, 1, tzinfo=UTC)
    assert parse_timestamp(to_iso(parsed)) == parsed          # to_iso never raises for what it returns


def test_get_zone_turns_an_unreadable_zone_file_into_a_value_error() -> None:
    # /proc/self/mem is a regular file whose first page cannot be read (EIO): the zone file is
    # found, and reading it fails with an OSError
    zoneinfo.reset_tzpath(to=["/proc/self"])
    try:
        with pytest.raises(ValueError, match="unknown time zone 'mem'"):
            get_zone("mem")
    finally:
        zoneinfo.reset_tzpath()
    assert get_zone("Asia/Shanghai") == SHANGHAI


def test_utcnow_is_now_in_utc() -> None:
    before = time.time()
    now = utcnow()
    after = time.time()
    assert now.tzinfo is UTC
    assert before <= now.timestamp() <= after
