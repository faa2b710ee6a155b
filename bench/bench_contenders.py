"""The contenders: what a user would otherwise run, and the product's `sync` in its three situations."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_data import Package
from bench_measure import ClientBytes, Run, measure, tree_stats
from bench_servers import Nginx


@dataclass
class Sample:
    """One measured run of one contender."""

    wall: float
    cpu: float
    peak_rss_mb: float
    bytes: int | None = None  # sent by the server during the run (nginx $bytes_sent)
    requests: int | None = None
    ok: bool = True
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Context:
    repo: Path
    work: Path  # scratch space of this scenario
    connections: int
    timeout: float
    keep: bool = True  # every run writes into a new folder; the scenario's folders go at its end (see clear)
    _made: int = 0
    _last: Path | None = None

    def fresh(self, label: str) -> Path:
        """An empty folder for one run."""
        if self.keep:
            if self._last is not None:
                _evict(self._last)
            self._made += 1
            path = self._last = self.work / f"{label}-{self._made}"
        else:
            path = self.work / label
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def round_done(self) -> None:
        """Without room to keep every run's output, a round's output goes as soon as the round ends."""
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def clear(self) -> None:
        """The end of a scenario: its output goes, and the next scenario waits until (see settle)."""
        global _cleared_at
        if self.work.exists():
            shutil.rmtree(self.work, ignore_errors=True)
            os.sync()
            _cleared_at = time.monotonic()


def _evict(folder: Path) -> None:
    """Drop earlier runs' files from the page cache (written back first), so that kept output does not
    fill the memory and make later runs pay for reclaiming it."""
    if not folder.exists():
        return
    os.sync()
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# ext4 without a journal does not hand out an inode freed in the last 60 s (fs/ext4/ialloc.c,
# recently_deleted): it reads inode tables to skip each one. Creating thousands of files right after
# thousands were deleted was measured 1.1 to 1.6 times slower (curl + unzip 11.8-13.3 s without a
# deletion just before, 12.7-19.7 s with one), which made the runs after a deletion noisy. So nothing is
# deleted while a scenario runs, and a scenario that follows a deletion waits that minute out first.
RECYCLE_WINDOW = 62.0
_cleared_at: float | None = None


def settle() -> None:
    if _cleared_at is None:
        return
    left = RECYCLE_WINDOW - (time.monotonic() - _cleared_at)
    if left > 0:
        print(f"  waiting {left:.0f} s: freed inodes are not reused for a minute (see bench/README.md)", flush=True)
        time.sleep(left)


def _sample(run: Run, hub: Nginx | None, mark: int, note: str = "") -> Sample:
    requests = hub.requests(mark) if hub else []
    ok = run.returncode == 0 and not run.timed_out
    if not ok:
        reason = "timed out" if run.timed_out else f"exit {run.returncode}"
        note = f"{reason}: {run.stderr_tail.splitlines()[-1] if run.stderr_tail else ''}".strip()
    return Sample(
        wall=run.wall, cpu=run.cpu, peak_rss_mb=run.peak_rss_mb,
        bytes=sum(r.bytes_sent for r in requests) if hub else None,
        requests=len(requests) if hub else None, ok=ok, note=note,
    )


def _check_tree(sample: Sample, directory: Path, packages: list[Package]) -> Sample:
    """A contender that exits 0 but leaves the wrong files counts as failed."""
    if not sample.ok:
        return sample
    files, size = tree_stats(directory)
    want_files, want_size = sum(p.files for p in packages), sum(p.raw_bytes for p in packages)
    if (files, size) != (want_files, want_size):
        sample.ok = False
        sample.note = f"wrong result: {files} files / {size} bytes, expected {want_files} / {want_size}"
    return sample


def _shell(script: str) -> list[str]:
    return ["bash", "-c", f"set -euo pipefail; {script}"]


def curl_unzip(ctx: Context, hub: Nginx, url: str, pkg: Package) -> Sample:
    run_dir = ctx.fresh("curl")
    zip_path, dest = run_dir / "pkg.zip", run_dir / "data"
    script = f"curl -sS --fail -o {shlex.quote(str(zip_path))} {shlex.quote(url)} && " \
             f"unzip -q -o {shlex.quote(str(zip_path))} -d {shlex.quote(str(dest))}"
    mark = hub.mark()
    run = measure(_shell(script), log=run_dir / "out.log", timeout=ctx.timeout)
    return _check_tree(_sample(run, hub, mark), dest, [pkg])


def aria2_unzip(ctx: Context, hub: Nginx, url: str, pkg: Package) -> Sample:
    run_dir = ctx.fresh("aria2")
    dest, n = run_dir / "data", ctx.connections
    script = f"aria2c -q -x{n} -s{n} --allow-overwrite=true --auto-file-renaming=false " \
             f"-d {shlex.quote(str(run_dir))} -o pkg.zip {shlex.quote(url)} && " \
             f"unzip -q -o {shlex.quote(str(run_dir / 'pkg.zip'))} -d {shlex.quote(str(dest))}"
    mark = hub.mark()
    run = measure(_shell(script), log=run_dir / "out.log", timeout=ctx.timeout)
    return _check_tree(_sample(run, hub, mark), dest, [pkg])


class Sync:
    """`python entrypoint.py sync` configured by environment variables only, like a container."""

    def __init__(self, ctx: Context, hub: Nginx, packages: list[Package], label: str = "sync") -> None:
        self.ctx, self.hub, self.packages, self.label = ctx, hub, packages, label
        self.base = ctx.work / label        # until reset() makes the first run's folder
        self.data, self.state = self.base / "data", self.base / "state"

    def reset(self) -> None:
        """A new empty data and state folder (again() reuses the last ones)."""
        self.base = self.ctx.fresh(self.label)
        self.data, self.state = self.base / "data", self.base / "state"
        self.data.mkdir()
        self.state.mkdir()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB")}
        env.update({
            "DATAHUB_URL": self.hub.url,
            "DATAHUB_DATASETS": ",".join(f"{p.name}={self.data / p.name}" for p in self.packages),
            "DATAHUB_DATA_ROOT": str(self.data),
            "DATAHUB_STATE_DIR": str(self.state),
            "DATAHUB__HUB__CONNECTIONS": str(self.ctx.connections),
            "DATAHUB_LOG_LEVEL": "WARNING",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        return env

    def _run(self, log: str, kill_when: Callable[[], bool] | None = None, poll: float = 0.02) -> Run:
        return measure(
            [sys.executable, "entrypoint.py", "sync"], env=self.env(), cwd=self.ctx.repo,
            log=self.base / log, timeout=self.ctx.timeout, kill_when=kill_when, poll=poll,
        )

    def cold(self) -> Sample:
        self.reset()
        mark = self.hub.mark()
        return _check_tree(_sample(self._run("cold.log"), self.hub, mark), self.data, self.packages)

    def again(self) -> Sample:
        """The no-op run: everything is up to date after cold()."""
        mark = self.hub.mark()
        return _check_tree(_sample(self._run("noop.log"), self.hub, mark), self.data, self.packages)

    def resume(self, fraction: float = 0.5) -> Sample:
        """Kill the cold sync once `fraction` of the package has arrived, then run again.

        Wall, CPU and RSS are the second run's; bytes and requests are both runs'.
        Bytes are what nginx sent; that includes what sat unread in the socket buffers
        when the first run was killed, which no client can keep, so `_received` (what
        the client had read when killed, plus the whole rerun) is recorded as well.
        """
        self.reset()
        total = sum(p.size for p in self.packages)
        counter = ClientBytes(self.hub.port)
        mark = self.hub.mark()
        first = self._run("killed.log", kill_when=lambda: counter.poll() >= fraction * total, poll=0.01)
        received = counter.poll()
        first_requests = self.hub.requests(mark)
        if not first.killed:
            note = "finished before the kill point" if first.returncode == 0 else f"first run exit {first.returncode}"
        else:
            note = f"killed at {100 * received / total:.0f}%"
        mark = self.hub.mark()
        sample = _check_tree(_sample(self._run("resumed.log"), self.hub, mark, note), self.data, self.packages)
        first_sent = sum(r.bytes_sent for r in first_requests)
        rerun_sent = sample.bytes or 0
        sample.bytes = first_sent + rerun_sent
        sample.requests = (sample.requests or 0) + len(first_requests)
        # underscores: kept out of the table, used for targets and notes
        sample.extra.update(_killed_at=received / total, _received=received + rerun_sent,
                            _unread=max(0, first_sent - received))
        return sample


def sync_available(repo: Path) -> str | None:
    """None when `entrypoint.py sync` can run here, else why not."""
    if not (repo / "entrypoint.py").is_file():
        return "entrypoint.py does not exist yet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB")}
    probe = measure([sys.executable, "entrypoint.py", "--version"], env=env, cwd=repo,
                    log=repo / "bench" / "work" / "probe.log", timeout=60)
    if probe.returncode != 0:
        return f"entrypoint.py --version failed: {probe.stderr_tail}"
    return None


def download_only(ctx: Context, label: str, argv: list[str], expected: int) -> Sample:
    """A client that only downloads (to /dev/null or scratch), for server throughput."""
    run_dir = ctx.fresh(label)
    run = measure(argv, log=run_dir / "out.log", timeout=ctx.timeout, cwd=run_dir)
    sample = _sample(run, None, 0)
    sample.bytes = expected
    if sample.ok:
        sample.extra["MB/s"] = expected / run.wall / 1e6
    return sample
