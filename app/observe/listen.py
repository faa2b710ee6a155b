"""The `cron` daemon's HTTP listener: /healthz (the scheduler lives), /readyz (the data can be trusted),
/metrics (Prometheus). Off unless an address is given; a threaded http.server in the background.
"""
from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from app import __version__
from app.core.config import Config
from app.core.errors import ConfigError
from app.observe.metrics import split_listen

log = logging.getLogger("datahubsync.listen")
IDLE_TIMEOUT = 30           # seconds a kept-alive or slow connection may stay silent


class ListenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"datahubsync/{__version__}"
    timeout = IDLE_TIMEOUT
    # Garbage (a TLS hello, a stray line) gets a status line too, not an HTTP/0.9 bare body.
    default_request_version = "HTTP/1.0"
    server: "Listener"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self) -> None:
        self._route(body=True)

    def do_HEAD(self) -> None:
        self._route(body=False)

    def _route(self, body: bool) -> None:
        try:
            path = urlsplit(self.path).path
        except ValueError:              # e.g. '//[x': an authority no URL parser accepts
            path = ""
        if path == "/healthz":
            alive = self._ask(self.server.alive, False)
            self._send(HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE,
                       {"status": "ok" if alive else "the scheduler is not running"}, body)
        elif path == "/readyz":
            self._readyz(body)
        elif path == "/metrics":
            self._metrics(body)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": "not found (try /healthz, /readyz or /metrics)"}, body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, 414, 431, 501, 505) as JSON, then close."""
        status = HTTPStatus(code)
        self.log_error("code %d, message %s", code, message)
        data = json.dumps({"error": " ".join((message or status.phrase).split())}).encode() + b"\n"
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.close_connection = True
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(data)

    def _ask(self, question: Callable[[], Any], failed: Any) -> Any:
        """A callback's answer; a failing one is logged and answers `failed`, the listener serves on."""
        try:
            return question()
        except Exception:           # one bad answer must not take the listener down
            log.exception("%s failed while answering %s", getattr(question, "__name__", "callback"), self.path)
            return failed

    def _readyz(self, body: bool) -> None:
        found = self._ask(self.server.ready, None)
        if found is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"ready": False, "problems": {"(listener)": "readiness could not be judged; see the log"}}, body)
        elif found:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"ready": False, "problems": dict(found)}, body)
        else:
            self._send(HTTPStatus.OK, {"ready": True}, body)

    def _metrics(self, body: bool) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
        data = self._ask(lambda: encoder(self.server.registry), None)
        if data is None:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "collecting the metrics failed; see the log"}, body)
            return
        self._write(HTTPStatus.OK, data, content_type, body)

    def _send(self, status: HTTPStatus, document: Mapping[str, Any], body: bool) -> None:
        self._write(status, json.dumps(document).encode() + b"\n", "application/json", body)

    def _write(self, status: HTTPStatus, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)


class Listener(ThreadingHTTPServer):
    """The server plus what its handlers ask; start_listener() runs it, stop() ends it."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, registry: CollectorRegistry,
                 ready: Callable[[], Mapping[str, str]], alive: Callable[[], bool]):
        self.address_family = family
        self.registry = registry
        self.ready = ready
        self.alive = alive
        self._thread: threading.Thread | None = None
        super().__init__(address, ListenHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host's name up in DNS (getfqdn): slow where DNS is not there.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended badly", client_address, exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the socket; requests in flight finish on their own threads."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()


def start_listener(addr: str, config: Config, collector_registry: CollectorRegistry,
                   ready: Callable[[], Mapping[str, str]], alive: Callable[[], bool]) -> Listener:
    """Serve /healthz, /readyz and /metrics on `addr` ('HOST:PORT' or ':PORT'; port 0 picks a free one).

    `ready()` returns {name: why not ready} (empty when ready), `alive()` whether the scheduler runs.
    A bad or busy address raises ConfigError naming metrics.listen. `config` is where the address
    came from; the listener only uses it for its start-up line.
    """
    host, port = split_listen(addr.strip(), lowest=0)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = Listener((host, port), family, collector_registry, ready, alive)
    except OSError as exc:
        raise ConfigError(f"metrics.listen: cannot listen on {addr!r}: {exc.strerror or exc}") from None
    listener.start()
    log.info("serving /healthz, /readyz and /metrics on %s (%d dataset(s))", addr.strip(), len(config.datasets))
    return listener
