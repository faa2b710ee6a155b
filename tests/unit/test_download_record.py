"""The download's two inputs from outside: a 206's Content-Range, and the record beside a part file."""
from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import DownloadError
from app.hub.download import _check_range
from app.hub.partfile import _plan_from_record

URL = "http://127.0.0.1:8080/package/prices.zip"


def _answer(content_range: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = 206
    response.raw = io.BytesIO(b"")
    if content_range is not None:
        response.headers["Content-Range"] = content_range
    return response


@pytest.mark.parametrize("start,end,header", [
    (0, 100, "bytes 0-99/1000"),
    (0, 16 << 20, "bytes 0-999/1000"),            # asked past the end: the server gives what there is
    (500, None, "bytes 500-999/1000"),
    (500, 600, "bytes 500-599/1000"),
    (0, 1, "bytes 0-0/1000"),
])
def test_a_206_of_exactly_the_bytes_asked_for_is_accepted(start: int, end: int | None, header: str) -> None:
    _check_range(_answer(header), start, end)


@pytest.mark.parametrize("start,end,header", [
    (500, 600, "bytes 400-499/1000"),             # other bytes: would be written at the wrong offset
    (500, 600, "bytes 500-549/1000"),             # fewer bytes than asked
    (500, None, "bytes 500-899/1000"),            # an open range must run to the end
    (500, 600, "bytes 600-500/1000"),             # reversed
    (0, 100, "bytes 0-1099/1000"),                # past the total
    (0, 100, "bytes */1000"),
    (0, 100, None),
    (0, 100, "items 0-99/1000"),
])
def test_any_other_206_is_refused(start: int, end: int | None, header: str | None) -> None:
    with pytest.raises(DownloadError):
        _check_range(_answer(header), start, end)


def _record(**changes: Any) -> dict[str, Any]:
    record = {"url": URL, "identity": {"etag": '"abc"', "last_modified": None, "filename": None, "total": 100},
              "total": 100, "ranges": True, "advertised": {},
              "segments": [[0, 60, 60, False], [60, 100, 70, True]]}
    record.update(changes)
    return record


def test_a_sound_record_is_read() -> None:
    plan = _plan_from_record(_record(), URL)
    assert plan is not None
    assert plan.total == 100 and [(s.start, s.end, s.pos, s.urgent) for s in plan.segments] == [
        (0, 60, 60, False), (60, 100, 70, True)]


@pytest.mark.parametrize("changes", [
    {"url": "http://127.0.0.1:8080/package/other.zip"},
    {"total": float("inf")},
    {"total": 10 ** 40},
    {"total": -5},
    {"total": True},
    {"ranges": "yes"},
    {"identity": "etag"},
    {"segments": []},
    {"segments": [[0, 60, 70], [60, 100, 60]]},          # pos beyond its segment's end
    {"segments": [[0, 50, 50], [60, 100, 60]]},          # a gap: bytes 50-59 would never be fetched
    {"segments": [[0, 70, 70], [60, 100, 60]]},          # overlap
    {"segments": [[0, 60, 60], [60, 120, 60]]},          # past the total
    {"segments": [[0, 100, 1e3]]},
    {"segments": [[0, 100]]},
    {"segments": "0-100"},
    {"segments": [[0, 100, 50, False, "extra"]]},
])
def test_a_record_that_cannot_be_trusted_is_not_used(changes: dict[str, Any]) -> None:
    assert _plan_from_record(_record(**changes), URL) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["url", "identity", "total", "ranges", "segments", "advertised"]), _json)
       | _json)
def test_any_record_gives_a_plan_that_tiles_the_package_or_none(document: Any) -> None:
    if isinstance(document, dict):
        document = {**_record(), **document}
    json.dumps(document)                                # only what a JSON file can hold
    plan = _plan_from_record(document, URL)
    if plan is None:
        return
    spans = sorted((s.start, s.end) for s in plan.segments)
    assert spans[0][0] == 0 and spans[-1][1] == plan.total
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(s.start <= s.pos <= s.end for s in plan.segments)
