"""Prometheus metrics: what each sync run records, and the collector that exports it with the state.

Syncs run as child processes of the daemon, so nothing is counted in memory: each run adds its
outcome to <state_dir>/metrics.json (under the state directory's lock), and DataHubCollector reads
that file and state.json at every collection. Every configured dataset has every metric from the
start (counters at zero, gauges NaN until known), so alerts are never blind. One-shot runs write the
same set to a node_exporter textfile or push it to a Pushgateway.
"""
from __future__ import annotations

import http.client
import json
import logging
import math
import re
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway, write_to_textfile

from app import __version__
from app.core.config import Config
from app.core.errors import ConfigError
from app.core.fsutil import atomic_write
from app.core.result import FAIL_STATUSES, Status, SyncResult
from app.core.state import StateStore, import_candidates
from app.core.timeutil import from_iso, get_zone, utcnow
from app.observe.readiness import dataset_problem

log = logging.getLogger("datahubsync.metrics")

METRICS_FILE = "metrics.json"
FORMAT_VERSION = 1
# Upper bounds (seconds) of the sync duration histogram: an up-to-date check takes about a second,
# a large package many minutes.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# Results every dataset shows from the start, so `increase(...{result="download_failed"}[1d])` has a series.
KNOWN_RESULTS = (Status.SUCCESS, Status.UP_TO_DATE, *FAIL_STATUSES)
INTERRUPTED = "interrupted"
RESULT_LABEL = re.compile(r"^[a-z][a-z_]{0,39}$")
MAX_FILE_BYTES = 8 << 20          # far beyond any real metrics.json; a bigger one is not ours
PREFIX = "datahubsync"
NAN = float("nan")


# ---- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = None        # "HOST:PORT" or ":PORT" (all interfaces); None = no listener
    textfile: str | None = None      # node_exporter textfile (*.prom) written after one-shot runs
    pushgateway: str | None = None   # Pushgateway URL one-shot runs push to


LISTEN = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]*)):(?P<port>[0-9]{1,5})$")


def split_listen(text: str, key: str = "metrics.listen", lowest: int = 1) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' or ':PORT' (every interface) -> (host, port); ConfigError naming `key`.

    `lowest=0` lets port 0 (any free port) through, for the listener's own tests.
    """
    match = LISTEN.fullmatch(text)
    port = int(match.group("port")) if match else -1
    if not match or not lowest <= port <= 65535:
        raise ConfigError(f"{key}: expected 'HOST:PORT' or ':PORT' with a port from {lowest} to 65535, got {text!r}")
    host = match.group("ipv6") or match.group("host") or ""
    return host, port


def _parse_listen(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected 'HOST:PORT' or ':PORT', got {type(value).__name__} {value!r}")
    split_listen(value.strip(), key)
    return value.strip()


def _parse_textfile(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected the path of a .prom file, got {type(value).__name__} {value!r}")
    if not value.endswith(".prom") or value.endswith("/.prom") or value == ".prom" or "\0" in value:
        raise ConfigError(f"{key}: node_exporter's textfile collector reads only files named *.prom, got {value!r}")
    return value


def _parse_pushgateway(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {type(value).__name__}")
    try:
        parts = urlsplit(value.strip())
        _ = parts.port                  # raises ValueError for a port out of range
    except ValueError:
        raise ConfigError(f"{key}: not a valid URL (is the port a number from 1 to 65535?): {_safe_url(value)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {_safe_url(value)!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key}: the Pushgateway URL takes no query or fragment, got {_safe_url(value)!r}")
    return value.strip().rstrip("/")


def parse_metrics(raw: Any, key: str = "metrics") -> MetricsConfig:
    """Validate the `metrics:` section (a mapping, or None for all off) into a MetricsConfig."""
    if raw is None:
        return MetricsConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}: expected a mapping with listen, textfile and pushgateway, got {type(raw).__name__}")
    checks = {"listen": _parse_listen, "textfile": _parse_textfile, "pushgateway": _parse_pushgateway}
    values = {}
    for name, value in raw.items():
        if name not in checks:
            raise ConfigError(f"{key}.{name}: unknown key (known: {', '.join(checks)})")
        values[name] = checks[name](value, f"{key}.{name}")
    return MetricsConfig(**values)


def _safe_url(url: str) -> str:
    """The URL without its user:password, for messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "(unreadable URL)"


