"""Who fetches which bytes of a package: the plan of segments and the rules for claiming work.

Everything here is pure bookkeeping over byte ranges (no I/O, no network, no locks): the caller
holds its own lock around each call. Every rule keeps one invariant, checked by
tests/unit/test_segments.py: the segments tile [0, total) without gap or overlap, and each one's
position lies within it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from app.hub.identity import Identity

SEGMENT_MIN = 8 << 20          # no segment is planned smaller than this
SPLIT_MIN = 8 << 20            # a running segment is split only when both halves get at least this
TAIL_MIN, TAIL_MAX = 1 << 20, 8 << 20


@dataclass
class Segment:
    start: int
    end: int            # exclusive; -1 while the length is unknown; shrinks when another worker takes the tail
    pos: int
    busy: bool = False
    urgent: bool = False    # fetched first: the package's tail, where the ZIP's central directory is

    @property
    def left(self) -> int:
        return self.end - self.pos


@dataclass
class Plan:
    identity: Identity | None = None
    total: int | None = None
    ranges: bool = False
    segments: list[Segment] = field(default_factory=list)


def plan_package(identity: Identity, total: int | None, ranged: bool, first_end: int | None, *,
                 connections: int, tail_first: bool) -> Plan:
    """The plan from the first answer: its own range [0, first_end) first (to the end when None),
    then the rest in parallel ranges; one segment of unknown or whole length without ranges."""
    if ranged and total is not None:
        end = total if first_end is None else min(first_end, total)
        rest = plan_rest(end, total, connections=connections, tail_first=tail_first)
        return Plan(identity, total, True, [Segment(0, end, 0), *rest])
    return Plan(identity, total, False, [Segment(0, total if total is not None else -1, 0)])


def plan_rest(start: int, total: int, *, connections: int, tail_first: bool) -> list[Segment]:
    """Bytes [start, total) as up to `connections` segments of at least SEGMENT_MIN each; with
    `tail_first`, the package's last 1% (1 to 8 MiB, the ZIP's central directory) as an urgent one."""
    if start >= total:
        return []
    tail = None
    if tail_first:
        size = max(TAIL_MIN, min(TAIL_MAX, total // 100))
        if total - start > 4 * size:
            tail = Segment(total - size, total, total - size, urgent=True)
            total -= size
    count = max(1, min(connections, (total - start) // SEGMENT_MIN))
    size = (total - start) // count
    bounds = [start + i * size for i in range(count)] + [total]
    segments = [Segment(bounds[i], bounds[i + 1], bounds[i]) for i in range(count)]
    if tail is not None:
        segments.append(tail)
    return segments


def claim(segments: list[Segment], *, split: bool, split_min: int = SPLIT_MIN) -> Segment | None:
    """The next piece of work, marked busy: an idle unfinished segment (an urgent one first), else
    (when `split`) the second half of the largest running one if both halves get `split_min`."""
    idle = [s for s in segments if not s.busy and s.pos < s.end]
    if idle:
        seg = next((s for s in idle if s.urgent), idle[0])
        seg.busy = True
        return seg
    if not split:
        return None
    largest = max((s for s in segments if s.busy), key=lambda s: s.left, default=None)
    if largest is None or largest.left < 2 * split_min:
        return None
    mid = largest.pos + largest.left // 2
    tail = Segment(mid, largest.end, mid, busy=True)
    largest.end = mid
    segments.insert(_index_of(segments, largest) + 1, tail)
    return tail


def absorb_next(segments: list[Segment], seg: Segment) -> bool:
    """An open-ended stream continues into the next segment when nobody works on it and nothing of
    it is on disk yet (a resume's partly done segment stops the stream where it starts)."""
    index = _index_of(segments, seg)
    if index + 1 >= len(segments):
        return False
    nxt = segments[index + 1]
    if nxt.busy or nxt.start != seg.end or nxt.pos != nxt.start:
        return False
    seg.end = nxt.end
    segments.pop(index + 1)
    return True


def next_unfinished(segments: Sequence[Segment]) -> Segment | None:
    """The first segment with bytes still to fetch (of known length)."""
    return next((s for s in segments if 0 <= s.pos < s.end), None)


def covered(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """The byte ranges fetched so far, sorted and merged."""
    spans = sorted((s.start, s.pos) for s in segments if s.pos > s.start)
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def done_bytes(segments: Sequence[Segment]) -> int:
    return sum(s.pos - s.start for s in segments)


def complete(plan: Plan) -> bool:
    """Every segment fetched to its known end, and together they hold exactly `total` bytes."""
    return bool(plan.segments) and plan.total is not None and all(s.pos >= s.end >= 0 for s in plan.segments) \
        and sum(s.end - s.start for s in plan.segments) == plan.total


def tiles(segments: Sequence[Segment], total: int) -> bool:
    """The segments cover [0, total) exactly, without gap or overlap, each position within its segment."""
    if not segments or not all(0 <= s.start <= s.pos <= s.end for s in segments):
        return False
    spans = sorted((s.start, s.end) for s in segments)
    return spans[0][0] == 0 and spans[-1][1] == total and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def _index_of(segments: list[Segment], seg: Segment) -> int:
    """The position of this very segment (not of an equal one: two empty segments compare equal)."""
    return next(i for i, s in enumerate(segments) if s is seg)
