"""metrics: what runs record in metrics.json, what the collector exports, the textfile and the push."""
from __future__ import annotations

import base64
import json
import logging
import math
import socket
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Config, build_config
from app.core.errors import ConfigError
from app.observe.metrics import (DURATION_BUCKETS, KNOWN_RESULTS, METRICS_FILE, MetricsConfig, parse_metrics, push,
                         read_metrics, record_run, registry_for, split_listen, write_textfile)
from app.core.result import SyncResult
from app.core.timeutil import to_iso
from tests.helpers import dead_url
from tests.hubs.common import ServerThread

UTC = timezone.utc
NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=UTC)
PER_DATASET = ("datahubsync_last_success_timestamp_seconds", "datahubsync_last_attempt_timestamp_seconds",
               "datahubsync_installed_version_timestamp_seconds", "datahubsync_up_to_date",
               "datahubsync_installed_files", "datahubsync_installed_bytes", "datahubsync_ready",
               "datahubsync_downloaded_bytes_total", "datahubsync_download_retries_total")


def config(tmp_path: Path, datasets: list[str] | None = None, state_dir: Path | None = None, **health: float) -> Config:
    data: dict[str, Any] = {"hub": {"url": "http://127.0.0.1:9"}, "datasets": datasets or ["ds"],
                            "sync": {"data_root": str(tmp_path / "data"), "state_dir": str(state_dir) if state_dir else None}}
    if health:
        data["health"] = health
    return build_config(data)


def write_state(cfg: Config, datasets: dict) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.state_dir / "state.json").write_text(json.dumps({"version": 1, "datasets": datasets}))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from the Prometheus text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(cfg: Config, clock: datetime = NOW, next_run: float | None = None, **kw: Any) -> dict:
    registry = registry_for(cfg, lambda: clock, lambda: next_run, **kw)
    return samples(generate_latest(registry).decode())


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def isnan(number: float) -> bool:
    return isinstance(number, float) and math.isnan(number)


# ---- configuration ------------------------------------------------------------------------------

def test_everything_is_off_by_default() -> None:
    assert parse_metrics(None) == MetricsConfig(None, None, None)
    assert parse_metrics({}) == MetricsConfig(None, None, None)
    assert parse_metrics({"listen": "", "textfile": None, "pushgateway": ""}) == MetricsConfig(None, None, None)


def test_valid_settings() -> None:
    got = parse_metrics({"listen": ":9464", "textfile": "/var/lib/node_exporter/datahubsync.prom",
                         "pushgateway": "http://pushgateway.monitoring:9091/"})
    assert got == MetricsConfig(":9464", "/var/lib/node_exporter/datahubsync.prom", "http://pushgateway.monitoring:9091")


