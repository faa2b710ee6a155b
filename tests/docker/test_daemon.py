"""The container as a daemon (`cron`, the default command): schedule, health, `docker stop`, resume."""
from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

import requests

from tests.dockerutil import Container, free_port, run, sync_env, wait_until
from tests.helpers import metric, zip_bytes
from tests.hubs import FaultyHub
from tests.hubs.common import header_of

EVERY_3_SECONDS = "*/3 * * * * * *"  # 7 fields: seconds first, year last
NEVER_SOON = "0 0 1 1 * 2099"  # only --run-on-start syncs
V1, V2 = "2026-11-28T08:30:00Z", "2026-11-29T08:30:00Z"
SLOW_RATE = 256 * 1024  # bytes/s: the big package takes about 12 s
STOP_GRACE = 10
# Progress is judged by the bytes the hub sent, never by the part file's size: the download
# preallocates the part file to the package's size before the first byte arrives.
PROGRESS = 640 * 1024


def csv(version: str) -> dict[str, str]:
    return {"sh600000.csv": f"date,close\n2026-11-27,{version}\n", "sz000001.csv": f"date,close\n{version}\n"}


def big_package() -> bytes:
    """About 3 MB that does not compress, so the transfer time is the byte count over the rate."""
    return zip_bytes({"blob.bin": os.urandom(3 * 1024 * 1024), "small.csv": "date,close\n"},
                     compression=0)


def file_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def part_size(data: Path, name: str) -> int:
    part = data / ".datahubsync" / "downloads" / f"{name}.zip.part"
    try:
        return part.stat().st_size
    except OSError:
        return 0


def requested_bytes(hub: FaultyHub, name: str, size: int) -> int:
    """Body bytes the package requests asked for (a request without Range asks for all of it)."""
    total = 0
    for request in hub.requests.to(f"/package/{name}"):
        if request.method != "GET":
            continue
        wanted = header_of(request, "Range")
        match = re.match(r"bytes=(\d+)-(\d*)$", wanted or "")
        if not match:
            total += size
        else:
            end = int(match.group(2)) if match.group(2) else size - 1
            total += min(end, size - 1) - int(match.group(1)) + 1
    return total


def test_daemon_syncs_v1_then_v2_then_stops_quickly(
        containers: Callable[..., Container], faulty_hub: FaultyHub, data_dir: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(csv("v1")), V1, sha256=True)
    env = sync_env(faulty_hub.url, ["prices"], DATAHUB_SCHEDULE=EVERY_3_SECONDS,
                   DATAHUB__SCHEDULE__RUN_ON_START="never")
    daemon = containers([], env=env, volumes={data_dir: "/data"})  # the image's default command: cron
    target = data_dir / "prices" / "sh600000.csv"
    wait_until(lambda: file_text(target) == "date,close\n2026-11-27,v1\n", 30, what="v1 from the schedule")

    faulty_hub.add_package("prices", zip_bytes(csv("v2")), V2, sha256=True)
    wait_until(lambda: file_text(target) == "date,close\n2026-11-27,v2\n", 30, what="v2 published later")
    assert daemon.state()["Running"]

    took = daemon.stop(STOP_GRACE)
    print(f"docker stop on the idle daemon: {took:.2f} s")
    assert daemon.exit_code() == 0
    assert took < 8  # well inside the 10 s grace: no SIGKILL needed


def test_daemon_stopped_mid_download_exits_0_and_next_run_resumes(
        containers: Callable[..., Container], faulty_hub: FaultyHub, data_dir: Path) -> None:
    payload = big_package()
    faulty_hub.add_package("big", payload, V1, sha256=True)
    faulty_hub.rate = SLOW_RATE
    env = sync_env(faulty_hub.url, ["big"], DATAHUB_SCHEDULE=NEVER_SOON)
    daemon = containers(["cron", "--run-on-start"], env=env, volumes={data_dir: "/data"})
    wait_until(lambda: faulty_hub.requests.to("/package/big"), 30, what="the download to start")
    wait_until(lambda: faulty_hub.requests.body_bytes >= PROGRESS, 30, what="a partial download")

    took = daemon.stop(STOP_GRACE)
    print(f"docker stop on the daemon mid-download: {took:.2f} s")
    assert daemon.exit_code() == 0  # 137 would mean Docker had to SIGKILL it
    assert took < STOP_GRACE - 1
    assert not (data_dir / "big").exists() or not any((data_dir / "big").iterdir())
    assert part_size(data_dir, "big") > 0, "the partial download was not kept"

    faulty_hub.rate = None
    faulty_hub.requests.reset()
    proc = run(["sync"], env=env, volumes={data_dir: "/data"})
    assert proc.returncode == 0, proc.stderr
    assert (data_dir / "big" / "blob.bin").stat().st_size == 3 * 1024 * 1024
    asked = requested_bytes(faulty_hub, "big", len(payload))
    assert asked < len(payload), f"resumed run asked for {asked} of {len(payload)} bytes: no resume"


