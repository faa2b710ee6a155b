"""Credentials: token and extra headers, read fresh on every run, and kept out of every output."""
from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .config import HubConfig
from .errors import ConfigError

_known: set[str] = set()
_lock = threading.Lock()


def remember(secret: str) -> None:
    """Register a value that must never be printed (short values are ignored: they would mask noise)."""
    if secret and len(secret) >= 4:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_known, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def safe_url(url: str) -> str:
    """The URL without any user:password part."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def _read_secret_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read secret file {path}: {exc.strerror or exc}") from None
    if not value:
        raise ConfigError(f"{what}: secret file {path} is empty")
    return value


def resolve_credentials(hub: HubConfig) -> dict[str, str]:
    """The request headers that carry credentials (Authorization and hub.headers), files read now."""
    headers: dict[str, str] = {}
    for name, value in hub.headers.items():
        if value.startswith("file:"):
            value = _read_secret_file(value[5:], f"hub.headers.{name}")
        headers[name] = value
        remember(value)
    token = hub.token
    if hub.token_file:
        token = _read_secret_file(hub.token_file, "hub.token_file")
    if token:
        token = token.strip()
        remember(token)
        headers["Authorization"] = f"Bearer {token}"
    return headers


class RedactingFilter(logging.Filter):
    """Last line of defence: no registered secret leaves through a log handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
