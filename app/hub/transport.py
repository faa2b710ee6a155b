"""What went wrong on the wire, told apart by exception type (never by a library's message text).

requests wraps urllib3, which wraps the socket and ssl errors; the cause we want to name sits
somewhere in that chain (`__cause__`, `__context__`, `reason`, `args`). One short phrase per kind,
so messages are stable across library versions and never echo a URL or header back.
"""
from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator

import requests
import urllib3.exceptions

_TIMEOUTS = (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError)
_BROKEN = (urllib3.exceptions.ProtocolError, http.client.IncompleteRead, requests.exceptions.ChunkedEncodingError,
           urllib3.exceptions.IncompleteRead)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception it wraps, outermost first, each once."""
    seen: set[int] = set()
    queue = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *getattr(current, "args", ())]
        queue.extend(item for item in linked if isinstance(item, BaseException))


def _timed_out(e: BaseException) -> bool:
    # urllib3's NewConnectionError derives from ConnectTimeoutError for history's sake: a refused
    # connection is not a timeout
    return isinstance(e, _TIMEOUTS) and not isinstance(e, urllib3.exceptions.NewConnectionError)


def is_timeout(exc: BaseException) -> bool:
    return any(_timed_out(e) for e in causes(exc))


def reason(exc: BaseException) -> str:
    """A short phrase for why a request failed (no URL, no header, no secret)."""
    chain = list(causes(exc))

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> BaseException | None:
        return next((e for e in chain if isinstance(e, kind)), None)

    if (cert := first(ssl.SSLCertVerificationError)) is not None:
        return f"certificate verify failed ({getattr(cert, 'verify_message', None) or 'untrusted certificate'})"
    if (tls := first(ssl.SSLError)) is not None:
        return f"TLS error ({getattr(tls, 'reason', None) or type(tls).__name__})"
    if first(requests.exceptions.SSLError) is not None:
        return "TLS error"
    if first(ConnectionRefusedError) is not None:
        return "connection refused"
    if first(ConnectionResetError) is not None:
        return "connection reset by the server"
    if first(socket.gaierror) is not None:
        return "host name not found"
    timeouts = [e for e in chain if _timed_out(e)]
    if any(isinstance(e, (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)) for e in timeouts):
        return "connect timed out"
    if timeouts:
        return "read timed out"
    if first(_BROKEN) is not None:
        return "connection broken"
    if (os_error := first(OSError)) is not None and isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror.lower()
    return type(exc).__name__
