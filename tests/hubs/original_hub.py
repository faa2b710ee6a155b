"""A faithful double of the original DataHubSync hub (docs/hub-api.md sections 1, 2, 4 and 7).

What it reproduces, quirks included:
- one request at a time (plain ``HTTPServer``, HTTP/1.0, connection closed after each answer);
- ``/api/datasets`` recomputed on every request from the data directories: ``last_updated`` is the
  newest file mtime as a *naive* local timestamp (``isoformat()``, microseconds kept) in the hub's
  zone, ``null`` when the directory holds no file; ``package_ready``/``package_size`` describe the
  newest ``NAME_YYYYmmdd_HHMMSS.zip`` in the cache folder; ``freshness``/``status`` come from the
  hub's scheduler state (``{}``/``"unknown"`` by default);
- ``/package/NAME.zip``: Content-Length, Accept-Ranges, Content-Disposition with the package's file
  name, no ETag/Last-Modified; ``Range: bytes=N-[M]`` -> 206 + Content-Range, a range reaching past
  the end -> 416 with ``Content-Range: bytes */SIZE`` and no body; a malformed Range -> 400 JSON;
  404 JSON before a package exists; no HEAD (501);
- paths are matched exactly, so a query string makes any route a 404.

Packages are built only when a test calls ``build_package`` so that "new data, old package" can be
staged, as happens on the real hub while its background packager has not run yet.
"""
from __future__ import annotations

import json
import mimetypes
import os
import re
import time
import zipfile
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.hubs.common import LoopbackHub, RequestLog, logging_handler

CHUNK = 64 * 1024
KEEP_VERSIONS = 5
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class OriginalHub(LoopbackHub):
    """The original hub over ``root/data/NAME`` (live data) and ``root/cache`` (packages)."""

    def __init__(self, root: Path, tz: str = "Asia/Shanghai", host: str = "127.0.0.1") -> None:
        self.root = Path(root)
        self.tz = ZoneInfo(tz)
        self.data_dir = self.root / "data"
        self.cache_dir = self.root / "cache"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.requests = RequestLog()
        # Bytes per second for package bodies; None = as fast as possible. The real hub is slow
        # because of its uplink; tests use this to catch a download in flight.
        self.rate: float | None = None
        self._names: list[str] = []
        self._states: dict[str, dict[str, Any]] = {}
        self.host = host
        self._bind(HTTPServer((host, 0), _make_handler(self)))

    # -- the hub's data (what its operators and scheduler do) ------------------------------------
    def add_dataset(self, name: str) -> Path:
        """Declare a dataset in the hub's config; its data directory may stay empty."""
        if name not in self._names:
            self._names.append(name)
        path = self.data_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_dataset(self, name: str) -> None:
        """Drop a dataset from the hub's config (it vanishes from the list)."""
        self._names.remove(name)

    def write_file(
        self, dataset: str, relpath: str, content: bytes | str, mtime: float | datetime | None = None
    ) -> Path:
        """Write one data file; mtime (epoch seconds or aware datetime) defaults to now."""
        path = self.add_dataset(dataset) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if mtime is not None:
            stamp = mtime.timestamp() if isinstance(mtime, datetime) else float(mtime)
            os.utime(path, (stamp, stamp))
        return path

    def delete_file(self, dataset: str, relpath: str) -> None:
        (self.data_dir / dataset / relpath).unlink()

    def set_state(self, dataset: str, status: str = "unknown", freshness: dict | None = None) -> None:
        """What the hub's scheduler would have recorded for a dataset."""
        self._states[dataset] = {"status": status, "freshness": freshness or {}}

    def build_package(self, dataset: str, built_at: datetime | None = None) -> Path:
        """Zip the data directory as the hub's packager does: deflated, no top folder, entry times
        = file mtimes in the hub's zone, file named after the packaging time."""
        src = self.data_dir / dataset
        when = (built_at or datetime.now(self.tz)).astimezone(self.tz)
        target = self._package_path(dataset, when)
        # The real packager runs minutes apart; tests build within one second, so move the name on
        # rather than overwrite a package a client may be resuming.
        while target.exists():
            when += timedelta(seconds=1)
            target = self._package_path(dataset, when)
        tmp = target.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(src.rglob("*")):
                if path.is_file():
                    local = datetime.fromtimestamp(path.stat().st_mtime, self.tz)
                    info = zipfile.ZipInfo(path.relative_to(src).as_posix(), local.timetuple()[:6])
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, path.read_bytes())
        os.replace(tmp, target)
        self._order_newest(dataset, target)
        self._drop_old_versions(dataset)
        return target

    def package_path(self, dataset: str) -> Path | None:
        """The package the hub serves now (newest by mtime), as the hub picks it."""
        found = sorted(self.cache_dir.glob(f"{dataset}_*.zip"), key=os.path.getmtime, reverse=True)
        return found[0] if found else None

    def last_updated(self, dataset: str) -> str | None:
        """The ``last_updated`` string the list would advertise right now."""
        return self._dataset_info(dataset)["last_updated"]

    # -- what the HTTP handler uses --------------------------------------------------------------
    def _dataset_info(self, name: str) -> dict[str, Any]:
        count, total, newest = 0, 0, None
        folder = self.data_dir / name
        if folder.is_dir():
            for path in folder.rglob("*"):
                if path.is_file():
                    st = path.stat()
                    count += 1
                    total += st.st_size
                    newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
        package = self.package_path(name)
        state = self._states.get(name, {})
        stamp = None
        if newest is not None:
            stamp = datetime.fromtimestamp(newest, self.tz).replace(tzinfo=None).isoformat()
        return {
            "name": name,
            "last_updated": stamp,
            "file_count": count,
            "total_size": total,
            "package_ready": package is not None,
            "package_size": package.stat().st_size if package else 0,
            "freshness": state.get("freshness", {}),
            "status": state.get("status", "unknown"),
        }

    def _listing(self) -> dict[str, Any]:
        return {"datasets": [self._dataset_info(name) for name in list(self._names)]}

    def _package_path(self, dataset: str, when: datetime) -> Path:
        return self.cache_dir / f"{dataset}_{when.strftime('%Y%m%d_%H%M%S')}.zip"

    def _order_newest(self, dataset: str, target: Path) -> None:
        # The hub picks the newest package by mtime; make that unambiguous within one second.
        others = [p.stat().st_mtime for p in self.cache_dir.glob(f"{dataset}_*.zip") if p != target]
        stamp = max([time.time(), *[m + 1 for m in others]])
        os.utime(target, (stamp, stamp))

    def _drop_old_versions(self, dataset: str) -> None:
        found = sorted(self.cache_dir.glob(f"{dataset}_*.zip"), key=os.path.getmtime, reverse=True)
        for old in found[KEEP_VERSIONS:]:
            old.unlink()

    def _throttle_delay(self, sent: int) -> float:
        return sent / self.rate if self.rate else 0.0


