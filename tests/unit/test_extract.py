"""Extraction into a staging tree: every CRC checked, entry times restored in the configured zone, a
stop honoured, and each file taken as soon as its bytes are on disk while the package still arrives."""
from __future__ import annotations

import os
import tempfile
import threading
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.errors import DownloadError, Interrupted, PackageError
from app.core.timeutil import get_zone
from app.package.checks import inspect_package, open_package
from app.package.extract import extract

UTC = timezone.utc
SHANGHAI = get_zone("Asia/Shanghai")
WHEN = (2025, 2, 4, 20, 16, 2)


def make_package(path: Path, files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED,
                 when: tuple = WHEN) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, when)
            info.compress_type = compression
            zf.writestr(info, data)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def unpack(package: Path, staging: Path, zone=UTC, strip: int = 0):
    plan = inspect_package(package, strip_components=strip, zone=zone, max_ratio=1000, max_total=None)
    extract(package, plan, staging, threading.Event(), zone)
    return plan


def corrupt_stored_package(path: Path) -> Path:
    """A stored ZIP whose b.csv data has one byte flipped: the directory is fine, the CRC is not."""
    payload = b"this entry will be corrupted " * 20
    make_package(path, {"a.csv": b"fine a " * 100, "b.csv": payload, "c.csv": b"fine c " * 100},
                 compression=zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    at = data.index(payload) + 40
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_crc_error_raises_and_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "a.csv").write_bytes(b"installed a")
    (target / "b.csv").write_bytes(b"installed b")
    before = tree(target)
    stamps = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    package = corrupt_stored_package(tmp_path / "bad.zip")
    plan = inspect_package(package, strip_components=0, zone=UTC, max_ratio=1000, max_total=None)
    with pytest.raises(PackageError, match=r"entry 'b.csv'.*CRC"):
        extract(package, plan, tmp_path / "staging", threading.Event(), UTC)
    assert tree(target) == before
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == stamps


def test_stop_event_interrupts_extraction(tmp_path: Path) -> None:
    package = make_package(tmp_path / "p.zip", {f"f{i}.csv": b"x" * 100 for i in range(10)})
    plan = inspect_package(package, strip_components=0, zone=UTC, max_ratio=1000, max_total=None)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        extract(package, plan, tmp_path / "staging", stop, UTC)


def test_extraction_restores_entry_times_with_the_zone(tmp_path: Path) -> None:
    package = make_package(tmp_path / "p.zip", {"a.csv": b"1"}, when=(2026, 11, 28, 16, 30, 0))
    staging = tmp_path / "staging"
    unpack(package, staging, SHANGHAI)
    assert os.stat(staging / "a.csv").st_mtime == datetime(2026, 11, 28, 8, 30, tzinfo=UTC).timestamp()


def test_extract_a_package_whose_directory_lists_entries_out_of_data_order(tmp_path: Path) -> None:
    """Entry ends and the extraction order come from sorted offsets when the directory is not in order."""
    files = {f"d{i}/f{i}.csv": os.urandom(3000 + i) * 3 for i in range(12)}
    package = tmp_path / "p.zip"
    with zipfile.ZipFile(package, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, WHEN), data)
        zf.filelist.reverse()           # the central directory is written from this list at close
    staging = tmp_path / "staging"
    plan = unpack(package, staging)
    assert not plan.directory.ordered
    assert list(plan.targets) == list(reversed(files))
    assert tree(staging) == files


# -- extraction while the package still arrives ---------------------------------------------------

