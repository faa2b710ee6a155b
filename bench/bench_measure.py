"""Run one contender and measure it: wall time, CPU of the whole process tree, peak RSS.

CPU comes from wait4(): the kernel reports the child's own usage plus that of every
descendant it waited for, so `bash -c "curl ... && unzip ..."` counts both tools, and
a program's worker threads or processes count too.

Peak RSS (the largest of any single process in the tree) comes from GNU time wrapped
around the command: a child forked from this Python process would report this
process's own footprint as its peak, because exec() keeps the high-water mark of the
memory it replaces. GNU time forks the contender from a 2 MB process instead.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


@dataclass
class Run:
    returncode: int
    wall: float
    cpu: float  # user + sys, seconds
    peak_rss_mb: float
    killed: bool  # stopped by the caller's kill_when, not by a timeout
    timed_out: bool
    stderr_tail: str


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def measure(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log: Path,
    timeout: float,
    kill_when: Callable[[], bool] | None = None,
    poll: float = 0.02,
) -> Run:
    """Run argv in its own session; with kill_when, SIGKILL the group once it returns True."""
    os.sync()  # write back what earlier runs left dirty, so it is not billed to this one
    log.parent.mkdir(parents=True, exist_ok=True)
    rss_file = log.with_name(log.name + ".rss")
    rss_file.unlink(missing_ok=True)
    wrapped = [GNU_TIME, "-q", "-o", str(rss_file), "-f", "%M", *argv] if GNU_TIME else list(argv)
    with open(log, "wb") as output:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, env=dict(env) if env is not None else None, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    killed = timed_out = False
    deadline = start + timeout
    if kill_when is None:
        # Blocking wait keeps the wall time exact; a timer enforces the timeout.
        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            _signal_group(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, expire)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
    else:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                timed_out = True
                _signal_group(proc.pid, signal.SIGKILL)
            elif not killed and kill_when():
                killed = True
                _signal_group(proc.pid, signal.SIGKILL)
            time.sleep(poll)
    wall = time.perf_counter() - start
    _signal_group(proc.pid, signal.SIGKILL)  # leftovers of the group (a daemonised child)
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    text = log.read_bytes()[-4000:].decode("utf-8", "replace")
    peak_kb = usage.ru_maxrss  # kilobytes on Linux; inflated by this process when GNU time is missing
    try:
        peak_kb = int(rss_file.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        pass  # killed before GNU time could write it
    return Run(
        returncode=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=peak_kb / 1024,
        killed=killed,
        timed_out=timed_out,
        stderr_tail="\n".join(text.strip().splitlines()[-5:]),
    )


class ClientBytes:
    """Bytes that clients of a local server have read so far, from the kernel's socket stats.

    Independent of the client's implementation: `ss` reports bytes_received per TCP
    socket, minus what still waits in the receive queue. Sockets that close between
    polls keep their last count.
    """

    _SOCKET = re.compile(r"^\S+\s+(\d+)\s+\d+\s+\S+:(\d+)\s+\S+")
    _RECEIVED = re.compile(r"bytes_received:(\d+)")

    def __init__(self, port: int) -> None:
        self._port = port
        self._seen: dict[int, int] = {}

    def poll(self) -> int:
        out = subprocess.run(
            ["ss", "-tinH", f"( dport = :{self._port} )"], capture_output=True, text=True, check=False
        ).stdout
        queued = local_port = 0
        for line in out.splitlines():
            head = self._SOCKET.match(line)
            if head:
                queued, local_port = int(head.group(1)), int(head.group(2))
                continue
            got = self._RECEIVED.search(line)
            if got and local_port:
                read = max(0, int(got.group(1)) - queued)
                self._seen[local_port] = max(self._seen.get(local_port, 0), read)
        return sum(self._seen.values())


def tree_stats(directory: Path) -> tuple[int, int]:
    """(files, bytes) under a directory, to check that a contender produced the dataset."""
    files = total = 0
    for root, _, names in os.walk(directory):
        for name in names:
            files += 1
            total += os.lstat(os.path.join(root, name)).st_size
    return files, total
