"""The supercronic crontab format: cronexpr's own vectors, then each rule of docs/crontab.md."""
from __future__ import annotations

import calendar
import json
import random
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from app.crontab.parser import CrontabError, parse_crontab, parse_schedule

UTC = timezone.utc
REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT / "tests" / "data" / "cronexpr_vectors.json"
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def runs(expression: str, start: datetime, count: int = 1, tz=UTC) -> list[datetime | None]:
    """The next `count` runs after `start`, as UTC instants (None once it stops firing)."""
    schedule = parse_schedule(expression, tz)
    found: list[datetime | None] = []
    current: datetime | None = start
    for _ in range(count):
        current = schedule.next(current) if current else None
        found.append(current.astimezone(UTC) if current else None)
    return found


def first(expression: str, start: datetime, tz=UTC) -> datetime | None:
    return runs(expression, start, 1, tz)[0]


# --- cronexpr's test table --------------------------------------------------------------------

def _load_vectors() -> list[dict]:
    return json.loads(VECTORS.read_text())


def test_the_vector_file_holds_all_66_cases():
    assert len(_load_vectors()) == 66


# cronexpr's table by expression: how many start times each is checked from. The last two rows and
# one of the two `6#5` rows are its NextN examples, each checked five runs deep.
CRONEXPR_TABLE = {
    "* * * * * * *": 7, "*/5 * * * * * *": 7, "* * * * *": 7, "17-43/5 * * * *": 8,
    "15-30/4,55 * * * *": 9, "0 0 * * MON": 3, "0 0 * * friday": 3, "0 0 * * 6,7": 3,
    "0 0 * * 6#5": 2, "0 0 14W * *": 2, "0 0 30W * *": 4, "0 0 L * *": 4, "0 0 LW * *": 3,
    "0 0 28 02 * *": 2, "*/5 * * * *": 1, "0 0 29 2 *": 1,
}


def test_the_copied_vectors_are_the_whole_table_and_well_formed() -> None:
    cases = _load_vectors()
    counts: dict[str, int] = {}
    for case in cases:
        counts[case["expr"]] = counts.get(case["expr"], 0) + 1
    assert counts == CRONEXPR_TABLE
    assert len({(case["expr"], case["from"]) for case in cases}) == len(cases)
    assert sum(len(case["next"]) for case in cases) == 63 + 3 * 5
    for case in cases:
        assert set(case) == {"expr", "from", "next"} and case["next"]
        stamps = [case["from"], *case["next"]]
        assert all(stamp.endswith("Z") for stamp in stamps)
        times = [datetime.fromisoformat(stamp.replace("Z", "+00:00")) for stamp in stamps]
        assert times == sorted(set(times)), f"{case['expr']}: times must strictly increase"


@pytest.mark.parametrize("case", _load_vectors(), ids=lambda c: f"{c['expr']} from {c['from']}")
def test_cronexpr_vector(case):
    schedule = parse_schedule(case["expr"], ZoneInfo("UTC"))
    current = datetime.fromisoformat(case["from"].replace("Z", "+00:00"))
    for expected in case["next"]:
        current = schedule.next(current)
        assert current == datetime.fromisoformat(expected.replace("Z", "+00:00"))


# --- expressions: accepted forms --------------------------------------------------------------

def test_five_fields_run_at_second_zero():
    assert runs("*/20 * * * *", utc(2024, 1, 1, 0, 0, 1), 3) == [
        utc(2024, 1, 1, 0, 20), utc(2024, 1, 1, 0, 40), utc(2024, 1, 1, 1, 0)]


def test_six_fields_end_with_a_year_not_seconds():
    assert first("0 12 * * * 2030", utc(2024, 1, 1)) == utc(2030, 1, 1, 12)
    assert runs("30 6 1 * * 2025-2026", utc(2026, 11, 5), 3) == [utc(2026, 12, 1, 6, 30), None, None]


def test_seven_fields_start_with_seconds_and_end_with_a_year():
    assert runs("*/15 30 9 * * * *", utc(2024, 5, 1, 9, 30, 15), 3) == [
        utc(2024, 5, 1, 9, 30, 30), utc(2024, 5, 1, 9, 30, 45), utc(2024, 5, 2, 9, 30)]
    assert first("5 0 0 1 1 * 2031", utc(2024, 1, 1)) == utc(2031, 1, 1, 0, 0, 5)


