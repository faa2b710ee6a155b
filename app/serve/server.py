"""`serve DIR`: a hub over a folder of NAME.zip packages, with the original hub's URLs (docs/hub-api.md).

Threaded, Range/If-Range/ETag aware, and the bodies go out with sendfile(2).
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import threading
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import unquote, urlsplit

from app import __version__
from app.core.errors import PackageError
from app.core.fsutil import sha256_file
from app.core.names import is_dataset_name
from app.core.timeutil import to_iso
from app.package.zipread import read_directory

log = logging.getLogger("datahubsync.serve")
PACKAGE_PATH = re.compile(r"/package/([^/]+)\.zip", re.DOTALL)     # always fullmatch; the name is judged by path_of
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class PackageIndex:
    """Facts about each package, recomputed only when the file changes (size, mtime).

    A package our own reader refuses is left out of the listing (clients would refuse it too), with
    one warning per version of that file; the other packages are listed as usual.
    """

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[str, tuple[tuple[int, int], dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def path_of(self, name: str) -> Path | None:
        if not is_dataset_name(name):
            return None
        path = self.root / f"{name}.zip"
        return path if path.is_file() and path.parent == self.root else None

    def describe(self, path: Path) -> dict[str, Any] | None:
        """The package's list entry; None when it is not a sound package (OSError: it went away)."""
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        name = path.name[:-4]
        with self._lock:
            cached = self._cache.get(name)
        if cached and cached[0] == key:
            return cached[1]
        with open(path, "rb") as fh:
            try:
                directory = read_directory(fh)
            except PackageError as exc:
                self._remember(name, key, None, exc)
                return None
            files = total = 0
            for e in directory:
                if not e.is_dir:
                    files, total = files + 1, total + e.size
            del directory
            try:
                modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
            except (ValueError, OverflowError, OSError):
                self._remember(name, key, None, f"its modification time ({stat.st_mtime:.0f}) is out of range")
                return None
            sha = sha256_file(fh.fileno())         # the same file as its directory, even if replaced meanwhile
        entry = {
            "name": name,
            "last_updated": to_iso(modified),
            "package_ready": True, "package_size": stat.st_size, "sha256": sha,
            "file_count": files, "total_size": total,
        }
        self._remember(name, key, entry)
        return entry

    def _remember(self, name: str, key: tuple[int, int], entry: dict[str, Any] | None,
                  problem: Exception | str | None = None) -> None:
        with self._lock:
            known = self._cache.get(name)
            self._cache[name] = (key, entry)
        if problem is not None and (known is None or known[0] != key):    # once per version of the file
            log.warning("not listing %s.zip: %s", name, problem)

    def listing(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for path in sorted(self.root.glob("*.zip")):
            if path.is_file() and is_dataset_name(path.name[:-4]):
                seen.add(path.name[:-4])
                try:
                    entry = self.describe(path)
                except OSError:
                    continue          # removed while we looked
                if entry is not None:
                    out.append(entry)
        with self._lock:
            for gone in self._cache.keys() - seen:
                del self._cache[gone]
        return out


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"datahubsync/{__version__}"
    index: PackageIndex

    def log_message(self, fmt: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), fmt % args)

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path in ("/api/datasets", "/api/datasets/"):
            self._send_json({"datasets": self.index.listing()}, body)
            return
        if path == "/healthz":
            self._send_json({"status": "ok"}, body)
            return
        match = PACKAGE_PATH.fullmatch(path)
        package = self.index.path_of(match.group(1)) if match else None
        if package is None:
            self._send_error(HTTPStatus.NOT_FOUND, "no such package", body=body)
            return
        self._send_package(package, body)

    def _send_json(self, document: object, body: bool) -> None:
        data = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _send_error(self, status: HTTPStatus, message: str, extra: dict[str, str] | None = None, body: bool = True) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _send_package(self, path: Path, body: bool) -> None:
        try:
            fh = open(path, "rb")
        except OSError:
            self._send_error(HTTPStatus.NOT_FOUND, "no such package", body=body)
            return
        with fh:
            stat = os.fstat(fh.fileno())
            size = stat.st_size
            etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
            modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
            start, end = 0, size - 1
            status = 200
            wanted = self.headers.get("Range")
            if wanted and self._if_range_holds(etag, modified):
                parsed = parse_range(wanted, size)
                if parsed == "unsatisfiable":
                    self._send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "range not satisfiable",
                                     {"Content-Range": f"bytes */{size}"}, body=body)
                    return
                if parsed is not None:
                    start, end = parsed
                    status = 206
            length = end - start + 1 if size else 0
            self.send_response(status)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", modified)
            stamp = datetime.fromtimestamp(stat.st_mtime, timezone.utc).strftime("%Y%m%d_%H%M%S")
            self.send_header("Content-Disposition", f'attachment; filename="{path.stem}_{stamp}.zip"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if body and length:
                self._sendfile(fh, start, length)

    def _if_range_holds(self, etag: str, modified: str) -> bool:
        condition = self.headers.get("If-Range")
        return condition is None or condition.strip() in (etag, modified)

    def _sendfile(self, fh: BinaryIO, offset: int, count: int) -> None:
        """sendfile(2) on a plain socket; socket.sendfile falls back to send() under TLS."""
        self.wfile.flush()
        try:
            self.connection.sendfile(fh, offset, count)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def parse_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One byte range (the only kind clients here send); None means 'ignore it, send everything'."""
    match = RANGE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:                              # suffix: the last N bytes
        count = int(last)
        if count == 0:
            return "unsatisfiable"
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, end


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def make_server(directory: str | Path, host: str = "127.0.0.1", port: int = 8080) -> HubServer:
    root = Path(directory).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    handler = type("BoundHubHandler", (HubHandler,), {"index": PackageIndex(root)})
    return HubServer((host, port), handler)