@pytest.mark.parametrize(("text", "expected"), [
    (":9464", ("", 9464)), ("127.0.0.1:1", ("127.0.0.1", 1)), ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("localhost:8080", ("localhost", 8080)), ("[::1]:9464", ("::1", 9464)), ("[::]:80", ("::", 80)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert split_listen(text) == expected
    assert parse_metrics({"listen": text}).listen == text
    assert parse_metrics({"listen": f" {text}\n"}).listen == text         # as an environment variable may carry it


@pytest.mark.parametrize("text", ["9464", ":0", ":65536", "host:", "host", ":port", "::1:9464", "a b:80",
                                  ":+80", ":٩٠", "http://x:80", "[::1]", ":99999999999"])
def test_bad_listen_addresses_name_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_metrics({"listen": text}, key="config.metrics")
    assert str(caught.value).startswith("config.metrics.listen: expected 'HOST:PORT' or ':PORT'")
    assert repr(text) in str(caught.value)


@given(port=st.integers(min_value=-10**6, max_value=10**6))
def test_a_listen_port_is_accepted_exactly_from_1_to_65535(port: int) -> None:
    text = f":{port}"
    if 1 <= port <= 65535:
        assert split_listen(text) == ("", port)
    else:
        with pytest.raises(ConfigError, match=r"^metrics\.listen: "):
            split_listen(text)


@pytest.mark.parametrize(("raw", "message"), [
    ("not a mapping", "metrics: expected a mapping"),
    ({"port": 9464}, "metrics.port: unknown key (known: listen, textfile, pushgateway)"),
    ({"listen": 9464}, "metrics.listen: expected 'HOST:PORT' or ':PORT', got int 9464"),
    ({"textfile": "/var/lib/node_exporter/datahubsync.txt"}, "metrics.textfile: node_exporter's textfile collector reads only files named *.prom"),
    ({"textfile": "/var/lib/node_exporter/.prom"}, "metrics.textfile: node_exporter's textfile collector reads only"),
    ({"textfile": ["a.prom"]}, "metrics.textfile: expected the path of a .prom file, got list"),
    ({"pushgateway": "pushgateway:9091"}, "metrics.pushgateway: expected an http:// or https:// URL"),
    ({"pushgateway": "ftp://pushgateway:9091"}, "metrics.pushgateway: expected an http:// or https:// URL"),
    ({"pushgateway": "http://pushgateway:9091/?x=1"}, "metrics.pushgateway: the Pushgateway URL takes no query"),
    ({"pushgateway": "http://pushgateway:99999"}, "metrics.pushgateway: not a valid URL"),
    ({"pushgateway": "http://[::1"}, "metrics.pushgateway: not a valid URL"),
    ({"pushgateway": 9091}, "metrics.pushgateway: expected an http:// or https:// URL, got int"),
])
def test_bad_settings_name_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_metrics(raw)
    assert str(caught.value).startswith(message)


def test_a_pushgateway_password_stays_out_of_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_metrics({"pushgateway": "http://user:s3cret@pushgateway:9091/?x=1"})
    assert "s3cret" not in str(caught.value) and "pushgateway:9091" in str(caught.value)


# ---- metrics.json -------------------------------------------------------------------------------

def test_runs_accumulate_across_runs(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    record_run(state_dir, [SyncResult.ok("a", "success", duration=3.5), SyncResult.failed("b", "download_failed", "x", duration=70)],
               {"a": 1000}, {"b": 2})
    record_run(state_dir, [SyncResult.ok("a", "up_to_date", duration=0.4), SyncResult.ok("b", "success", duration=20)],
               {"b": 500}, {"b": 1})
    got = read_metrics(state_dir)
    assert got["a"]["runs"] == {"success": 1, "up_to_date": 1}
    assert got["b"]["runs"] == {"download_failed": 1, "success": 1}
    assert got["a"]["downloaded_bytes"] == 1000 and got["b"]["downloaded_bytes"] == 500
    assert got["a"]["retries"] == 0 and got["b"]["retries"] == 3
    assert got["a"]["duration"]["count"] == 2 and got["a"]["duration"]["sum"] == pytest.approx(3.9)
    assert sorted(p.name for p in state_dir.iterdir()) == [METRICS_FILE]      # no temp file left


def test_an_interrupted_run_counts_apart_and_adds_no_duration(tmp_path: Path) -> None:
    stopped = SyncResult.failed("a", "error", "interrupted: SIGTERM (the next run resumes)", interrupted=True, duration=1.0)
    record_run(tmp_path, [stopped], {"a": 4096}, {})
    got = read_metrics(tmp_path)["a"]
    assert got["runs"] == {"interrupted": 1} and got["duration"]["count"] == 0 and got["downloaded_bytes"] == 4096


@pytest.mark.parametrize("content", [b"{broken", b"\xff\xfe", b"[]", b'{"datasets": []}', b"[" * 50000 + b"]" * 50000,
                                     b'{"datasets": {"a": {"runs": {"success": -3, "BAD LABEL": 1, "error": 1e400}}}}'])
def test_a_corrupt_metrics_file_counts_from_zero_with_a_warning(tmp_path: Path, content: bytes,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / METRICS_FILE).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="datahubsync.metrics"):
        record_run(tmp_path, [SyncResult.ok("a", "success", duration=1)], {}, {})
    assert read_metrics(tmp_path)["a"]["runs"] == {"success": 1}
    if not content.startswith(b'{"datasets": {'):
        assert any(METRICS_FILE in r.getMessage() and "counting runs from zero" in r.getMessage() for r in caplog.records)


def test_a_metrics_file_that_cannot_be_written_warns_and_the_run_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with caplog.at_level(logging.WARNING, logger="datahubsync.metrics"):
        record_run(blocker, [SyncResult.ok("a", "success")], {}, {})
    assert blocker.read_text() == "a file where the state directory should be"
    assert any("cannot record this run's metrics" in r.getMessage() for r in caplog.records)


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["success", "+Inf", "5.0", "1e309", "nan"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["datasets", "a", "runs", "duration", "buckets", "sum", "count", "downloaded_bytes",
                         "retries", "success", "error", "5.0", "+Inf", "version"]) | st.text(max_size=6),
        inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=json_documents)
def test_any_metrics_file_is_survived_and_repaired(tmp_path: Path, document: Any) -> None:
    (tmp_path / METRICS_FILE).write_text(json.dumps(document))
    record_run(tmp_path, [SyncResult.ok("a", "success", duration=2)], {"a": 10}, {"a": 1})
    got = read_metrics(tmp_path)["a"]
    assert got["runs"]["success"] >= 1 and got["downloaded_bytes"] >= 10 and got["retries"] >= 1
    assert got["duration"]["count"] >= sum(got["duration"]["buckets"].values()) >= 1
    found = scrape(config(tmp_path, ["a"], state_dir=tmp_path))
    buckets = [v for (name, labels), v in found.items() if name == "datahubsync_sync_duration_seconds_bucket"]
    assert buckets == sorted(buckets)           # cumulative, whatever the file held


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(durations=st.lists(st.floats(min_value=0, max_value=20000, allow_nan=False), min_size=1, max_size=15))
def test_the_histogram_matches_prometheus_clients_own(tmp_path: Path, durations: list[float]) -> None:
    """Observations recorded over separate runs (separate processes in the daemon) read back as one histogram."""
    state_dir = tmp_path / f"h{len(list(tmp_path.iterdir()))}"
    sync_cfg = config(tmp_path, ["a"], state_dir=state_dir)
    own = CollectorRegistry()
    reference = Histogram("datahubsync_sync_duration_seconds", "x", ["dataset"], registry=own, buckets=DURATION_BUCKETS)
    for seconds in durations:
        record_run(state_dir, [SyncResult.ok("a", "success", duration=seconds)], {}, {})
        reference.labels("a").observe(seconds)
    ours = {k: v for k, v in scrape(sync_cfg).items() if k[0].startswith("datahubsync_sync_duration_seconds")}
    theirs = {k: v for k, v in samples(generate_latest(own).decode()).items()
              if k[0].startswith("datahubsync_sync_duration_seconds") and not k[0].endswith("_created")}
    assert ours.keys() == theirs.keys()
    for key, number in theirs.items():
        assert ours[key] == pytest.approx(number), key


# ---- the collector ------------------------------------------------------------------------------

def test_every_metric_exists_for_every_dataset_before_any_run(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["prices", "bars"])
    found = scrape(cfg)
    for name in ("prices", "bars"):
        for metric in PER_DATASET:
            assert (metric, (("dataset", name),)) in found, (metric, name)
        for result in KNOWN_RESULTS:
            assert value(found, "datahubsync_runs_total", dataset=name, result=result) == 0
        assert value(found, "datahubsync_sync_duration_seconds_count", dataset=name) == 0
        assert value(found, "datahubsync_sync_duration_seconds_bucket", dataset=name, le="+Inf") == 0
        assert isnan(value(found, "datahubsync_last_success_timestamp_seconds", dataset=name))
        assert isnan(value(found, "datahubsync_up_to_date", dataset=name))
        assert value(found, "datahubsync_downloaded_bytes_total", dataset=name) == 0
    assert isnan(value(found, "datahubsync_next_run_timestamp_seconds"))
    assert value(found, "datahubsync_info", version=__import__("app").__version__) == 1
    assert not cfg.state_dir.exists()           # collecting writes nothing


def test_values_come_from_the_state_and_the_runs(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["prices", "bars"])
    ok_at, failed_at = NOW - timedelta(hours=2), NOW - timedelta(minutes=5)
    write_state(cfg, {
        "prices": {"status": "up_to_date", "last_updated": "2026-11-27T20:00:00Z", "synced_at": to_iso(NOW - timedelta(days=2)),
                   "last_ok_at": to_iso(ok_at), "attempted_at": to_iso(ok_at), "files": 1900, "bytes": 2_000_000_000},
        "bars": {"status": "download_failed", "error": "HTTP 503", "attempted_at": to_iso(failed_at)},
    })
    record_run(cfg.state_dir, [SyncResult.ok("prices", "up_to_date", duration=0.3),
                               SyncResult.failed("bars", "download_failed", "HTTP 503", duration=42)], {"bars": 77}, {"bars": 5})
    found = scrape(cfg, next_run=1_800_000_000.0)
    assert value(found, "datahubsync_last_success_timestamp_seconds", dataset="prices") == ok_at.timestamp()
    assert value(found, "datahubsync_last_attempt_timestamp_seconds", dataset="bars") == failed_at.timestamp()
    assert value(found, "datahubsync_installed_version_timestamp_seconds", dataset="prices") == datetime(2026, 11, 27, 20, tzinfo=UTC).timestamp()
    assert value(found, "datahubsync_up_to_date", dataset="prices") == 1
    assert value(found, "datahubsync_up_to_date", dataset="bars") == 0
    assert value(found, "datahubsync_installed_files", dataset="prices") == 1900
    assert value(found, "datahubsync_installed_bytes", dataset="prices") == 2_000_000_000
    assert isnan(value(found, "datahubsync_installed_files", dataset="bars"))
    assert value(found, "datahubsync_ready", dataset="prices") == 1
    assert value(found, "datahubsync_ready", dataset="bars") == 0
    assert value(found, "datahubsync_runs_total", dataset="prices", result="up_to_date") == 1
    assert value(found, "datahubsync_runs_total", dataset="bars", result="download_failed") == 1
    assert value(found, "datahubsync_sync_duration_seconds_bucket", dataset="bars", le="30.0") == 0
    assert value(found, "datahubsync_sync_duration_seconds_bucket", dataset="bars", le="60.0") == 1
    assert value(found, "datahubsync_sync_duration_seconds_sum", dataset="bars") == 42
    assert value(found, "datahubsync_downloaded_bytes_total", dataset="bars") == 77
    assert value(found, "datahubsync_download_retries_total", dataset="bars") == 5
    assert value(found, "datahubsync_next_run_timestamp_seconds") == 1_800_000_000


def test_the_ready_gauge_follows_the_clock(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_age=3600)
    write_state(cfg, {"ds": {"status": "success", "last_ok_at": to_iso(NOW)}})
    assert value(scrape(cfg, clock=NOW + timedelta(minutes=30)), "datahubsync_ready", dataset="ds") == 1
    assert value(scrape(cfg, clock=NOW + timedelta(hours=2)), "datahubsync_ready", dataset="ds") == 0


def test_datasets_no_longer_configured_are_not_exported(tmp_path: Path) -> None:
    cfg = config(tmp_path, ["kept"])
    write_state(cfg, {"kept": {"status": "success"}, "dropped": {"status": "success"}})
    record_run(cfg.state_dir, [SyncResult.ok("dropped", "success")], {}, {})
    assert not any(("dataset", "dropped") in labels for _, labels in scrape(cfg))


@pytest.mark.parametrize("content", ["{broken", "[" * 50000 + "]" * 50000,
                                     '{"version": 1, "datasets": {"ds": {"status": ["x"], "files": "many", "bytes": 1e999, '
                                     '"last_ok_at": 1e300, "attempted_at": {"a": 1}, "last_updated": "yesterday"}}}'])
def test_a_corrupt_state_file_exports_unknowns_never_fails(tmp_path: Path, content: str) -> None:
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    (cfg.state_dir / "state.json").write_text(content)
    found = scrape(cfg)
    assert isnan(value(found, "datahubsync_last_success_timestamp_seconds", dataset="ds"))
    assert isnan(value(found, "datahubsync_installed_files", dataset="ds"))


def test_repeated_scrapes_warn_once_about_a_corrupt_file_and_see_every_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    (cfg.state_dir / METRICS_FILE).write_text("{broken")
    registry = registry_for(cfg, lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="datahubsync.metrics"):
        for _ in range(5):
            generate_latest(registry)
    assert sum(METRICS_FILE in r.getMessage() for r in caplog.records) == 1
    record_run(cfg.state_dir, [SyncResult.ok("ds", "success")], {}, {})
    write_state(cfg, {"ds": {"status": "success", "last_ok_at": to_iso(NOW)}})
    found = samples(generate_latest(registry).decode())
    assert value(found, "datahubsync_runs_total", dataset="ds", result="success") == 1
    assert value(found, "datahubsync_last_success_timestamp_seconds", dataset="ds") == NOW.timestamp()


def test_the_imported_original_state_is_exported(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.state_dir.mkdir(parents=True)
    (cfg.state_dir / ".last_sync.json").write_text(json.dumps({"ds": "2026-11-28T08:00:00"}))
    found = scrape(cfg)
    assert value(found, "datahubsync_installed_version_timestamp_seconds", dataset="ds") == datetime(2026, 11, 28, 8, tzinfo=UTC).timestamp()
    assert value(found, "datahubsync_up_to_date", dataset="ds") == 1


# ---- one-shot runs: textfile and Pushgateway ----------------------------------------------------

def test_write_textfile(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    write_state(cfg, {"ds": {"status": "success", "last_ok_at": to_iso(NOW), "files": 3}})
    target = tmp_path / "textfile" / "datahubsync.prom"
    target.parent.mkdir()
    assert write_textfile(cfg, str(target)) is None
    found = samples(target.read_text())
    assert value(found, "datahubsync_last_success_timestamp_seconds", dataset="ds") == NOW.timestamp()
    assert not any(name == "datahubsync_ready" for name, _ in found)         # a file would freeze it
    assert [p.name for p in target.parent.iterdir()] == ["datahubsync.prom"]


def test_write_textfile_into_a_missing_folder_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "datahubsync.prom"
    problem = write_textfile(config(tmp_path), str(target))
    assert problem == f"metrics.textfile: cannot write {target}: No such file or directory"
    assert not (tmp_path / "nowhere").exists()


class Pushgateway(BaseHTTPRequestHandler):
    """Records what is pushed to it, like a Pushgateway's API would accept it."""

    received: list[tuple[str, str, dict[str, str], bytes]] = []
    status = 200

    def log_message(self, *args: Any) -> None:
        pass

    def _take(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.command, self.path, dict(self.headers), body))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = _take


@pytest.fixture
def gateway() -> Iterator[str]:
    Pushgateway.received = []
    Pushgateway.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pushgateway)
    thread = ServerThread(server)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        thread.stop()


def test_push_replaces_this_hosts_group(tmp_path: Path, gateway: str) -> None:
    cfg = config(tmp_path)
    write_state(cfg, {"ds": {"status": "success", "last_ok_at": to_iso(NOW)}})
    assert push(cfg, gateway + "/") is None
    [(method, path, headers, body)] = Pushgateway.received
    assert method == "PUT" and path == f"/metrics/job/datahubsync/instance/{socket.gethostname()}"
    assert "Authorization" not in headers
    found = samples(body.decode())
    assert value(found, "datahubsync_last_success_timestamp_seconds", dataset="ds") == NOW.timestamp()


def test_push_with_credentials_sends_basic_auth(tmp_path: Path, gateway: str) -> None:
    url = gateway.replace("http://", "http://metrics:pa%3Ass@")
    assert push(config(tmp_path), url, job="nightly") is None
    [(_, path, headers, _)] = Pushgateway.received
    assert path.startswith("/metrics/job/nightly/instance/")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"metrics:pa:ss").decode()


def test_a_refused_push_is_a_problem_without_the_password(tmp_path: Path, gateway: str) -> None:
    Pushgateway.status = 400
    problem = push(config(tmp_path), gateway.replace("http://", "http://user:s3cret@"))
    assert problem and problem.startswith(f"metrics.pushgateway: pushing to {gateway} failed: ") and "400" in problem
    assert "s3cret" not in problem and "\n" not in problem


def test_an_unreachable_pushgateway_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    url = dead_url()
    assert push(config(tmp_path), url, timeout=2) == f"metrics.pushgateway: pushing to {url} failed: Connection refused"


def test_a_silent_pushgateway_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)                       # accepts the connection, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = datetime.now(UTC)
        problem = push(config(tmp_path), url, timeout=0.5)
    assert problem and problem.startswith(f"metrics.pushgateway: pushing to {url} failed: ") and "timed out" in problem
    assert datetime.now(UTC) - started < timedelta(seconds=5)



def test_an_imported_original_state_is_read_once_not_at_every_scrape(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    from app.observe.metrics import registry_for
    from app.core.timeutil import utcnow
    cfg = build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": ["prices"],
                        "sync": {"data_root": str(tmp_path / "data"), "state_dir": str(tmp_path / "state")}})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / ".last_sync.json").write_text(json.dumps({"prices": "2026-11-28T08:30:00"}))
    registry = registry_for(cfg, utcnow)
    with caplog.at_level(logging.INFO, logger="datahubsync"):
        for _ in range(3):
            assert registry.get_sample_value("datahubsync_installed_version_timestamp_seconds", {"dataset": "prices"})
    assert sum("imported" in r.getMessage() for r in caplog.records) == 1
