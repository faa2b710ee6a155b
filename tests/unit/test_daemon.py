"""The daemon's job output: log lines of a `datahubsync` job pass through as they are, other lines
are logged by the daemon; every line reaches the console whole."""
from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config import build_config
from app.crontab.daemon import JobOutput, StateView
from app.core.logs import JsonFormatter, TextFormatter
from app.crontab.scheduler import OutputLine
from app.core.secrets import RedactingFilter, remember

SYNC_TEXT = "2026-11-28T08:15:02 INFO    [prices] installed version 2026-11-28T08:00:00Z: 3 files, 30 B"
SYNC_JSON = json.dumps({"time": "2026-11-28T08:15:02+0800", "level": "INFO", "logger": "datahubsync.sync",
                        "message": "installed version 2026-11-28T08:00:00Z: 3 files, 30 B", "dataset": "prices"})
DAEMON_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2} INFO    \[job 1 stdout\] ")


class Console:
    """A logger set up as app.core.logs does it: a console handler and a log file, in text or JSON."""

    def __init__(self, tmp_path: Path, name: str, json_format: bool) -> None:
        self.console_path, self.file_path = tmp_path / "console.log", tmp_path / "file.log"
        self._console_stream = open(self.console_path, "w", encoding="utf-8")
        formatter = JsonFormatter() if json_format else TextFormatter()
        self.logger = logging.getLogger(f"test.daemon.{name}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.handlers: list[logging.Handler] = [logging.StreamHandler(self._console_stream),
                                                logging.FileHandler(self.file_path, encoding="utf-8")]
        for handler in self.handlers:
            handler.setFormatter(formatter)
            handler.addFilter(RedactingFilter())
            self.logger.addHandler(handler)
        self.output = JobOutput(self.logger, json_format)

    def console(self) -> list[str]:
        self._console_stream.flush()
        return _lines(self.console_path)

    def file(self) -> list[str]:
        return _lines(self.file_path)

    def close(self) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self._console_stream.close()


ANY_LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=200)
# What jobs print: anything, text log lines, JSON log lines (ASCII-escaped or not), JSON that is no object.
JOB_LINES = st.one_of(
    ANY_LINE,
    st.builds(lambda rest: SYNC_TEXT[:28] + rest, ANY_LINE),
    st.builds(lambda doc, ascii_only: json.dumps(doc, ensure_ascii=ascii_only),
              st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.none())),
              st.booleans()),
    st.builds(json.dumps, st.lists(st.integers(), max_size=3)),
).filter(lambda text: "\n" not in text and "\r" not in text)


def _lines(path: Path) -> list[str]:
    """Lines as a log reader splits them: at '\\n' only (a job's text may hold any other separator)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read().split("\n")[:-1]


@pytest.fixture
def text(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Console]:
    console = Console(tmp_path, request.node.name, json_format=False)
    yield console
    console.close()


@pytest.fixture
def json_mode(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Console]:
    console = Console(tmp_path, request.node.name, json_format=True)
    yield console
    console.close()


def line(text: str, job: int | str = 1, stream: str = "stdout", continued: bool = False) -> OutputLine:
    return OutputLine(job, stream, text, continued)


def test_a_sync_log_line_passes_through_as_it_is_to_the_console_only(text: Console) -> None:
    text.output(line(SYNC_TEXT, stream="stderr"))
    assert text.console() == [SYNC_TEXT]
    assert text.file() == []            # the job wrote its own log file; a copy would double every line


def test_a_foreign_line_is_logged_by_the_daemon_with_the_job_and_stream(text: Console) -> None:
    text.output(line("hello from a user job"))
    [shown] = text.console()
    assert DAEMON_PREFIX.match(shown) and shown.endswith("] hello from a user job"), shown
    assert text.file() == [shown]


def test_a_traceback_from_a_job_is_logged_by_the_daemon(text: Console) -> None:
    for piece in ("Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "ValueError: boom"):
        text.output(line(piece, stream="stderr"))
    assert all("[job 1 stderr] " in shown for shown in text.console())


def test_json_mode_passes_json_objects_and_wraps_anything_else(json_mode: Console) -> None:
    json_mode.output(line(SYNC_JSON, stream="stderr"))
    json_mode.output(line(SYNC_TEXT, stream="stderr"))      # a text log line is not this daemon's format
    json_mode.output(line("[1, 2]"))
    first, second, third = json_mode.console()
    assert first == SYNC_JSON
    assert json.loads(second) == dict(json.loads(second), message=SYNC_TEXT, job=1, stream="stderr",
                                      logger=json_mode.logger.name, level="INFO")
    assert json.loads(third)["message"] == "[1, 2]"


@settings(max_examples=150, deadline=None)
@given(JOB_LINES)
def test_json_mode_console_stays_one_json_object_per_line(tmp_path_factory: pytest.TempPathFactory, shown: str) -> None:
    """Whatever a job prints, a JSON log reader can parse every line of the daemon's console."""
    console = Console(tmp_path_factory.mktemp("json"), "json-property", json_format=True)
    try:
        console.output(line(shown))
        lines = console.console()
    finally:
        console.close()
    assert len(lines) == 1, lines
    document = json.loads(lines[0])
    assert isinstance(document, dict)
    if document.get("job") == 1:            # wrapped by the daemon: the text is the message, unchanged
        assert document["message"] == shown
    else:                                   # passed through: it was a JSON object already
        assert lines[0] == shown


