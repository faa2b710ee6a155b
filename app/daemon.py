"""`cron`: run the crontab forever inside the container; missing settings never stop it."""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Mapping

from .config import Config, masked
from .crontab import Crontab, CrontabError, parse_crontab
from .errors import ConfigError, ExitCode
from .fsutil import is_empty_dir
from .status import record_daemon_start

log = logging.getLogger("datahubsync.cron")
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
        try:
            return Path(path).read_text(encoding="utf-8"), path
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read crontab: {exc.strerror or exc}") from None
    return f"{config.schedule.cron} datahubsync sync\n", f"schedule.cron ({config.schedule.cron!r})"


def load_crontab(text: str, source: str) -> Crontab:
    try:
        return parse_crontab(text)
    except CrontabError as exc:
        raise ConfigError(f"{source}: {exc}") from None


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

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("datahubsync cron starting: %d job(s); effective config %s", len(crontab.jobs), masked(config))
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
