"""A threaded hub that follows docs/hub-api.md but misbehaves on demand, one switch per fault.

Packages are bytes registered in code (or read from a folder of NAME.zip). Each test flips the
switches it needs: error statuses for the next N requests (500, 429 + Retry-After, 401...), a
truncated body, a server that ignores Range, slow or stalling bodies, a wrong advertised sha256,
required credentials, an HTML page where JSON belongs, redirects of packages to another host, and
ETag/If-Range support. Every request is logged in ``requests`` with the status it got.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from tests.hubs.common import LoopbackHub, RequestLog, logging_handler

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Package:
    data: bytes
    last_updated: Any
    package_ready: bool = True
    sha256: str | None = None
    listed: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    modified: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:16] + '"'


@dataclass
class _Fault:
    prefix: str
    status: int
    times: int
    headers: dict[str, str]
    body: bytes
    content_type: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class FaultyHub(LoopbackHub):
    """Usage: ``hub = FaultyHub(); hub.add_package("a", zip_bytes); hub.start(); ... hub.stop()``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests = RequestLog()
        self.packages: dict[str, Package] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        # Switches a test flips; all off means a well-behaved hub.
        self.rate: float | None = None  # bytes/s for package bodies
        self.stall: tuple[int, float, int] | None = None  # (after N body bytes, sleep seconds, times)
        self.truncate: tuple[int, int] | None = None  # (send this many body bytes then close, times)
        self.ignore_range = False  # answer 200 + whole body to ranged requests
        self.etag = False  # send ETag and honour If-Range
        self.last_modified = False  # send Last-Modified and honour If-Range with it
        self.content_disposition = True
        self.required_headers: dict[str, str] = {}  # 401 when missing, 403 when wrong
        self.list_override: tuple[int, str, bytes] | None = None  # (status, content type, body)
        self.bare_list = False  # answer the list as a bare JSON array
        self.redirect_packages_to: str | None = None  # base URL: /package/* -> 302 there
        self.fixed_etag: str | None = None  # one ETag for every package (nginx: mtime seconds + size)
        self.corrupt: int = 0  # flip one byte inside the next N package bodies (damage in transit)
        self.shift_ranges: tuple[int, int] | None = None  # (shift, times): 206s of bytes other than asked
        self.on_package_request: Callable[[int], None] | None = None  # called with the request's ordinal
        self.package_requests = 0
        self._bind(_Server((host, 0), _make_handler(self)))

    # -- content ---------------------------------------------------------------------------------
    def add_package(
        self,
        name: str,
        data: bytes,
        last_updated: Any = "2026-11-28T08:30:00Z",
        *,
        sha256: str | bool | None = None,
        package_ready: bool = True,
        listed: bool = True,
        **extra: Any,
    ) -> Package:
        """Register (or replace) a package. sha256=True advertises the real digest, a string
        advertises that string (a wrong one, say), None publishes none."""
        digest = hashlib.sha256(data).hexdigest() if sha256 is True else sha256 or None
        pkg = Package(data, last_updated, package_ready, digest, listed, dict(extra))
        with self._lock:
            self.packages[name] = pkg
        return pkg

    def add_folder(self, folder: Path) -> None:
        """Serve every NAME.zip of a folder, versioned by its mtime (UTC, with Z)."""
        for path in sorted(Path(folder).glob("*.zip")):
            stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
            self.add_package(path.stem, path.read_bytes(), stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    def set_ready(self, name: str, ready: bool = True) -> None:
        self.packages[name].package_ready = ready

    # -- faults ----------------------------------------------------------------------------------
    def fail_next(
        self,
        prefix: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: bytes = b'{"error": "injected"}',
        content_type: str = "application/json",
    ) -> None:
        """The next `times` requests whose path starts with prefix get this answer instead."""
        with self._lock:
            self._faults.append(_Fault(prefix, status, times, headers or {}, body, content_type))

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and path.startswith(fault.prefix):
                    fault.times -= 1
                    return fault
        return None

    def _take_stall(self, length: int) -> tuple[int, float] | None:
        """A stall is used up only by a body long enough to reach it (not by a 1-byte probe)."""
        with self._lock:
            if self.stall and self.stall[2] > 0 and length > self.stall[0]:
                after, seconds, times = self.stall
                self.stall = (after, seconds, times - 1)
                return after, seconds
        return None

    def _take_truncation(self, length: int) -> int | None:
        with self._lock:
            if self.truncate and self.truncate[1] > 0 and length > self.truncate[0]:
                after, times = self.truncate
                self.truncate = (after, times - 1)
                return after
        return None

    def _take_shift(self) -> int:
        with self._lock:
            if self.shift_ranges and self.shift_ranges[1] > 0:
                shift, times = self.shift_ranges
                self.shift_ranges = (shift, times - 1)
                return shift
        return 0

    def _take_corruption(self) -> bool:
        with self._lock:
            if self.corrupt > 0:
                self.corrupt -= 1
                return True
        return False

    def listing(self) -> Any:
        entries = []
        for name, pkg in list(self.packages.items()):
            if not pkg.listed:
                continue
            entry = {"name": name, "last_updated": pkg.last_updated,
                     "package_ready": pkg.package_ready, "package_size": len(pkg.data)}
            if pkg.sha256:
                entry["sha256"] = pkg.sha256
            entry.update(pkg.extra)
            entries.append(entry)
        return entries if self.bare_list else {"datasets": entries}


def _make_handler(hub: FaultyHub) -> type[BaseHTTPRequestHandler]:
    class Handler(logging_handler(hub.requests)):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._answer(head=True)

        def do_GET(self) -> None:
            self._answer(head=False)

        def _answer(self, head: bool) -> None:
            try:
                self._route(head)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _route(self, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            if not self._authorised():
                return
            fault = hub._take_fault(path)
            if fault is not None:
                self._send(fault.status, fault.body, fault.content_type, fault.headers)
            elif path == "/api/datasets":
                if hub.list_override:
                    status, ctype, body = hub.list_override
                    self._send(status, body, ctype)
                else:
                    self._send(200, json.dumps(hub.listing()).encode(), "application/json")
            elif path.startswith("/package/") and path.endswith(".zip"):
                self._package(path, path[len("/package/"):-len(".zip")], head)
            else:
                self._send(404, b'{"error": "Not found"}', "application/json")

        def _authorised(self) -> bool:
            for name, value in hub.required_headers.items():
                got = self.headers.get(name)
                if got is None:
                    self._send(401, b'{"error": "unauthorized"}', "application/json",
                               {"WWW-Authenticate": "Bearer"})
                    return False
                if got != value:
                    self._send(403, b'{"error": "forbidden"}', "application/json")
                    return False
            return True

        def _package(self, path: str, name: str, head: bool) -> None:
            with hub._lock:
                hub.package_requests += 1
                ordinal = hub.package_requests
            if hub.on_package_request is not None:
                hub.on_package_request(ordinal)
            if hub.redirect_packages_to:
                self._send(302, b"", "text/plain", {"Location": hub.redirect_packages_to + path})
                return
            pkg = hub.packages.get(name)
            if pkg is None or not pkg.package_ready:
                self._send(404, b'{"error": "Package not found"}', "application/json")
                return
            data, size = pkg.data, len(pkg.data)
            headers = {"Accept-Ranges": "bytes"}
            if hub.content_disposition:
                headers["Content-Disposition"] = f'attachment; filename="{name}.zip"'
            if hub.etag:
                headers["ETag"] = hub.fixed_etag or pkg.etag
            if hub.last_modified:
                headers["Last-Modified"] = formatdate(pkg.modified, usegmt=True)
            start, end, status = 0, size - 1, 200
            wanted = self.headers.get("Range")
            if wanted and not hub.ignore_range and self._if_range_holds(pkg):
                match = _RANGE.match(wanted)
                if match:
                    start = int(match.group(1))
                    end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                    if start >= size:
                        self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                        return
                    status = 206
                    shift = hub._take_shift() if start > 0 else 0
                    start, end = start + shift, min(end + shift, size - 1)
                    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            body = data[start:end + 1]
            if len(body) > 200 and hub._take_corruption():
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
            self._stream(status, body, headers, head)

        def _if_range_holds(self, pkg: Package) -> bool:
            validator = self.headers.get("If-Range")
            if validator is None:
                return True
            current = []
            if hub.etag:
                current.append(pkg.etag)
            if hub.last_modified:
                current.append(formatdate(pkg.modified, usegmt=True))
            return validator in current or validator == hub.fixed_etag

        def _stream(self, status: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            cut = hub._take_truncation(len(body))
            stall = hub._take_stall(len(body))
            self.send_response(status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key, value)
            if cut is not None:
                # A proxy cutting a transfer gives no warning: the socket just closes early.
                self.close_connection = True
            self.end_headers()
            if head:
                return
            limit = len(body) if cut is None else min(cut, len(body))
            chunk = 64 * 1024 if not hub.rate else max(512, min(64 * 1024, int(hub.rate / 20)))
            began, sent, stalled = time.monotonic(), 0, False
            while sent < limit and not hub._stopping.is_set():
                stop = min(limit, sent + chunk)
                if stall and not stalled and sent < stall[0]:
                    stop = min(stop, stall[0])  # end a block exactly where the stall begins
                block = body[sent:stop]
                self.wfile.write(block)
                sent += len(block)
                hub.requests.count_body(len(block))
                if stall and not stalled and sent >= stall[0]:
                    self.wfile.flush()
                    stalled = True
                    hub._stopping.wait(stall[1])
                if hub.rate:
                    lag = sent / hub.rate - (time.monotonic() - began)
                    if lag > 0:
                        time.sleep(lag)
            self.wfile.flush()

        def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
