"""Which bytes of a package each worker fetches (app.hub.segments): planning, claiming, splitting,
absorbing and completeness, all without a network or a file."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.hub import segments
from app.hub.identity import Identity
from app.hub.segments import (
    SEGMENT_MIN, SPLIT_MIN, TAIL_MAX, TAIL_MIN, Plan, Segment, absorb_next, claim, complete, covered, done_bytes,
    next_unfinished, plan_package, plan_rest, tiles,
)

MiB = 1 << 20
ID = Identity(etag='"abc"')


def _spans(plan: Plan) -> list[tuple[int, int, int]]:
    return [(s.start, s.end, s.pos) for s in plan.segments]


# ---- planning -------------------------------------------------------------------------------------

def test_one_connection_asks_for_the_whole_package_at_once() -> None:
    plan = plan_package(ID, 100 * MiB, True, None, connections=1, tail_first=True)
    assert _spans(plan) == [(0, 100 * MiB, 0)] and plan.ranges and plan.total == 100 * MiB


def test_a_package_within_the_first_range_is_one_segment() -> None:
    plan = plan_package(ID, 5 * MiB, True, 16 * MiB, connections=8, tail_first=True)
    assert _spans(plan) == [(0, 5 * MiB, 0)]


def test_the_rest_is_shared_between_the_connections_with_the_tail_first() -> None:
    plan = plan_package(ID, 400 * MiB, True, 16 * MiB, connections=4, tail_first=True)
    # the first answer's 16 MiB, four equal parts of the rest, and the last 1% (4 MiB) fetched first
    bounds = [0, 16, 111, 206, 301, 396, 400]
    assert _spans(plan) == [(a * MiB, b * MiB, a * MiB) for a, b in zip(bounds, bounds[1:])]
    assert [s.urgent for s in plan.segments] == [False] * 5 + [True]


def test_without_ranges_the_package_is_one_stream_of_known_or_unknown_length() -> None:
    assert _spans(plan_package(ID, 300, False, 16 * MiB, connections=4, tail_first=True)) == [(0, 300, 0)]
    plan = plan_package(ID, None, False, 16 * MiB, connections=4, tail_first=True)
    assert _spans(plan) == [(0, -1, 0)] and not plan.ranges and plan.total is None
    assert next_unfinished(plan.segments) is None and not complete(plan)


@pytest.mark.parametrize("start,total,connections,tail_first,expected", [
    (100, 100, 4, True, []),                                   # nothing left
    (0, 4 * MiB, 4, False, [(0, 4 * MiB, 0)]),                 # smaller than SEGMENT_MIN: one segment
    (0, 20 * MiB, 4, False, [(0, 10 * MiB, 0), (10 * MiB, 20 * MiB, 10 * MiB)]),
    (0, 4 * MiB, 4, True, [(0, 4 * MiB, 0)]),                  # no more than 4 tails' worth: no tail
    (0, 5 * MiB + 1, 4, True, [(0, 4 * MiB + 1, 0), (4 * MiB + 1, 5 * MiB + 1, 4 * MiB + 1)]),
])
def test_planning_the_rest(start: int, total: int, connections: int, tail_first: bool,
                           expected: list[tuple[int, int, int]]) -> None:
    assert [(s.start, s.end, s.pos) for s in plan_rest(start, total, connections=connections,
                                                        tail_first=tail_first)] == expected


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 1 << 44), first_end=st.none() | st.integers(1, 1 << 30),
       connections=st.integers(1, 64), tail_first=st.booleans())
def test_any_plan_tiles_the_package(total: int, first_end: int | None, connections: int, tail_first: bool) -> None:
    plan = plan_package(ID, total, True, first_end, connections=connections, tail_first=tail_first)
    assert tiles(plan.segments, total)
    assert all(s.pos == s.start < s.end for s in plan.segments)            # nothing fetched, nothing empty
    assert plan.segments[0].end == (total if first_end is None else min(first_end, total))
    urgent = [s for s in plan.segments if s.urgent]
    assert len(urgent) <= 1 and (not urgent or (tail_first and urgent[0].end == total
                                                and TAIL_MIN <= urgent[0].end - urgent[0].start <= TAIL_MAX))
    parts = [s for s in plan.segments[1:] if not s.urgent]
    assert len(parts) <= connections
    assert len(parts) <= 1 or all(s.end - s.start >= SEGMENT_MIN for s in parts)    # never needlessly small


# ---- claiming ----------------------------------------------------------------------------------------

def test_an_urgent_idle_segment_is_claimed_first_then_the_others_in_order() -> None:
    segs = [Segment(0, 10, 10), Segment(10, 20, 10), Segment(20, 30, 20), Segment(30, 40, 30, urgent=True)]
    assert [claim(segs, split=False) for _ in range(4)] == [segs[3], segs[1], segs[2], None]
    assert all(s.busy for s in segs[1:]) and not segs[0].busy


def test_with_nothing_idle_the_largest_running_segment_gives_up_its_second_half() -> None:
    segs = [Segment(0, 100 * MiB, 10 * MiB, busy=True), Segment(100 * MiB, 200 * MiB, 180 * MiB, busy=True)]
    tail = claim(segs, split=True)
    assert tail is not None and tail.busy
    assert (tail.start, tail.end, tail.pos) == (55 * MiB, 100 * MiB, 55 * MiB)
    assert segs == [Segment(0, 55 * MiB, 10 * MiB, busy=True), tail,
                    Segment(100 * MiB, 200 * MiB, 180 * MiB, busy=True)]


def test_no_split_without_permission_or_when_a_half_would_be_too_small() -> None:
    segs = [Segment(0, 100 * MiB, 0, busy=True)]
    assert claim(segs, split=False) is None
    small = [Segment(0, 2 * SPLIT_MIN - 1, 0, busy=True)]
    assert claim(small, split=True) is None and small == [Segment(0, 2 * SPLIT_MIN - 1, 0, busy=True)]
    assert claim([Segment(0, 10, 10)], split=True) is None               # finished, nobody running


# ---- absorbing -----------------------------------------------------------------------------------------

def test_a_stream_continues_into_the_next_untouched_idle_segment() -> None:
    segs = [Segment(0, 10, 10, busy=True), Segment(10, 20, 10), Segment(20, 30, 20)]
    assert absorb_next(segs, segs[0]) and segs == [Segment(0, 20, 10, busy=True), Segment(20, 30, 20)]


@pytest.mark.parametrize("after", [
    Segment(10, 20, 10, busy=True),        # someone works on it
    Segment(10, 20, 15),                   # partly on disk already (a resume)
])
def test_a_stream_stops_before_a_segment_it_must_not_take(after: Segment) -> None:
    segs = [Segment(0, 10, 10, busy=True), after]
    assert not absorb_next(segs, segs[0]) and segs[0].end == 10 and len(segs) == 2


def test_the_last_segment_absorbs_nothing() -> None:
    segs = [Segment(0, 10, 10, busy=True)]
    assert not absorb_next(segs, segs[0]) and segs == [Segment(0, 10, 10, busy=True)]


def test_absorbing_finds_the_very_segment_streaming_not_an_equal_one() -> None:
    segs = [Segment(5, 5, 5), Segment(5, 5, 5), Segment(5, 9, 5)]     # two equal empty segments
    streaming = segs[1]
    assert absorb_next(segs, streaming)
    assert len(segs) == 2 and segs[1] is streaming and streaming.end == 9


# ---- what is on disk, and when it is done ----------------------------------------------------------------

def test_covered_ranges_are_merged_and_sorted() -> None:
    segs = [Segment(20, 30, 25), Segment(0, 10, 10), Segment(10, 20, 20), Segment(30, 40, 30)]
    assert covered(segs) == [(0, 25)] and done_bytes(segs) == 25
    assert covered([Segment(0, 10, 3), Segment(10, 20, 10), Segment(20, 30, 22)]) == [(0, 3), (20, 22)]


def test_complete_only_when_every_byte_of_the_total_is_there() -> None:
    assert complete(Plan(ID, 20, True, [Segment(0, 10, 10), Segment(10, 20, 20)]))
    assert not complete(Plan(ID, 20, True, [Segment(0, 10, 10), Segment(10, 20, 19)]))
    assert not complete(Plan(ID, 21, True, [Segment(0, 10, 10), Segment(10, 20, 20)]))
    assert not complete(Plan(ID, None, False, [Segment(0, 10, 10)]))
    assert not complete(Plan(ID, 0, True, []))


@pytest.mark.parametrize("spans,total,ok", [
    ([(0, 10, 0), (10, 20, 15)], 20, True),
    ([(10, 20, 10), (0, 10, 10)], 20, True),               # order does not matter
    ([(0, 10, 0), (11, 20, 11)], 20, False),               # a gap
    ([(0, 11, 0), (10, 20, 10)], 20, False),               # an overlap
    ([(0, 10, 0), (10, 20, 10)], 21, False),               # short of the total
    ([(0, 10, 11), (10, 20, 10)], 20, False),              # a position past its segment
    ([], 0, False),
])
def test_tiling(spans: list[tuple[int, int, int]], total: int, ok: bool) -> None:
    assert tiles([Segment(*s) for s in spans], total) is ok


# ---- claims and splits, in any order, keep the package tiled ---------------------------------------------

def _check(plan: Plan, total: int, before: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The invariants after any step; returns the covered ranges for the next step's check."""
    assert tiles(plan.segments, total)
    now = covered(plan.segments)
    assert sum(b - a for a, b in now) == done_bytes(plan.segments)      # no byte counted twice
    assert all(any(c <= a and b <= d for c, d in now) for a, b in before)  # nothing fetched is ever lost
    return now


