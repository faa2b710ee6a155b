"""Small filesystem helpers: atomic writes, durable renames, syncfs, free space, a full disk, SHA-256."""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from app.core.errors import Interrupted
from app.core.libc import libc

HASH_CHUNK = 256 << 10          # bytes hashed at once, through one buffer per call


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the directory: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def syncfs(path: Path) -> None:
    """Flush the whole filesystem holding `path` once (cheaper than an fsync per extracted file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(libc(), "syncfs") and libc().syncfs(fd) == 0:
            return
    finally:
        os.close(fd)
    os.sync()


@contextmanager
def writeback_behind(path: Path, every: float) -> Iterator[None]:
    """While the block runs, flush the filesystem holding `path` every `every` seconds from a thread.

    The disk then writes what the block produced while the block produces more (the kernel would
    otherwise hold it all back for up to 30 s), and the block's final syncfs finds little left.
    """
    done = threading.Event()

    def flush() -> None:
        while not done.wait(every):
            try:
                syncfs(path)
            except OSError:
                return          # `path` went away: the block failed and cleans up

    threading.Thread(target=flush, daemon=True, name="writeback").start()
    try:
        yield
    finally:
        done.set()


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False when the system or filesystem cannot."""
    func = getattr(libc(), "renameat2", None)
    if func is None:
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = func(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` says the filesystem has no room left for this process (no space, or its quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def sha256_file(file: str | os.PathLike[str] | int, stop: threading.Event | None = None) -> str:
    """The SHA-256 (hex) of a whole file, given by path or as an open descriptor (read from its
    start with pread, its position left alone). Interrupted when `stop` is set between two chunks."""
    if not isinstance(file, int):
        with open(file, "rb", buffering=0) as fh:
            return sha256_file(fh.fileno(), stop)
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)        # one buffer for the whole file: no allocation per read
    view = memoryview(buffer)
    offset = 0
    while n := os.preadv(file, [buffer], offset):
        if stop is not None and stop.is_set():
            raise Interrupted("stopped by signal")
        digest.update(view[:n])
        offset += n
    return digest.hexdigest()


def free_bytes(path: Path) -> int:
    """Free space for this process on the filesystem of `path` (or its nearest existing parent)."""
    return shutil.disk_usage(nearest_existing(path)).free


def nearest_existing(path: Path) -> Path:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def permission_hint(path: Path) -> str:
    """What to do when this process may not write `path` (names the uid that needs access)."""
    uid, gid = os.getuid(), os.getgid()
    return (f"{path} is not writable by uid {uid} (gid {gid}); on the host run `chown -R {uid}:{gid} <data folder>` "
            f"or run the container with `user:` set to the folder's owner")


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        try:
            path.unlink()
        except OSError:
            pass


def is_empty_dir(path: Path) -> bool:
    """True when `path` is missing, not a directory, or holds nothing."""
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except (FileNotFoundError, NotADirectoryError):
        return True
