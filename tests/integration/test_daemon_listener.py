"""The `cron` daemon's listener with real jobs: `datahubsync sync` children against a hub double on
127.0.0.1, fetched with requests. In-process where the test moves the clock, a subprocess for the CLI."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from app.core.config import load_config
from app.crontab.daemon import load_crontab, run_daemon
from tests.helpers import metric, read_state, start_cli, sync_env, wait_for, write_config, zip_bytes
from tests.hubs import FaultyHub

UTC = timezone.utc
EVERY_2_SECONDS = "*/2 * * * * * *"
NEVER_SOON = "0 0 0 1 1 * 2099"
MAX_AGE = 3600
V1 = "2026-11-28T08:30:00Z"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



class Clock:
    """The daemon's clock: real time until the test pins it."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned or datetime.now(UTC)


@dataclass
class Daemon:
    url: str
    state_dir: Path
    clock: Clock
    stop: threading.Event
    thread: threading.Thread
    result: list[Any]

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def last_ok(self, name: str) -> datetime | None:
        try:
            stamp = read_state(self.state_dir)["datasets"].get(name, {}).get("last_ok_at")
        except (OSError, ValueError):
            return None
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DATAHUB"):
            monkeypatch.delenv(name)


def start_daemon(tmp_path: Path, hub: FaultyHub, schedule: str, **health: float) -> Daemon:
    """run_daemon on a thread of this process (signals stay with pytest), jobs as real children."""
    path = write_config(tmp_path / "config.yaml", {"url": hub.url, "retries": 0, "connect_timeout": 2},
                        [{"name": "prices"}], {"data_root": str(tmp_path / "data"), "package_wait": 0},
                        health={"max_age": MAX_AGE, **health})
    config = load_config(str(path), {})
    crontab = load_crontab(f"{schedule} datahubsync sync\n", "test")
    port, clock, stop, result = free_port(), Clock(), threading.Event(), []
    thread = threading.Thread(target=lambda: result.append(run_daemon(
        config, crontab, config_path=str(path), run_on_start=True, stop=stop,
        listen=f"127.0.0.1:{port}", clock=clock)), daemon=True)
    thread.start()
    daemon = Daemon(f"http://127.0.0.1:{port}", config.state_dir, clock, stop, thread, result)
    wait_for(lambda: _answers(daemon), timeout=10)
    return daemon


def _answers(daemon: Daemon) -> bool:
    try:
        return daemon.get("/healthz").status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def daemons(clean_environ: None) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop.set()
        daemon.thread.join(30)


def test_readyz_flips_to_503_when_data_goes_stale_and_back_after_a_success(
        tmp_path: Path, faulty_hub: FaultyHub, daemons: list[Daemon]) -> None:
    faulty_hub.add_package("prices", zip_bytes({"a.csv": "date,close\n"}), V1, sha256=True)
    daemon = start_daemon(tmp_path, faulty_hub, EVERY_2_SECONDS)
    daemons.append(daemon)
    first = wait_for(lambda: daemon.last_ok("prices"), timeout=30)
    assert (daemon.get("/readyz").status_code, daemon.get("/readyz").json()) == (200, {"ready": True})

    # Time passes without a success: the clock moves past health.max_age (5 s past the last success).
    daemon.clock.pinned = first + timedelta(seconds=MAX_AGE + 5)
    stale = daemon.get("/readyz")
    assert stale.status_code == 503
    assert stale.json() == {"ready": False,
                            "problems": {"prices": "last successful sync 1.0 h ago (health.max_age 1.0 h)"}}
    assert metric(daemon.get("/metrics").text, "datahubsync_ready", dataset="prices") == 0

    # The schedule's next run (an up-to-date check) is a success newer than the pinned clock's limit.
    wait_for(lambda: daemon.get("/readyz").status_code == 200, timeout=30)
    assert daemon.last_ok("prices") > first + timedelta(seconds=5)
    assert daemon.get("/readyz").json() == {"ready": True}
    assert metric(daemon.get("/metrics").text, "datahubsync_ready", dataset="prices") == 1


def test_readyz_names_a_failing_dataset_until_a_run_succeeds(
        tmp_path: Path, faulty_hub: FaultyHub, daemons: list[Daemon]) -> None:
    # The hub lists a version it has not packaged yet: every run fails (sync.package_wait is 0).
    faulty_hub.add_package("prices", zip_bytes({"a.csv": "date,close\n"}), V1, sha256=True, package_ready=False)
    daemon = start_daemon(tmp_path, faulty_hub, EVERY_2_SECONDS)
    daemons.append(daemon)
    wait_for(lambda: daemon.get("/readyz").status_code == 503, timeout=30)
    why = daemon.get("/readyz").json()["problems"]["prices"]
    assert why.startswith("last sync failed ("), why
    assert daemon.get("/healthz").json() == {"status": "ok"}     # the data is bad, the daemon is not

    faulty_hub.set_ready("prices")
    wait_for(lambda: daemon.get("/readyz").status_code == 200, timeout=30)
    assert daemon.last_ok("prices") is not None


