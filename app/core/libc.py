"""The C library, loaded once, for the calls Python does not wrap (syncfs, renameat2, mallopt)."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def libc() -> ctypes.CDLL:
    """The process's C library, with errno kept for ctypes.get_errno(). OSError when it cannot be
    loaded (then the next call tries again); a function it lacks is an AttributeError, as in ctypes."""
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
