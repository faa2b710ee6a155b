"""`cron`: run the crontab forever inside the container; missing settings never stop it."""
from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Mapping

from .config import Config, masked
from .crontab import Crontab, CrontabError, parse_crontab
from .errors import ConfigError, ExitCode
from .fsutil import is_empty_dir
from .status import record_daemon_start
from .timeutil import get_zone

log = logging.getLogger("datahubsync.cron")
MAX_CRONTAB_BYTES = 1 << 20         # a crontab is a few lines; /dev/zero is not one
ENTRYPOINT = Path(__file__).resolve().parent.parent / "entrypoint.py"


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


def run_daemon(config: Config, crontab: Crontab, *, config_path: str | None, run_on_start: bool,
               stop: threading.Event | None = None) -> ExitCode:
    from .scheduler import run_crontab, run_job_now
    stop = stop or threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("received %s: stopping (running jobs get the signal and up to 8 s)", signal.Signals(signum).name)
        stop.set()

    crontab = in_schedule_zone(crontab, config.schedule.timezone)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("datahubsync cron starting: %d job(s); effective config %s", len(crontab.jobs), masked(config))
        log.info("schedules run in time zone %s", _zone_origin(crontab, config))
        for warning in config.warnings:
            log.warning(warning)
        for gap in config.missing():
            log.error("%s; the daemon stays up and the jobs will report it until it is set", gap)
        if config.state_dir and not config.missing():
            try:
                config.state_dir.mkdir(parents=True, exist_ok=True)
                record_daemon_start(config)
            except OSError as exc:
                log.error("cannot create the state directory %s: %s", config.state_dir, exc.strerror)
        env = job_environment(config, config_path)
        if wants_initial_sync(config, run_on_start):
            # before the schedule starts, so the first scheduled run never overlaps it
            log.info("running a sync at start (schedule.run_on_start: %s)", "always" if run_on_start else config.schedule.run_on_start)
            run_job_now(command="datahubsync sync", shell=crontab.shell, env={**env, **crontab.env}, logger=log,
                        position="start", stop=stop)
        if not stop.is_set():
            run_crontab(crontab, stop=stop, logger=log, base_env=env)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped")
    return ExitCode.OK
