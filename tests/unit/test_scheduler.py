"""The crontab runner with real child processes on every-second (7-field) schedules."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import pytest

from app.crontab.parser import Crontab, parse_crontab
from app.crontab.daemon import in_schedule_zone
from app.core.errors import ConfigError
from app.crontab.scheduler import CrontabRunner, OutputLine, run_crontab, run_job_now

EVERY_SECOND = "* * * * * * *"


class Records(logging.Handler):
    """A private logger for one test, and every record it receives."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, job: int, stream: str) -> list[str]:
        return [r.getMessage() for r in list(self.records)
                if getattr(r, "job", None) == job and getattr(r, "stream", None) == stream]

    def messages(self, job: int | None = None, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in list(self.records)
                if r.levelno >= level and (job is None or getattr(r, "job", None) == job)]


@pytest.fixture
def records(request) -> Iterator[Records]:
    handler = Records(f"test.scheduler.{request.node.name}")
    yield handler
    handler.logger.removeHandler(handler)


def wait_for(condition: Callable[[], object], timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def group_exists(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class Runner:
    """run_crontab in a thread, as the CLI runs it on the main thread."""

    def __init__(self, text: str, records: Records, **options) -> None:
        self.stop = threading.Event()
        options.setdefault("base_env", {"PATH": os.environ["PATH"]})
        self.thread = threading.Thread(target=run_crontab, args=(parse_crontab(text),), kwargs=dict(
            stop=self.stop, logger=records.logger, **options), daemon=True)
        self.thread.start()

    def shut_down(self) -> float:
        """Set the stop flag; return how long run_crontab took to return."""
        began = time.monotonic()
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        return time.monotonic() - began


def test_output_lines_are_logged_with_position_stream_and_result(records):
    runner = Runner(
        f"{EVERY_SECOND} echo out1; echo err1 >&2; echo out2\n"
        f"{EVERY_SECOND} echo failing; exit 3\n", records)
    try:
        wait_for(lambda: "exit status 3" in records.messages(job=1) and "job succeeded" in records.messages(job=0))
    finally:
        runner.shut_down()
    assert records.lines(0, "stdout")[:2] == ["out1", "out2"]
    assert records.lines(0, "stderr")[0] == "err1"
    assert records.lines(1, "stdout")[0] == "failing"
    assert any(m.startswith("starting: echo out1") for m in records.messages(job=0))
    assert all(r.levelno == logging.ERROR for r in records.records if r.getMessage() == "exit status 3")


def test_crontab_variables_reach_the_job_over_the_base_environment(records):
    runner = Runner(
        f"GREETING=\"hello from the crontab\"\nBASE_ONLY=overridden\n"
        f"{EVERY_SECOND} echo \"$GREETING|$BASE_ONLY|$UNTOUCHED\"\n",
        records, base_env={"PATH": os.environ["PATH"], "BASE_ONLY": "base", "UNTOUCHED": "kept"})
    try:
        wait_for(lambda: records.lines(0, "stdout"))
    finally:
        runner.shut_down()
    assert records.lines(0, "stdout")[0] == "hello from the crontab|overridden|kept"


def test_shell_variable_picks_the_shell(records, tmp_path):
    shell = tmp_path / "myshell"
    shell.write_text('#!/bin/sh\necho "myshell got: $*"\n')
    shell.chmod(0o755)
    runner = Runner(f"SHELL={shell}\n{EVERY_SECOND} echo hi\n", records)
    try:
        wait_for(lambda: records.lines(0, "stdout"))
    finally:
        runner.shut_down()
    assert records.lines(0, "stdout")[0] == "myshell got: -c echo hi"


def test_a_job_never_overlaps_itself_and_missed_runs_are_skipped(records, tmp_path):
    journal = tmp_path / "journal"
    runner = Runner(f"{EVERY_SECOND} echo start >> {journal}; sleep 2.5; echo end >> {journal}\n", records)
    try:
        wait_for(lambda: journal.exists() and journal.read_text().count("start") >= 2, timeout=8)
    finally:
        runner.shut_down()
    entries = journal.read_text().split()
    assert entries[:3] == ["start", "end", "start"]
    assert all(a != b for a, b in zip(entries, entries[1:])), entries  # never two starts in a row
    assert any("skipped" in m for m in records.messages(job=0, level=logging.WARNING))


def test_stop_forwards_sigterm_to_a_running_job(records, tmp_path):
    ready, got_term = tmp_path / "ready", tmp_path / "got-term"
    runner = Runner(
        f"{EVERY_SECOND} trap 'echo TERM > {got_term}; exit 0' TERM; touch {ready}; "
        f"while :; do sleep 0.1; done\n", records, stop_timeout=5.0)
    wait_for(ready.exists)
    elapsed = runner.shut_down()
    assert got_term.read_text() == "TERM\n"
    assert elapsed < 3.0
    assert any("SIGTERM" in m for m in records.messages(job=0))


def test_a_job_ignoring_sigterm_is_killed_after_the_stop_timeout(records, tmp_path):
    pid_file = tmp_path / "pid"
    runner = Runner(
        f"{EVERY_SECOND} trap '' TERM; echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; "
        f"while :; do sleep 0.1; done\n", records, stop_timeout=1.0)
    wait_for(pid_file.exists)
    elapsed = runner.shut_down()
    assert 1.0 <= elapsed < 4.0
    # The whole group is gone once init has reaped the killed shell's orphaned children.
    wait_for(lambda: not group_exists(int(pid_file.read_text())), timeout=5)
    assert any("SIGKILL" in m for m in records.messages(job=0, level=logging.WARNING))
    assert "exit status 137 (killed by SIGKILL)" in records.messages(job=0)


def test_a_schedule_that_never_fires_again_warns_once_and_stays_idle(records, tmp_path):
    marker = tmp_path / "ran"
    runner = Runner(f"0 0 0 1 1 * 1999 touch {marker}\n", records)
    wait_for(lambda: records.messages(level=logging.WARNING))
    elapsed = runner.shut_down()
    assert records.messages(level=logging.WARNING) == [
        "schedule '0 0 0 1 1 * 1999' never fires again; the job stays idle"]
    assert not marker.exists()
    assert elapsed < 1.0


def test_run_job_now_returns_the_exit_status_and_logs_the_output(records):
    status = run_job_now("echo now; echo problem >&2; exit 7", shell="/bin/sh", env={"PATH": os.environ["PATH"]},
                         logger=records.logger, position=4, stop=threading.Event())
    assert status == 7
    assert records.lines(4, "stdout") == ["now"]
    assert records.lines(4, "stderr") == ["problem"]
    assert records.messages(job=4)[-1] == "exit status 7"


def test_run_job_now_reports_a_missing_shell(records, tmp_path):
    status = run_job_now("true", shell=str(tmp_path / "no-such-shell"), env={}, logger=records.logger,
                         position=0, stop=threading.Event())
    assert status == 127
    assert any("cannot start" in m for m in records.messages(level=logging.ERROR))


def test_run_job_now_stops_when_asked(records, tmp_path):
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    began = time.monotonic()
    status = run_job_now("sleep 30", shell="/bin/sh", env={"PATH": os.environ["PATH"]}, logger=records.logger,
                         position=0, stop=stop, stop_timeout=5.0)
    assert status == 128 + 15
    assert time.monotonic() - began < 3.0


# ---- the zone of the schedules: CRON_TZ, else schedule.timezone, else the process's TZ ----------

MIDNIGHT_UTC = datetime(2026, 11, 28, 0, 0, tzinfo=timezone.utc)


def first_due(crontab: Crontab, records: Records) -> str:
    """Run the real scheduler on a fixed clock until it logs when the job is due; that time."""
    stop = threading.Event()
    thread = threading.Thread(target=run_crontab, args=(crontab,), kwargs=dict(
        stop=stop, logger=records.logger, now=lambda: MIDNIGHT_UTC, base_env={"PATH": os.environ["PATH"]}),
        daemon=True)
    thread.start()
    try:
        wait_for(lambda: any("next run at" in m for m in records.messages()))
    finally:
        stop.set()
        thread.join(10)
    line = next(m for m in records.messages() if "next run at" in m)
    return line.split("next run at ", 1)[1]


@pytest.mark.parametrize("text, zone, expected", [
    ("30 8 * * * true\n", "Asia/Kolkata", "2026-11-28T08:30:00+05:30"),
    ("30 8 * * * true\n", None, "2026-11-28T08:30:00+00:00"),
    ("CRON_TZ=America/New_York\n30 8 * * * true\n", "Asia/Kolkata", "2026-11-28T08:30:00-05:00"),
    ("30 8 * * * true\nCRON_TZ=\n", "Asia/Kolkata", "2026-11-28T08:30:00+00:00"),
], ids=["schedule-timezone", "process-tz", "cron-tz-wins", "empty-cron-tz-is-utc-and-wins"])
def test_schedule_timezone_is_the_zone_of_the_schedules(records: Records, monkeypatch: pytest.MonkeyPatch,
                                                        text: str, zone: str | None, expected: str) -> None:
    monkeypatch.setenv("TZ", "UTC")             # the process zone, which schedule.timezone overrides
    crontab = in_schedule_zone(parse_crontab(text), zone)
    assert first_due(crontab, records) == expected


def test_an_unknown_schedule_timezone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="schedule.timezone: unknown time zone 'Mars/Base'"):
        in_schedule_zone(parse_crontab("30 8 * * * true\n"), "Mars/Base")


# ---- what the daemon asks while the crontab runs: output lines, the next run, liveness ----------

def test_output_goes_to_the_given_sink_with_long_lines_in_marked_pieces(records):
    seen: list[OutputLine] = []
    status = run_job_now("head -c 150000 /dev/zero | tr '\\0' x; echo; echo short >&2", shell="/bin/sh",
                         env={"PATH": os.environ["PATH"]}, logger=records.logger, position=3,
                         stop=threading.Event(), output=seen.append)
    assert status == 0
    out = [line for line in seen if line.stream == "stdout"]
    assert "".join(line.text for line in out) == "x" * 150000
    assert [line.continued for line in out] == [False, True, True]      # 64 KiB pieces of one line
    assert [line for line in seen if line.stream == "stderr"] == [OutputLine(3, "stderr", "short", False)]
    assert records.lines(3, "stdout") == []                             # the sink got them, not the logger
    assert records.messages(job=3)[-1] == "job succeeded"               # the daemon's own lines stay records


def test_next_run_is_the_earliest_job_before_and_while_the_loops_run(records):
    now = datetime(2026, 11, 28, 8, 0, 0, tzinfo=timezone.utc)
    stop = threading.Event()
    runner = CrontabRunner(parse_crontab("CRON_TZ=UTC\n30 8 * * * true\n15 8 * * * true\n0 0 1 1 * 1999 true\n"),
                           stop=stop, logger=records.logger, now=lambda: now, base_env={"PATH": os.environ["PATH"]})
    assert runner.next_run() == datetime(2026, 11, 28, 8, 15, tzinfo=timezone.utc)
    assert runner.alive()
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: any("never fires again" in m for m in records.messages()))
        assert runner.next_run() == datetime(2026, 11, 28, 8, 15, tzinfo=timezone.utc)
        assert runner.alive()           # a schedule that ended is idle, not dead
    finally:
        stop.set()
        thread.join(10)
    assert runner.next_run() is None and not runner.alive()


def test_next_run_moves_on_while_a_job_runs(records, tmp_path):
    ready = tmp_path / "ready"
    stop = threading.Event()
    runner = CrontabRunner(parse_crontab(f"*/5 * * * * * * touch {ready}; sleep 30\n"), stop=stop,
                           logger=records.logger, base_env={"PATH": os.environ["PATH"]}, stop_timeout=2.0)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(ready.exists, timeout=8)
        due = runner.next_run()
        assert due is not None and due > datetime.now(timezone.utc) and due.second % 5 == 0
    finally:
        stop.set()
        thread.join(10)


def test_a_job_loop_that_dies_makes_the_runner_not_alive(records):
    calls = []

    def failing_clock() -> datetime:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("clock broke")
        return datetime.now(timezone.utc)

    stop = threading.Event()
    runner = CrontabRunner(parse_crontab(f"{EVERY_SECOND} true\n"), stop=stop, logger=records.logger,
                           now=failing_clock, base_env={"PATH": os.environ["PATH"]})
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: not runner.alive())
        assert any("job loop failed" in m for m in records.messages(level=logging.ERROR))
    finally:
        stop.set()
        thread.join(10)
