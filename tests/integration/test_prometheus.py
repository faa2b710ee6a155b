"""Real Prometheus, promtool and Pushgateway (Debian's packages) against the daemon's listener and a push.

.ci/setup.sh installs them; the tests skip only where the binaries are missing.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Config, build_config
from app.observe.listen import Listener, start_listener
from app.observe.metrics import push, record_run, registry_for
from app.observe.readiness import problems
from app.core.result import SyncResult
from app.core.state import StateStore
from app.core.timeutil import to_iso, utcnow
from tests.helpers import REPO_ROOT, wait_for

RULES = REPO_ROOT / "docs" / "prometheus-rules.yaml"
UTC = timezone.utc


def binary(name: str, package: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; .ci/setup.sh installs it)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server binary run by the test on 127.0.0.1, its output in a log file, stopped at the end."""

    def __init__(self, argv: list[str], log: Path, ready_url: str):
        self.log = log
        self.ready_url = ready_url
        self.output = open(log, "wb")
        self.process = subprocess.Popen(argv, stdout=self.output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=log.parent, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.process.args[0]} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if requests.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.process.args[0]} not ready within {timeout}s:\n{self.tail()}")

    def tail(self) -> str:
        self.output.flush()
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.output.close()


def make_config(root: Path, datasets: list[str]) -> Config:
    return build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": datasets,
                         "sync": {"data_root": str(root / "data"), "state_dir": str(root / "state")}})


def record_state(cfg: Config, now: datetime) -> dict[str, datetime]:
    """prices synced an hour ago, bars not for 30 hours, quotes failed just now: as the sync records them."""
    store = StateStore(cfg.state_dir / "state.json", UTC)
    fresh, old = now - timedelta(hours=1), now - timedelta(hours=30)
    for name, when in (("prices", fresh), ("bars", old), ("quotes", old)):
        stamp = to_iso(when)
        store.replace_installed(name, {"last_updated": "2026-11-28T08:00:00Z", "sha256": "0" * 64, "synced_at": stamp,
                                       "files": 300, "bytes": 4_000_000, "identity": None, "package_time": None},
                                status="success", error=None, attempted_at=stamp, last_ok_at=stamp)
    store.update("quotes", status="download_failed", error="HTTP 503 from the hub", attempted_at=to_iso(now))
    record_run(cfg.state_dir, [SyncResult.ok("prices", "success", duration=12.0),
                               SyncResult.failed("quotes", "download_failed", "HTTP 503", duration=3.0)],
               {"prices": 4_100_000}, {"quotes": 5})
    return {"prices": fresh, "bars": old, "quotes": old}


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Config, Listener, dict[str, datetime]]]:
    cfg = make_config(tmp_path, ["prices", "bars", "quotes"])
    last_ok = record_state(cfg, utcnow())
    registry = registry_for(cfg, utcnow, lambda: (utcnow() + timedelta(hours=6)).timestamp())

    def ready() -> dict[str, str]:
        return problems(cfg, StateStore(cfg.state_dir / "state.json", UTC).datasets, utcnow(), None)

    server = start_listener("127.0.0.1:0", cfg, registry, ready, lambda: True)
    try:
        yield cfg, server, last_ok
    finally:
        server.stop()


