"""Extraction into a staging tree (CRCs checked), then installation: overlay per file or mirror swap."""
from __future__ import annotations

import array
import bisect
import errno
import logging
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Protocol, Sequence

from app.core.errors import DiskFullError, InstallError, Interrupted, PackageError
from app.core.fsutil import exchange, fsync_dir, remove_tree, syncfs, writeback_behind
from app.package.checks import Entry, Package, PackagePlan, open_package
from app.package.zipread import copy_entry

EXTRACT_THREADS = max(2, min(4, os.cpu_count() or 2))
WRITEBACK_EVERY = 0.5       # seconds between flushes while extracting (measured: 0.25 to 1 s do best)
log = logging.getLogger("datahubsync.install")
# what a filesystem answers for a name it cannot hold: the package's fault, not the machine's
_NAME_ERRORS = (errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)


@dataclass(frozen=True)
class Installed:
    files: int
    bytes: int
    removed: int = 0


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
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
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
    # One flush for the whole tree: cheaper than an fsync per file, and the swap below happens after it.
    syncfs(staging)


def _count_files(root: Path) -> set[str]:
    found = set()
    for dirpath, _dirs, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in names:
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


def _kind(path: Path) -> int | None:
    """The file type of `path` itself (a link is a link), None when nothing is there."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return stat.S_IFREG         # a file where a folder on the way should be: reported at that folder


def _overlay_conflict(target: Path, plan: PackagePlan) -> str | None:
    """What stops the overlay, checked before any change: a symbolic link on the way to a file or
    folder of the package (nothing is written through links inside the dataset folder), a file
    where the package has a folder, or a folder where it has a file."""
    checked: set[str] = set()

    def folder_problem(relative: str, wanted: str) -> str | None:
        """Each folder from the dataset folder down to `relative` (itself included), top first."""
        cut = relative.find("/")
        while True:
            folder = relative if cut < 0 else relative[:cut]
            if folder not in checked:
                checked.add(folder)
                path = target / folder
                kind = _kind(path)
                if kind == stat.S_IFLNK:
                    return (f"{path} is a symbolic link inside the dataset folder; DataHubSync never writes "
                            "through links there: replace it with a real folder")
                if kind not in (None, stat.S_IFDIR):
                    return (f"the package has a folder {folder!r} where {path} is a file" if folder == wanted
                            else f"the package puts {wanted!r} under {path}, which is a file locally")
            if cut < 0:
                return None
            cut = relative.find("/", cut + 1)

    for folder in plan.dirs:
        if problem := folder_problem(folder, folder):
            return problem
    for relative in plan.targets:
        cut = relative.rfind("/")
        if cut > 0 and (problem := folder_problem(relative[:cut], relative)):
            return problem
        if _kind(target / relative) == stat.S_IFDIR:        # a link to a folder is replaced, not entered
            return f"the package has a file {relative!r} where {target / relative} is a folder"
    return None


def install_overlay(staging: Path, plan: PackagePlan, target: Path) -> Installed:
    """Each file replaces its local copy atomically; local files the package lacks stay."""
    if _move_whole(staging, target):
        return Installed(plan.file_count, plan.total_bytes)
    if not target.is_dir():
        raise InstallError(f"cannot install: {target} is not a folder (a file, or a link to nothing); "
                           "nothing was changed")
    conflict = _overlay_conflict(target, plan)
    if conflict:
        raise InstallError(f"cannot install: {conflict}; nothing was changed")
    made: set[Path] = set()
    for folder in plan.dirs:
        (target / folder).mkdir(parents=True, exist_ok=True)
    for relative in plan.targets:
        dest = target / relative
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        os.replace(staging / relative, dest)
    for parent in made | {target}:
        fsync_dir(parent)
    remove_tree(staging)
    return Installed(plan.file_count, plan.total_bytes)


def _move_whole(staging: Path, target: Path) -> bool:
    """A first install (no target yet): one rename puts the whole tree in place."""
    if target.exists() or target.is_symlink():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False        # the target appeared meanwhile: install file by file
        raise
    fsync_dir(target.parent)
    return True


def deletion_share(target: Path, plan: PackagePlan) -> tuple[int, int]:
    """(files mirror mode would delete, files there now)."""
    existing = _count_files(target) if target.is_dir() else set()
    keep = set(plan.targets)
    return len(existing - keep), len(existing)


def install_mirror(staging: Path, plan: PackagePlan, target: Path, previous: Path) -> Installed:
    """Swap the staged tree in at once; the old tree goes to `previous`."""
    removed, _ = deletion_share(target, plan)
    remove_tree(previous)
    previous.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if _move_whole(staging, target):
        return Installed(plan.file_count, plan.total_bytes, 0)
    if not target.is_dir() or target.is_symlink():
        raise InstallError(f"{target} exists and is not a folder")
    try:
        swapped = exchange(staging, target)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise InstallError(f"mirror mode cannot swap {target}: it is a mount point; mount its parent folder instead, or use mode: overlay") from None
        raise
    if swapped:
        fsync_dir(target.parent)
        os.rename(staging, previous)          # staging now holds the old tree
    else:
        _two_step_swap(staging, target, previous)
    fsync_dir(previous.parent)
    return Installed(plan.file_count, plan.total_bytes, removed)


def swap_journal(previous: Path) -> Path:
    return previous.with_name(previous.name + ".swapping")


def _two_step_swap(staging: Path, target: Path, previous: Path) -> None:
    """For filesystems without RENAME_EXCHANGE: a journal lets the next run undo a half-done swap."""
    journal = swap_journal(previous)
    journal.write_text(str(target))
    fsync_dir(journal.parent)
    os.rename(target, previous)
    os.rename(staging, target)
    fsync_dir(target.parent)
    journal.unlink()


def recover_swap(target: Path, previous: Path) -> bool:
    """Undo a swap that a crash cut between its two renames (the old tree comes back)."""
    journal = swap_journal(previous)
    if not journal.exists():
        return False
    if not target.exists() and previous.is_dir():
        os.rename(previous, target)
        log.warning("restored %s from an interrupted install", target)
    journal.unlink()
    return True
