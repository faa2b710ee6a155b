"""One sync at a time per state directory (flock on <state_dir>/lock)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from app.core.errors import LockedError
from app.core.timeutil import utcnow


class SyncLock:
    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> "SyncLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise LockedError(f"another sync is running ({holder}) and holds {self.path}; try again when it ends") from None
        os.ftruncate(fd, 0)
        stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        os.pwrite(fd, f"pid {os.getpid()}, started {stamp}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "SyncLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
