"""The one C library loader: loaded once, errno kept, the calls the program makes through it."""
from __future__ import annotations

import ctypes
import errno

from app.core.libc import libc


def test_loaded_once() -> None:
    assert libc() is libc()


def test_errno_is_kept_for_get_errno() -> None:
    assert libc().close(-1) == -1
    assert ctypes.get_errno() == errno.EBADF


def test_has_what_the_program_calls() -> None:
    # syncfs and renameat2 (core.fsutil) and mallopt (core.memory): glibc has all three
    for name in ("syncfs", "renameat2", "mallopt"):
        assert callable(getattr(libc(), name)), name