def test_metrics_show_the_dataset_and_the_next_scheduled_run_then_the_listener_stops(
        tmp_path: Path, faulty_hub: FaultyHub, daemons: list[Daemon]) -> None:
    faulty_hub.add_package("prices", zip_bytes({"a.csv": "date,close\n", "b.csv": "x\n"}), V1, sha256=True)
    daemon = start_daemon(tmp_path, faulty_hub, "30 8 * * *")   # only the start-up sync runs here
    daemons.append(daemon)
    wait_for(lambda: daemon.last_ok("prices"), timeout=30)
    text = wait_for(lambda: (t := daemon.get("/metrics").text) and
                    metric(t, "datahubsync_runs_total", dataset="prices", result="success") == 1 and t, timeout=10)
    assert metric(text, "datahubsync_installed_files", dataset="prices") == 2
    assert metric(text, "datahubsync_up_to_date", dataset="prices") == 1
    due = datetime.fromtimestamp(metric(text, "datahubsync_next_run_timestamp_seconds"), UTC)
    now = datetime.now(UTC)
    # 08:30 in the process's zone, within the next day
    assert now < due <= now + timedelta(days=1)
    assert (due.astimezone().hour, due.astimezone().minute, due.second) == (8, 30, 0)

    daemon.stop.set()
    daemon.thread.join(30)
    assert daemon.result == [0]
    with pytest.raises(requests.ConnectionError):
        daemon.get("/healthz")


# ---- the command line: --listen, DATAHUB_LISTEN, a busy port -----------------------------------------

def cron_env(hub: FaultyHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    return sync_env(hub.url, tmp_path, ["prices"], DATAHUB_SCHEDULE=NEVER_SOON,
                    DATAHUB__SCHEDULE__RUN_ON_START="never", **extra)


def stop_cli(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return process.returncode, err


def test_listen_flag_wins_over_datahub_listen(tmp_path: Path, faulty_hub: FaultyHub) -> None:
    flag, env_port = free_port(), free_port()
    process = start_cli(["cron", "--listen", f"127.0.0.1:{flag}"],
                        cron_env(faulty_hub, tmp_path, DATAHUB_LISTEN=f"127.0.0.1:{env_port}"))
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{flag}/healthz") == 200, timeout=20)
        assert _get(f"http://127.0.0.1:{env_port}/healthz") is None
    finally:
        code, err = stop_cli(process)
    assert code == 0, err
    assert f"serving /healthz, /readyz and /metrics on 127.0.0.1:{flag}" in err


def test_datahub_listen_alone_starts_the_listener(tmp_path: Path, faulty_hub: FaultyHub) -> None:
    port = free_port()
    process = start_cli(["cron"], cron_env(faulty_hub, tmp_path, DATAHUB_LISTEN=f"127.0.0.1:{port}"))
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz") == 200, timeout=20)
    finally:
        code, err = stop_cli(process)
    assert code == 0, err


def test_a_busy_listen_address_is_exit_2_naming_metrics_listen(tmp_path: Path, faulty_hub: FaultyHub) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = start_cli(["cron", "--run-on-start", "--listen", f"127.0.0.1:{port}"], cron_env(faulty_hub, tmp_path))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("datahubsync:")]
    assert lines == [f"datahubsync: metrics.listen: cannot listen on '127.0.0.1:{port}': Address already in use"], err
    assert "Traceback" not in err
    assert not faulty_hub.requests.to("/api/"), "the daemon synced although it could not start"
    assert not (tmp_path / "state" / "daemon.json").exists()


@pytest.mark.parametrize("address", ["nope", ":0", ":65536", "127.0.0.1:"])
def test_a_malformed_listen_flag_is_exit_2_naming_the_flag(tmp_path: Path, faulty_hub: FaultyHub, address: str) -> None:
    process = start_cli(["cron", "--listen", address], cron_env(faulty_hub, tmp_path))
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    assert err.strip() == (f"datahubsync: --listen: expected 'HOST:PORT' or ':PORT' with a port from 1 to 65535, "
                           f"got {address!r}")


def _get(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return None
