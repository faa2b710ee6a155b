"""The daemon's HTTP listener over a real state folder, fetched with requests on 127.0.0.1."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import requests

from app.core.config import Config, build_config
from app.core.errors import ConfigError
from app.core.result import SyncResult
from app.core.state import StateStore
from app.core.timeutil import to_iso
from app.observe.listen import Listener, start_listener
from app.observe.metrics import record_run, registry_for
from app.observe.readiness import problems
from tests.helpers import metric

UTC = timezone.utc
START = datetime(2026, 11, 28, 8, 15, 0, tzinfo=UTC)


@dataclass
class Daemon:
    """What the cron daemon hands the listener: its config, a clock the test moves, its liveness."""

    config: Config
    now: datetime = START
    alive: bool = True
    listener: Listener | None = None
    url: str = ""
    started: datetime | None = field(default=None)

    def store(self) -> StateStore:
        return StateStore(self.config.state_dir / "state.json", UTC)

    def ready(self) -> dict[str, str]:
        return problems(self.config, self.store().datasets, self.now, self.started)

    def install(self, name: str, files: int = 3, size: int = 30) -> None:
        """Record an installed version the way the sync does."""
        stamp = to_iso(self.now)
        self.store().replace_installed(name, {"last_updated": "2026-11-28T08:00:00Z", "sha256": "0" * 64, "synced_at": stamp,
                                              "files": files, "bytes": size, "identity": None, "package_time": None},
                                       status="success", error=None, attempted_at=stamp, last_ok_at=stamp)

    def check_up_to_date(self, name: str) -> None:
        stamp = to_iso(self.now)
        self.store().update(name, status="up_to_date", error=None, attempted_at=stamp, last_ok_at=stamp)

    def fail(self, name: str, status: str, error: str) -> None:
        self.store().update(name, status=status, error=error, attempted_at=to_iso(self.now))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    cfg = build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": ["prices", "bars"],
                        "sync": {"data_root": str(tmp_path / "data")}, "health": {"max_age": 3600, "grace": 600}})
    d = Daemon(cfg)
    registry = registry_for(cfg, lambda: d.now, lambda: (d.now + timedelta(hours=24)).timestamp())
    d.listener = start_listener("127.0.0.1:0", cfg, registry, d.ready, lambda: d.alive)
    d.url = f"http://127.0.0.1:{d.listener.port}"
    try:
        yield d
    finally:
        d.listener.stop()



def test_healthz_follows_the_scheduler(daemon: Daemon) -> None:
    answer = requests.get(daemon.url + "/healthz", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    daemon.alive = False
    answer = requests.get(daemon.url + "/healthz", timeout=5)
    assert answer.status_code == 503 and answer.json() == {"status": "the scheduler is not running"}


def test_readyz_goes_stale_and_comes_back_after_a_success(daemon: Daemon) -> None:
    daemon.install("prices")
    daemon.install("bars")
    answer = requests.get(daemon.url + "/readyz", timeout=5)
    assert (answer.status_code, answer.json()) == (200, {"ready": True})
    assert answer.headers["Content-Type"] == "application/json"

    daemon.now += timedelta(minutes=30)
    daemon.check_up_to_date("bars")              # nothing new upstream: a successful check all the same
    daemon.now += timedelta(minutes=45)
    answer = requests.get(daemon.url + "/readyz", timeout=5)
    assert answer.status_code == 503
    assert answer.json() == {"ready": False, "problems": {"prices": "last successful sync 1.2 h ago (health.max_age 1.0 h)"}}

    daemon.check_up_to_date("prices")
    answer = requests.get(daemon.url + "/readyz", timeout=5)
    assert (answer.status_code, answer.json()) == (200, {"ready": True})


def test_readyz_names_a_failing_dataset_until_it_succeeds(daemon: Daemon) -> None:
    daemon.install("prices")
    daemon.install("bars")
    daemon.now += timedelta(minutes=5)
    daemon.fail("bars", "download_failed", "HTTP 503 from the hub")
    answer = requests.get(daemon.url + "/readyz", timeout=5)
    assert answer.status_code == 503
    assert answer.json()["problems"] == {"bars": "last sync failed (download_failed): HTTP 503 from the hub"}
    daemon.install("bars")
    assert requests.get(daemon.url + "/readyz", timeout=5).status_code == 200


def test_readyz_before_the_first_sync_honours_the_grace_period(daemon: Daemon) -> None:
    daemon.started = daemon.now
    assert requests.get(daemon.url + "/readyz", timeout=5).status_code == 200
    daemon.now += timedelta(minutes=11)
    answer = requests.get(daemon.url + "/readyz", timeout=5)
    assert answer.status_code == 503 and set(answer.json()["problems"]) == {"prices", "bars"}


def test_metrics_from_the_state_folder(daemon: Daemon) -> None:
    answer = requests.get(daemon.url + "/metrics", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert metric(answer.text, "datahubsync_runs_total", dataset="prices", result="success") == 0

    daemon.install("prices", files=1900, size=123456)
    record_run(daemon.config.state_dir, [SyncResult.ok("prices", "success", duration=12.5)], {"prices": 98765}, {"prices": 1})
    text = requests.get(daemon.url + "/metrics", timeout=5).text
    assert metric(text, "datahubsync_last_success_timestamp_seconds", dataset="prices") == START.timestamp()
    assert metric(text, "datahubsync_installed_files", dataset="prices") == 1900
    assert metric(text, "datahubsync_installed_bytes", dataset="prices") == 123456
    assert metric(text, "datahubsync_runs_total", dataset="prices", result="success") == 1
    assert metric(text, "datahubsync_sync_duration_seconds_bucket", dataset="prices", le="15.0") == 1
    assert metric(text, "datahubsync_downloaded_bytes_total", dataset="prices") == 98765
    assert metric(text, "datahubsync_download_retries_total", dataset="prices") == 1
    assert metric(text, "datahubsync_ready", dataset="prices") == 1
    assert metric(text, "datahubsync_next_run_timestamp_seconds") == (START + timedelta(hours=24)).timestamp()


def test_metrics_in_openmetrics_when_asked(daemon: Daemon) -> None:
    answer = requests.get(daemon.url + "/metrics", timeout=5,
                          headers={"Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"})
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert answer.text.endswith("# EOF\n")


def test_head_answers_without_a_body(daemon: Daemon) -> None:
    for path, status in (("/healthz", 200), ("/readyz", 200), ("/metrics", 200), ("/nothing", 404)):
        answer = requests.head(daemon.url + path, timeout=5)
        assert answer.status_code == status and answer.content == b""
        assert int(answer.headers["Content-Length"]) > 0


@pytest.mark.parametrize("path", ["/", "/metricsx", "/healthz/", "/../state.json", "/%00", "/readyz%2F..%2Fmetrics"])
def test_other_paths_are_404(daemon: Daemon, path: str) -> None:
    answer = requests.get(daemon.url + path, timeout=5)
    assert answer.status_code == 404 and answer.json()["error"].startswith("not found")


def test_a_query_string_is_ignored(daemon: Daemon) -> None:
    assert requests.get(daemon.url + "/healthz?verbose=1", timeout=5).status_code == 200


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), b"400"),     # a TLS hello
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", b"501"),
    (b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"431"),
    (b"GET /healthz HTTP/9.9\r\n\r\n", b"505"),
    (b"GET //[x/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
])
def test_odd_requests_get_an_error_and_the_listener_serves_on(daemon: Daemon, request_bytes: bytes, status: bytes) -> None:
    answer = raw_exchange(daemon.listener.port, request_bytes)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == status
    assert b"\r\n\r\n{\"error\": " in answer and b"Content-Type: application/json" in answer
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_a_silent_client_does_not_hold_up_others(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.listener.port), timeout=5) as idle:
        idle.sendall(b"GET /metr")
        assert requests.get(daemon.url + "/readyz", timeout=5).status_code == 200


def test_one_connection_serves_many_requests(daemon: Daemon) -> None:
    with requests.Session() as session:
        ports = set()
        for path in ("/healthz", "/metrics", "/readyz", "/nothing", "/metrics"):
            answer = session.get(daemon.url + path, timeout=5, stream=True)
            ports.add(answer.raw._connection.sock.getsockname()[1])
            answer.content
    assert len(ports) == 1


def test_a_failing_callback_answers_an_error_and_the_listener_serves_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": ["ds"], "sync": {"data_root": str(tmp_path / "data")}})

    def broken() -> dict[str, str]:
        raise RuntimeError("state unreadable")

    listener = start_listener("127.0.0.1:0", cfg, registry_for(cfg, lambda: START), broken, lambda: 1 / 0)
    try:
        url = f"http://127.0.0.1:{listener.port}"
        ready = requests.get(url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert requests.get(url + "/healthz", timeout=5).status_code == 503
        assert requests.get(url + "/metrics", timeout=5).status_code == 200
    finally:
        listener.stop()
    assert any("state unreadable" in (r.exc_text or "") for r in caplog.records)


def test_a_busy_port_is_a_config_error(daemon: Daemon) -> None:
    taken = f"127.0.0.1:{daemon.listener.port}"
    with pytest.raises(ConfigError, match=rf"^metrics\.listen: cannot listen on '{taken}': Address already in use$"):
        start_listener(taken, daemon.config, registry_for(daemon.config, lambda: START), dict, lambda: True)


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.1:70000", "nonsense"])
def test_a_bad_address_is_a_config_error(daemon: Daemon, addr: str) -> None:
    with pytest.raises(ConfigError, match=r"^metrics\.listen: "):
        start_listener(addr, daemon.config, registry_for(daemon.config, lambda: START), dict, lambda: True)


def test_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    cfg = build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": ["ds"], "sync": {"data_root": str(tmp_path / "data")}})
    try:
        listener = start_listener("[::1]:0", cfg, registry_for(cfg, lambda: START), dict, lambda: True)
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert requests.get(f"http://[::1]:{listener.port}/healthz", timeout=5).status_code == 200
    finally:
        listener.stop()


def test_stop_frees_the_port(tmp_path: Path) -> None:
    cfg = build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": ["ds"], "sync": {"data_root": str(tmp_path / "data")}})
    listener = start_listener("127.0.0.1:0", cfg, registry_for(cfg, lambda: START), dict, lambda: True)
    port = listener.port
    listener.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    again = start_listener(f"127.0.0.1:{port}", cfg, registry_for(cfg, lambda: START), dict, lambda: True)
    again.stop()