@pytest.fixture
def prometheus(tmp_path: Path, listener: tuple[Config, Listener, dict[str, datetime]]) -> Iterator[str]:
    exe = binary("prometheus")
    home = tmp_path / "prometheus"
    home.mkdir()
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "datahubsync", "static_configs": [{"targets": [f"127.0.0.1:{listener[1].port}"]}]}],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = Server([exe, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    home / "prometheus.log", f"http://127.0.0.1:{port}/-/ready")
    try:
        server.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    answer.raise_for_status()
    return answer.json()["data"]["result"]


def test_the_example_rules_pass_promtool() -> None:
    result = subprocess.run([binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rules found" in result.stdout


def test_the_example_rules_fire_when_they_should(tmp_path: Path) -> None:
    """promtool's rule unit tests: stale after 26 h without a success, failing while the last run failed."""
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # a success every minute: never stale
                {"series": 'datahubsync_last_success_timestamp_seconds{dataset="hourly",instance="h",job="datahubsync"}',
                 "values": f"0+60x{30 * 60}"},
                # synced once at t=0, nothing after
                {"series": 'datahubsync_last_success_timestamp_seconds{dataset="stuck",instance="h",job="datahubsync"}',
                 "values": f"0x{30 * 60}"},
                {"series": 'datahubsync_up_to_date{dataset="hourly",instance="h",job="datahubsync"}', "values": f"1x{30 * 60}"},
                {"series": 'datahubsync_up_to_date{dataset="stuck",instance="h",job="datahubsync"}', "values": f"1x60 0x{29 * 60}"},
            ],
            "alert_rule_test": [
                {"eval_time": "25h", "alertname": "DataHubSyncDatasetStale", "exp_alerts": []},
                {"eval_time": "26h20m", "alertname": "DataHubSyncDatasetStale", "exp_alerts": [{
                    "exp_labels": {"dataset": "stuck", "instance": "h", "job": "datahubsync", "severity": "warning"},
                    "exp_annotations": {
                        "summary": "stuck on h: no successful sync for 1d 2h 20m 0s",
                        "description": "DataHubSync has not synced or confirmed dataset stuck for longer than health.max_age (26 h). "
                                       "`datahubsync status` on h shows the last attempt and its error.",
                    }}]},
                {"eval_time": "1h3m", "alertname": "DataHubSyncDatasetFailing", "exp_alerts": []},
                {"eval_time": "1h10m", "alertname": "DataHubSyncDatasetFailing", "exp_alerts": [{
                    "exp_labels": {"dataset": "stuck", "instance": "h", "job": "datahubsync", "severity": "warning"},
                    "exp_annotations": {
                        "summary": "stuck on h: the last sync failed",
                        "description": "The last sync of stuck failed; the previously installed version is still in place. "
                                       'datahubsync_runs_total{dataset="stuck"} counts the results; `datahubsync status` on h shows the error.',
                    }}]},
            ],
        }],
    }
    path = tmp_path / "rules-test.yaml"
    path.write_text(yaml.safe_dump(tests, width=1000))
    result = subprocess.run([binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_listener_and_loads_the_rules(prometheus: str, listener: tuple[Config, Listener, dict[str, datetime]]) -> None:
    _, _, last_ok = listener
    found = wait_for(lambda: query(prometheus, 'datahubsync_last_success_timestamp_seconds{dataset="prices"}'), timeout=60)
    assert len(found) == 1 and found[0]["metric"]["job"] == "datahubsync"
    assert float(found[0]["value"][1]) == last_ok["prices"].timestamp()

    runs = query(prometheus, 'datahubsync_runs_total{result="download_failed"}')
    assert {r["metric"]["dataset"]: float(r["value"][1]) for r in runs} == {"prices": 0, "bars": 0, "quotes": 1}
    p50 = query(prometheus, 'histogram_quantile(0.5, datahubsync_sync_duration_seconds_bucket{dataset="prices"})')
    assert 5 < float(p50[0]["value"][1]) <= 15

    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert [g["name"] for g in groups] == ["datahubsync"]
    assert [r["name"] for r in groups[0]["rules"]] == ["DataHubSyncDatasetStale", "DataHubSyncDatasetFailing"]
    assert all(r["health"] != "err" for r in groups[0]["rules"])

    expected = {("DataHubSyncDatasetStale", "bars"), ("DataHubSyncDatasetStale", "quotes"), ("DataHubSyncDatasetFailing", "quotes")}

    def alerts() -> set[tuple[str, str]]:
        got = requests.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {(a["labels"]["alertname"], a["labels"]["dataset"]) for a in got if a["state"] in ("pending", "firing")}

    wait_for(lambda: alerts() == expected, timeout=60)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    exe = binary("prometheus-pushgateway", "prometheus-pushgateway")
    home = tmp_path / "pushgateway"
    home.mkdir()
    port = free_port()
    server = Server([exe, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file=", "--log.level=warn"],
                    home / "pushgateway.log", f"http://127.0.0.1:{port}/-/ready")
    try:
        server.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def gateway_samples(pushgateway: str) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"{pushgateway}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name.startswith("datahubsync_")}


def test_a_one_shot_run_pushes_to_a_real_pushgateway(tmp_path: Path, pushgateway: str) -> None:
    cfg = make_config(tmp_path, ["prices", "bars", "quotes"])
    last_ok = record_state(cfg, utcnow())
    assert push(cfg, pushgateway) is None
    found = gateway_samples(pushgateway)
    group = {"job": "datahubsync", "instance": socket.gethostname()}

    def at(name: str, **labels: str) -> float:
        return found[(name, frozenset({**group, **labels}.items()))]

    assert at("datahubsync_last_success_timestamp_seconds", dataset="prices") == last_ok["prices"].timestamp()
    assert at("datahubsync_up_to_date", dataset="quotes") == 0
    assert at("datahubsync_runs_total", dataset="quotes", result="download_failed") == 1
    assert at("datahubsync_downloaded_bytes_total", dataset="prices") == 4_100_000
    assert at("datahubsync_download_retries_total", dataset="quotes") == 5
    assert at("datahubsync_sync_duration_seconds_count", dataset="prices") == 1
    assert not any(name == "datahubsync_ready" for name, _ in found)

    # The next run's push replaces the group: a dataset dropped from the config does not linger.
    assert push(make_config(tmp_path, ["prices"]), pushgateway) is None
    assert {dict(labels).get("dataset") for name, labels in gateway_samples(pushgateway) if "dataset" in dict(labels)} == {"prices"}