@pytest.mark.parametrize(("alias", "start", "expected"), [
    ("@yearly", utc(2024, 3, 3), utc(2025, 1, 1)),
    ("@annually", utc(2024, 3, 3), utc(2025, 1, 1)),
    ("@monthly", utc(2024, 3, 3), utc(2024, 4, 1)),
    ("@weekly", utc(2024, 3, 5), utc(2024, 3, 10)),  # a Sunday
    ("@daily", utc(2024, 3, 3, 5), utc(2024, 3, 4)),
    ("@hourly", utc(2024, 3, 3, 5, 1), utc(2024, 3, 3, 6)),
])
def test_aliases(alias, start, expected):
    assert first(alias, start) == expected


def test_month_and_weekday_names_any_case_short_or_full():
    assert first("0 0 1 FEB *", utc(2024, 3, 1)) == utc(2025, 2, 1)
    assert first("0 0 1 September *", utc(2024, 3, 1)) == utc(2024, 9, 1)
    assert first("0 0 * * SUN,Saturday", utc(2024, 3, 4)) == utc(2024, 3, 9)
    assert runs("0 0 * * mon-FRI", utc(2024, 3, 8), 2) == [utc(2024, 3, 11), utc(2024, 3, 12)]
    assert first("0 0 * * Saturday", utc(2024, 3, 4)) == utc(2024, 3, 9)
    assert first("0 0 * jan-mar/2 *", utc(2024, 1, 31, 1)) == utc(2024, 3, 1)


def test_one_leading_zero_is_allowed():
    assert first("05 07 * * *", utc(2024, 1, 1)) == utc(2024, 1, 1, 7, 5)
    assert first("0 0 28 02 * *", utc(2024, 1, 1)) == utc(2024, 2, 28)


def test_question_mark_is_a_wildcard_in_any_field():
    assert runs("? ? ? ? ?", utc(2024, 1, 1), 2) == [utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2)]


def test_steps_from_a_value_run_to_the_field_maximum():
    assert runs("50/5 * * * *", utc(2024, 1, 1, 0, 51), 3) == [
        utc(2024, 1, 1, 0, 55), utc(2024, 1, 1, 1, 50), utc(2024, 1, 1, 1, 55)]


def test_ranges_lists_and_empty_items():
    assert runs("0 1-3/2,22 * * *", utc(2024, 1, 1), 4) == [
        utc(2024, 1, 1, 1), utc(2024, 1, 1, 3), utc(2024, 1, 1, 22), utc(2024, 1, 2, 1)]
    assert first(",15, * * * *", utc(2024, 1, 1)) == utc(2024, 1, 1, 0, 15)


def test_weekday_seven_is_sunday_and_zero_to_seven_means_sunday_only():
    assert runs("0 0 * * 7", utc(2024, 3, 4), 2) == [utc(2024, 3, 10), utc(2024, 3, 17)]
    assert runs("0 0 * * 0-7", utc(2024, 3, 4), 2) == [utc(2024, 3, 10), utc(2024, 3, 17)]


# --- expressions: rejected forms --------------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "* * * *", "* * * * * * * *", "", "every day",
    "@midnight", "@reboot", "@every 5m", "@Daily", "@DAILY",
    "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 0 *", "* * * 13 *", "* * * * 8",
    "* * * * * 1969", "* * * * * 2100", "60 * * * * * *",
    "*/60 * * * *", "* */24 * * *", "* * */32 * *", "* * * */13 *", "* * * * */7", "*/0 * * * *",
    "* * * * * */2100", "0-10/0 * * * *",
    "005 * * * *", "010 * * * *", "* * * * * 02030", "*/005 * * * *",
    "0 0 1 sept *", "0 0 * * thurs", "0 0 1 ja *",
    "0 0 , * *", ", * * * *",
    "5-1 * * * *", "30-10/5 * * * *", "0 0 * * 5-7", "0 0 * * fri-sun", "0 0 * dec-jan *",
    "0 0 * * L", "0 0 * * 1#6", "0 0 * * 1#0", "0 0 * * 8#1", "0 0 * * 8L",
    "0 0 0W * *", "0 0 32W * *", "0 0 W * *", "0 0 L3 * *", "0 0 LW2 * *", "0 0 L * L",
    "?/5 * * * *", "*-5 * * * *", "1-5-7 * * * *", "a * * * *", "5/ * * * *", "1.5 * * * *",
    "-1 * * * *", "+1 * * * *", "0 0 15W-20 * *", "0 0 * * 1L-5",
])
def test_rejected_expressions(expression):
    with pytest.raises(CrontabError):
        parse_schedule(expression, UTC)


