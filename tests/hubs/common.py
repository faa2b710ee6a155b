"""Pieces shared by the hub doubles: the request log and a background server thread."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator, NamedTuple


class LoggedRequest(NamedTuple):
    """One request as the hub saw it; a plain tuple so tests can unpack it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int


class RequestLog(list):
    """Thread-safe list of LoggedRequest with a few queries the tests use often."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.stamps: list[float] = []  # time.monotonic() of each entry, same order
        self.body_bytes = 0  # package body bytes sent since the last reset

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.append(entry)
            self.stamps.append(time.monotonic())

    def count_body(self, n: int) -> None:
        with self._lock:
            self.body_bytes += n

    def reset(self) -> None:
        with self._lock:
            self.clear()
            self.stamps.clear()
            self.body_bytes = 0

    def to(self, prefix: str) -> list[LoggedRequest]:
        """Requests whose path starts with prefix (e.g. "/package/")."""
        with self._lock:
            return [r for r in self if r.path.startswith(prefix)]


def header_of(entry: LoggedRequest, name: str) -> str | None:
    """Case-insensitive header lookup on one logged request."""
    lowered = name.lower()
    for key, value in entry.headers.items():
        if key.lower() == lowered:
            return value
    return None


class ServerThread:
    """Runs an http.server instance in a daemon thread until stop()."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


class LoopbackHub:
    """What every test hub shares: its server runs in a thread on a free port of `host`."""

    host: str
    port: int

    def _bind(self, server: HTTPServer) -> None:
        self._stopping = threading.Event()
        self._server = server
        self._thread = ServerThread(server)
        self.port = server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(server: HTTPServer) -> Iterator[str]:
    """Run `server` (the product's own, say) in a thread for the block; yields its base URL."""
    thread = ServerThread(server)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        thread.stop()


def logging_handler(log: RequestLog) -> type[BaseHTTPRequestHandler]:
    """A quiet handler base that records each answer (method, path, headers, status) in `log`."""

    class Logged(BaseHTTPRequestHandler):
        # Guards a serving thread against a client that connects and never speaks.
        timeout = 30

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def send_response(self, code: int, message: str | None = None) -> None:
            log.record(LoggedRequest(self.command, self.path, dict(self.headers), code))
            super().send_response(code, message)

    return Logged