# ---- metrics.json: what the runs recorded -------------------------------------------------------

def _count(value: Any) -> int | None:
    """A non-negative whole count, or None for anything else (a hostile file's strings, -1, 1e400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value >= 0 else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _bucket_index(seconds: float) -> int:
    """Index into DURATION_BUCKETS of the first bound >= seconds; len(DURATION_BUCKETS) for +Inf."""
    for i, bound in enumerate(DURATION_BUCKETS):
        if seconds <= bound:
            return i
    return len(DURATION_BUCKETS)


def _bound_key(index: int) -> str:
    return "+Inf" if index == len(DURATION_BUCKETS) else repr(DURATION_BUCKETS[index])


def _empty_record() -> dict[str, Any]:
    return {"runs": {}, "duration": {"buckets": {}, "sum": 0.0, "count": 0}, "downloaded_bytes": 0, "retries": 0}


def _clean_record(raw: Any) -> dict[str, Any]:
    """One dataset's record with every unusable value dropped; the structure is always complete."""
    record = _empty_record()
    if not isinstance(raw, Mapping):
        return record
    runs = raw.get("runs")
    if isinstance(runs, Mapping):
        record["runs"] = {k: n for k, v in runs.items()
                          if isinstance(k, str) and RESULT_LABEL.fullmatch(k) and (n := _count(v)) is not None}
    duration = raw.get("duration")
    if isinstance(duration, Mapping):
        buckets: dict[str, int] = {}
        stored = duration.get("buckets")
        for bound, value in (stored.items() if isinstance(stored, Mapping) else ()):
            n = _count(value)
            try:
                upper = float(bound) if isinstance(bound, str) and len(bound) < 32 else None
            except ValueError:
                upper = None
            if n is None or upper is None or math.isnan(upper):
                continue
            # A bound from older buckets is counted under the smallest current one above it (still correct).
            key = _bound_key(_bucket_index(upper))
            buckets[key] = buckets.get(key, 0) + n
        total = _seconds(duration.get("sum"))
        count = _count(duration.get("count"))
        if total is not None and count is not None and count >= sum(buckets.values()):
            record["duration"] = {"buckets": buckets, "sum": total, "count": count}
    for field in ("downloaded_bytes", "retries"):
        n = _count(raw.get(field))
        if n is not None:
            record[field] = n
    return record


def read_metrics(state_dir: Path) -> dict[str, dict[str, Any]]:
    """{dataset: record} from metrics.json; a missing file is empty, a corrupt one empty with a warning."""
    path = state_dir / METRICS_FILE
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read %s (%s); counting runs from zero", path, exc.strerror or exc)
        return {}
    try:
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("datasets"), dict):
            raise ValueError("not a metrics file")
    except (ValueError, RecursionError) as exc:
        reason = exc if isinstance(exc, ValueError) and not isinstance(exc, UnicodeDecodeError) else type(exc).__name__
        log.warning("%s is corrupt (%s); counting runs from zero", path, reason)
        return {}
    return {name: _clean_record(raw) for name, raw in document["datasets"].items() if isinstance(name, str)}


def record_run(state_dir: Path, results: list[SyncResult], downloaded: Mapping[str, int],
               retries: Mapping[str, int]) -> None:
    """Add one run's per-dataset outcome to metrics.json (atomically). Call it holding the state lock.

    `downloaded` and `retries` hold bytes fetched from the hub and download retries, by dataset. An
    interrupted dataset counts as result "interrupted" and adds no duration (it was cut short).
    Never raises for a bad file: a run's metrics are not worth failing the run for.
    """
    datasets = read_metrics(state_dir)
    for result in results:
        record = datasets.setdefault(result.dataset_name, _empty_record())
        label = INTERRUPTED if result.interrupted else result.status
        if not isinstance(label, str) or not RESULT_LABEL.fullmatch(label):
            label = Status.ERROR
        record["runs"][label] = record["runs"].get(label, 0) + 1
        seconds = _seconds(result.duration)
        if not result.interrupted and seconds is not None:
            duration = record["duration"]
            key = _bound_key(_bucket_index(seconds))
            duration["buckets"][key] = duration["buckets"].get(key, 0) + 1
            duration["sum"] += seconds
            duration["count"] += 1
    for field, amounts in (("downloaded_bytes", downloaded), ("retries", retries)):
        for name, amount in amounts.items():
            n = _count(amount)
            if n:
                datasets.setdefault(name, _empty_record())[field] += n
    document = {"version": FORMAT_VERSION, "datasets": datasets}
    path = state_dir / METRICS_FILE
    try:
        atomic_write(path, json.dumps(document, indent=1, sort_keys=True).encode("utf-8") + b"\n")
    except OSError as exc:
        log.warning("cannot record this run's metrics in %s: %s", path, exc.strerror or exc)


