"""Extraction into a staging tree: each file of the plan as soon as its bytes are on disk, every CRC
checked, the tree written back as it grows and flushed once before anything is installed."""
from __future__ import annotations

import array
import bisect
import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Protocol, Sequence

from app.core.errors import DiskFullError, Interrupted, PackageError
from app.core.fsutil import is_disk_full, remove_tree, syncfs, writeback_behind
from app.package.checks import Entry, Package, PackagePlan, open_package
from app.package.zipread import copy_entry

EXTRACT_THREADS = max(2, min(4, os.cpu_count() or 2))
WRITEBACK_EVERY = 0.5       # seconds between flushes while extracting (measured: 0.25 to 1 s do best)
# what a filesystem answers for a name it cannot hold: the package's fault, not the machine's
_NAME_ERRORS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


class Arriving(Protocol):
    """A package still downloading, as extraction sees it: the byte ranges already on disk."""

    def covered_now(self) -> list[tuple[int, int]]: ...

    def wait_changed(self, timeout: float) -> list[tuple[int, int]]: ...


class EntryFeed:
    """Hands the plan's files to extraction workers in package order, each once its bytes are on disk.

    `source` is a download still in progress (None: the package is complete). Taken files are
    skipped with a next-free pointer table, so finding work stays cheap for tens of thousands of files.
    """

    def __init__(self, plan: PackagePlan, source: Arriving | None = None):
        self.plan = plan
        shift, offsets = plan.directory.shift, plan.directory.offsets
        starts = array.array("Q", (offsets[i] + shift for i in plan.indexes))
        if plan.directory.ordered:
            self.order = array.array("I", range(plan.file_count))    # in package order already, as usual
            self.offsets = starts
        else:
            self.order = array.array("I", sorted(range(plan.file_count), key=starts.__getitem__))
            self.offsets = array.array("Q", (starts[k] for k in self.order))
        del starts
        self.source = source
        self._next = array.array("I", range(plan.file_count + 1))
        self._left = plan.file_count
        self._lock = threading.Lock()

    def _free(self, i: int) -> int:
        root = i
        while self._next[root] != root:
            root = self._next[root]
        while self._next[i] != root:
            self._next[i], i = root, self._next[i]
        return root

    def _pick(self, spans: Sequence[tuple[int, float]]) -> int | None:
        for start, end in spans:
            i = self._free(bisect.bisect_left(self.offsets, start))
            if i < len(self.order) and self.offsets[i] < end and self.plan.ends[self.order[i]] <= end:
                self._next[i] = i + 1
                self._left -= 1
                return self.order[i]
        return None

    def take(self, stop: threading.Event) -> Entry | None:
        spans: Sequence[tuple[int, float]] = [(0, float("inf"))] if self.source is None else self.source.covered_now()
        while True:
            with self._lock:
                if not self._left:
                    return None
                k = self._pick(spans)
            if k is not None:
                return self.plan.entry(k)
            if stop.is_set():
                raise Interrupted("stopped by signal")
            assert self.source is not None      # with the whole package on disk, any file left fits the span
            spans = self.source.wait_changed(0.5)


def _extract_some(package: Package, feed: EntryFeed, staging: Path, stop: threading.Event, zone: tzinfo) -> None:
    made: set[Path] = set()
    while (entry := feed.take(stop)) is not None:
        if stop.is_set():
            raise Interrupted("stopped by signal")
        dest = staging / entry.target
        try:
            if dest.parent not in made:
                dest.parent.mkdir(parents=True, exist_ok=True)
                made.add(dest.parent)
            with open(dest, "wb") as out:
                copy_entry(package.fd, entry.view, out.write, stop.is_set, entry.end)
        except OSError as exc:
            raise _extract_error(exc, f"entry {entry.view.name!r}", staging) from None
        if stop.is_set():
            raise Interrupted("stopped by signal")
        try:
            stamp = datetime(*entry.view.date_time, tzinfo=zone).timestamp()
            os.utime(dest, (stamp, stamp))
        except ValueError:
            pass            # an impossible date in the entry: keep the extraction time


def _extract_error(exc: OSError, what: str, staging: Path) -> Exception:
    if is_disk_full(exc):
        return DiskFullError(f"disk full while extracting {what} into {staging}")
    if exc.errno in _NAME_ERRORS:
        return PackageError(f"{what}: the filesystem of {staging} cannot hold its name ({exc.strerror or exc})")
    return exc


def extract(package: Path | Package, plan: PackagePlan, staging: Path, stop: threading.Event,
            zone: tzinfo, source: Arriving | None = None) -> None:
    """Unpack every file of the plan below `staging`, checking each CRC; then flush it to disk once.

    With `source` (a download in progress) each file is extracted as soon as its bytes arrive.
    """
    remove_tree(staging)
    staging.mkdir(parents=True)
    for folder in plan.dirs:
        try:
            (staging / folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _extract_error(exc, f"folder {folder!r}", staging) from None
    feed = EntryFeed(plan, source)
    halt = threading.Event()

    def relay_stop() -> None:
        stop.wait()
        halt.set()

    relay = threading.Thread(target=relay_stop, daemon=True)
    relay.start()
    opened = package if isinstance(package, Package) else open_package(package)
    errors: list[BaseException] = []
    try:
        threads = min(EXTRACT_THREADS, max(1, plan.file_count))
        with writeback_behind(staging, WRITEBACK_EVERY), ThreadPoolExecutor(max_workers=threads) as pool:
            futures = [pool.submit(_extract_some, opened, feed, staging, halt, zone) for _ in range(threads)]
            for future in futures:
                try:
                    future.result()
                except BaseException as exc:   # noqa: BLE001 - the first error wins, the others stop early
                    halt.set()
                    errors.append(exc)
    finally:
        if opened is not package:
            opened.close()
    if errors:
        raise next((e for e in errors if not isinstance(e, Interrupted)), errors[0])
    # One flush for the whole tree: cheaper than an fsync per file, and the install's swap happens after it.
    syncfs(staging)
