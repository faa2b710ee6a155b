"""JSON from outside (the hub's list, state files): ValueError for anything unreadable, depth-capped values.

`loads` is json.loads that fails only with ValueError. `loads_capped` also survives a document nested
deeper than the interpreter's recursion limit: every value nested deeper than `max_depth` becomes an
`Unreadable` marker, so a caller that checks types rejects the one field that holds it.
"""
from __future__ import annotations

import json
import re
import secrets
from itertools import islice
from typing import Any

MAX_DEPTH = 64
# Longer integer literals become markers: no field here means anything with more digits, and Python
# refuses to convert more than 4300 digits (sys.int_info.default_max_str_digits).
MAX_INT_DIGITS = 1000
_JSON_SPACE = re.compile(r"[ \t\n\r]+")
_BRACKET = re.compile(r"[\[\]{}]")
# A JSON string (escapes included), a run of opening or closing brackets (with the space between
# them), or a lone quote: a string that never ends.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{][ \t\n\r\[{]*|[\]}][ \t\n\r\]}]*|"', re.S)


class Unreadable:
    """Stands for a value that could not be read (too deep, too many digits); its repr says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.reason}>"


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    return data.decode(json.detect_encoding(data), "surrogatepass")


def loads(data: bytes | str) -> Any:
    """json.loads that raises only ValueError on bad input (deep nesting included)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def loads_capped(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `data`; each value nested deeper than `max_depth` (the top level is depth 1) and each
    integer of more than MAX_INT_DIGITS digits becomes an Unreadable marker. ValueError if not JSON.

    When the document is too deep for the parser itself, the over-deep values are cut out of the
    text first (a scan of the brackets that skips strings); the parts cut out are checked only for
    balanced brackets and closed strings, since they become markers anyway.
    """
    text = _text(data)
    too_deep = Unreadable(f"nested deeper than {max_depth} levels")

    def parse_int(literal: str) -> int | Unreadable:
        digits = len(literal.lstrip("-"))
        return int(literal) if digits <= MAX_INT_DIGITS else Unreadable(f"a number of {digits} digits")

    try:
        document = json.loads(text, parse_int=parse_int)
    except RecursionError:
        placeholder = f"datahubsync-too-deep-{secrets.token_hex(16)}"
        try:
            document = json.loads(_cut_deep(text, max_depth, json.dumps(placeholder)), parse_int=parse_int)
        except RecursionError:
            raise ValueError("nested too deeply to read") from None
        return _cap(document, max_depth, too_deep, placeholder)
    if text.count("[") + text.count("{") <= max_depth:
        return document             # cannot be deeper than the cap
    return _cap(document, max_depth, too_deep, None)


def _cut_deep(text: str, max_depth: int, replacement: str) -> str:
    """`text` with each bracketed value that opens deeper than `max_depth` replaced."""
    pieces: list[str] = []
    kept_from = 0
    depth = 0
    cut_at = -1                     # where the value being cut out starts, while cutting
    for match in _TOKENS.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"':
            if len(token) == 1:
                raise ValueError(f"unterminated string starting at char {match.start()}")
            continue
        brackets = 1 if len(token) == 1 else len(_JSON_SPACE.sub("", token))
        if first in "[{":
            if cut_at < 0 and depth + brackets > max_depth:
                cut_at = match.start() + _nth_bracket(token, max_depth - depth + 1)
            depth += brackets
            continue
        if cut_at >= 0 and depth - brackets <= max_depth:
            end = match.start() + _nth_bracket(token, depth - max_depth) + 1
            pieces += [text[kept_from:cut_at], replacement]
            kept_from, cut_at = end, -1
        depth -= brackets
        if depth < 0:
            raise ValueError(f"unbalanced bracket at char {match.start()}")
    if cut_at >= 0:
        raise ValueError("unbalanced brackets: the document ends inside a value")
    pieces.append(text[kept_from:])
    return "".join(pieces)


def _nth_bracket(run: str, n: int) -> int:
    """Offset in a run of brackets and JSON spaces of its n-th bracket (n >= 1)."""
    if n == 1 or not _JSON_SPACE.search(run):
        return n - 1
    return next(islice(_BRACKET.finditer(run), n - 1, None)).start()


def _cap(document: Any, max_depth: int, marker: Unreadable, placeholder: str | None) -> Any:
    """Replace values deeper than `max_depth` (and the placeholder strings) by the marker, in place."""
    if placeholder is not None and document == placeholder:
        return marker
    pending: list[tuple[Any, int]] = [(document, 1)] if isinstance(document, (list, dict)) else []
    while pending:
        container, depth = pending.pop()
        keys = range(len(container)) if isinstance(container, list) else list(container)
        for key in keys:
            value = container[key]
            if isinstance(value, (list, dict)):
                if depth >= max_depth:
                    container[key] = marker
                else:
                    pending.append((value, depth + 1))
            elif placeholder is not None and value == placeholder:
                container[key] = marker
    return document


def describe(value: object, limit: int = 60) -> str:
    """A short one-line account of any decoded JSON value, for messages (never raises)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int) and value.bit_length() > 200:
        return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    if isinstance(value, (str, int, float, Unreadable)):
        return repr(value)
    return f"a {type(value).__name__}"
