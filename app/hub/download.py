"""Resumable, segmented, verified package download into <state_dir>/downloads/NAME.zip.part.

The part file sits beside a small JSON record (identity, total, each segment's progress: see
app.hub.partfile), so a later attempt or run resumes into the same package only. Every request is a
closed byte range, so nothing is fetched twice; which bytes each worker fetches is decided by the
pure rules of app.hub.segments. A server that gives no parallelism (the original hub serves one
request at a time) is detected and read as one stream.
"""
from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import urllib3

from app.core.errors import Cancelled, DiskFullError, DownloadError, HubTimeout, IdentityChanged, Interrupted, PackageAlreadySeen
from app.core.progress import Progress
from app.hub import segments, transport
from app.hub.client import HubClient
from app.hub.identity import Identity, parse_content_range
from app.hub.partfile import PartFile
from app.hub.segments import Plan, Segment

CHUNK = 256 << 10            # bytes read from a connection at once (small pieces keep memory flat, see zipread)
FIRST_RANGE = 16 << 20         # the first request asks for this much: small packages need no second one
SECONDARY_WAIT = 10.0          # seconds a parallel request may wait for its answer while another streams

log = logging.getLogger("datahubsync.download")


@dataclass
class Downloaded:
    path: Path
    identity: Identity
    size: int


class _NoParallelism(Exception):
    pass