@settings(max_examples=150, deadline=None)
@given(JOB_LINES)
def test_text_mode_console_line_is_the_job_line_or_carries_the_daemon_prefix(
        tmp_path_factory: pytest.TempPathFactory, shown: str) -> None:
    console = Console(tmp_path_factory.mktemp("text"), "text-property", json_format=False)
    try:
        console.output(line(shown))
        lines = console.console()
    finally:
        console.close()
    assert "\n".join(lines) == shown or (DAEMON_PREFIX.match(lines[0]) and "\n".join(lines).endswith(shown))


def test_the_rest_of_a_long_passed_through_line_stays_raw(text: Console) -> None:
    text.output(line(SYNC_TEXT + " " + "x" * 10))
    text.output(line("y" * 10, continued=True))         # the second piece of the same long line
    text.output(line("z" * 10))                         # a new line that is no log line
    raw, rest, foreign = text.console()
    assert (raw, rest) == (SYNC_TEXT + " " + "x" * 10, "y" * 10)
    assert DAEMON_PREFIX.match(foreign)


def test_pieces_are_judged_per_job_and_stream(text: Console) -> None:
    text.output(line(SYNC_TEXT, job=0, stream="stderr"))
    text.output(line("plain", job=1, stream="stderr"))
    text.output(line("rest of job 0's line", job=0, stream="stderr", continued=True))
    assert text.console()[2] == "rest of job 0's line"


def test_a_known_secret_never_passes_through(text: Console) -> None:
    remember("tok-3f9a8c7e-passthrough")
    text.output(line(SYNC_TEXT + " Authorization: Bearer tok-3f9a8c7e-passthrough"))
    assert text.console() == [SYNC_TEXT + " Authorization: Bearer ***"]


def test_two_jobs_printing_at_once_interleave_by_whole_lines(text: Console) -> None:
    """Two jobs and the daemon's own records write at the same time; no line is cut or mixed."""
    width, count = 4000, 400

    def job(position: int, char: str) -> None:
        for _ in range(count):
            text.output(line(f"{SYNC_TEXT} {char * width}", job=position))

    threads = [threading.Thread(target=job, args=(n, char)) for n, char in enumerate("ab")]
    threads.append(threading.Thread(target=lambda: [text.output(line("c" * width, job=2)) for _ in range(count)]))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = text.console()
    assert len(lines) == 3 * count
    assert sum(shown == f"{SYNC_TEXT} {'a' * width}" for shown in lines) == count
    assert sum(shown == f"{SYNC_TEXT} {'b' * width}" for shown in lines) == count
    assert sum(bool(DAEMON_PREFIX.sub("", shown).endswith("c" * width)) and shown.count("c") == width
               for shown in lines) == count


# ---- the state /readyz judges ----------------------------------------------------------------------

def test_state_view_rereads_a_changed_file_and_warns_about_a_corrupt_one_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = build_config({"hub": {"url": "http://127.0.0.1:9"}, "datasets": ["ds"],
                           "sync": {"data_root": str(tmp_path / "data")}})
    view = StateView(config)
    assert view() == {}                                     # no state file yet: never synced
    config.state_dir.mkdir(parents=True)
    state = config.state_dir / "state.json"
    state.write_text("{broken")
    with caplog.at_level(logging.WARNING):
        for _ in range(5):                                  # five probes, one warning
            assert view() == {}
    assert len([r for r in caplog.records if "corrupt" in r.getMessage()]) == 1
    entry = {"status": "success", "synced_at": "2026-11-28T08:00:00Z"}
    state.write_text(json.dumps({"version": 1, "datasets": {"ds": entry}}))
    assert view() == {"ds": entry}                          # the next probe sees the new file