def test_errors_name_the_field_and_item():
    with pytest.raises(CrontabError, match=r"minute field: '61'"):
        parse_schedule("61 * * * *", UTC)
    with pytest.raises(CrontabError, match=r"day-of-week field: range '5-7'"):
        parse_schedule("0 0 * * 5-7", UTC)
    with pytest.raises(CrontabError, match=r"day-of-week field: 'L'"):
        parse_schedule("0 0 * * L", UTC)


def test_crontab_error_is_a_value_error():
    assert issubclass(CrontabError, ValueError)


# --- days: L, W, LW, nL, n#k and the day-of-month/day-of-week rule -----------------------------

def test_last_day_of_month():
    assert runs("0 0 L * *", utc(2024, 1, 31, 1), 3) == [utc(2024, 2, 29), utc(2024, 3, 31), utc(2024, 4, 30)]


@pytest.mark.parametrize(("expression", "start", "expected"), [
    ("0 0 1W * *", utc(2024, 5, 2), utc(2024, 6, 3)),      # Sat 1 June: Monday the 3rd, not May 31
    ("0 0 15W * *", utc(2024, 9, 1), utc(2024, 9, 16)),    # Sun 15 Sept: Monday 16
    ("0 0 14W * *", utc(2024, 9, 1), utc(2024, 9, 13)),    # Sat 14 Sept: Friday 13
    ("0 0 31W * *", utc(2024, 3, 1), utc(2024, 3, 29)),    # Sun 31 March, the last day: Friday 29
    ("0 0 31W * *", utc(2024, 4, 1), utc(2024, 5, 31)),    # April has no 31st: skipped
    ("0 0 12W * *", utc(2024, 9, 1), utc(2024, 9, 12)),    # Thursday: itself
    ("0 0 LW * *", utc(2024, 8, 1), utc(2024, 8, 30)),     # Sat 31 Aug: Friday 30
    ("0 0 LW * *", utc(2024, 3, 1), utc(2024, 3, 29)),     # Sun 31 March: Friday 29
    ("0 0 lw * *", utc(2024, 4, 1), utc(2024, 4, 30)),     # Tuesday: itself
])
def test_weekday_nearest(expression, start, expected):
    assert first(expression, start) == expected


def test_last_weekday_of_month():
    assert runs("0 0 * * 5L", utc(2024, 2, 1), 3) == [utc(2024, 2, 23), utc(2024, 3, 29), utc(2024, 4, 26)]
    assert first("0 0 * * 7L", utc(2024, 3, 1)) == utc(2024, 3, 31)
    assert first("0 0 * * sunL", utc(2024, 4, 1)) == utc(2024, 4, 28)


def test_nth_weekday_of_month_skips_months_without_one():
    assert runs("0 0 * * 1#1", utc(2024, 1, 2), 2) == [utc(2024, 2, 5), utc(2024, 3, 4)]
    assert runs("0 0 * * mon#5", utc(2024, 1, 1), 3) == [utc(2024, 1, 29), utc(2024, 4, 29), utc(2024, 7, 29)]
    assert first("0 0 * * 7#2", utc(2024, 3, 1)) == utc(2024, 3, 10)


def test_both_day_fields_restricted_means_either_matches():
    # The 13th, or any Friday.
    assert runs("0 0 13 * 5", utc(2024, 9, 1), 4) == [
        utc(2024, 9, 6), utc(2024, 9, 13), utc(2024, 9, 20), utc(2024, 9, 27)]


def test_one_restricted_day_field_decides_alone():
    assert runs("0 0 13 * *", utc(2024, 9, 1), 2) == [utc(2024, 9, 13), utc(2024, 10, 13)]
    assert runs("0 0 * * 5", utc(2024, 9, 1), 2) == [utc(2024, 9, 6), utc(2024, 9, 13)]
    assert runs("0 0 13 * ?", utc(2024, 9, 1), 2) == [utc(2024, 9, 13), utc(2024, 10, 13)]
    assert runs("0 0 ? * 5", utc(2024, 9, 1), 2) == [utc(2024, 9, 6), utc(2024, 9, 13)]


def test_a_stepped_wildcard_counts_as_restricted():
    # Odd days or Sundays: */2 is restricted, so both fields apply.
    assert runs("0 0 */2 * 0", utc(2024, 9, 1), 4) == [
        utc(2024, 9, 3), utc(2024, 9, 5), utc(2024, 9, 7), utc(2024, 9, 8)]


def test_a_wildcard_item_unrestricts_the_field():
    assert runs("0 0 *,13 * 5", utc(2024, 9, 1), 2) == [utc(2024, 9, 6), utc(2024, 9, 13)]


# --- next run: ordering, bounds, speed --------------------------------------------------------

def test_next_is_strictly_after_the_reference_and_whole_seconds():
    schedule = parse_schedule("* * * * * * *", UTC)
    assert schedule.next(utc(2024, 1, 1, 12)) == utc(2024, 1, 1, 12, 0, 1)
    assert schedule.next(utc(2024, 1, 1, 12).replace(microsecond=500_000)) == utc(2024, 1, 1, 12, 0, 1)
    assert parse_schedule("0 12 * * *", UTC).next(utc(2024, 1, 1, 12)) == utc(2024, 1, 2, 12)


def test_next_answers_in_the_schedule_zone_and_needs_an_aware_time():
    found = parse_schedule("0 9 * * *", KOLKATA).next(utc(2024, 1, 1))
    assert found.tzinfo == KOLKATA and (found.hour, found.minute) == (9, 0)
    with pytest.raises(ValueError):
        parse_schedule("0 9 * * *", UTC).next(datetime(2024, 1, 1))