class ArrivingPart:
    """A part file filling up as a download does: the central directory first, then the rest in
    chunks in any order. Each wait writes the next chunk to disk, then reports what is there; with
    nothing left to write and bytes still missing it fails as a download that ended incomplete."""

    def __init__(self, data: bytes, part: Path, tail: int, chunks: list[tuple[int, int]]) -> None:
        self.data, self.part, self.chunks = data, part, list(chunks)
        with open(part, "wb") as out:
            out.truncate(len(data))             # the bytes not yet arrived read as zeros
        self.on_disk: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._write(tail, len(data))

    def _write(self, start: int, end: int) -> None:
        with open(self.part, "r+b") as out:
            out.seek(start)
            out.write(self.data[start:end])
        self.on_disk = merged(self.on_disk + [(start, end)])

    def covered_now(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self.on_disk)

    def wait_changed(self, timeout: float) -> list[tuple[int, int]]:
        with self._lock:
            if self.chunks:
                self._write(*self.chunks.pop(0))
            elif self.on_disk != [(0, len(self.data))]:
                raise DownloadError("the download ended before the package was complete")
            return list(self.on_disk)


def merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def package_bytes(files: dict[str, tuple[bytes, int]]) -> tuple[bytes, int]:
    """A package of (content, compression) per name, and where its central directory starts."""
    path = Path(tempfile.mkstemp(suffix=".zip")[1])
    try:
        with zipfile.ZipFile(path, "w") as zf:
            for name, (data, method) in files.items():
                info = zipfile.ZipInfo(name, WHEN)
                info.compress_type = method
                zf.writestr(info, data)
        with zipfile.ZipFile(path) as zf:
            return path.read_bytes(), zf.start_dir
    finally:
        path.unlink()


def chunks_of(body: int, cuts: list[int], order: list[int]) -> list[tuple[int, int]]:
    """The package's body (before its central directory) cut at `cuts`, the pieces in `order`, then any left."""
    points = [0] + sorted({c % body for c in cuts if c % body}) + [body]
    pieces = list(zip(points, points[1:]))
    return [pieces[i] for i in dict.fromkeys([i % len(pieces) for i in order] + list(range(len(pieces))))]


# bytes not yet on disk read as zeros: contents that are not all zeros make any early read fail its CRC
CONTENT = st.binary(min_size=0, max_size=3000).filter(lambda b: not b or b.strip(b"\0"))
FILES = st.dictionaries(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}\.csv", fullmatch=True),
                        st.tuples(CONTENT, st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])),
                        min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=FILES, cuts=st.lists(st.integers(min_value=1, max_value=10**6), max_size=30),
       order=st.lists(st.integers(min_value=0, max_value=31), max_size=40))
def test_each_file_is_extracted_once_its_bytes_have_arrived(files: dict[str, tuple[bytes, int]], cuts: list[int],
                                                            order: list[int]) -> None:
    """Chunks land in any order; workers take each file as soon as all of it is on disk, never before
    (an early read would see zeros and fail the entry's CRC), and the staged tree is the package's."""
    data, tail = package_bytes(files)
    with tempfile.TemporaryDirectory() as tmp:
        part, staging = Path(tmp) / "p.zip.part", Path(tmp) / "staging"
        source = ArrivingPart(data, part, tail, chunks_of(tail, cuts, order))
        with open_package(part) as package:
            plan = inspect_package(package, strip_components=0, zone=UTC, max_ratio=1000, max_total=None)
            extract(package, plan, staging, threading.Event(), UTC, source=source)
        assert tree(staging) == {name: content for name, (content, _) in files.items()}
        assert source.on_disk == [(0, len(data))]


def test_a_download_that_ends_incomplete_fails_the_extraction_with_its_own_error(tmp_path: Path) -> None:
    files = {f"f{i}.csv": (os.urandom(2000), zipfile.ZIP_STORED) for i in range(6)}
    data, tail = package_bytes(files)
    part = tmp_path / "p.zip.part"
    half = tail // 2
    source = ArrivingPart(data, part, tail, [(0, half)])     # the second half never arrives
    with open_package(part) as package:
        plan = inspect_package(package, strip_components=0, zone=UTC, max_ratio=1000, max_total=None)
        with pytest.raises(DownloadError, match="ended before the package was complete"):
            extract(package, plan, tmp_path / "staging", threading.Event(), UTC, source=source)
    assert source.on_disk == [(0, half), (tail, len(data))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zip.part", "staging"]     # nothing written elsewhere
