"""Interrupted downloads: a killed sync resumes into the same package, never splices another one."""
from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    read_state, run_cli, sha256_of, start_cli, sync_env, tree, wait_for, zip_bytes,
)
from tests.hubs import FaultyHub, OriginalHub
from tests.hubs.common import RequestLog, header_of
from tests.integration.common import original_env, output, publish, random_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

PART = Path("state") / "downloads" / "prices.zip.part"


def _kill_mid_download(proc: subprocess.Popen, part: Path, log: RequestLog, at_least: int) -> None:
    """SIGKILL the sync once the hub has sent at_least package bytes into its part file.
    (The part file's size says nothing: it may be preallocated to the package's size.)"""
    try:
        wait_for(lambda: part.exists() and log.body_bytes >= at_least, timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert part.exists()


def _resumed_requests(log: list, size: int) -> list:
    """Package requests that asked for a tail (bytes=N- with N > 0) and got 206."""
    found = []
    for entry in log:
        wanted = header_of(entry, "Range") or ""
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted)
        if entry.path.startswith("/package/") and match and int(match.group(1)) > 0 and entry.status == 206:
            found.append(entry)
    return found


def test_killed_sync_resumes_with_range(original_hub: OriginalHub, tmp_path: Path) -> None:
    files = random_files(6, 500_000)
    size = publish(original_hub, "prices", files).stat().st_size
    original_hub.rate = 600_000  # about 5 s for the whole package
    env = original_env(original_hub, tmp_path)
    _kill_mid_download(start_cli(["sync"], env), tmp_path / PART, original_hub.requests, 1_200_000)
    original_hub.rate = None
    original_hub.requests.reset()

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == files
    assert _resumed_requests(original_hub.requests, size), list(original_hub.requests)
    assert original_hub.requests.body_bytes < size, "the resumed run fetched the whole package again"
    assert not (tmp_path / PART).exists()


def test_package_replaced_between_kill_and_rerun_restarts(original_hub: OriginalHub, tmp_path: Path) -> None:
    old = random_files(6, 500_000)
    publish(original_hub, "prices", old)
    original_hub.rate = 600_000
    env = original_env(original_hub, tmp_path)
    _kill_mid_download(start_cli(["sync"], env), tmp_path / PART, original_hub.requests, 1_200_000)
    # Same names and sizes, new bytes: the new package has the same length, only its name differs.
    new = random_files(6, 500_000)
    new_pkg = publish(original_hub, "prices", new)
    original_hub.rate = None
    original_hub.requests.reset()

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == new
    assert read_state(tmp_path / "state")["datasets"]["prices"]["sha256"] == sha256_of(new_pkg)
    assert original_hub.requests.body_bytes >= new_pkg.stat().st_size


def _faulty_env(hub: FaultyHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    return sync_env(hub.url, tmp_path, ["prices"], **extra)


def test_killed_sync_resumes_with_if_range_on_etag_hub(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(6, 400_000)
    pkg = faulty_hub.add_package("prices", zip_bytes(files))
    faulty_hub.etag = True
    faulty_hub.rate = 500_000
    env = _faulty_env(faulty_hub, tmp_path)
    _kill_mid_download(start_cli(["sync"], env), tmp_path / PART, faulty_hub.requests, 1_000_000)
    faulty_hub.rate = None
    faulty_hub.requests.reset()

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == files
    resumed = _resumed_requests(faulty_hub.requests, len(pkg.data))
    assert resumed and all(header_of(r, "If-Range") == pkg.etag for r in resumed), list(faulty_hub.requests)
    assert faulty_hub.requests.body_bytes < len(pkg.data)


def test_changed_etag_restarts_cleanly(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(random_files(6, 400_000)))
    faulty_hub.etag = True
    faulty_hub.rate = 500_000
    env = _faulty_env(faulty_hub, tmp_path)
    _kill_mid_download(start_cli(["sync"], env), tmp_path / PART, faulty_hub.requests, 1_000_000)
    new = random_files(6, 400_000)
    faulty_hub.add_package("prices", zip_bytes(new), "2026-11-29T08:30:00Z")
    faulty_hub.rate = None

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == new


def test_truncated_body_is_retried_within_the_run(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(2, 100_000)
    faulty_hub.add_package("prices", zip_bytes(files))
    faulty_hub.truncate = (60_000, 1)

    code, out, err = run_cli(["sync"], _faulty_env(faulty_hub, tmp_path, DATAHUB__HUB__RETRIES="2"))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == files
    assert len(faulty_hub.requests.to("/package/")) >= 2


def test_truncated_body_resumes_in_the_next_run(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(2, 100_000)
    pkg = faulty_hub.add_package("prices", zip_bytes(files))
    faulty_hub.truncate = (60_000, 10)
    env = _faulty_env(faulty_hub, tmp_path, DATAHUB__HUB__RETRIES="0")

    code, out, err = run_cli(["sync"], env)
    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == {}
    assert (tmp_path / PART).exists(), "the partial download must be kept for the next run"

    faulty_hub.truncate = None
    faulty_hub.requests.reset()
    code, out, err = run_cli(["sync"], env)
    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == files
    assert _resumed_requests(faulty_hub.requests, len(pkg.data))
    assert faulty_hub.requests.body_bytes < len(pkg.data)


def test_stalled_transfer_times_out_and_recovers(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(2, 100_000)
    faulty_hub.add_package("prices", zip_bytes(files))
    faulty_hub.stall = (50_000, 5.0, 1)

    code, out, err = run_cli(
        ["sync"], _faulty_env(faulty_hub, tmp_path, DATAHUB_TIMEOUT="1", DATAHUB__HUB__RETRIES="2"))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == files


def test_sigterm_stops_with_143_keeping_partial_and_installed_data(
    original_hub: OriginalHub, tmp_path: Path
) -> None:
    publish(original_hub, "prices", {"old.csv": b"installed"}, mtime=1_700_000_000)
    env = original_env(original_hub, tmp_path)
    assert run_cli(["sync"], env)[0] == 0
    publish(original_hub, "prices", random_files(6, 500_000))
    original_hub.rate = 600_000
    proc = start_cli(["sync"], env)
    try:
        wait_for(lambda: (tmp_path / PART).exists() and original_hub.requests.body_bytes >= 1_000_000, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)

    assert proc.returncode == 143, err
    assert (tmp_path / PART).exists(), "the partial download must be kept"
    assert tree(tmp_path / "data" / "prices") == {"old.csv": b"installed"}
    assert "Traceback" not in err
