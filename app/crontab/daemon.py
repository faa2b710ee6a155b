"""`cron`: run the crontab forever inside the container; missing settings never stop it."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shlex
import shutil
import signal
import stat
import sys
import threading
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from app.core.config import Config, masked
from app.core.errors import ConfigError, ExitCode
from app.core.fsutil import is_empty_dir
from app.core.secrets import redact
from app.core.state import import_candidates
from app.core.timeutil import get_zone, utcnow
from app.crontab.parser import Crontab, CrontabError, parse_crontab
from app.crontab.scheduler import CrontabRunner, OutputLine, run_job_now
from app.observe.health import load_state, record_daemon_start

if TYPE_CHECKING:                     # the listener pulls in prometheus_client: only loaded when one is asked for
    from app.observe.listen import Listener

log = logging.getLogger("datahubsync.cron")
MAX_CRONTAB_BYTES = 1 << 20         # a crontab is a few lines; /dev/zero is not one
ENTRYPOINT = Path(__file__).resolve().parents[2] / "entrypoint.py"
# The start of a line in the text log format (app/logs.py): time, then level.
TEXT_LOG_LINE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2} (?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


def program_command() -> str:
    """How a job calls this program: `datahubsync` in the image, the interpreter + entrypoint elsewhere."""
    if shutil.which("datahubsync"):
        return "datahubsync"
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(ENTRYPOINT))}"


def crontab_source(explicit: str | None, environ: Mapping[str, str], config: Config) -> tuple[str, str]:
    """(text, where it came from): --crontab, else $DATAHUB_CRONTAB, else one job from schedule.cron."""
    path = explicit or environ.get("DATAHUB_CRONTAB")
    if path:
        return read_crontab(path), path
    return f"{config.schedule.cron} datahubsync sync\n", f"schedule.cron ({config.schedule.cron!r})"


def read_crontab(path: str) -> str:
    """The text of a crontab file; ConfigError naming the file when it cannot be read as one."""
    try:
        # O_NONBLOCK: a FIFO must not hang the start; it has no effect on a regular file
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            kind = "Is a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ConfigError(f"cannot read crontab {path}: {kind}")
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_CRONTAB_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read crontab {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CRONTAB_BYTES:
        raise ConfigError(f"cannot read crontab {path}: larger than {MAX_CRONTAB_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read crontab {path}: not UTF-8 text (byte {exc.start})") from None


def load_crontab(text: str, source: str) -> Crontab:
    try:
        return parse_crontab(text)
    except CrontabError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def in_schedule_zone(crontab: Crontab, zone_name: str | None) -> Crontab:
    """The crontab with its schedules read in schedule.timezone, unless the file sets CRON_TZ (which
    wins, as in supercronic). Without either, the schedules stay in the process zone ($TZ)."""
    if crontab.tz is not None or not zone_name:
        return crontab
    try:
        zone = get_zone(zone_name)
    except ValueError as exc:
        raise ConfigError(f"schedule.timezone: {exc}") from None
    jobs = [dataclasses.replace(job, schedule=dataclasses.replace(job.schedule, tz=zone)) for job in crontab.jobs]
    return dataclasses.replace(crontab, jobs=jobs)


def _zone_origin(crontab: Crontab, config: Config) -> str:
    if crontab.tz is not None:
        return f"{crontab.env.get('CRON_TZ') or 'UTC'} (CRON_TZ in the crontab)"
    if config.schedule.timezone:
        return f"{config.schedule.timezone} (schedule.timezone)"
    return f"{os.environ.get('TZ') or 'the system zone'} (TZ)"


def wants_initial_sync(config: Config, flag: bool) -> bool:
    if flag or config.schedule.run_on_start == "always":
        return True
    if config.schedule.run_on_start == "never":
        return False
    return any(is_empty_dir(ds.local_dir) for ds in config.datasets) or not config.datasets


def job_environment(config: Config, config_path: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if config_path:
        env["DATAHUB_CONFIG"] = str(Path(config_path).resolve())
    if config.schedule.timezone:
        env["TZ"] = config.schedule.timezone
    # `datahubsync` in a crontab line means this program, also outside the image
    if not shutil.which("datahubsync"):
        shim = Path(os.environ.get("TMPDIR", "/tmp")) / f"datahubsync-bin-{os.getuid()}"
        shim.mkdir(exist_ok=True)
        target = shim / "datahubsync"
        target.write_text(f"#!/bin/sh\nexec {program_command()} \"$@\"\n")
        target.chmod(0o755)
        env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    return env


class JobOutput:
    """Where the jobs' output lines go.

    A line that already is a log line in the daemon's own format (a `datahubsync` job logs exactly
    as the daemon does: text lines start with time and level, JSON lines are objects) is written
    as it is, to the daemon's console handlers only: the job wrote its log file itself. Any other
    line (a user's own command, a traceback) is logged by the daemon, with the job's position and
    stream, so the log stays one format. Each line is written whole, holding the handler's lock,
    so jobs printing at the same time interleave by whole lines, never inside one.
    """

    def __init__(self, logger: logging.Logger, json_format: bool) -> None:
        self._logger = logger
        self._json = json_format
        self._lock = threading.Lock()
        self._passing: set[tuple[int | str, str]] = set()     # (job, stream) in a passed-on long line

    def __call__(self, line: OutputLine) -> None:
        key = (line.job, line.stream)
        with self._lock:
            passing = key in self._passing if line.continued else self._is_log_line(line.text)
            (self._passing.add if passing else self._passing.discard)(key)
        if passing:
            self._write(redact(line.text))
        else:
            self._logger.info(line.text, extra={"job": line.job, "stream": line.stream})

    def _is_log_line(self, text: str) -> bool:
        if not self._json:
            return TEXT_LOG_LINE.match(text) is not None
        if not text.startswith("{"):
            return False
        try:
            return isinstance(json.loads(text), dict)
        except (ValueError, RecursionError):
            return False

    def _write(self, text: str) -> None:
        for handler in self._console_handlers():
            handler.acquire()
            try:
                handler.stream.write(text + handler.terminator)
                handler.flush()
            finally:
                handler.release()

    def _console_handlers(self) -> list[logging.StreamHandler[Any]]:
        found: list[logging.StreamHandler[Any]] = []
        logger: logging.Logger | None = self._logger
        while logger is not None:
            found += [h for h in logger.handlers
                      if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
            logger = logger.parent if logger.propagate else None
        return found


class StateView:
    """The datasets' state for readiness, read again whenever state.json (or a file it would be
    imported from) changed: a probe every few seconds costs a few stat() calls, and a corrupt file
    is warned about once, not at every probe."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._paths = (config.state_dir / "state.json", *import_candidates(config.state_dir, config.source))
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._state: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        key = tuple(_file_key(path) for path in self._paths)
        with self._lock:
            if key != self._key:
                self._state, self._key = load_state(self._config), key
            return self._state


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


