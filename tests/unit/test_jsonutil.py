"""JSON from outside: only ValueError for bad input, over-deep values and huge numbers as markers."""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.jsonutil import MAX_DEPTH, Unreadable, describe, loads, loads_capped

# Deep enough that the stdlib parser itself gives up (RecursionError), so the text scan runs.
PARSER_LIMIT_BEATER = 100_000


def nested(depth: int, inner: str = "1", opener: str = "[", closer: str = "]") -> str:
    return opener * depth + inner + closer * depth


def depth_of(value: Any) -> int:
    """Levels of containers down to the deepest one (a scalar: 0)."""
    level, frontier = 0, [value]
    while frontier:
        containers = [v for v in frontier if isinstance(v, (list, dict))]
        if not containers:
            break
        level += 1
        frontier = [child for c in containers for child in (c.values() if isinstance(c, dict) else c)]
    return level


def markers(value: Any) -> list[Unreadable]:
    found, pending = [], [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Unreadable):
            found.append(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


# ---- loads ----------------------------------------------------------------------------------------

def test_loads_reads_json_from_bytes_and_text() -> None:
    assert loads(b'{"a": [1, 2.5, null, true]}') == {"a": [1, 2.5, None, True]}
    assert loads('"x"') == "x"
    assert loads("\ufeff[1]".encode("utf-8")) == [1]          # a UTF-8 BOM, as json.loads(bytes) allows


@pytest.mark.parametrize("data", [b"", b"{", b"[1,]", b"\xff\xfe\xfd", b"<html>", "[" * 200_000,
                                  b"[" * 200_000 + b"]" * 200_000, "[" + "9" * 5000 + "]"],
                         ids=["empty", "open", "trailing-comma", "not-utf8", "html", "deep-open", "deep",
                              "5000-digits"])
def test_loads_raises_only_value_error(data: bytes | str) -> None:
    with pytest.raises(ValueError):
        loads(data)


# ---- loads_capped: depth -------------------------------------------------------------------------

def test_shallow_documents_are_returned_unchanged() -> None:
    text = json.dumps({"datasets": [{"name": "a", "x": json.loads(nested(MAX_DEPTH - 3))}]})
    assert loads_capped(text) == json.loads(text)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, PARSER_LIMIT_BEATER])
def test_an_over_deep_value_becomes_a_marker_where_it_sits(depth: int) -> None:
    text = '{"datasets": [{"name": "deep", "x": ' + nested(depth) + '}, {"name": "ok", "v": [1, {"k": 2}]}]}'
    document = loads_capped(text)
    deep, ok = document["datasets"]
    assert ok == {"name": "ok", "v": [1, {"k": 2}]}
    assert deep["name"] == "deep"
    assert depth_of(document) == MAX_DEPTH
    (marker,) = markers(document)
    assert "nested deeper than 64 levels" in repr(marker)
    # the marker sits exactly where level 65 began: 3 levels of envelope, then 61 of the value
    value = deep["x"]
    for _ in range(MAX_DEPTH - 3 - 1):
        (value,) = value
    assert value == [marker]


@pytest.mark.parametrize("depth", [200, PARSER_LIMIT_BEATER])
def test_both_ways_of_cutting_agree(depth: int) -> None:
    """Below the parser's own limit the parsed tree is cut; above it the text is: same result."""
    text = "[" + nested(depth, '{"a": "[[{"}', "[{\"k\": ", "}]") + ', "tail", ' + nested(3) + "]"
    got = loads_capped(text, max_depth=10)
    assert depth_of(got) == 10
    assert got[1:] == ["tail", [[[1]]]]
    assert len(markers(got)) == 1


def test_brackets_inside_strings_do_not_count() -> None:
    inner = json.dumps("]]]}}} \" [[[ \\\" {{{")
    text = "[" + nested(PARSER_LIMIT_BEATER, "0") + ", " + inner + "]"
    got = loads_capped(text)
    assert got[1] == json.loads(inner)
    assert len(markers(got)) == 1


def test_spaces_between_brackets_are_counted_right() -> None:
    text = "[ 7, " + " [ \n\t" * PARSER_LIMIT_BEATER + "1" + " ] \r" * PARSER_LIMIT_BEATER + ", 8 ]"
    got = loads_capped(text, max_depth=5)
    assert got[0] == 7 and got[2] == 8
    assert depth_of(got) == 5


@pytest.mark.parametrize("text", [
    pytest.param(nested(PARSER_LIMIT_BEATER)[:-1], id="ends-inside-a-value"),
    pytest.param("[" * PARSER_LIMIT_BEATER + '"never closed', id="unterminated-string"),
    pytest.param("[" * PARSER_LIMIT_BEATER + "]" * (PARSER_LIMIT_BEATER + 1), id="too-many-closers"),
    pytest.param("x" + nested(PARSER_LIMIT_BEATER), id="junk-before"),
    pytest.param(nested(PARSER_LIMIT_BEATER) + "x", id="junk-after"),
])
def test_broken_deep_documents_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        loads_capped(text)


def test_a_long_number_becomes_a_marker() -> None:
    got = loads_capped("[" + "9" * 5000 + ", -" + "1" * 1200 + ", 12]")
    assert [repr(v) for v in got[:2]] == ["<a number of 5000 digits>", "<a number of 1200 digits>"]
    assert got[2] == 12


def test_non_finite_numbers_are_floats() -> None:
    got = loads_capped("[NaN, Infinity, -Infinity, 1e400]")
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, math.inf]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.integers(min_value=10**30) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_shallow_document_reads_back_as_written(value: Any) -> None:
    text = json.dumps(value)
    assert json.dumps(loads_capped(text)) == text


@settings(max_examples=100, deadline=None)
@given(json_values, st.integers(min_value=MAX_DEPTH + 1, max_value=3000), st.sampled_from(["[", '{"k":']))
def test_a_deep_sibling_never_changes_its_neighbours(value: Any, depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = "[" + json.dumps(value) + ", " + nested(depth, json.dumps(value), opener, closer) + "]"
    got = loads_capped(text)
    assert json.dumps(got[0]) == json.dumps(value)
    assert depth_of(got) <= MAX_DEPTH
    assert markers(got[1])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.text(alphabet='[]{}",:\\ 1anulNI', max_size=200)))
def test_any_input_gives_a_value_or_a_value_error(data: str | bytes) -> None:
    try:
        loads_capped(data)
    except ValueError:
        pass


# ---- describe -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (None, "null"), (True, "true"), (17, "17"), (float("nan"), "nan"), ("x\ny", "'x\\ny'"),
    ([1, 2], "a list of 2 item(s)"), ({"a": 1}, "an object of 1 key(s)"),
    (10**5000, "a number of about 5001 digits"), (Unreadable("why"), "<why>"),
], ids=["null", "true", "int", "nan", "newline", "list", "object", "huge-int", "marker"])
def test_describe(value: object, expected: str) -> None:
    assert describe(value) == expected


@settings(max_examples=50, deadline=None)
@given(json_values)
def test_describe_is_one_short_line(value: Any) -> None:
    text = describe(value)
    assert "\n" not in text and len(text) < 200
