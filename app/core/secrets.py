"""Credentials: what a secret may hold, token and extra headers read fresh on every run, and kept out of every output."""
from __future__ import annotations

import json
import logging
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

from app.core.errors import ConfigError

if TYPE_CHECKING:                     # config imports this module: a runtime import would be circular
    from app.core.config import HubConfig

MAX_SECRET_FILE = 64 * 1024           # bytes; a token or header value is far smaller: a larger file is the wrong file
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")     # C0, DEL and C1

_known: set[str] = set()
_forms: list[str] = []                # every printed form of every known secret, longest first
_lock = threading.Lock()


# ---- what a secret may hold ---------------------------------------------------------------------

def strip_line_break(text: str) -> str:
    """Without one trailing line break, as `echo` and many Kubernetes secrets leave it."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def control_problem(text: str) -> str | None:
    """'contains a control character (...)' when `text` holds one; the text itself is never quoted."""
    found = CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    hint = "a line break?" if char in "\r\n" else "a tab" if char == "\t" else f"U+{ord(char):04X}"
    return f"contains a control character ({hint})"


def clean_secret(value: str, key: str) -> str:
    """A header value or token as sent: one trailing line break and surrounding spaces removed.

    ConfigError naming `key`, never the value: any other control character (it would split or
    corrupt the request, or be printed verbatim), nothing left, a character HTTP cannot carry.
    """
    text = strip_line_break(value)
    problem = control_problem(text)
    if problem:
        raise ConfigError(f"{key}: {problem}")
    text = text.strip()
    if not text:
        raise ConfigError(f"{key}: is empty")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(f"{key}: contains a character outside Latin-1, which an HTTP header cannot carry") from None
    return text


# ---- keeping secrets out of every output ---------------------------------------------------------

def _repr_inner(text: str, delimiter: str) -> str:
    """The text as repr() prints it between `delimiter` quotes (repr chooses the quote by the whole string)."""
    out = []
    for char in text:
        if char in ("\\", delimiter):
            out.append("\\" + char)
        elif char in "'\"":
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "".join(out)


def printed_forms(secret: str) -> set[str]:
    """The secret as it may appear in text: verbatim, inside repr() or a JSON string, percent-encoded."""
    return {secret, _repr_inner(secret, "'"), _repr_inner(secret, '"'),
            json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe=""), quote(secret), quote_plus(secret)}


def remember(secret: str) -> None:
    """Register a value that must never be printed (short values are ignored: they would mask noise)."""
    if not secret or len(secret) < 4:
        return
    with _lock:
        if secret in _known:
            return
        _known.add(secret)
        forms = set(_forms) | printed_forms(secret)
        _forms[:] = sorted(forms, key=len, reverse=True)


def redact(text: str) -> str:
    with _lock:
        forms = list(_forms)
    for form in forms:
        if form in text:
            text = text.replace(form, "***")
    return text


_AUTHORITY_START = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?[/\\]*")
_LEADING_BLANKS = re.compile(r"^[\x00-\x20\s]+")


def safe_url(url: str) -> str:
    """The URL without any user:password part, on one line.

    Parsers disagree where the user part ends (urllib.parse reads past a backslash, urllib3 stops
    there; several '@' are split differently), so everything from the scheme's slashes up to the
    last '@' before the path goes, whichever parser's password it would have been.
    """
    text = re.sub(r"[\t\r\n]", "", url)                   # as urllib.parse does
    while True:                        # a cut can make a new scheme and user part ('@h://u@x'): cut until none is left
        text = _LEADING_BLANKS.sub("", text)                   # urllib.parse drops C0 and space, requests all blanks
        head = _AUTHORITY_START.match(text)
        start = head.end() if head else 0
        end = text.find("/", start)
        at = text.rfind("@", start, len(text) if end < 0 else end)
        if at < 0:
            return CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", text)
        text = text[:start] + text[at + 1:]


# ---- credentials for a run ------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return repr(text) if CONTROL.search(text) else text


def _read_secret_file(path: str, key: str) -> str:
    shown = _one_line(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SECRET_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {shown}: {exc.strerror or exc}") from None
    except ValueError:                               # a NUL in the path
        raise ConfigError(f"{key}: cannot read secret file {shown}: not a valid path") from None
    if len(data) > MAX_SECRET_FILE:
        raise ConfigError(f"{key}: secret file {shown} is larger than {MAX_SECRET_FILE // 1024} KiB (the wrong file?)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: secret file {shown} is not UTF-8 text") from None
    return clean_secret(text, f"{key}: secret file {shown}")


def resolve_credentials(hub: HubConfig) -> dict[str, str]:
    """The request headers that carry credentials (Authorization and hub.headers), files read now."""
    headers: dict[str, str] = {}
    for name, value in hub.headers.items():
        key = f"hub.headers.{name}"
        if value.startswith("file:"):
            value = _read_secret_file(value[5:], key)
        else:
            value = clean_secret(value, key)
        headers[name] = value
        remember(value)
    token = hub.token
    if hub.token_file:
        token = _read_secret_file(hub.token_file, "hub.token_file")
    elif token:
        token = clean_secret(token, "hub.token")
    if token:
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
