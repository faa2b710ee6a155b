"""readiness.problems: the one rule behind `healthcheck` and `/readyz`, judged with an injected clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config import Config, build_config
from app.observe.readiness import SETTINGS, dataset_problem, problems, summary
from app.core.secrets import remember
from app.core.timeutil import to_iso

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)


def config(tmp_path: Path, url: str | None = "http://127.0.0.1:9", datasets: list | None = None, **health: float) -> Config:
    data: dict[str, Any] = {"hub": {"url": url}, "datasets": ["ds"] if datasets is None else datasets,
                            "sync": {"data_root": str(tmp_path / "data")}}
    if health:
        data["health"] = health
    return build_config(data)


def success(at: datetime) -> dict[str, Any]:
    """A record as the sync writes it after installing a version."""
    stamp = to_iso(at)
    return {"status": "success", "last_updated": "2026-11-28T08:00:00Z", "synced_at": stamp, "attempted_at": stamp,
            "last_ok_at": stamp, "files": 3, "bytes": 30}


def test_a_fresh_success_is_ready(tmp_path: Path) -> None:
    assert problems(config(tmp_path), {"ds": success(NOW - timedelta(hours=1))}, NOW, None) == {}


def test_stale_data_turns_not_ready_and_a_new_success_makes_it_ready_again(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_age=3600)
    state = {"ds": success(NOW)}
    clock = NOW + timedelta(minutes=59)
    assert problems(cfg, state, clock, None) == {}
    clock = NOW + timedelta(hours=2)
    assert problems(cfg, state, clock, None) == {"ds": "last successful sync 2.0 h ago (health.max_age 1.0 h)"}
    state["ds"] = dict(state["ds"], status="up_to_date", attempted_at=to_iso(clock), last_ok_at=to_iso(clock))
    assert problems(cfg, state, clock, None) == {}


def test_an_up_to_date_check_counts_as_a_success_even_when_the_data_is_old(tmp_path: Path) -> None:
    """Quiet upstream days: the data may be weeks old, what counts is the last successful check."""
    entry = success(NOW - timedelta(days=30))
    entry.update(status="up_to_date", last_ok_at=to_iso(NOW - timedelta(hours=1)))
    assert problems(config(tmp_path), {"ds": entry}, NOW, None) == {}


def test_a_failed_last_attempt_is_not_ready_however_recent_the_last_success(tmp_path: Path) -> None:
    entry = success(NOW - timedelta(minutes=5))
    entry.update(status="download_failed", error="HTTP 503 from http://127.0.0.1:9/package/ds.zip")
    assert problems(config(tmp_path), {"ds": entry}, NOW, None) == {
        "ds": "last sync failed (download_failed): HTTP 503 from http://127.0.0.1:9/package/ds.zip"}


def test_a_reason_is_one_printable_line_without_known_secrets(tmp_path: Path) -> None:
    remember("tok-9f8e7d6c5b4a")
    entry = {"status": "error", "error": "hub said\x1b[31m 401 for token tok-9f8e7d6c5b4a\r\n"}
    why = problems(config(tmp_path), {"ds": entry}, NOW, None)["ds"]
    assert why == "last sync failed (error): hub said\\x1b[31m 401 for token ***"


def test_every_dataset_is_named_with_its_reason(tmp_path: Path) -> None:
    cfg = config(tmp_path, datasets=["fresh", "old", "broken"])
    state = {"fresh": success(NOW - timedelta(hours=1)), "old": success(NOW - timedelta(hours=27)),
             "broken": {"status": "extract_failed", "error": "bad CRC\nin entry a.csv"}}
    found = problems(cfg, state, NOW, None)
    assert list(found) == ["old", "broken"]
    assert found["old"] == "last successful sync 27.0 h ago (health.max_age 26.0 h)"
    assert found["broken"] == "last sync failed (extract_failed): bad CRC in entry a.csv"
    line = summary(found)
    assert line == f"old: {found['old']}; broken: {found['broken']}" and "\n" not in line


def test_never_synced_is_ready_within_the_grace_period_only(tmp_path: Path) -> None:
    cfg = config(tmp_path, grace=600)
    assert problems(cfg, {}, NOW, None) == {}                               # a one-shot run: no daemon
    assert problems(cfg, {}, NOW, NOW - timedelta(minutes=9)) == {}
    late = problems(cfg, {}, NOW, NOW - timedelta(minutes=11))
    assert late == {"ds": f"never synced successfully since the daemon started at {to_iso(NOW - timedelta(minutes=11))}"}


def test_a_version_imported_from_the_original_client_is_ready_until_the_first_run_here(tmp_path: Path) -> None:
    imported = {"last_updated": "2026-01-01T00:00:00Z", "status": "success", "imported": True}
    assert problems(config(tmp_path), {"ds": imported}, NOW, NOW - timedelta(days=3)) == {}
    failed = dict(imported, status="download_failed", error="HTTP 500")
    assert "ds" in problems(config(tmp_path), {"ds": failed}, NOW, None)


def test_missing_settings_have_their_own_key(tmp_path: Path) -> None:
    found = problems(config(tmp_path, url=None, datasets=[]), {}, NOW, None)
    assert list(found) == [SETTINGS]
    assert "hub.url is not set" in found[SETTINGS] and "no datasets configured" in found[SETTINGS]
    assert summary(found) == found[SETTINGS]


def test_missing_settings_come_first_and_datasets_are_still_judged(tmp_path: Path) -> None:
    found = problems(config(tmp_path, url=None), {"ds": {"status": "error", "error": "boom"}}, NOW, None)
    assert list(found) == [SETTINGS, "ds"]


def test_summary_of_nothing_is_none() -> None:
    assert summary({}) is None


def test_datasets_not_configured_are_not_judged(tmp_path: Path) -> None:
    state = {"ds": success(NOW), "gone": {"status": "error", "error": "x"}}
    assert problems(config(tmp_path), state, NOW, None) == {}


def test_the_max_age_boundary(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_age=3600)
    assert dataset_problem(success(NOW - timedelta(seconds=3600)), NOW, None, 3600, 0) is None
    assert dataset_problem(success(NOW - timedelta(seconds=3601)), NOW, None, 3600, 0) is not None
    assert problems(cfg, {"ds": success(NOW + timedelta(hours=1))}, NOW, None) == {}     # a clock behind the writer's


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
entries = st.dictionaries(
    st.sampled_from(["status", "error", "last_ok_at", "synced_at", "imported", "attempted_at"]) | st.text(max_size=8),
    json_values | st.sampled_from(["success", "up_to_date", "error", "2026-11-28T08:00:00Z", "1e300", "NaN"]),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(state=st.dictionaries(st.sampled_from(["ds", "other"]), entries | json_values, max_size=2))
def test_any_state_gives_an_answer_never_an_exception(tmp_path_factory: Any, state: dict) -> None:
    """state.json is a file anyone could have edited: every record yields one-line reasons or none."""
    cfg = config(tmp_path_factory.getbasetemp(), datasets=["ds", "other"])
    found = problems(cfg, state, NOW, NOW - timedelta(days=1))
    assert set(found) <= {"ds", "other"}
    assert all(isinstance(why, str) and why and "\n" not in why for why in found.values())


@settings(max_examples=200, deadline=None)
@given(age=st.floats(min_value=0, max_value=10 * 86400), max_age=st.floats(min_value=1, max_value=10 * 86400))
def test_ready_exactly_when_the_last_success_is_within_max_age(tmp_path_factory: Any, age: float, max_age: float) -> None:
    last = NOW - timedelta(seconds=age)
    age = (NOW - last).total_seconds()          # what a timedelta can hold (microseconds)
    why = dataset_problem(success(last), NOW, None, max_age, 0)
    assert (why is None) == (age <= max_age)
