"""Filesystem helpers against the real kernel: background writeback during extraction, a full
disk, the SHA-256 of a file."""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import random
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import Interrupted
from app.core.fsutil import HASH_CHUNK, is_disk_full, sha256_file, writeback_behind

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


# --- a full disk ------------------------------------------------------------------------------

def error_writing_to(path: str) -> OSError:
    try:
        with open(path, "wb", buffering=0) as fh:
            fh.write(b"x")
    except OSError as exc:
        return exc
    raise AssertionError(f"writing to {path} succeeded")


def test_is_disk_full_knows_a_full_device_and_a_quota() -> None:
    assert is_disk_full(error_writing_to("/dev/full"))                  # the kernel's ENOSPC
    assert is_disk_full(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/data/x"))


def test_is_disk_full_is_false_for_every_other_error(tmp_path: Path) -> None:
    assert not is_disk_full(error_writing_to(str(tmp_path / "no-such-folder" / "x")))
    assert not is_disk_full(error_writing_to(str(tmp_path)))           # a folder
    assert not is_disk_full(OSError("no errno"))
    assert not is_disk_full(ValueError(errno.ENOSPC))
    assert not is_disk_full(KeyboardInterrupt())


# --- SHA-256 of a file -------------------------------------------------------------------------

@given(st.integers(0, 3 * HASH_CHUNK + 1) | st.sampled_from([HASH_CHUNK - 1, HASH_CHUNK, HASH_CHUNK + 1]),
       st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_sha256_file_is_the_sha256_of_the_bytes(size: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "package.zip"
        path.write_bytes(data)
        assert sha256_file(path) == hashlib.sha256(data).hexdigest()
        assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()


def test_sha256_file_of_a_descriptor_reads_from_the_start_and_leaves_its_position(tmp_path: Path) -> None:
    data = os.urandom(HASH_CHUNK + 10)
    (tmp_path / "p").write_bytes(data)
    with open(tmp_path / "p", "rb") as fh:
        fh.seek(100)
        assert sha256_file(fh.fileno()) == hashlib.sha256(data).hexdigest()
        assert fh.tell() == 100 and fh.read(5) == data[100:105]


def test_sha256_file_stops_between_chunks(tmp_path: Path) -> None:
    (tmp_path / "p").write_bytes(b"x" * (HASH_CHUNK * 2))
    stop = threading.Event()
    assert sha256_file(tmp_path / "p", stop) == hashlib.sha256(b"x" * (HASH_CHUNK * 2)).hexdigest()
    stop.set()
    with pytest.raises(Interrupted):
        sha256_file(tmp_path / "p", stop)


def test_sha256_file_of_a_missing_file_is_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "gone.zip")