# ---- the collector ------------------------------------------------------------------------------

def _timestamp(text: Any) -> float:
    moment = from_iso(text) if isinstance(text, str) else None
    return moment.timestamp() if moment else NAN


def _gauge_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return NAN
    try:
        return float(value)
    except OverflowError:
        return NAN


def _up_to_date(entry: Mapping[str, Any]) -> float:
    status = entry.get("status")
    if not status:
        return NAN
    return 1.0 if status in (Status.SUCCESS, Status.UP_TO_DATE) else 0.0


class DataHubCollector:
    """Every metric for every configured dataset, read from state.json and metrics.json at collection.

    `clock` (aware UTC now) judges readiness; `next_run` gives the daemon's next scheduled run as Unix
    seconds (None when unknown or for one-shot runs). `with_ready` adds datahubsync_ready, which only
    a live collection keeps true: a textfile or a push would freeze it.
    """

    def __init__(self, config: Config, clock: Callable[[], datetime], next_run: Callable[[], float | None],
                 *, with_ready: bool = True, daemon_started: Callable[[], datetime | None] | None = None):
        self.config = config
        self.clock = clock
        self.next_run = next_run
        self.with_ready = with_ready
        self.daemon_started = daemon_started or self._read_daemon_start
        # Parsed files, reused while they are unchanged: a scrape every few seconds then costs two
        # stat() calls, and a corrupt file is warned about once per change, not once per scrape.
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[object, ...], Any]] = {}

    def _read_daemon_start(self) -> datetime | None:
        from app.observe.health import daemon_started
        return daemon_started(self.config)

    def _cached(self, path: Path, read: Callable[[], Any]) -> Any:
        try:
            stat = path.stat()
            key: tuple[object, ...] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        except OSError:
            # missing: what read() finds depends on the files it would import from (the original
            # client's .last_sync.json), so those decide whether to read again (and log again)
            key = ("missing", *(_stat_key(c) for c in import_candidates(self.config.state_dir, self.config.source)))
        with self._lock:
            hit = self._cache.get(path.name)
        if hit and hit[0] == key:
            return hit[1]
        value = read()
        with self._lock:
            self._cache[path.name] = (key, value)
        return value

    def _read_state(self) -> dict[str, Any]:
        try:
            zone = get_zone(self.config.hub.timezone)
            store = StateStore(self.config.state_dir / "state.json", zone,
                               import_candidates(self.config.state_dir, self.config.source))
            return store.datasets
        except RecursionError:
            log.warning("state file %s is corrupt (nested too deep); exporting no state", self.config.state_dir / "state.json")
            return {}

    def describe(self) -> list[Metric]:
        return []       # the set depends on the config only through labels; no need to collect at registration

    def collect(self) -> Iterator[Metric]:
        state = self._cached(self.config.state_dir / "state.json", self._read_state)
        runs = self._cached(self.config.state_dir / METRICS_FILE, lambda: read_metrics(self.config.state_dir))
        names = [ds.name for ds in self.config.datasets]
        entries = {name: state.get(name) if isinstance(state.get(name), dict) else {} for name in names}
        records = {name: runs.get(name) or _empty_record() for name in names}

        info = InfoMetricFamily(PREFIX, "DataHubSync's version")
        info.add_metric([], {"version": __version__})
        yield info

        gauges: list[tuple[str, str, Callable[[dict[str, Any]], float]]] = [
            ("last_success_timestamp_seconds", "When the last successful run (an up-to-date check counts) ended, Unix time",
             lambda e: _timestamp(e.get("last_ok_at") or e.get("synced_at"))),
            ("last_attempt_timestamp_seconds", "When the last run, successful or not, ended, Unix time",
             lambda e: _timestamp(e.get("attempted_at"))),
            ("installed_version_timestamp_seconds", "The hub's last_updated of the installed version, Unix time",
             lambda e: _timestamp(e.get("last_updated"))),
            ("up_to_date", "1 when the last run found or installed the hub's version, 0 when it failed",
             _up_to_date),
            ("installed_files", "Files in the installed version", lambda e: _gauge_value(e.get("files"))),
            ("installed_bytes", "Bytes of the installed version's files", lambda e: _gauge_value(e.get("bytes"))),
        ]
        for suffix, doc, value in gauges:
            family = GaugeMetricFamily(f"{PREFIX}_{suffix}", doc, labels=["dataset"])
            for name in names:
                family.add_metric([name], value(entries[name]))
            yield family

        if self.with_ready:
            now, started = self.clock(), self.daemon_started()
            ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 when the dataset passes the readiness check (/readyz), else 0",
                                      labels=["dataset"])
            for name in names:
                why = dataset_problem(entries[name], now, started, self.config.health.max_age, self.config.health.grace)
                ready.add_metric([name], 0.0 if why else 1.0)
            yield ready

        yield from self._counters(names, records)

        next_run = GaugeMetricFamily(f"{PREFIX}_next_run_timestamp_seconds", "The daemon's next scheduled run, Unix time")
        when = self.next_run()
        next_run.add_metric([], NAN if when is None else float(when))
        yield next_run

    def _counters(self, names: list[str], records: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        runs = CounterMetricFamily(f"{PREFIX}_runs", "Sync runs by result", labels=["dataset", "result"])
        for name in names:
            counted = records[name]["runs"]
            for result in (*KNOWN_RESULTS, *sorted(set(counted) - set(KNOWN_RESULTS))):
                runs.add_metric([name, result], counted.get(result, 0))
        yield runs

        duration = HistogramMetricFamily(f"{PREFIX}_sync_duration_seconds", "How long a dataset's sync took",
                                         labels=["dataset"])
        for name in names:
            stored = records[name]["duration"]
            cumulative, buckets = 0, []
            for i in range(len(DURATION_BUCKETS) + 1):
                cumulative += stored["buckets"].get(_bound_key(i), 0)
                le = "+Inf" if i == len(DURATION_BUCKETS) else _le(DURATION_BUCKETS[i])
                buckets.append((le, stored["count"] if i == len(DURATION_BUCKETS) else cumulative))
            duration.add_metric([name], buckets, sum_value=stored["sum"])
        yield duration

        for suffix, field, doc in (("downloaded_bytes", "downloaded_bytes", "Bytes downloaded from the hub"),
                                   ("download_retries", "retries", "Download attempts retried after an error")):
            family = CounterMetricFamily(f"{PREFIX}_{suffix}", doc, labels=["dataset"])
            for name in names:
                family.add_metric([name], records[name][field])
            yield family


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _le(bound: float) -> str:
    return str(int(bound)) + ".0" if bound.is_integer() else repr(bound)


def registry_for(config: Config, clock: Callable[[], datetime], next_run: Callable[[], float | None] = lambda: None,
                 *, with_ready: bool = True) -> CollectorRegistry:
    """A registry holding only DataHubCollector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DataHubCollector(config, clock, next_run, with_ready=with_ready))
    return registry


# ---- one-shot runs: textfile and Pushgateway ----------------------------------------------------

def write_textfile(config: Config, path: str) -> str | None:
    """Write the metrics for node_exporter's textfile collector (atomically); the problem, or None."""
    try:
        write_to_textfile(str(path), registry_for(config, utcnow, with_ready=False))
    except OSError as exc:
        return f"metrics.textfile: cannot write {path}: {exc.strerror or exc}"
    return None


def push(config: Config, url: str, job: str = "datahubsync", timeout: float = 5) -> str | None:
    """Replace this host's metrics on the Pushgateway at `url`; the problem (secrets left out), or None.

    A PUT of the whole group (job, instance=hostname), so a dataset dropped from the config does not
    linger there with its last values.
    """
    safe = _safe_url(url)
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return f"metrics.pushgateway: cannot read the URL {safe!r}"
    credentials = None if username is None and password is None else (unquote(username or ""), unquote(password or ""))

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Callable[[], None]:
        if credentials is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, *credentials)

    try:
        push_to_gateway(safe, job=job, registry=registry_for(config, utcnow, with_ready=False),
                        grouping_key={"instance": socket.gethostname()}, timeout=timeout, handler=handler)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"metrics.pushgateway: pushing to {safe} failed: {_reason(exc)}"
    return None


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)            # urllib's URLError wraps the socket error
    if isinstance(inner, BaseException):
        exc = inner
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__
