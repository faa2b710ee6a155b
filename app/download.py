"""Resumable, segmented, verified package download into <state_dir>/downloads/NAME.zip.part.

The part file sits beside a small JSON record (identity, total, segments with their progress), so a
later attempt or run resumes into the same package only, and a server that gives no parallelism (the
original hub serves one request at a time) is read as one stream.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import http.client

import requests
import urllib3

from .errors import DiskFullError, DownloadError, HubError, IdentityChanged, Interrupted
from .fsutil import atomic_write
from .hub import HubClient
from .identity import Identity, parse_content_range
from .progress import Progress

CHUNK = 1 << 20
SEGMENT_MIN = 8 << 20          # below 2 x this a package is fetched as one stream
SPLIT_MIN = 4 << 20            # an active segment with less left than 2 x this is not split
SECONDARY_WAIT = 15.0          # seconds a secondary request may wait for headers before we assume no parallelism
META_EVERY = 1.0

log = logging.getLogger("datahubsync.download")


@dataclass
class Segment:
    start: int
    end: int            # exclusive; may shrink when another worker takes over its tail
    pos: int
    busy: bool = False
    started: bool = False      # a secondary worker got its 206 and streams into it
    cancelled: bool = False    # absorbed by the open-ended stream before its own request answered

    @property
    def left(self) -> int:
        return self.end - self.pos


@dataclass
class Downloaded:
    path: Path
    identity: Identity
    size: int
    reused: bool = False


@dataclass
class _Plan:
    identity: Identity | None = None
    total: int | None = None
    ranges: bool = False
    segments: list[Segment] = field(default_factory=list)


class PackageDownload:
    """One package's download; `run()` returns when the part file holds the whole package."""

    def __init__(self, hub: HubClient, url: str, part: Path, *, connections: int, logger: logging.LoggerAdapter,
                 expected_size: int | None = None, refuse: tuple[Identity, ...] = ()):
        self.hub = hub
        self.url = url
        self.part = part
        self.meta_path = part.with_name(part.name + ".json")
        self.connections = max(1, connections)
        self.log = logger
        self.expected_size = expected_size
        self.refuse = refuse
        self.plan = _Plan()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._meta_written = 0.0
        self._parallel_ok = True
        self._active: set[requests.Response] = set()
        self._error: BaseException | None = None
        self.progress: Progress | None = None
        self.requests_made = 0

    # ---- metadata -------------------------------------------------------------------------------

    def _load_meta(self) -> _Plan | None:
        try:
            data = json.loads(self.meta_path.read_text())
            identity = Identity.from_json(data["identity"])
            segments = [Segment(int(a), int(b), int(p)) for a, b, p in data["segments"]]
            size = self.part.stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if data.get("url") != self.url or identity is None:
            return None
        total = data.get("total")
        if total is not None and size < max((s.pos for s in segments), default=0):
            return None
        return _Plan(identity, total, bool(data.get("ranges")), segments)

    def _save_meta(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._meta_written < META_EVERY:
            return
        self._meta_written = now
        plan = self.plan
        if plan.identity is None:
            return
        document = {"url": self.url, "identity": plan.identity.to_json(), "total": plan.total, "ranges": plan.ranges,
                    "segments": [[s.start, s.end, s.pos] for s in plan.segments]}
        atomic_write(self.meta_path, json.dumps(document).encode())

    def discard(self) -> None:
        for path in (self.part, self.meta_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    @property
    def done_bytes(self) -> int:
        return sum(s.pos - s.start for s in self.plan.segments)

    def complete(self) -> bool:
        plan = self.plan
        return bool(plan.segments) and plan.total is not None and all(s.pos >= s.end for s in plan.segments) \
            and sum(s.end - s.start for s in plan.segments) == plan.total

    # ---- requests -------------------------------------------------------------------------------

    def _get(self, start: int, end: int | None, *, wait: float | None = None,
             if_range: str | None = None, retries: int | None = None) -> requests.Response:
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}", "Accept-Encoding": "identity"}
        if if_range:
            headers["If-Range"] = if_range
        self.requests_made += 1
        return self.hub.request(self.url, headers=headers, stream=True, ok=(200, 206, 416),
                                what="downloading the package", read_timeout=wait, retries=retries)

    def _identity_of(self, response: requests.Response) -> tuple[Identity, int | None, bool]:
        if response.status_code == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None:
                raise DownloadError(f"the hub answered 206 without a usable Content-Range ({response.headers.get('Content-Range')!r})")
            total = content_range[2]
            return Identity.from_headers(response.headers, total), total, True
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        return Identity.from_headers(response.headers, total), total, False

    def _check_refused(self, identity: Identity, response: requests.Response) -> None:
        for bad in self.refuse:
            if identity.same(bad):
                response.close()
                raise IdentityChanged(f"the hub still serves the package already seen ({identity.describe()})")

    def _open_first(self) -> tuple[requests.Response, Segment]:
        """The first request: resume when the part file belongs to the package the hub serves now."""
        saved = self._load_meta()
        if saved is not None and saved.segments:
            first = next((s for s in saved.segments if s.pos < s.end), None)
            start = first.pos if first else 0
            response = self._get(start, None, if_range=saved.identity.if_range() if saved.ranges else None)
            identity, total, ranged = self._identity_of(response)
            if response.status_code == 206 and ranged and identity.same(saved.identity) and total == saved.total:
                self.plan = saved
                self._check_refused(identity, response)
                if first is None:        # the part file was already complete
                    response.close()
                    return response, None  # type: ignore[return-value]
                self.log.info("resuming the download at %d of %d bytes (%s)", self.done_bytes, total, identity.describe())
                return response, first
            response.close()
            reason = "the hub no longer serves that package" if response.status_code != 416 else "the hub refused the range (416)"
            self.log.info("discarding the partial download: %s", reason)
            self.discard()
        response = self._get(0, None)
        if response.status_code == 416:
            response.close()
            raise DownloadError("the hub answered 416 to a request for the whole package (empty package?)")
        identity, total, ranged = self._identity_of(response)
        self._check_refused(identity, response)
        self.plan = _Plan(identity, total, ranged and total is not None,
                          [Segment(0, total if total is not None else -1, 0)])
        return response, self.plan.segments[0]

    # ---- the part file --------------------------------------------------------------------------

    def _open_part(self) -> None:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        total = self.plan.total
        if total:
            try:
                if os.fstat(self._fd).st_size < total:
                    os.posix_fallocate(self._fd, 0, total)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise DiskFullError(f"not enough disk space for the package ({total} bytes) in {self.part.parent}",
                                        "download_failed") from None
                os.ftruncate(self._fd, total)   # filesystems without fallocate

    def _write(self, data: bytes, offset: int) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(f"disk full while writing {self.part}", "download_failed") from None
            raise

    # ---- workers --------------------------------------------------------------------------------

    def _stream(self, response: requests.Response, seg: Segment, open_ended: bool) -> None:
        """Copy a response into the part file from seg.pos until the segment ends."""
        with self._lock:
            self._active.add(response)
        try:
            raw = response.raw
            read = getattr(raw, "read1", None) or raw.read
            while True:
                if self.hub.stop.is_set():
                    raise Interrupted("stopped by signal")
                with self._lock:
                    if seg.end >= 0 and seg.pos >= seg.end and not (open_ended and self._absorb_next(seg)):
                        break
                    want = CHUNK if seg.end < 0 else min(CHUNK, seg.end - seg.pos)
                try:
                    data = read(want)
                except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                    if self.hub.stop.is_set():
                        raise Interrupted("stopped by signal") from None
                    raise DownloadError(f"the connection failed at byte {seg.pos}: {_why(exc)}") from None
                if not data:
                    if seg.end < 0:                      # unknown length: the body ended, so did the package
                        with self._lock:
                            seg.end = seg.pos
                            self.plan.total = seg.pos
                            self.plan.identity = Identity(**{**self.plan.identity.to_json(), "total": seg.pos})
                        break
                    raise DownloadError(f"the connection closed early at byte {seg.pos}")
                with self._lock:
                    # the tail may have been taken by another worker meanwhile
                    if seg.end >= 0:
                        data = data[: max(0, seg.end - seg.pos)]
                    offset = seg.pos
                self._write(data, offset)
                with self._lock:
                    seg.pos += len(data)
                    self._save_meta()
                if self.progress:
                    self.progress.add(len(data))
        finally:
            with self._lock:
                self._active.discard(response)
            response.close()

    def _absorb_next(self, seg: Segment) -> bool:
        """An open-ended stream continues into the next segment if nobody has started it (lock held)."""
        segments = self.plan.segments
        index = segments.index(seg)
        if index + 1 >= len(segments):
            return False
        nxt = segments[index + 1]
        if nxt.started or nxt.pos != nxt.start or nxt.start != seg.end:
            return False
        if nxt.busy:
            # its request is still waiting for an answer: the server is busy with ours
            nxt.cancelled = True
            self._parallel_ok = False
        seg.end = nxt.end
        segments.pop(index + 1)
        return True

    def _claim(self) -> Segment | None:
        """The next piece of work for a secondary worker: an idle segment, or the tail of the largest one."""
        with self._lock:
            if not self._parallel_ok or self._error is not None:
                return None
            for seg in self.plan.segments:
                if not seg.busy and seg.pos < seg.end:
                    seg.busy = True
                    return seg
            busiest = max((s for s in self.plan.segments if s.busy), key=lambda s: s.left, default=None)
            if busiest is None or busiest.left < 2 * SPLIT_MIN:
                return None
            mid = busiest.pos + busiest.left // 2
            tail = Segment(mid, busiest.end, mid, busy=True)
            busiest.end = mid
            self.plan.segments.insert(self.plan.segments.index(busiest) + 1, tail)
            return tail

    def _secondary(self) -> None:
        while True:
            seg = self._claim()
            if seg is None:
                return
            try:
                self._fetch_segment(seg)
            except (IdentityChanged, DiskFullError, Interrupted) as exc:
                with self._lock:
                    seg.busy = seg.started = False
                    self._error = self._error or exc
                return
            except BaseException as exc:          # noqa: BLE001 - its segment is left for the main stream
                with self._lock:
                    seg.busy = seg.started = False
                if not isinstance(exc, _NoParallelism) and not seg.cancelled:
                    self.log.warning("a parallel segment gave up (%s); the main stream takes it over", _why(exc))
                return
            with self._lock:
                seg.busy = seg.started = False

    def _fetch_segment(self, seg: Segment) -> None:
        attempts = self.hub.config.retries + 1
        for attempt in range(attempts):
            try:
                response = self._get(seg.pos, seg.end, wait=min(SECONDARY_WAIT, self.hub.config.timeout),
                                     if_range=self.plan.identity.if_range(), retries=0)
            except HubError as exc:
                if seg.cancelled:
                    raise _NoParallelism() from None
                if getattr(exc, "timed_out", False) and self._someone_streaming(seg):
                    self._give_up_parallelism()
                    raise _NoParallelism() from None
                if attempt + 1 >= attempts or not exc.retryable:
                    raise
                self.hub.wait(self.hub.backoff(attempt))
                continue
            identity, total, ranged = self._identity_of(response)
            if response.status_code != 206 or not identity.same(self.plan.identity) or total != self.plan.total:
                response.close()
                raise IdentityChanged("the package on the hub changed during the download")
            with self._lock:
                if seg.cancelled:
                    response.close()
                    raise _NoParallelism()
                seg.started = True
            try:
                self._stream(response, seg, open_ended=False)
                return
            except (requests.exceptions.RequestException, DownloadError, socket.timeout) as exc:
                if isinstance(exc, (IdentityChanged, DiskFullError)) or attempt + 1 >= attempts:
                    raise
                self.log.warning("segment at byte %d: %s; retrying", seg.pos, _why(exc))
                self.hub.wait(self.hub.backoff(attempt))

    def _someone_streaming(self, me: Segment) -> bool:
        with self._lock:
            return any(s.busy and s is not me for s in self.plan.segments)

    def _give_up_parallelism(self) -> None:
        with self._lock:
            if self._parallel_ok:
                self.log.info("the hub serves one request at a time; continuing as one stream")
            self._parallel_ok = False

    def _plan_segments(self, first: Segment) -> None:
        """Split what is left after `first` starts into `connections` pieces (fresh downloads only)."""
        total = self.plan.total
        if not (self.plan.ranges and total and self.connections > 1 and first.start == 0 and first.pos == 0
                and len(self.plan.segments) == 1 and total >= 2 * SEGMENT_MIN):
            return
        count = min(self.connections, total // SEGMENT_MIN)
        size = total // count
        bounds = [i * size for i in range(count)] + [total]
        first.end = bounds[1]
        self.plan.segments = [first] + [Segment(bounds[i], bounds[i + 1], bounds[i]) for i in range(1, count)]

    def _interrupt_streams(self) -> None:
        """Unblock reads waiting on a stalled server once a stop is requested."""
        self.hub.stop.wait()
        with self._lock:
            responses = list(self._active)
        for response in responses:
            sock = _socket_of(response)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # ---- the whole thing ------------------------------------------------------------------------

    def run(self) -> Downloaded:
        response, first = self._open_first()
        if first is None:
            self.log.info("the package was already downloaded (%s)", self.plan.identity.describe())
            return Downloaded(self.part, self.plan.identity, self.plan.total or 0, reused=True)
        if self.expected_size is not None and self.plan.total is not None and self.plan.total != self.expected_size:
            response.close()
            raise DownloadError(f"size mismatch: the hub lists package_size {self.expected_size} "
                                f"but serves {self.plan.total} bytes")
        self._plan_segments(first)
        try:
            self._open_part()
        except BaseException:
            response.close()
            raise
        self.progress = Progress(self.log, self.plan.total, self.done_bytes)
        self._save_meta(force=True)
        threading.Thread(target=self._interrupt_streams, daemon=True).start()
        first.busy = True
        workers = [threading.Thread(target=self._secondary, daemon=True, name=f"segment-{i}")
                   for i in range(1, self.connections if self.plan.ranges else 1)]
        for worker in workers:
            worker.start()
        try:
            self._primary(response, first)
            for worker in workers:
                # a worker still waiting for headers of an absorbed segment is not waited for
                while worker.is_alive() and not self.complete() and self._error is None:
                    worker.join(0.1)
            if self._error is not None:
                raise self._error
            # work that a gone worker left behind (or a server without parallelism)
            while not self.complete():
                seg = next((s for s in self.plan.segments if s.pos < s.end and not s.busy), None)
                if seg is None:
                    raise DownloadError("the download stopped before the package was complete")
                self._primary(None, seg)
        except KeyboardInterrupt:
            raise Interrupted("stopped by signal") from None
        finally:
            with self._lock:
                self._save_meta(force=True)
            if self.progress:
                self.progress.finish()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        size = self.plan.total or 0
        if os.path.getsize(self.part) != size:
            os.truncate(self.part, size)
        return Downloaded(self.part, self.plan.identity, size)

    def _primary(self, response: requests.Response | None, seg: Segment) -> None:
        """The open-ended stream, retried from where it stopped."""
        seg.busy = True
        attempts = self.hub.config.retries + 1
        try:
            for attempt in range(attempts):
                try:
                    if response is None:
                        response = self._get(seg.pos, None, if_range=self.plan.identity.if_range() if self.plan.ranges else None)
                        identity, total, ranged = self._identity_of(response)
                        if response.status_code != 206 or not identity.same(self.plan.identity) or total != self.plan.total:
                            response.close()
                            raise IdentityChanged("the package on the hub changed during the download")
                    self._stream(response, seg, open_ended=True)
                    return
                except (requests.exceptions.RequestException, DownloadError, socket.timeout) as exc:
                    if isinstance(exc, (IdentityChanged, DiskFullError)) or not self.plan.ranges or attempt + 1 >= attempts:
                        raise
                    self.log.warning("download interrupted at byte %d: %s; resuming", seg.pos, _why(exc))
                    self.hub.wait(self.hub.backoff(attempt))
                    response = None
        finally:
            seg.busy = False


class _NoParallelism(Exception):
    pass


def _why(exc: BaseException) -> str:
    text = str(exc)
    return text[:160] if text else type(exc).__name__


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = response.raw
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(fp, "raw", None), "_sock", None)


def sha256_of(path: Path, stop: threading.Event | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            if stop is not None and stop.is_set():
                raise Interrupted("stopped by signal")
            digest.update(chunk)
    return digest.hexdigest()
