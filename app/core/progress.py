"""Download progress: a log line at most every 10 s, and a live bar when stderr is a terminal."""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, TextIO

LOG_EVERY = 10.0
BAR_EVERY = 0.25


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(s: float) -> str:
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Thread-safe byte counter for one download (segments report from several threads)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger], total: int | None, done: int = 0, *,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.log = logger
        self.total = total
        self.done = done
        self.clock = clock
        self.started = clock()
        self.start_bytes = done
        self.transferred = 0
        self._last_log = self.started
        self._last_bar = 0.0
        self._lock = threading.Lock()
        stream = stream if stream is not None else sys.stderr
        self.bar = stream if getattr(stream, "isatty", lambda: False)() else None

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            self.transferred += n
            now = self.clock()
            if now - self._last_log >= LOG_EVERY:
                self._last_log = now
                self.log.info("downloading: %s", self.describe(now))
            if self.bar is not None and now - self._last_bar >= BAR_EVERY:
                self._last_bar = now
                self._draw(now)

    def rate(self, now: float) -> float:
        elapsed = max(now - self.started, 1e-6)
        return (self.done - self.start_bytes) / elapsed

    def describe(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        rate = self.rate(now)
        text = human_bytes(self.done)
        if self.total:
            pct = 100.0 * self.done / self.total
            text += f" of {human_bytes(self.total)} ({pct:.0f}%)"
        text += f", {human_bytes(rate)}/s"
        if self.total and rate > 0:
            text += f", ETA {human_seconds((self.total - self.done) / rate)}"
        return text

    def _draw(self, now: float) -> None:
        assert self.bar is not None         # drawn only on a terminal
        width = 30
        frac = (self.done / self.total) if self.total else 0.0
        filled = int(width * min(frac, 1.0))
        self.bar.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.describe(now)}   ")
        self.bar.flush()

    def finish(self) -> None:
        """The last word on this download: one log line with what arrived, and the bar's final state."""
        now = self.clock()
        if self.bar is not None:
            self._draw(now)
            self.bar.write("\n")
            self.bar.flush()
        if self.transferred:
            elapsed = max(now - self.started, 1e-6)
            self.log.info("received %s in %.1fs (%s/s)", human_bytes(self.transferred), elapsed,
                          human_bytes(self.transferred / elapsed))