def test_oneshot_sync_stopped_mid_download_exits_143_and_resumes(
        containers: Callable[..., Container], faulty_hub: FaultyHub, data_dir: Path) -> None:
    payload = big_package()
    faulty_hub.add_package("big", payload, V1, sha256=True)
    faulty_hub.rate = SLOW_RATE
    env = sync_env(faulty_hub.url, ["big"])
    sync = containers(["sync"], env=env, volumes={data_dir: "/data"})
    wait_until(lambda: faulty_hub.requests.body_bytes >= PROGRESS, 30, what="a partial download")

    took = sync.stop(STOP_GRACE)
    assert sync.exit_code() == 143, sync.logs()
    assert took < STOP_GRACE - 1
    assert not (data_dir / "big").exists() or not any((data_dir / "big").iterdir())
    # The summary says it was stopped (not a network error), and nothing is recorded as installed.
    summary = [line for line in sync.logs().splitlines() if "summary:" in line]
    assert len(summary) == 1 and "stopped" in summary[0] and "Connection broken" not in summary[0], summary
    # (a stop is not a failure: the state file is not even written on a first run)
    state_file = data_dir / ".datahubsync" / "state.json"
    state = json.loads(state_file.read_text())["datasets"].get("big", {}) if state_file.exists() else {}
    assert "last_updated" not in state and "sha256" not in state, state

    faulty_hub.rate = None
    faulty_hub.requests.reset()
    proc = run(["sync"], env=env, volumes={data_dir: "/data"})
    assert proc.returncode == 0, proc.stderr
    assert (data_dir / "big" / "blob.bin").stat().st_size == 3 * 1024 * 1024
    assert requested_bytes(faulty_hub, "big", len(payload)) < len(payload)


def test_health_unhealthy_after_failed_sync_then_healthy_after_good_one(
        containers: Callable[..., Container], faulty_hub: FaultyHub, data_dir: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(csv("v1")), V1, sha256=True, package_ready=False)
    env = sync_env(faulty_hub.url, ["prices"], DATAHUB_SCHEDULE=EVERY_3_SECONDS)
    daemon = containers([], env=env, volumes={data_dir: "/data"},
                        options=["--health-interval", "1s", "--health-retries", "1",
                                 "--health-timeout", "10s", "--health-start-period", "0s"])
    wait_until(lambda: daemon.health() == "unhealthy", 40, interval=0.5, what="unhealthy after a failed sync")
    reason = daemon.health_log()[-1]["Output"]
    assert "prices" in reason, reason

    faulty_hub.set_ready("prices", True)
    wait_until(lambda: daemon.health() == "healthy", 40, interval=0.5, what="healthy after a good sync")
    assert file_text(data_dir / "prices" / "sh600000.csv") == "date,close\n2026-11-27,v1\n"
    assert daemon.stop(STOP_GRACE) < 8
    assert daemon.exit_code() == 0


def test_listener_serves_metrics_and_readyz_turns_200_after_the_first_success(
        containers: Callable[..., Container], faulty_hub: FaultyHub, data_dir: Path) -> None:
    """The image's daemon with --listen on the host's loopback: /readyz 503 while the hub lists a
    version it has not packaged yet, 200 after the first success; /metrics for the configured dataset."""
    faulty_hub.add_package("prices", zip_bytes(csv("v1")), V1, sha256=True, package_ready=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = sync_env(faulty_hub.url, ["prices"], DATAHUB_SCHEDULE=EVERY_3_SECONDS)
    daemon = containers(["cron", "--listen", f"127.0.0.1:{port}"], env=env, volumes={data_dir: "/data"})

    # (a Response is false for a 503: the wait returns its body)
    not_ready = wait_until(lambda: (answer := get(url + "/readyz")) is not None and answer.status_code == 503
                           and answer.json(), 30, what="/readyz 503 after the failed first sync")
    assert list(not_ready["problems"]) == ["prices"]
    assert not_ready["problems"]["prices"].startswith("last sync failed (package_not_ready): "), not_ready
    assert get(url + "/healthz").json() == {"status": "ok"}
    text = get(url + "/metrics").text
    assert metric(text, "datahubsync_up_to_date", dataset="prices") == 0
    assert metric(text, "datahubsync_ready", dataset="prices") == 0

    faulty_hub.set_ready("prices")
    wait_until(lambda: get(url + "/readyz").json() == {"ready": True}, 30, what="/readyz 200 after the first success")
    assert file_text(data_dir / "prices" / "sh600000.csv") == "date,close\n2026-11-27,v1\n"
    text = get(url + "/metrics").text
    assert metric(text, "datahubsync_ready", dataset="prices") == 1
    assert metric(text, "datahubsync_installed_files", dataset="prices") == 2
    assert metric(text, "datahubsync_runs_total", dataset="prices", result="success") >= 1
    assert metric(text, "datahubsync_installed_version_timestamp_seconds", dataset="prices") == \
        datetime.fromisoformat(V1.replace("Z", "+00:00")).timestamp()
    assert time.time() - 1 < metric(text, "datahubsync_next_run_timestamp_seconds") <= time.time() + 4

    took = daemon.stop(STOP_GRACE)
    assert daemon.exit_code() == 0 and took < 8
    assert get(url + "/healthz") is None                    # the listener went with the daemon
    # The job's lines appear as the job wrote them: one timestamp, no second prefix around them
    logs = daemon.logs()
    assert "summary: prices: success" in logs
    assert not re.search(r"\[job [^]]*\] \d{4}-\d{2}-\d{2}T", logs), logs


def get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=10)
    except requests.ConnectionError:
        return None

