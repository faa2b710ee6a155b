"""Run a parsed crontab the way supercronic does: one loop per job line, each job in its own process group."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO

from app.crontab.parser import Crontab, Job

Clock = Callable[[], datetime]

DEFAULT_STOP_TIMEOUT = 8.0
# How often a waiting job looks at the stop flag; Popen.wait(timeout) polls the same way.
_POLL_SECONDS = 0.05
# Long sleeps are cut into naps so a jump of the wall clock (suspend, NTP step) is noticed.
_MAX_NAP_SECONDS = 30.0
# After SIGKILL, how long to wait for the group to die and its output pipes to close.
_KILL_GRACE_SECONDS = 2.0
_LINE_LIMIT = 64 * 1024  # longer lines are logged in pieces, as supercronic's line reader does


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class OutputLine:
    """One line a job printed, as its pump read it."""

    job: int | str          # the job's position in the crontab ("start" for the daemon's start-up sync)
    stream: str             # "stdout" or "stderr"
    text: str               # without its line break
    continued: bool         # the rest of a line longer than the line limit, read in pieces


Output = Callable[[OutputLine], None]


def log_output(logger: logging.Logger) -> Output:
    """Each line as an INFO record carrying the job's position and stream (supercronic's way)."""
    def write(line: OutputLine) -> None:
        logger.info(line.text, extra={"job": line.job, "stream": line.stream})
    return write


def job_environment(crontab: Crontab, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The jobs' environment: the process's own (or `base_env`) overlaid with the crontab's variables."""
    return {**(os.environ if base_env is None else base_env), **crontab.env}


def run_crontab(
    crontab: Crontab,
    *,
    stop: threading.Event,
    logger: logging.Logger,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    base_env: Mapping[str, str] | None = None,
    now: Clock = utc_now,
    output: Output | None = None,
) -> None:
    """Run every job of `crontab` on its schedule until `stop` is set.

    Then no job starts any more; running jobs get SIGTERM (their whole process group), and SIGKILL
    if still running after `stop_timeout` seconds. Returns once they are gone.
    """
    CrontabRunner(crontab, stop=stop, logger=logger, stop_timeout=stop_timeout, base_env=base_env,
                  now=now, output=output).run()


class CrontabRunner:
    """run_crontab() as an object, so the daemon can ask while it runs: when does a job run next, and
    are the job loops still going?"""

    def __init__(self, crontab: Crontab, *, stop: threading.Event, logger: logging.Logger,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT, base_env: Mapping[str, str] | None = None,
                 now: Clock = utc_now, output: Output | None = None) -> None:
        env = job_environment(crontab, base_env)
        self._stop, self._logger, self._stop_timeout, self._now = stop, logger, stop_timeout, now
        self._loops = [_JobLoop(job, shell=crontab.shell, env=env, logger=logger, stop=stop,
                                stop_timeout=stop_timeout, now=now, output=output or log_output(logger))
                       for job in crontab.jobs]
        self._threads: list[threading.Thread] = []

    def run(self) -> None:
        self._threads = [threading.Thread(target=loop.run, name=f"cron-job-{loop.job.position}", daemon=True)
                         for loop in self._loops]
        for thread in self._threads:
            thread.start()
        self._stop.wait()
        self._logger.info("stopping: no new jobs; waiting up to %.0f s for running jobs", self._stop_timeout)
        deadline = time.monotonic() + self._stop_timeout + _KILL_GRACE_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if stuck := [thread.name for thread in self._threads if thread.is_alive()]:
            self._logger.warning("giving up waiting for %s", ", ".join(stuck))

    def next_run(self) -> datetime | None:
        """The earliest time a job is due next; None when none ever runs again or once stopping.

        Before run() starts the loops, it is each schedule's next time after now.
        """
        if self._stop.is_set():
            return None
        times = [due for loop in self._loops if (due := loop.next_due(self._now)) is not None]
        return min(times, default=None)

    def alive(self) -> bool:
        """False once stopping, or when a job loop died of a bug (that job would never run again)."""
        return not self._stop.is_set() and not any(loop.crashed for loop in self._loops)


