"""Download progress: the text (bytes, percent, rate, ETA), log lines at most every 10 s, the live bar."""
from __future__ import annotations

import io
import logging
import threading

from app.core.progress import Progress, human_bytes, human_seconds


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def quiet_logger(name: str) -> tuple[logging.Logger, Lines]:
    logger = logging.getLogger(f"test_progress.{name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    lines = Lines()
    logger.addHandler(lines)
    return logger, lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_describe_with_a_total() -> None:
    clock = Clock()
    logger, _ = quiet_logger("total")
    progress = Progress(logger, total=100 << 20, stream=io.StringIO(), clock=clock)
    clock.now += 10
    progress.add(25 << 20)
    assert progress.describe() == "25.0 MiB of 100.0 MiB (25%), 2.5 MiB/s, ETA 30s"


def test_describe_without_a_total() -> None:
    clock = Clock()
    logger, _ = quiet_logger("nototal")
    progress = Progress(logger, total=None, stream=io.StringIO(), clock=clock)
    clock.now += 4
    progress.add(4096)
    text = progress.describe()
    assert text == "4.0 KiB, 1.0 KiB/s"
    assert "%" not in text and "ETA" not in text


def test_rate_counts_only_this_run_after_a_resume() -> None:
    clock = Clock()
    logger, _ = quiet_logger("resume")
    progress = Progress(logger, total=1000, done=600, stream=io.StringIO(), clock=clock)
    clock.now += 2
    progress.add(200)
    assert progress.rate(clock()) == 100.0
    assert progress.describe() == "800 B of 1000 B (80%), 100 B/s, ETA 2s"


def test_eta_in_minutes_and_hours() -> None:
    clock = Clock()
    logger, _ = quiet_logger("eta")
    progress = Progress(logger, total=10_000_000, stream=io.StringIO(), clock=clock)
    clock.now += 1
    progress.add(1000)
    assert progress.describe().endswith("ETA 2h46m")
    assert human_seconds(125) == "2m05s" and human_seconds(59.9) == "59s"


def test_log_line_at_most_every_ten_seconds() -> None:
    clock = Clock()
    logger, lines = quiet_logger("cadence")
    progress = Progress(logger, total=1000, stream=io.StringIO(), clock=clock)
    for _ in range(250):                       # 25 s of downloading in 0.1 s steps
        clock.now += 0.1
        progress.add(4)
    assert len(lines.lines) == 2
    assert all(line.startswith("downloading: ") for line in lines.lines)
    assert "(40%)" in lines.lines[0] or "(39%)" in lines.lines[0]


def test_no_log_line_for_a_short_download() -> None:
    clock = Clock()
    logger, lines = quiet_logger("short")
    progress = Progress(logger, total=100, stream=io.StringIO(), clock=clock)
    for _ in range(99):
        clock.now += 0.05
        progress.add(1)
    assert lines.lines == []                   # no periodic progress for a download of a few seconds
    progress.finish()
    assert len(lines.lines) == 1 and lines.lines[0].startswith("received 99 B in 4.9s"), lines.lines


def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    clock = Clock()
    logger, _ = quiet_logger("nobar")
    stream = io.StringIO()
    progress = Progress(logger, total=100, stream=stream, clock=clock)
    clock.now += 1
    progress.add(50)
    progress.finish()
    assert progress.bar is None and stream.getvalue() == ""


def test_live_bar_on_a_terminal() -> None:
    clock = Clock()
    logger, _ = quiet_logger("bar")
    terminal = Terminal()
    progress = Progress(logger, total=100, stream=terminal, clock=clock)
    clock.now += 1
    progress.add(50)
    progress.finish()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[" + "#" * 15 + "." * 15 + "]")
    assert "(50%)" in drawn and drawn.endswith("\n")


def test_counts_from_several_threads() -> None:
    logger, _ = quiet_logger("threads")
    progress = Progress(logger, total=None, stream=io.StringIO())
    workers = [threading.Thread(target=lambda: [progress.add(1) for _ in range(2000)]) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert progress.done == 8000 and progress.transferred == 8000


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(180_000_000) == "171.7 MiB"
    assert human_bytes(5 << 40) == "5.0 TiB"