class PackageDownload:
    """One package's download; `run()` returns when the part file holds the whole package."""

    def __init__(self, hub: HubClient, url: str, part: Path, *, connections: int, logger: logging.LoggerAdapter[logging.Logger],
                 expected_size: int | None = None, refuse: tuple[Identity, ...] = (), tail_first: bool = False,
                 advertised: dict[str, Any] | None = None):
        self.hub = hub
        self.tail_first = tail_first
        self.url = url
        self.part = part
        self._file = PartFile(part, url, dict(advertised or {}), logger)
        self.connections = max(1, connections)
        self.log = logger
        self.expected_size = expected_size
        self.refuse = refuse
        self.plan = Plan()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)   # bytes arrived, or the download ended
        self._ended = False
        self._cancel = threading.Event()
        self.planned = threading.Event()           # the package's size and layout are known
        self._parallel_ok = True
        self._active: set[requests.Response] = set()
        self._error: BaseException | None = None
        self.progress: Progress | None = None
        self.received = 0          # package bytes received from the hub by this download
        self.retries = 0           # requests repeated after a broken or stalled stream

    # ---- the part file (app.hub.partfile) and the plan's state (app.hub.segments) ----------------

    def discard(self) -> None:
        """Remove the part file and its record."""
        self._file.discard()

    @property
    def done_bytes(self) -> int:
        return segments.done_bytes(self.plan.segments)

    def complete(self) -> bool:
        return segments.complete(self.plan)

    # ---- requests -------------------------------------------------------------------------------

    def _get(self, start: int, end: int | None, *, wait: float | None = None, if_range: str | None = None,
             retries: int | None = None) -> requests.Response:
        """GET bytes [start, end) (to the end when `end` is None); a 206 must answer exactly that range."""
        headers = {"Range": f"bytes={start}-{'' if end is None else end - 1}", "Accept-Encoding": "identity"}
        if if_range:
            headers["If-Range"] = if_range
        response = self.hub.request(self.url, headers=headers, stream=True, ok=(200, 206, 416),
                                    what="downloading the package", read_timeout=wait, retries=retries)
        if response.status_code == 206:
            _check_range(response, start, end)
        return response

    def _identity_of(self, response: requests.Response) -> tuple[Identity, int | None, bool]:
        if response.status_code == 206:
            content_range = parse_content_range(response.headers.get("Content-Range"))
            if content_range is None:
                response.close()
                raise DownloadError(f"the hub answered 206 without a usable Content-Range ({response.headers.get('Content-Range')!r})")
            total = content_range[2]
            return Identity.from_headers(response.headers, total), total, True
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        return Identity.from_headers(response.headers, total), total, False

    def _same_package(self, response: requests.Response) -> bool:
        """A 206 of the package we are writing (docs/hub-api.md: checked on every answer)."""
        identity, total, _ = self._identity_of(response)
        return response.status_code == 206 and identity.same(self.plan.identity) and total == self.plan.total

    @property
    def identity(self) -> Identity:
        """The package's identity, known from the first answer on (every use comes after it)."""
        identity = self.plan.identity
        assert identity is not None
        return identity

    def _check_refused(self, identity: Identity, response: requests.Response) -> None:
        for bad in self.refuse:
            if identity.same(bad):
                response.close()
                raise PackageAlreadySeen(f"the hub still serves the package already seen ({identity.describe()})")

    def _open_first(self) -> tuple[requests.Response | None, Segment | None]:
        """The first request: resume when the part file belongs to the package the hub serves now."""
        saved = self._file.load()
        if saved is not None and saved.segments:
            self.plan = saved
            identity = saved.identity
            assert identity is not None              # a record without one is never loaded (_plan_from_record)
            first = next((s for s in saved.segments if s.pos < s.end), None)
            probe = first or Segment(0, 1, 0)      # complete already: a one-byte probe checks it is still current
            try:
                response = self._get(probe.pos, probe.end, if_range=identity.if_range())
            except DownloadError as exc:         # a 206 of other bytes than asked: start over, cleanly
                self.log.info("discarding the partial download: %s", exc)
                self.discard()
                return self._open_fresh()
            if self._same_package(response):
                self._check_refused(identity, response)
                if first is None:
                    response.close()
                    return None, None
                self.log.info("resuming the download at %d of %d bytes (%s)", self.done_bytes, saved.total,
                              identity.describe())
                return response, first
            response.close()
            reason = "the hub refused the range (416)" if response.status_code == 416 else "the hub serves another package now"
            self.log.info("discarding the partial download: %s", reason)
            self.discard()
        return self._open_fresh()

    def _open_fresh(self) -> tuple[requests.Response, Segment]:
        """The first request of a download from byte 0; plans the segments from its answer."""
        self.plan = Plan()
        first_end = None if self.connections == 1 else FIRST_RANGE
        response = self._get(0, first_end)
        if response.status_code == 416 and first_end is not None:
            # strict servers (the original hub) refuse a range reaching past the end: it tells the size
            size = _unsatisfied_size(response.headers.get("Content-Range"))
            response.close()
            if size:
                first_end = min(size, FIRST_RANGE)
                response = self._get(0, first_end)
        if response.status_code == 416:
            response.close()
            raise DownloadError("the hub answered 416 to a request for the start of the package (empty package?)")
        identity, total, ranged = self._identity_of(response)
        self._check_refused(identity, response)
        self.plan = segments.plan_package(identity, total, ranged, first_end, connections=self.connections,
                                          tail_first=self.tail_first)
        return response, self.plan.segments[0]

    # ---- moving bytes -----------------------------------------------------------------------------

    def _stream(self, response: requests.Response, seg: Segment, absorb: bool = False) -> None:
        """Copy a response into the part file from seg.pos until the segment ends."""
        with self._lock:
            self._active.add(response)
        try:
            read = getattr(response.raw, "read1", None) or response.raw.read
            while True:
                self._check_stop()
                with self._lock:
                    if 0 <= seg.end <= seg.pos and not (absorb and segments.absorb_next(self.plan.segments, seg)):
                        return
                    want = CHUNK if seg.end < 0 else min(CHUNK, seg.end - seg.pos)
                data = self._read(read, want, seg)
                if not data:
                    if seg.end < 0:                      # unknown length: the body ended, so did the package
                        self._learn_total(seg)
                        return
                    raise DownloadError(f"the connection closed early at byte {seg.pos}")
                self._store(seg, data)
        finally:
            with self._lock:
                self._active.discard(response)
            response.close()

    def _read(self, read: Callable[[int], bytes], want: int, seg: Segment) -> bytes:
        try:
            return read(want)
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            self._check_stop()
            raise DownloadError(f"the connection failed at byte {seg.pos}: {transport.reason(exc)}") from None

    def _store(self, seg: Segment, data: bytes) -> None:
        """Write bytes read for a segment at its position, then record the progress."""
        with self._lock:
            if seg.end >= 0:                     # the tail may have been taken by another worker
                data = data[: max(0, seg.end - seg.pos)]
            offset = seg.pos
        self._file.write(data, offset)
        with self._lock:
            seg.pos += len(data)
            self.received += len(data)
            self._file.save(self.plan)
            self._changed.notify_all()
        if self.progress:
            self.progress.add(len(data))

    def _check_stop(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("download cancelled")
        if self.hub.stop.is_set():
            raise Interrupted("stopped by signal")

    def cancel(self) -> None:
        self._cancel.set()

    def _learn_total(self, seg: Segment) -> None:
        with self._lock:
            seg.end = seg.pos
            self.plan.total = seg.pos
            self.plan.identity = Identity(**{**self.identity.to_json(), "total": seg.pos})

    def _fetch(self, seg: Segment, response: requests.Response | None = None, *, secondary: bool = False,
               open_ended: bool = False) -> None:
        """Fill one segment, resuming within it after a broken or stalled stream."""
        attempts = self.hub.config.retries + 1
        for attempt in range(attempts):
            try:
                if response is None:
                    response = self._request_segment(seg, secondary, open_ended)
                self._stream(response, seg, absorb=open_ended)
                return
            except (requests.exceptions.RequestException, DownloadError, socket.timeout) as exc:
                if isinstance(exc, (IdentityChanged, DiskFullError)) or not self.plan.ranges or attempt + 1 >= attempts:
                    raise
                self.log.warning("download interrupted at byte %d: %s; resuming", seg.pos, _why(exc))
                with self._lock:
                    self.retries += 1
                self.hub.wait(self.hub.backoff(attempt))
                response = None

    def _request_segment(self, seg: Segment, secondary: bool, open_ended: bool) -> requests.Response:
        try:
            response = self._get(seg.pos, None if open_ended else seg.end, if_range=self.identity.if_range(),
                                 wait=min(SECONDARY_WAIT, self.hub.config.timeout) if secondary else None)
        except HubTimeout:
            if secondary and self._someone_streaming(seg):
                self._give_up_parallelism()
                raise _NoParallelism() from None
            raise
        if not self._same_package(response):
            response.close()
            raise IdentityChanged("the package on the hub changed during the download")
        return response

    # ---- for a reader that works while the download goes on ----------------------------------------

    def covered(self) -> list[tuple[int, int]]:
        """The byte ranges on disk now, merged (lock held)."""
        return segments.covered(self.plan.segments)

    def covered_now(self) -> list[tuple[int, int]]:
        with self._lock:
            return self.covered()

    def wait_for(self, start: int, end: int, timeout: float = 1.0) -> None:
        """Block until bytes [start, end) are on disk; raises once the download has ended without them."""
        with self._lock:
            while not any(a <= start and end <= b for a, b in self.covered()):
                if self._ended:
                    raise DownloadError("the download ended before the package was complete")
                self._changed.wait(timeout)

    def wait_changed(self, timeout: float) -> list[tuple[int, int]]:
        """Wait for progress (or the end), then the covered ranges; raises once ended incomplete."""
        with self._lock:
            before = self.covered()
            if not self._ended:
                self._changed.wait(timeout)
            now = self.covered()
            if self._ended and now == before and not self.complete():
                raise DownloadError("the download ended before the package was complete")
            return now

    # ---- who does what ----------------------------------------------------------------------------

    def _claim(self, split: bool) -> Segment | None:
        """The next piece of work: an idle segment, or the second half of the largest running one."""
        with self._lock:
            if self._error is not None:
                return None
            return segments.claim(self.plan.segments, split=split and self._parallel_ok)

    def _work(self, secondary: bool) -> None:
        """A worker's loop; secondaries stop when the server turns out to serve one request at a time."""
        while not (secondary and not self._parallel_ok):
            seg = self._claim(split=True)
            if seg is None:
                return
            try:
                self._fetch(seg, secondary=secondary)
            except _NoParallelism:
                return
            except BaseException as exc:          # noqa: BLE001 - handed to the main thread
                with self._lock:
                    self._error = self._error or exc
                return
            finally:
                with self._lock:
                    seg.busy = False

    def _someone_streaming(self, me: Segment) -> bool:
        with self._lock:
            return any(s.busy and s is not me for s in self.plan.segments)

    def _give_up_parallelism(self) -> None:
        with self._lock:
            if self._parallel_ok:
                self.log.info("the hub serves one request at a time; continuing with one stream")
            self._parallel_ok = False

    def _interrupt_streams(self, done: threading.Event) -> None:
        """Unblock reads waiting on a stalled server as soon as a stop is requested."""
        while not done.is_set():
            if self.hub.stop.wait(0.5):
                break
        else:
            return
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
        try:
            return self._run()
        finally:
            with self._lock:
                self._ended = True
                self._changed.notify_all()
            self.planned.set()

    def _run(self) -> Downloaded:
        response, first = self._open_first()
        self.planned.set()
        if first is None:
            self.log.info("the package was already downloaded (%s)", self.identity.describe())
            return Downloaded(self.part, self.identity, self.plan.total or 0)
        assert response is not None         # _open_first gives both or neither
        if self.expected_size is not None and self.plan.total is not None and self.plan.total != self.expected_size:
            response.close()
            raise DownloadError(f"size mismatch: the hub lists package_size {self.expected_size} "
                                f"but serves {self.plan.total} bytes")
        try:
            self._file.open(self.plan.total)
        except BaseException:
            response.close()
            raise
        self.progress = Progress(self.log, self.plan.total, self.done_bytes)
        done = threading.Event()
        threading.Thread(target=self._interrupt_streams, args=(done,), daemon=True).start()
        try:
            self._fetch_all(response, first)
        except KeyboardInterrupt:
            raise Interrupted("stopped by signal") from None
        finally:
            done.set()
            with self._lock:
                self._file.save(self.plan)
                self._file.close_record()
            if self.progress:
                self.progress.finish()
            self._file.close()
        size = self.plan.total or 0
        self._file.cut(size)
        return Downloaded(self.part, self.identity, size)

    def _fetch_all(self, response: requests.Response, first: Segment) -> None:
        """The first answer streams into its segment while the workers take the rest in parallel."""
        first.busy = True
        workers = []
        if self.plan.ranges:
            workers = [threading.Thread(target=self._work, args=(True,), daemon=True, name=f"segment-{i}")
                       for i in range(1, self.connections)]
        for worker in workers:
            worker.start()
        try:
            self._fetch(first, response)
        finally:
            first.busy = False
        self._work(secondary=False)
        for worker in workers:
            worker.join()
        if self._error is not None:
            raise self._error
        self._finish_leftovers()

    def _finish_leftovers(self) -> None:
        """What parallel workers left (a server without parallelism): one open-ended stream at a time."""
        while not self.complete():
            seg = segments.next_unfinished(self.plan.segments)
            if seg is None:
                raise DownloadError("the download stopped before the package was complete")
            seg.busy = True
            try:
                self._fetch(seg, open_ended=True)
            finally:
                seg.busy = False


def _check_range(response: requests.Response, start: int, end: int | None) -> None:
    """A 206 must carry the bytes asked for: anything else would be written at the wrong offset."""
    header = response.headers.get("Content-Range")
    parsed = parse_content_range(header)
    if parsed is None:
        response.close()
        raise DownloadError(f"the hub answered 206 without a usable Content-Range ({_clip(header)!r})")
    first, last, total = parsed
    if end is None:
        want_last = None if total is None else total - 1
    else:
        want_last = end - 1 if total is None else min(end, total) - 1
    if first != start or last < first or (want_last is not None and last != want_last) \
            or (total is not None and last >= total):
        response.close()
        raise DownloadError(f"the hub answered bytes {first}-{last} to a request for bytes {start}-"
                            f"{'' if end is None else end - 1}; refusing to write them at the wrong offset")


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:80]


def _unsatisfied_size(content_range: str | None) -> int | None:
    """The length in a 416's `Content-Range: bytes */LENGTH`."""
    if content_range and content_range.strip().startswith("bytes */"):
        tail = content_range.strip()[len("bytes */"):]
        return int(tail) if tail.isdigit() else None
    return None


def _why(exc: BaseException) -> str:
    """Our own errors say what happened; a library's are named by their type (app.hub.transport)."""
    if isinstance(exc, DownloadError):
        return str(exc)[:200]
    return transport.reason(exc)


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = response.raw
    sock: socket.socket | None = getattr(getattr(raw, "_connection", None), "sock", None)
    if sock is not None:
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock

