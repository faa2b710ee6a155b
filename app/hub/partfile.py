"""The part file a package downloads into (<state_dir>/downloads/NAME.zip.part) and its record.

The record (NAME.zip.part.json) names the package being written: the URL, its identity, its total,
each segment's progress, and what the hub's list advertised when the download began. A later
attempt or run resumes only when all of that still holds, so a resume never splices two packages.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from app.core.errors import DiskFullError
from app.core.fsutil import is_disk_full
from app.core.jsonutil import loads
from app.core.result import Status
from app.hub.identity import Identity
from app.hub.segments import Plan, Segment, tiles


class PartFile:
    """The part file (preallocated, written at offsets) and the record of what it holds."""

    def __init__(self, path: Path, url: str, advertised: dict[str, Any], log: logging.LoggerAdapter[logging.Logger]):
        self.path = path
        self.record_path = path.with_name(path.name + ".json")
        self.url = url
        # what the hub's list said of the package when this download began: a partial download is
        # resumed only into the package the list still advertises (a server's validator alone can
        # name two packages alike: nginx's ETag is mtime in seconds + size)
        self.advertised = advertised
        self.log = log
        self._fd: int | None = None
        self._record_fd: int | None = None
        self._record_len = 0

    # ---- the data ---------------------------------------------------------------------------------

    def open(self, total: int | None) -> None:
        """Open (or reopen, to resume) the part file, with room for `total` bytes reserved up front."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if total:
            try:
                if os.fstat(self._fd).st_size < total:
                    os.posix_fallocate(self._fd, 0, total)
            except OSError as exc:
                if is_disk_full(exc):
                    raise DiskFullError(f"not enough disk space for the package ({total} bytes) in {self.path.parent}",
                                        Status.DOWNLOAD_FAILED) from None
                os.ftruncate(self._fd, total)   # filesystems without fallocate

    def write(self, data: bytes, offset: int) -> None:
        assert self._fd is not None         # segments stream only into an open part file
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(f"disk full while writing {self.path}", Status.DOWNLOAD_FAILED) from None
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def cut(self, size: int) -> None:
        """Make the file exactly `size` bytes (the preallocation may have reserved more)."""
        if os.path.getsize(self.path) != size:
            os.truncate(self.path, size)

    def discard(self) -> None:
        for path in (self.path, self.record_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    # ---- the record ---------------------------------------------------------------------------------

    def load(self) -> Plan | None:
        """The plan of a partial download, or None when there is none or it cannot be trusted (then
        the part file and its record are removed)."""
        try:
            data = loads(self.record_path.read_bytes())
            size = self.path.stat().st_size
        except (OSError, ValueError):
            return None
        plan = _plan_from_record(data, self.url)
        if plan is None:
            self.log.info("discarding a partial download whose record is unreadable")
        elif data.get("advertised", {}) != self.advertised:
            self.log.info("discarding the partial download: the hub's list advertises another package now")
            plan = None
        elif size < max((s.pos for s in plan.segments), default=0):
            plan = None
        if plan is None:
            self.discard()
        return plan

    def save(self, plan: Plan) -> None:
        """Record progress: after every chunk, so a killed process loses at most the bytes in flight.
        One pwrite into a file that never shrinks (JSON padded with spaces): a process death cannot
        tear it, and it costs no rename or fsync. The data it describes is not fsynced either; a
        package that lost bytes in a power cut fails its CRC or SHA-256 checks. The caller holds the
        download's lock: the plan must not change while it is written out."""
        if plan.identity is None:
            return
        document = {"url": self.url, "identity": plan.identity.to_json(), "total": plan.total, "ranges": plan.ranges,
                    "advertised": self.advertised, "segments": [[s.start, s.end, s.pos, s.urgent] for s in plan.segments]}
        data = json.dumps(document).encode()
        if self._record_fd is None:
            self._record_fd = os.open(self.record_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            self._record_len = 0
        if len(data) < self._record_len:
            data = data.ljust(self._record_len)
        os.pwrite(self._record_fd, data, 0)
        self._record_len = len(data)

    def close_record(self) -> None:
        if self._record_fd is not None:
            os.close(self._record_fd)
            self._record_fd = None


def _plan_from_record(data: Any, url: str) -> Plan | None:
    """A partial download's record, checked field by field (it is a file on disk: anything can be in it)."""
    if not isinstance(data, dict) or data.get("url") != url:
        return None
    identity = Identity.from_json(data.get("identity"))
    total = data.get("total")
    if identity is None or not _is_count(total) or not total or not isinstance(data.get("ranges"), bool):
        return None
    raw = data.get("segments")
    if not isinstance(raw, list) or not raw:
        return None
    segments = []
    for item in raw:
        if not isinstance(item, list) or len(item) not in (3, 4) or not all(_is_count(v) for v in item[:3]):
            return None
        start, end, pos = item[:3]
        if not start <= pos <= end <= total:
            return None
        segments.append(Segment(start, end, pos, urgent=bool(item[3]) if len(item) == 4 else False))
    if not tiles(segments, total):
        return None                     # the segments must tile the package exactly
    return Plan(identity, total, data["ranges"], segments)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62