def run_job_now(
    command: str,
    *,
    shell: str,
    env: Mapping[str, str],
    logger: logging.Logger,
    position: int | str,
    stop: threading.Event,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    output: Output | None = None,
) -> int:
    """Run `shell -c command` once in its own process group, handing its output to `output` line by
    line (default: an INFO record per line on `logger`).

    Returns the exit status (128 + N when killed by signal N, 127 when it cannot start). If `stop`
    is set meanwhile, the group gets SIGTERM, then SIGKILL after `stop_timeout` seconds.
    """
    extra = {"job": position}
    logger.info("starting: %s", command, extra=extra)
    try:
        process = subprocess.Popen(
            [shell, "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(env), start_new_session=True)
    except OSError as exc:
        logger.error("cannot start the job with shell %s: %s", shell, exc, extra=extra)
        return 127
    assert process.stdout is not None and process.stderr is not None
    write = output or log_output(logger)
    pumps = [_pump(process.stdout, "stdout", write, position),
             _pump(process.stderr, "stderr", write, position)]
    returncode = _supervise(process, pumps, stop, stop_timeout, logger, extra)
    if returncode == 0:
        logger.info("job succeeded", extra=extra)
    elif returncode < 0:
        logger.error("exit status %d (killed by %s)", 128 - returncode, _signal_name(-returncode),
                     extra=extra)
    else:
        logger.error("exit status %d", returncode, extra=extra)
    # Popen reports death by signal N as -N; callers get the shell's convention, 128 + N.
    return 128 - returncode if returncode < 0 else returncode


class _JobLoop:
    """One crontab line: sleep until its next time, run it, repeat. A job never overlaps itself."""

    def __init__(self, job: Job, *, shell: str, env: Mapping[str, str], logger: logging.Logger,
                 stop: threading.Event, stop_timeout: float, now: Clock, output: Output) -> None:
        self.job = job
        self._shell, self._env, self._logger, self._output = shell, env, logger, output
        self._stop, self._stop_timeout, self._now = stop, stop_timeout, now
        self._extra = {"job": job.position}
        self.crashed = False
        self._started = False
        self._due: datetime | None = None       # what the loop waits for; while running, the run after

    def next_due(self, now: Clock) -> datetime | None:
        if not self._started:
            return self.job.schedule.next(now())
        return self._due

    def run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug here must not end the other jobs silently
            self.crashed = True
            self._due = None
            self._logger.exception("job loop failed; the job will not run again", extra=self._extra)

    def _loop(self) -> None:
        due = self._due = self.job.schedule.next(self._now())
        self._started = True
        while due is not None:
            self._logger.debug("next run at %s", due.isoformat(), extra=self._extra)
            if not self._sleep_until(due):
                return
            self._due = self.job.schedule.next(due)
            run_job_now(self.job.command, shell=self._shell, env=self._env, logger=self._logger,
                        position=self.job.position, stop=self._stop, stop_timeout=self._stop_timeout,
                        output=self._output)
            due = self._due = self._following(due)
        if not self._stop.is_set():
            self._logger.warning("schedule '%s' never fires again; the job stays idle",
                                 self.job.schedule, extra=self._extra)

    def _following(self, due: datetime) -> datetime | None:
        """The run after `due`; runs whose time passed while the job was running are skipped."""
        following = self.job.schedule.next(due)
        current = self._now()
        if following is None or following > current:
            return following
        resumed = self.job.schedule.next(current)
        self._logger.warning(
            "job was still running at %s: skipped runs up to now; next run at %s",
            following.isoformat(), resumed.isoformat() if resumed else "never", extra=self._extra)
        return resumed

    def _sleep_until(self, due: datetime) -> bool:
        """Wait for `due`; False if `stop` was set first."""
        while (remaining := (due - self._now()).total_seconds()) > 0:
            if self._stop.wait(min(remaining, _MAX_NAP_SECONDS)):
                return False
        return not self._stop.is_set()


def _pump(stream: IO[bytes], name: str, output: Output, position: int | str) -> threading.Thread:
    """Hand each line of a job's stdout or stderr to `output` as it comes, in a thread of its own."""

    def drain() -> None:
        continued = False
        with stream:
            for raw in iter(lambda: stream.readline(_LINE_LIMIT), b""):
                line = raw.decode("utf-8", "replace").removesuffix("\n").removesuffix("\r")
                try:
                    output(OutputLine(position, name, line, continued))
                except Exception:  # the pipe must still be drained, or the job blocks on a full pipe
                    logging.getLogger(__name__).debug("cannot pass a job's line on", exc_info=True)
                continued = not raw.endswith(b"\n")

    thread = threading.Thread(target=drain, name=f"cron-job-{position}-{name}", daemon=True)
    thread.start()
    return thread


def _supervise(process: subprocess.Popen[bytes], pumps: list[threading.Thread], stop: threading.Event,
               stop_timeout: float, logger: logging.Logger, extra: dict[str, int | str]) -> int:
    """Wait for the job and its output; once `stop` is set, SIGTERM the group, later SIGKILL it.

    Returns the raw Popen return code.
    """
    kill_at: float | None = None
    while not _finished(process, pumps, whole_group=kill_at is not None):
        if kill_at is None and stop.is_set():
            logger.info("stopping: sending SIGTERM to the job", extra=extra)
            _signal_group(process, signal.SIGTERM)
            kill_at = time.monotonic() + stop_timeout
        elif kill_at is not None and time.monotonic() >= kill_at:
            logger.warning("job still running %.1f s after SIGTERM: sending SIGKILL",
                           stop_timeout, extra=extra)
            _signal_group(process, signal.SIGKILL)
            break
        time.sleep(_POLL_SECONDS)
    process.wait()
    for pump in pumps:
        # Something outside the group may still hold the pipes; the pumps are daemons then.
        pump.join(_KILL_GRACE_SECONDS)
    return process.returncode


def _finished(process: subprocess.Popen[bytes], pumps: list[threading.Thread], *,
              whole_group: bool) -> bool:
    if process.poll() is None or any(pump.is_alive() for pump in pumps):
        return False
    # When stopping, children the shell left behind must be gone too before we call it done.
    return not (whole_group and _group_exists(process.pid))


def _group_exists(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    # start_new_session made the job a group leader: its pid is the group id.
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
