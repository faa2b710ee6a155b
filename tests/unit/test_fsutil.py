"""Filesystem helpers against the real kernel: background writeback during extraction."""
from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

import pytest

from app.core.fsutil import writeback_behind

SYS_CACHESTAT = 451            # x86_64 and most other architectures (Linux 6.5+)


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def dirty_pages(fd: int) -> int:
    """Pages of the open file not yet written to disk, from the kernel's cachestat()."""
    libc = ctypes.CDLL(None, use_errno=True)
    stat = _Stat()
    if libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(_Range(0, 0)), ctypes.byref(stat), 0) != 0:
        pytest.skip(f"cachestat() unavailable: {os.strerror(ctypes.get_errno())}")
    return stat.nr_dirty + stat.nr_writeback


def filesystem_of(path: Path) -> str:
    best = ("", "")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _dev, mount, kind = line.split()[:3]
        if str(path).startswith(mount.rstrip("/") + "/") and len(mount) > len(best[0]):
            best = (mount, kind)
    return best[1]


def write_mib(fh, mib: int) -> None:
    block = os.urandom(1 << 20)
    for _ in range(mib):
        fh.write(block)
    fh.flush()


def wait_clean(fd: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while (dirty := dirty_pages(fd)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return dirty


def test_writeback_behind_writes_to_disk_while_the_block_runs(tmp_path: Path) -> None:
    if filesystem_of(tmp_path) in ("tmpfs", "ramfs", "overlay"):
        pytest.skip("needs a disk-backed filesystem")
    with open(tmp_path / "control", "wb") as control:
        write_mib(control, 16)
        if wait_clean(control.fileno(), 1.0) == 0:
            pytest.skip("the kernel writes back by itself within a second here: nothing to show")
        with writeback_behind(tmp_path, 0.1), open(tmp_path / "big", "wb") as fh:
            write_mib(fh, 16)
            assert wait_clean(fh.fileno(), 5.0) == 0     # on disk before the block ends


def test_writeback_behind_stops_quietly_when_its_folder_goes_away(tmp_path: Path) -> None:
    folder = tmp_path / "staging"
    folder.mkdir()
    with writeback_behind(folder, 0.05):
        folder.rmdir()          # what a failed extraction's cleanup does
        deadline = time.monotonic() + 2
        while any(t.name == "writeback" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the writeback thread kept running without its folder"
            time.sleep(0.05)