@pytest.mark.parametrize(("expression", "start"), [
    ("0 0 30 2 *", utc(2024, 1, 1)),                 # 30 February never exists
    ("0 0 31 4,6,9,11 *", utc(2024, 1, 1)),
    ("0 0 1 1 * 2099", utc(2099, 6, 1)),
    ("* * * * * * *", utc(2099, 12, 31, 23, 59, 59)),
    ("0 0 1 1 * 2020", utc(2024, 1, 1)),
    ("* * * * *", utc(2100, 1, 1)),
    ("* * * * *", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
])
def test_nothing_before_2100_gives_none_quickly(expression, start):
    schedule = parse_schedule(expression, UTC)
    began = time.perf_counter()
    assert schedule.next(start) is None
    assert time.perf_counter() - began < 0.05


def test_last_run_before_2100():
    assert runs("59 23 31 12 *", utc(2099, 1, 1), 2) == [utc(2099, 12, 31, 23, 59), None]


def test_a_yearly_schedule_is_computed_by_skipping_fields():
    schedule = parse_schedule("0 0 0 29 2 * *", UTC)
    schedule.next(utc(2024, 3, 1))  # warm the month cache like a running job would
    began = time.perf_counter()
    for _ in range(100):
        found = schedule.next(utc(2024, 3, 1))
    per_call = (time.perf_counter() - began) / 100
    assert found == utc(2028, 2, 29)
    assert per_call < 0.002, f"{per_call * 1e3:.3f} ms per call"


def test_process_zone_comes_from_tz(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    assert parse_schedule("0 9 * * *").next(utc(2024, 1, 1)) == utc(2024, 1, 1, 3, 30)
    monkeypatch.setenv("TZ", "")
    assert parse_schedule("0 9 * * *").next(utc(2024, 1, 1)) == utc(2024, 1, 1, 9)


# --- daylight saving: Go's time.Date resolution, never twice, never spinning ------------------

def test_new_york_spring_gap_resolves_like_go():
    # 02:30 does not exist on 10 March 2024; Go's time.Date reads it with the new offset: 01:30 EST.
    assert runs("30 2 * * *", datetime(2024, 3, 9, 12, tzinfo=NEW_YORK), 3, NEW_YORK) == [
        utc(2024, 3, 10, 6, 30), utc(2024, 3, 11, 6, 30), utc(2024, 3, 12, 6, 30)]


def test_new_york_spring_gap_every_minute_jumps_the_missing_hour():
    assert runs("* * * * *", utc(2024, 3, 10, 6, 58), 3, NEW_YORK) == [
        utc(2024, 3, 10, 6, 59), utc(2024, 3, 10, 7, 0), utc(2024, 3, 10, 7, 1)]


def test_new_york_repeated_hour_runs_once():
    assert runs("30 1 * * *", utc(2024, 11, 2, 12), 2, NEW_YORK) == [
        utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]
    # Every minute: 01:59 EDT, then 02:00 EST; 01:00-01:59 EST is not run again.
    assert runs("* * * * *", utc(2024, 11, 3, 5, 58), 3, NEW_YORK) == [
        utc(2024, 11, 3, 5, 59), utc(2024, 11, 3, 7, 0), utc(2024, 11, 3, 7, 1)]


@pytest.mark.parametrize("expression", ["* * * * *", "* * * * * * *", "*/7 * * * * * *"])
def test_new_york_reference_inside_the_repeated_hour_does_not_spin(expression):
    second_pass = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)  # 06:30 UTC
    began = time.perf_counter()
    assert first(expression, second_pass, NEW_YORK) == utc(2024, 11, 3, 7, 0)
    assert time.perf_counter() - began < 0.05


def test_berlin_spring_gap_resolves_like_go():
    # 02:30 does not exist on 31 March 2024; Go reads it with the old offset: 03:30 CEST.
    assert runs("30 2 * * *", utc(2024, 3, 30, 12), 2, BERLIN) == [
        utc(2024, 3, 31, 1, 30), utc(2024, 4, 1, 0, 30)]
    assert runs("* * * * *", utc(2024, 3, 31, 0, 58), 3, BERLIN) == [
        utc(2024, 3, 31, 0, 59), utc(2024, 3, 31, 1, 0), utc(2024, 3, 31, 1, 1)]


def test_berlin_repeated_hour_resolves_to_the_second_pass_once():
    # For zones east of UTC, Go picks the later 02:30 (CET) on 27 October 2024.
    assert runs("30 2 * * *", utc(2024, 10, 26, 12), 2, BERLIN) == [
        utc(2024, 10, 27, 1, 30), utc(2024, 10, 28, 1, 30)]
    assert runs("* * * * *", utc(2024, 10, 26, 23, 58), 3, BERLIN) == [
        utc(2024, 10, 26, 23, 59), utc(2024, 10, 27, 1, 0), utc(2024, 10, 27, 1, 1)]


def test_kolkata_half_hour_offset_without_daylight_saving():
    assert runs("0 9 * * *", utc(2024, 1, 1), 2, KOLKATA) == [utc(2024, 1, 1, 3, 30), utc(2024, 1, 2, 3, 30)]
    assert first("0 0 1 7 *", utc(2024, 1, 1), KOLKATA) == utc(2024, 6, 30, 18, 30)
    assert runs("*/45 * * * *", utc(2024, 1, 1), 3, KOLKATA) == [
        utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 30), utc(2024, 1, 1, 1, 15)]


def test_a_year_of_hourly_runs_in_new_york_never_repeats_or_goes_back():
    schedule = parse_schedule("0 * * * *", NEW_YORK)
    current, seen = utc(2024, 1, 1), []
    while current < utc(2025, 1, 1):
        following = schedule.next(current)
        assert following > current
        seen.append(following)
        current = following
    # Every UTC hour of 2024 but one: 01:00 EST on 3 November repeats 01:00 EDT, so it is not run.
    assert len(seen) == len(set(seen)) == 366 * 24 - 1


# --- an independent oracle for random expressions ---------------------------------------------

def _oracle_day(item: str, day: date) -> bool:
    """Whether `day` matches one day-of-month or day-of-week item, straight from the definitions."""
    last = calendar.monthrange(day.year, day.month)[1]
    cron_weekday = (day.weekday() + 1) % 7

    def nearest(n: int) -> int:
        weekday = date(day.year, day.month, n).weekday()
        if weekday == 5:
            return n - 1 if n > 1 else n + 2
        if weekday == 6:
            return n + 1 if n < last else n - 2
        return n

    kind, _, text = item.partition(":")
    if kind == "dom":
        if text == "L":
            return day.day == last
        if text == "LW":
            return day.day == nearest(last)
        if text.endswith("W"):
            return int(text[:-1]) <= last and day.day == nearest(int(text[:-1]))
        return day.day in _oracle_values(text, 1, 31)
    if text.endswith("L"):
        return cron_weekday == int(text[:-1]) % 7 and day.day + 7 > last
    if "#" in text:
        weekday, k = map(int, text.split("#"))
        return cron_weekday == weekday % 7 and (day.day - 1) // 7 + 1 == k
    return cron_weekday in _oracle_values(text, 0, 6)


