"""`healthcheck` (state only) and `status` (state + the hub's versions)."""
from __future__ import annotations

import io
import json
import logging
import os
import socket
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

import entrypoint
from app.core.config import Config, build_config
from app.core.secrets import remember
from app.serve.server import make_server
from tests.hubs import FaultyHub
from tests.hubs.common import serving
from app.core.state import StateStore
from app.observe.readiness import problems, summary
from app.commands.status import print_status, status_rows
from app.observe.health import daemon_started, health_problem, load_state, record_daemon_start
from app.core.timeutil import to_iso

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)


def config(tmp_path: Path, url: str | None = "http://127.0.0.1:9", datasets: list | None = None,
           **health: float) -> Config:
    data = {"hub": {"url": url}, "datasets": ["ds"] if datasets is None else datasets,
            "sync": {"data_root": str(tmp_path / "data")}}
    if health:
        data["health"] = health
    return build_config(data)


def write_state(cfg: Config, datasets: dict) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.state_dir / "state.json").write_text(json.dumps({"version": 1, "datasets": datasets}))


def write_daemon(cfg: Config, started: datetime) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.state_dir / "daemon.json").write_text(json.dumps({"pid": 1, "started_at": to_iso(started)}))


def ok_entry(synced: datetime) -> dict:
    return {"status": "success", "last_updated": "2026-11-28T08:00:00Z", "synced_at": to_iso(synced),
            "files": 3, "bytes": 30}


def test_missing_hub_url(tmp_path: Path) -> None:
    problem = health_problem(config(tmp_path, url=None), NOW)
    assert problem and "hub.url is not set" in problem and "DATAHUB_URL" in problem


def test_no_datasets(tmp_path: Path) -> None:
    problem = health_problem(config(tmp_path, datasets=[]), NOW)
    assert problem and "no datasets configured" in problem


