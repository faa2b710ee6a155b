"""One sync per state directory: a second holder is refused with the first holder's pid."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.errors import ExitCode, LockedError
from app.sync.lock import SyncLock

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_second_lock_in_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "lock"
    with SyncLock(path):
        assert path.read_text().startswith(f"pid {os.getpid()},")
        with pytest.raises(LockedError) as caught:
            SyncLock(path).acquire()
        assert f"pid {os.getpid()}" in str(caught.value)
        assert str(path) in str(caught.value)
        assert caught.value.exit_code == ExitCode.LOCKED
    # released: the next one gets it
    again = SyncLock(path).acquire()
    again.release()


def test_release_twice_is_harmless(tmp_path: Path) -> None:
    lock = SyncLock(tmp_path / "lock").acquire()
    lock.release()
    lock.release()


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib; from app.sync.lock import SyncLock\n"
         "lock = SyncLock(pathlib.Path(sys.argv[1])).acquire()\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n",
         str(path)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"another sync is running \(pid {holder.pid},"):
            SyncLock(path).acquire()
    finally:
        holder.stdin.close()            # the holder exits, the kernel drops its lock
        holder.wait(timeout=10)
    SyncLock(path).acquire().release()