def _make_handler(hub: OriginalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(logging_handler(hub.requests)):

        def do_GET(self) -> None:
            try:
                self._route()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away mid-body (killed sync): nothing to answer
            except Exception as exc:  # the real hub answers 500 JSON on any error
                self._json(500, {"error": "Internal server error", "message": str(exc)})

        def _route(self) -> None:
            path = self.path
            if path == "/health":
                self._json(200, {"status": "ok"})
            elif path == "/api/datasets":
                self._json(200, hub._listing())
            elif path.startswith("/package/") and path.endswith(".zip"):
                self._package(path[len("/package/"):-len(".zip")])
            else:
                self._json(404, {"error": "Not found", "path": path})

        def _package(self, name: str) -> None:
            if not name or "/" in name or "\\" in name:
                self._json(400, {"error": "Invalid dataset name"})
                return
            package = hub.package_path(name)
            if package is None:
                self._json(404, {"error": "Package not found"})
                return
            size = package.stat().st_size
            wanted = self.headers.get("Range")
            start, end, status = 0, size - 1, 200
            if wanted:
                match = _RANGE.match(wanted)
                if not match:
                    self._json(400, {"error": "Invalid Range header"})
                    return
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else size - 1
                if start >= size or end >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", mimetypes.guess_type(package.name)[0] or "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Disposition", f'attachment; filename="{package.name}"')
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self._body(package, start, end - start + 1)

        def _body(self, package: Path, start: int, length: int) -> None:
            chunk = CHUNK if not hub.rate else max(1024, min(CHUNK, int(hub.rate / 20)))
            began, sent = time.monotonic(), 0
            with open(package, "rb") as fh:
                fh.seek(start)
                while sent < length and not hub._stopping.is_set():
                    block = fh.read(min(chunk, length - sent))
                    if not block:
                        break
                    self.wfile.write(block)
                    sent += len(block)
                    hub.requests.count_body(len(block))
                    lag = hub._throttle_delay(sent) - (time.monotonic() - began)
                    if lag > 0:
                        time.sleep(lag)

        def _json(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

    return Handler