def _oracle_values(text: str, low: int, high: int) -> set[int]:
    base, _, step = text.partition("/")
    if base == "*":
        first_value, last_value = low, high
    elif "-" in base:
        first_value, last_value = map(int, base.split("-"))
    else:
        first_value = int(base)
        last_value = high if step else first_value
    return set(range(first_value, last_value + 1, int(step or 1)))


def _random_items(rng: random.Random, kind: str) -> list[str]:
    if kind == "dom":
        pool = ["L", "LW", f"{rng.randint(1, 31)}W", str(rng.randint(1, 31)),
                f"{rng.randint(1, 15)}-{rng.randint(16, 31)}", f"*/{rng.randint(2, 10)}", f"{rng.randint(1, 28)}/7"]
    else:
        pool = [f"{rng.randint(0, 7)}L", f"{rng.randint(0, 7)}#{rng.randint(1, 5)}", str(rng.randint(0, 6)),
                f"{rng.randint(0, 3)}-{rng.randint(3, 6)}", f"*/{rng.randint(2, 6)}"]
    return rng.sample(pool, rng.randint(1, 2))


def _oracle_next(minutes: set[int], hours: set[int], dom: list[str], dow: list[str],
                 start: datetime) -> datetime | None:
    day = start.date()
    for _ in range(800):
        dom_hit = any(_oracle_day(f"dom:{item}", day) for item in dom)
        dow_hit = any(_oracle_day(f"dow:{item}", day) for item in dow)
        if (dom and dom_hit) or (dow and dow_hit) or (not dom and not dow):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                    if candidate > start:
                        return candidate
        day += timedelta(days=1)
    return None


@pytest.mark.parametrize("seed", range(120))
def test_random_expressions_agree_with_an_independent_oracle(seed):
    rng = random.Random(seed)
    minute_step, hour_value = rng.randint(7, 30), rng.randint(0, 23)
    dom = _random_items(rng, "dom") if rng.random() < 0.7 else []
    dow = _random_items(rng, "dow") if rng.random() < 0.7 else []
    expression = f"*/{minute_step} {hour_value},{(hour_value + 7) % 24} {','.join(dom) or '*'} * {','.join(dow) or '*'}"
    start = utc(2024, 1, 1) + timedelta(minutes=rng.randint(0, 3 * 365 * 1440))
    minutes, hours = set(range(0, 60, minute_step)), {hour_value, (hour_value + 7) % 24}
    expected = _oracle_next(minutes, hours, dom, dow, start)
    assert expected is not None
    assert first(expression, start) == expected, expression


# --- crontab files ----------------------------------------------------------------------------

def test_jobs_commands_and_positions():
    crontab = parse_crontab(
        "# header comment\n"
        "\n"
        "*/5 * * * * echo five\n"
        "   \t@hourly   echo  spaced   out  \n"
        "0 0 * * * 2030 echo 'in 2030' # still the command\n"
        "*/10 * * * * * * /usr/bin/env\n"
    )
    assert [(str(job.schedule), job.command, job.position, job.line) for job in crontab.jobs] == [
        ("*/5 * * * *", "echo five", 0, 3),
        ("@hourly", "echo  spaced   out  ", 1, 4),
        ("0 0 * * * 2030", "echo 'in 2030' # still the command", 2, 5),
        ("*/10 * * * * * *", "/usr/bin/env", 3, 6),
    ]
    assert crontab.jobs[2].schedule.next(utc(2024, 1, 1)) == utc(2030, 1, 1)
    assert crontab.jobs[3].schedule.next(utc(2024, 1, 1)) == utc(2024, 1, 1, 0, 0, 10)


def test_job_line_width_tries_seven_six_five_then_one():
    # Seven tokens before the command would be seconds+year; "echo" is no year, so 6, then 5 win.
    crontab = parse_crontab("* * * * * echo a b c\n0 0 * * * 2030 echo hi\n")
    assert [(str(job.schedule), job.command) for job in crontab.jobs] == [
        ("* * * * *", "echo a b c"), ("0 0 * * * 2030", "echo hi")]
    # Six tokens with the 6th a valid year is a year, not a command.
    assert parse_crontab("0 0 * * * 2030 2031\n").jobs[0].command == "2031"


