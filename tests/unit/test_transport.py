"""Failures on the wire are told apart by their exception types, with real sockets on 127.0.0.1."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from app.hub import transport


def _fail(url: str, **kwargs: object) -> BaseException:
    with pytest.raises(requests.exceptions.RequestException) as caught:
        requests.get(url, **kwargs)           # type: ignore[arg-type]
    return caught.value


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused() -> None:
    exc = _fail(f"http://127.0.0.1:{_closed_port()}/", timeout=2)
    assert transport.reason(exc) == "connection refused"
    assert not transport.is_timeout(exc)


def test_read_timeout(silent_port: int) -> None:
    exc = _fail(f"http://127.0.0.1:{silent_port}/", timeout=(2, 0.3))
    assert transport.reason(exc) == "read timed out"
    assert transport.is_timeout(exc)


def test_tls_to_a_plain_server(silent_port: int) -> None:
    exc = _fail(f"https://127.0.0.1:{silent_port}/", timeout=(2, 0.3))
    assert transport.reason(exc) in ("read timed out", "TLS error")     # the handshake never gets an answer
    assert transport.is_timeout(exc) == (transport.reason(exc) == "read timed out")


def test_a_connection_closed_mid_body() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
        conn.close()
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        response = requests.get(f"http://127.0.0.1:{server.getsockname()[1]}/", stream=True, timeout=5)
        with pytest.raises(requests.exceptions.RequestException) as caught:
            response.content
        assert transport.reason(caught.value) == "connection broken"
        assert not transport.is_timeout(caught.value)
    finally:
        thread.join()
        server.close()


def test_causes_visits_each_link_once() -> None:
    inner = ConnectionRefusedError(111, "Connection refused")
    outer = requests.exceptions.ConnectionError(inner)
    outer.__context__ = outer                            # a cycle must not loop
    assert list(transport.causes(outer)) == [outer, inner]
    assert transport.reason(ValueError("x")) == "ValueError"
    assert transport.reason(OSError(28, "No space left on device")) == "no space left on device"