def test_failed_last_attempt(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    entry = ok_entry(NOW - timedelta(hours=1))
    entry.update(status="download_failed", error="HTTP 503 from http://127.0.0.1:9/package/ds.zip")
    write_state(cfg, {"ds": entry})
    problem = health_problem(cfg, NOW)
    assert problem == "ds: last sync failed (download_failed): HTTP 503 from http://127.0.0.1:9/package/ds.zip"


def test_too_old_last_success(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    write_state(cfg, {"ds": ok_entry(NOW - timedelta(hours=27))})
    problem = health_problem(cfg, NOW)
    assert problem and problem.startswith("ds: last successful sync 27.0 h ago") and "26.0 h" in problem


def test_max_age_is_configurable(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_age=3600)
    write_state(cfg, {"ds": ok_entry(NOW - timedelta(hours=2))})
    assert health_problem(cfg, NOW) is not None
    cfg = config(tmp_path, max_age=3 * 3600)
    assert health_problem(cfg, NOW) is None


def test_up_to_date_run_refreshes_health(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    entry = ok_entry(NOW - timedelta(days=3))
    entry.update(status="up_to_date", last_ok_at=to_iso(NOW - timedelta(hours=1)))
    write_state(cfg, {"ds": entry})
    assert health_problem(cfg, NOW) is None


def test_never_succeeded_after_the_grace_period(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    write_daemon(cfg, NOW - timedelta(hours=2))
    problem = health_problem(cfg, NOW)
    assert problem and problem.startswith("ds: never synced successfully since the daemon started")


def test_never_succeeded_within_the_grace_period(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    write_daemon(cfg, NOW - timedelta(minutes=10))
    assert health_problem(cfg, NOW) is None


def test_never_succeeded_without_a_daemon(tmp_path: Path) -> None:
    assert health_problem(config(tmp_path), NOW) is None


def test_healthy(tmp_path: Path) -> None:
    cfg = config(tmp_path, datasets=["a", "b"])
    write_state(cfg, {"a": ok_entry(NOW - timedelta(hours=1)), "b": ok_entry(NOW - timedelta(hours=20))})
    write_daemon(cfg, NOW - timedelta(days=5))
    assert health_problem(cfg, NOW) is None


def test_one_unhealthy_dataset_among_healthy_ones(tmp_path: Path) -> None:
    cfg = config(tmp_path, datasets=["a", "b"])
    write_state(cfg, {"a": ok_entry(NOW - timedelta(hours=1)),
                      "b": {"status": "stale_package", "error": "the package lags 20 h"}})
    assert health_problem(cfg, NOW).startswith("b: last sync failed (stale_package)")


def test_every_problem_is_named_as_readyz_names_them(tmp_path: Path) -> None:
    """healthcheck's line is readiness.summary over the same problems /readyz answers with."""
    cfg = config(tmp_path, datasets=["a", "b", "c"])
    write_state(cfg, {"a": ok_entry(NOW - timedelta(hours=30)), "b": {"status": "error", "error": "boom"},
                      "c": ok_entry(NOW - timedelta(hours=1))})
    found = problems(cfg, load_state(cfg), NOW, daemon_started(cfg))
    assert set(found) == {"a", "b"}
    assert health_problem(cfg, NOW) == summary(found) == (
        "a: last successful sync 30.0 h ago (health.max_age 26.0 h); b: last sync failed (error): boom")


def test_imported_original_state_counts_as_a_success(tmp_path: Path) -> None:
    """A server switched from the original client has its versions imported (README, "Coming from the original client"): its data is
    there and synced, so the daemon's grace period must not turn it unhealthy before the first scheduled run."""
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    (cfg.state_dir / ".last_sync.json").write_text(json.dumps({"ds": "2026-11-28T08:00:00"}))
    StateStore(cfg.state_dir / "state.json", UTC, (cfg.state_dir / ".last_sync.json",)).update("ds", note="imported")
    write_daemon(cfg, NOW - timedelta(hours=2))
    assert health_problem(cfg, NOW) is None


def test_corrupt_state_does_not_crash_health(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    (cfg.state_dir / "state.json").write_text("{broken")
    assert health_problem(cfg, NOW) is None


def test_record_daemon_start(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    record_daemon_start(cfg)
    started = daemon_started(cfg)
    assert started is not None and abs((datetime.now(UTC) - started).total_seconds()) < 60
    assert json.loads((cfg.state_dir / "daemon.json").read_text())["pid"] == os.getpid()
    record_daemon_start(cfg, NOW)                   # the daemon passes the instant its readiness counts from
    assert daemon_started(cfg) == NOW


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DATAHUB"):
            monkeypatch.delenv(name)


def test_healthcheck_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
    assert entrypoint.main(["healthcheck"]) == 1
    assert capsys.readouterr().out.startswith("unhealthy: hub.url is not set")
    monkeypatch.setenv("DATAHUB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAHUB_DATASETS", "ds")
    cfg = config(tmp_path)
    write_state(cfg, {"ds": ok_entry(datetime.now(UTC) - timedelta(minutes=5))})
    assert entrypoint.main(["healthcheck"]) == 0
    assert capsys.readouterr().out.strip() == "healthy"
    write_state(cfg, {"ds": {"status": "error", "error": "boom"}})
    assert entrypoint.main(["healthcheck"]) == 1
    out = capsys.readouterr().out.strip()
    assert out == "unhealthy: ds: last sync failed (error): boom"


# ---- status -------------------------------------------------------------------------------------

@pytest.fixture
def hub_url(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "served"
    folder.mkdir()
    with zipfile.ZipFile(folder / "ds.zip", "w") as zf:
        zf.writestr("a.csv", "1")
    stamp = datetime(2026, 11, 28, 8, 30, tzinfo=UTC).timestamp()
    os.utime(folder / "ds.zip", (stamp, stamp))
    with serving(make_server(folder, "127.0.0.1", 0)) as url:
        yield url


def test_status_shows_local_and_remote_versions(tmp_path: Path, hub_url: str) -> None:
    cfg = config(tmp_path, url=hub_url, datasets=["ds", "other"])
    write_state(cfg, {"ds": ok_entry(NOW)})
    rows, problem = status_rows(cfg)
    assert problem is None
    assert rows[0]["local_version"] == "2026-11-28T08:00:00Z"
    assert rows[0]["remote_version"] == "2026-11-28T08:30:00Z"
    assert rows[0]["status"] == "success" and rows[0]["files"] == 3
    assert rows[1]["status"] == "never_synced" and rows[1]["remote_version"] is None
    out = io.StringIO()
    print_status(cfg, out, as_json=False)
    text = out.getvalue()
    assert "ds: success" in text and "remote version: 2026-11-28T08:30:00Z" in text
    assert "other: never_synced" in text


def test_status_json_with_the_hub_down(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = build_config({"hub": {"url": dead, "connect_timeout": 1}, "datasets": ["ds"],
                        "sync": {"data_root": str(tmp_path / "data")}})
    write_state(cfg, {"ds": dict(ok_entry(NOW), error=None)})
    out = io.StringIO()
    print_status(cfg, out, as_json=True)
    document = json.loads(out.getvalue())
    assert document["datasets"][0]["local_version"] == "2026-11-28T08:00:00Z"
    assert document["datasets"][0]["remote_version"] is None
    assert "cannot reach the hub" in document["hub_error"]


# ---- hostile state and daemon files --------------------------------------------------------------

@pytest.mark.parametrize("content", [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep"),
    pytest.param(b'{"started_at": "0001-01-01T00:00:00+08:00"}', id="year-1"),
    pytest.param(b'{"started_at": 1795854600}', id="a-number"),
    pytest.param(b'{"started_at": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", id="deep-field"),
    pytest.param(b'["started_at"]', id="a-list"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(None, id="a-directory"),
])
def test_an_unusable_daemon_file_means_no_start_time(tmp_path: Path, content: bytes | None,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    path = cfg.state_dir / "daemon.json"
    path.mkdir() if content is None else path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="datahubsync.status"):
        assert daemon_started(cfg) is None
        assert health_problem(cfg, NOW) is None         # no start time: the grace period cannot have ended
    assert any(str(path) in record.getMessage() for record in caplog.records)


def test_a_missing_daemon_file_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert daemon_started(config(tmp_path)) is None
    assert caplog.records == []


@pytest.mark.parametrize("entry", [
    {"status": "success", "synced_at": "0001-01-01T00:00:00+08:00"},
    {"status": "success", "last_ok_at": 10**400},
    {"status": "error", "error": ["boom"]},
    {"status": ["success"]},
    {"status": "success", "synced_at": "2026-11-28T08:00:00Z", "files": float("inf")},
], ids=["year-1", "huge-number", "error-list", "status-list", "files-inf"])
def test_health_treats_an_unusable_entry_as_never_synced(tmp_path: Path, entry: dict) -> None:
    cfg = config(tmp_path)
    write_state(cfg, {"ds": entry})
    assert health_problem(cfg, NOW) is None
    write_daemon(cfg, NOW - timedelta(hours=2))
    assert health_problem(cfg, NOW).startswith("ds: never synced successfully since the daemon started")


def test_errors_from_state_are_redacted_again_and_kept_on_one_line(tmp_path: Path) -> None:
    remember("s3cr3t-token-value")
    cfg = config(tmp_path, url=None, datasets=["ds"])
    write_state(cfg, {"ds": {"status": "error", "error": "HTTP 403 with s3cr3t-token-value\nand \x1b[31mred"}})
    rows, _ = status_rows(cfg, with_remote=False)
    assert rows[0]["error"] == "HTTP 403 with ***\\nand \\x1b[31mred"
    cfg = config(tmp_path, datasets=["ds"])
    # healthcheck says what /readyz says: whitespace runs (the line break) fold into one space
    assert health_problem(cfg, NOW) == "ds: last sync failed (error): HTTP 403 with *** and \\x1b[31mred"


def test_status_shows_a_bad_hub_entry_for_that_dataset_only(tmp_path: Path) -> None:
    with FaultyHub() as hub:
        hub.add_package("ds", b"zip", "0001-01-01T00:00:00+08:00")
        hub.add_package("other", b"zip", "2026-11-28T08:30:00Z")
        cfg = config(tmp_path, url=hub.url, datasets=["ds", "other"])
        rows, problem = status_rows(cfg)
        out = io.StringIO()
        print_status(cfg, out, as_json=False)
    assert problem is None
    by_name = {row["name"]: row for row in rows}
    assert by_name["ds"]["remote_version"] is None
    assert by_name["ds"]["remote_error"].startswith("last_updated: timestamp out of range")
    assert by_name["other"] == dict(by_name["other"], remote_version="2026-11-28T08:30:00Z", remote_error=None)
    assert "remote version: - (the hub's entry is invalid: last_updated: timestamp out of range" in out.getvalue()