def start_observability(address: str, config: Config, runner: CrontabRunner, clock: Callable[[], datetime],
                        started: datetime) -> Listener:
    """The listener on `address`: /healthz from the scheduler, /readyz and /metrics from the state."""
    from prometheus_client import CollectorRegistry

    from app.observe.listen import start_listener
    from app.observe.metrics import DataHubCollector
    from app.observe.readiness import problems

    def next_run() -> float | None:
        due = runner.next_run()
        return None if due is None else due.timestamp()

    state = StateView(config)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DataHubCollector(config, clock, next_run, daemon_started=lambda: started))
    return start_listener(address, config, registry,
                          ready=lambda: problems(config, state(), clock(), started), alive=runner.alive)


def run_daemon(config: Config, crontab: Crontab, *, config_path: str | None, run_on_start: bool,
               stop: threading.Event | None = None, listen: str | None = None,
               clock: Callable[[], datetime] = utcnow) -> ExitCode:
    """Run the crontab until a stop signal (or `stop`). `listen` (else metrics.listen) starts the
    HTTP listener; `clock` is the time readiness and the metrics are judged by (tests move it)."""
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping (running jobs get the signal and up to 8 s)", signal.Signals(signum).name)
        stop.set()

    crontab = in_schedule_zone(crontab, config.schedule.timezone)
    address = listen or config.metrics.listen
    on_main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGTERM, signal.SIGINT) if on_main_thread else ()
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    listener = None
    try:
        log.info("datahubsync cron starting: %d job(s); effective config %s", len(crontab.jobs), masked(config))
        log.info("schedules run in time zone %s", _zone_origin(crontab, config))
        for warning in config.warnings:
            log.warning(warning)
        for gap in config.missing():
            log.error("%s; the daemon stays up and the jobs will report it until it is set", gap)
        env = job_environment(config, config_path)
        output = JobOutput(log, config.logging.format == "json")
        runner = CrontabRunner(crontab, stop=stop, logger=log, base_env=env, output=output)
        started = clock()
        if address:
            listener = start_observability(address, config, runner, clock, started)
        if config.state_dir and not config.missing():
            try:
                config.state_dir.mkdir(parents=True, exist_ok=True)
                record_daemon_start(config, started)
            except OSError as exc:
                log.error("cannot create the state directory %s: %s", config.state_dir, exc.strerror)
        if wants_initial_sync(config, run_on_start):
            # before the schedule starts, so the first scheduled run never overlaps it
            log.info("running a sync at start (schedule.run_on_start: %s)", "always" if run_on_start else config.schedule.run_on_start)
            run_job_now(command="datahubsync sync", shell=crontab.shell, env={**env, **crontab.env}, logger=log,
                        position="start", stop=stop, output=output)
        if not stop.is_set():
            runner.run()
    finally:
        if listener is not None:
            listener.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return ExitCode.OK