_STEPS = st.lists(st.tuples(st.sampled_from(["claim", "split", "advance", "release", "absorb"]),
                            st.integers(0, 1 << 16), st.integers(0, 1 << 40)), max_size=60)


@settings(max_examples=400, deadline=None)
@given(total=st.integers(1, 1 << 36), first_end=st.none() | st.integers(1, 1 << 26),
       connections=st.integers(1, 16), tail_first=st.booleans(), split_min=st.sampled_from([1, 1000, SPLIT_MIN]),
       steps=_STEPS)
def test_claims_and_splits_always_tile_the_package(total: int, first_end: int | None, connections: int,
                                                   tail_first: bool, split_min: int,
                                                   steps: list[tuple[str, int, int]]) -> None:
    """Workers claiming, splitting, advancing, stopping and absorbing in any order: the segments
    always tile [0, total), no fetched byte is handed out again, and finishing every claim completes it."""
    plan = plan_package(ID, total, True, first_end, connections=connections, tail_first=tail_first)
    plan.segments[0].busy = True                           # the first answer streams into it
    seen = _check(plan, total, [])
    for step, which, amount in steps:
        busy = [s for s in plan.segments if s.busy]
        if step in ("claim", "split"):
            _claim_and_check(plan, split=step == "split", split_min=split_min)
        elif step == "advance" and busy:
            seg = busy[which % len(busy)]
            seg.pos += amount % (seg.left + 1)
        elif step == "release" and busy:
            busy[which % len(busy)].busy = False
        elif step == "absorb" and (done := [s for s in busy if s.pos >= s.end]):
            seg = done[which % len(done)]
            end = seg.end
            assert absorb_next(plan.segments, seg) is (seg.end > end)
        seen = _check(plan, total, seen)
    _finish(plan, total, seen)