def test_crlf_line_endings_and_leading_blanks():
    crontab = parse_crontab("FOO=bar\r\n\t  * * * * * echo hi\r\n")
    assert crontab.env == {"FOO": "bar"}
    assert crontab.jobs[0].command == "echo hi"


def test_variable_lines():
    crontab = parse_crontab(
        "PLAIN=value\n"
        "SPACED = some value  \n"
        "DOUBLE=\"quoted value\"\n"
        "SINGLE='it''s'\n"
        "MISMATCHED=\"left\n"
        "EMPTY=\n"
        "QUOTES_ONLY=\"\"\n"
        "ONE_QUOTE=\"\n"
        "URL=https://example.invalid/?a=b\n"
    )
    assert crontab.env == {
        "PLAIN": "value",
        "SPACED": "some value  ",
        "DOUBLE": "quoted value",
        "SINGLE": "it''s",
        "MISMATCHED": "\"left",
        "EMPTY": "",
        "QUOTES_ONLY": "",
        "ONE_QUOTE": "\"",
        "URL": "https://example.invalid/?a=b",
    }
    assert crontab.jobs == []


def test_variable_lines_are_tried_before_jobs():
    crontab = parse_crontab("A=1 * * * * echo\n* * * * * echo B=2\n")
    assert crontab.env == {"A": "1 * * * * echo"}
    assert [job.command for job in crontab.jobs] == ["echo B=2"]


def test_last_assignment_wins_for_the_whole_file():
    crontab = parse_crontab("FOO=one\nCRON_TZ=UTC\n0 9 * * * echo\nFOO=two\nCRON_TZ=Asia/Kolkata\n")
    assert crontab.env["FOO"] == "two"
    assert crontab.tz == KOLKATA
    assert crontab.jobs[0].schedule.next(utc(2024, 1, 1)) == utc(2024, 1, 1, 3, 30)


def test_shell_defaults_to_bin_sh():
    assert parse_crontab("* * * * * echo\n").shell == "/bin/sh"
    assert parse_crontab("SHELL=/bin/bash\n* * * * * echo\n").shell == "/bin/bash"


def test_tz_changes_only_the_environment(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    crontab = parse_crontab("TZ=Asia/Kolkata\n0 9 * * * echo\n")
    assert crontab.tz is None
    assert crontab.env == {"TZ": "Asia/Kolkata"}
    assert crontab.jobs[0].schedule.next(utc(2024, 1, 1)) == utc(2024, 1, 1, 9)


def test_cron_tz_applies_to_every_schedule():
    crontab = parse_crontab("0 9 * * * echo a\nCRON_TZ=America/New_York\n30 1 * * * echo b\n")
    assert [job.schedule.tz for job in crontab.jobs] == [NEW_YORK, NEW_YORK]
    assert crontab.jobs[0].schedule.next(utc(2024, 1, 1)) == utc(2024, 1, 1, 14)


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("CRON_TZ=Mars/Olympus_Mons\n* * * * * echo\n", 1, "unknown time zone 'Mars/Olympus_Mons'"),
    ("# ok\n* * * * * echo\nCRON_TZ=../etc/passwd\n", 3, "unknown time zone"),
    ("* * * * * echo ok\n\n61 * * * * echo\n", 3, "minute field: '61'"),
    ("\n@reboot echo hi\n", 2, "'@reboot' is not supported"),
    ("@midnight echo hi\n", 1, "'@midnight'"),
    ("* * * * *\n", 1, "expected a schedule"),
    ("@daily\n", 1, "expected a schedule"),
    ("just some words\n", 1, "expected a schedule"),
    ("echo hello world again and again\n", 1, "no schedule found: as 5 fields: minute field: 'echo'"),
])
def test_crontab_errors_name_the_line(text, line, needle):
    with pytest.raises(CrontabError, match=rf"^line {line}: ") as caught:
        parse_crontab(text)
    assert needle in str(caught.value)


def test_a_year_out_of_range_falls_back_to_five_fields():
    # "2100" is no year, so the line is a 5-field schedule whose command starts with "2100".
    crontab = parse_crontab("0 0 1 1 * 2100 echo\n")
    assert (str(crontab.jobs[0].schedule), crontab.jobs[0].command) == ("0 0 1 1 *", "2100 echo")
