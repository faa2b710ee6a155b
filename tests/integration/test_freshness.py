"""The package race (docs/hub-api.md section 4): packages not built yet, and packages older than advertised."""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.helpers import parse_utc, read_state, run_cli, sync_env, tree, wait_for, zip_bytes
from tests.hubs import FaultyHub, OriginalHub
from tests.integration.common import FILES, SHANGHAI, hub_instant, original_env, output, publish

pytestmark = pytest.mark.timeout(60)

WAIT = {"DATAHUB__SYNC__PACKAGE_POLL": "0.3"}


@pytest.mark.slow
def test_package_not_ready_then_ready_is_waited_for(original_hub: OriginalHub, tmp_path: Path) -> None:
    # First day on the hub: data landed, the packager has not run yet.
    for rel, data in FILES.items():
        original_hub.write_file("prices", rel, data)
    def build_once_asked() -> None:      # after the client's first look, however slow its start-up
        wait_for(lambda: original_hub.requests.to("/api/datasets"), timeout=30)
        time.sleep(0.5)
        original_hub.build_package("prices")
    builder = threading.Thread(target=build_once_asked, daemon=True)
    builder.start()
    code, out, err = run_cli(
        ["sync"], original_env(original_hub, tmp_path, DATAHUB__SYNC__PACKAGE_WAIT="20", **WAIT))
    builder.join(timeout=30)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert len(original_hub.requests.to("/api/datasets")) >= 2, "the list must be re-read while waiting"
    # Nothing was asked for while the hub said package_ready: false (a 404 would show it); a 416 is
    # the original hub refusing a first range longer than a small package, which tells its size.
    assert all(r.status in (200, 206, 416) for r in original_hub.requests.to("/package/"))


@pytest.mark.slow
def test_package_never_ready_fails_as_package_not_ready(original_hub: OriginalHub, tmp_path: Path) -> None:
    for rel, data in FILES.items():
        original_hub.write_file("prices", rel, data)

    code, out, err = run_cli(
        ["sync"], original_env(original_hub, tmp_path, DATAHUB__SYNC__PACKAGE_WAIT="1.5", **WAIT))

    assert code == 1, output(out, err)
    assert "package_not_ready" in output(out, err)
    assert tree(tmp_path / "data" / "prices") == {}
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == "package_not_ready"
    assert original_hub.requests.to("/package/") == []


def test_package_404_is_treated_as_not_ready(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.fail_next("/package/", 404, times=2)

    code, out, err = run_cli(
        ["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__SYNC__PACKAGE_WAIT="20", **WAIT))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES


@pytest.mark.slow
def test_stale_package_recorded_by_content_time_and_not_downloaded_twice(
    original_hub: OriginalHub, tmp_path: Path
) -> None:
    now = time.time()
    env = original_env(original_hub, tmp_path)
    publish(original_hub, "prices", {"a.csv": b"v0"}, mtime=now - 3 * 3600)
    assert run_cli(["sync"], env)[0] == 0

    # The packager ran an hour ago (v1)... and new data landed since, not packaged yet.
    t1 = now - 3600
    bulk = os.urandom(1_000_000)  # big enough that a second full download would show
    stale = publish(original_hub, "prices", {"a.csv": b"v1", "bulk.bin": bulk}, mtime=t1)
    original_hub.write_file("prices", "b.csv", b"v2", mtime=now)
    advertised = original_hub.last_updated("prices")

    code, out, err = run_cli(["sync"], env)
    assert code == 0, output(out, err)  # something newer (v1) got installed: success with a warning
    assert tree(tmp_path / "data" / "prices") == {"a.csv": b"v1", "bulk.bin": bulk}
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    recorded = parse_utc(entry["last_updated"])
    # The package's content time (ZIP times have 2 s steps), not the advertised one.
    assert abs(recorded.timestamp() - t1) <= 2.0, (entry["last_updated"], advertised)
    assert recorded < datetime.fromisoformat(advertised).replace(tzinfo=SHANGHAI)

    # Same stale package again: nothing newer can be installed, and it is not fetched again.
    # Throttled, so that bytes already in flight when the client hangs up stay few.
    original_hub.requests.reset()
    original_hub.rate = 300_000
    code, out, err = run_cli(["sync"], env)
    original_hub.rate = None
    assert code == 1, output(out, err)
    assert "stale_package" in output(out, err)
    assert original_hub.requests.body_bytes < stale.stat().st_size // 2
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == "stale_package"
    assert tree(tmp_path / "data" / "prices") == {"a.csv": b"v1", "bulk.bin": bulk}

    # The packager catches up: the advertised version is installed and recorded.
    original_hub.build_package("prices")
    code, out, err = run_cli(["sync"], env)
    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == {"a.csv": b"v1", "bulk.bin": bulk, "b.csv": b"v2"}
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    assert parse_utc(entry["last_updated"]) == hub_instant(original_hub.last_updated("prices"))


def test_stale_first_package_is_still_installed(original_hub: OriginalHub, tmp_path: Path) -> None:
    now = time.time()
    publish(original_hub, "prices", {"a.csv": b"old"}, mtime=now - 7200)
    original_hub.write_file("prices", "b.csv", b"new", mtime=now)

    code, out, err = run_cli(["sync"], original_env(original_hub, tmp_path))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == {"a.csv": b"old"}
    recorded = parse_utc(read_state(tmp_path / "state")["datasets"]["prices"]["last_updated"])
    assert abs(recorded.timestamp() - (now - 7200)) <= 2.0


def test_published_sha256_is_trusted_over_content_time(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    # Entry times far older than last_updated, but the hub publishes sha256: no staleness check.
    old = datetime(2020, 1, 1, 0, 0, 0)
    faulty_hub.add_package("prices", zip_bytes(FILES, when=old), "2026-11-28T08:30:00Z", sha256=True)

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 0, output(out, err)
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    assert parse_utc(entry["last_updated"]) == datetime(2026, 11, 28, 8, 30, tzinfo=timezone.utc)