def _claim_and_check(plan: Plan, *, split: bool, split_min: int) -> None:
    idle_before = [s for s in plan.segments if not s.busy and s.pos < s.end]
    seg = claim(plan.segments, split=split, split_min=split_min)
    if seg is None:
        assert not idle_before
        return
    assert seg.busy and seg.pos < seg.end
    if not any(seg is s for s in idle_before):      # a split: the untouched second half of a running one
        index = next(i for i, s in enumerate(plan.segments) if s is seg)
        before = plan.segments[index - 1]
        assert split and not idle_before and index > 0 and before.busy and before.end == seg.start == seg.pos
        assert before.left >= split_min and seg.left >= split_min


def _finish(plan: Plan, total: int, seen: list[tuple[int, int]]) -> None:
    """Workers that run every claim to its end complete the package, whatever state it was left in."""
    for _ in range(len(plan.segments) + 1):
        for seg in plan.segments:
            if seg.busy:
                seg.pos, seg.busy = seg.end, False
        while claim(plan.segments, split=False) is not None:
            pass
        seen = _check(plan, total, seen)
        if not any(s.busy for s in plan.segments):
            break
    assert complete(plan) and covered(plan.segments) == [(0, total)] and next_unfinished(plan.segments) is None


# ---- pure means pure ------------------------------------------------------------------------------------

def test_the_rules_import_nothing_that_reaches_a_file_or_the_network() -> None:
    tree = ast.parse(Path(segments.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "collections.abc", "dataclasses", "app.hub.identity"}
