"""The `cron` daemon's log as a user reads it: a `datahubsync sync` job's lines appear once, as the job
wrote them; a user's own job's lines carry the daemon's time, level, job and stream."""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.helpers import start_cli, sync_env, zip_bytes
from tests.hubs import FaultyHub

V1 = "2026-11-28T08:30:00Z"
TEXT_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2} (DEBUG|INFO|WARNING|ERROR|CRITICAL) *(.*)$")


USER_JOB = "*/2 * * * * * * echo hello from a user job; echo user job complaint >&2\n"


def run_daemon_until(tmp_path: Path, hub: FaultyHub, done: str, crontab_text: str = USER_JOB,
                     **env: str) -> tuple[str, Path]:
    """`cron` with the given crontab (and a start-up sync unless `env` says otherwise), stopped once
    stderr shows `done`; returns its stderr and the log file it was given."""
    crontab = tmp_path / "crontab"
    crontab.write_text(crontab_text)
    log_file = tmp_path / "logs" / "sync.log"
    daemon = start_cli(["cron"], sync_env(hub.url, tmp_path, ["prices"], DATAHUB_CRONTAB=str(crontab),
                                          DATAHUB_LOG_FILE=str(log_file),
                                          **{"DATAHUB__SCHEDULE__RUN_ON_START": "always", **env}))
    lines: list[str] = []
    try:
        assert daemon.stderr is not None
        for line in daemon.stderr:
            lines.append(line)
            if done in line:
                break
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, tail = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, "".join(lines) + tail
    return "".join(lines) + tail, log_file


@pytest.fixture
def published(faulty_hub: FaultyHub) -> FaultyHub:
    faulty_hub.add_package("prices", zip_bytes({"a.csv": "date,close\n"}), V1, sha256=True)
    return faulty_hub


def test_text_log_passes_sync_lines_through_and_prefixes_user_job_lines(tmp_path: Path, published: FaultyHub) -> None:
    err, log_file = run_daemon_until(tmp_path, published, "user job complaint", DATAHUB_LOG_FORMAT="text")
    lines = err.splitlines()
    assert all(TEXT_LINE.match(line) for line in lines), err     # one format, one timestamp per line
    # The sync's own lines, exactly once and without a second time, level and job prefix around them
    summary = [line for line in lines if "summary: prices: success" in line]
    assert len(summary) == 1 and TEXT_LINE.match(summary[0]).group(2).startswith("[prices] summary:"), summary
    assert not [line for line in lines if re.search(r"\[job [^]]*\] \d{4}-\d{2}-\d{2}T", line)], err
    # The daemon's own lines keep its format: the job's start and result
    assert any(line.endswith("[job start] starting: datahubsync sync") for line in lines), err
    assert any(line.endswith("[job start] job succeeded") for line in lines), err
    # A user's job: each line with the job's position and stream
    assert any(line.endswith("INFO    [job 0 stdout] hello from a user job") for line in lines), err
    assert any(line.endswith("INFO    [job 0 stderr] user job complaint") for line in lines), err
    # The sync wrote its log file itself; the daemon adds its own lines there, not a copy of the sync's
    written = log_file.read_text().splitlines()
    assert len([line for line in written if "summary: prices: success" in line]) == 1, written


def test_json_log_is_json_lines_with_sync_lines_as_the_sync_wrote_them(tmp_path: Path, published: FaultyHub) -> None:
    err, _ = run_daemon_until(tmp_path, published, "user job complaint", DATAHUB_LOG_FORMAT="json")
    documents = [json.loads(line) for line in err.splitlines()]         # every line is one JSON object
    assert all(isinstance(doc, dict) for doc in documents)
    summary = [doc for doc in documents if doc["message"].startswith("summary: prices: success")]
    assert len(summary) == 1
    assert summary[0]["logger"] == "datahubsync.summary" and summary[0]["dataset"] == "prices"
    assert "job" not in summary[0]                                      # as the job wrote it, not wrapped
    user = {(doc["stream"], doc["message"]) for doc in documents if doc.get("job") == 0 and "stream" in doc}
    assert user == {("stdout", "hello from a user job"), ("stderr", "user job complaint")}
    assert all(doc["logger"] == "datahubsync.cron" for doc in documents if doc.get("job") is not None)


def test_a_crashing_job_is_logged_by_the_daemon_line_by_line(tmp_path: Path, published: FaultyHub) -> None:
    err, _ = run_daemon_until(tmp_path, published, "exit status 1",
                              "*/2 * * * * * * python3 -c 'raise SystemExit(\"boom\\nsecond line\")'\n",
                              DATAHUB__SCHEDULE__RUN_ON_START="never")
    lines = err.splitlines()
    assert any(line.endswith("[job 0 stderr] boom") for line in lines), err
    assert any(line.endswith("[job 0 stderr] second line") for line in lines), err
