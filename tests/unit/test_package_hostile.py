"""Hostile and malformed packages: each ends as a PackageError (status extract_failed) with a
one-line message that names the entry, before anything lands outside the staging folder."""
from __future__ import annotations

import io
import struct
import tempfile
import threading
import zipfile
import zlib
from datetime import timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.core.errors import DiskFullError, PackageError
from app.package.extract import extract
from app.package.checks import BOMB_MIN_SIZE, inspect_package
from app.package.zipread import copy_entry, read_directory
from tests.unit.zipsplice import (COMPRESSED, CRC, FLAGS, LOCAL_OFFSET, SIZE, Parts, empty_files, field, join_zip64, split,
                                  with_extra, with_field, with_name, zip64_extra)

UTC = timezone.utc
WHEN = (2025, 2, 4, 20, 16, 2)


def zip_of(files: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, WHEN)
            info.compress_type = method
            zf.writestr(info, data)
    return buf.getvalue()


def inspect(path: Path, max_total: int | None = None):
    return inspect_package(path, strip_components=0, zone=UTC, max_ratio=1000, max_total=max_total)


def unpack(blob: bytes, tmp_path: Path) -> dict[str, bytes]:
    """The whole client path up to staging: directory, checks, extraction."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    package = tmp_path / "p.zip"
    package.write_bytes(blob)
    staging = tmp_path / "staging"
    plan = inspect(package)
    extract(package, plan, staging, threading.Event(), UTC)
    return {p.relative_to(staging).as_posix(): p.read_bytes() for p in staging.rglob("*") if p.is_file()}


def refused(blob: bytes, tmp_path: Path, match: str) -> PackageError:
    with pytest.raises(PackageError, match=match) as caught:
        unpack(blob, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and caught.value.status == "extract_failed"
    return caught.value


def test_the_splice_helper_rebuilds_the_same_zip() -> None:
    """The tests below lie through this helper: unchanged, it gives back the very same bytes."""
    blob = zip_of({"a.csv": b"1" * 10, "b.csv": b"2" * 20}, zipfile.ZIP_DEFLATED)
    assert split(blob).join() == blob


# -- overlapping entries ------------------------------------------------------------------------

def test_many_records_sharing_one_entry_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    """The issue's package: 30 KB that unpacked to 300 MB, each entry under the per-entry ratio check."""
    parts = split(zip_of({"zeros.bin": bytes(BOMB_MIN_SIZE - 1)}, zipfile.ZIP_DEFLATED))
    record = parts.records[0]
    parts.records = [with_name(record, f"copy{i:03}.bin".encode()) for i in range(300)]
    blob = parts.join()
    assert len(blob) < 40_000
    assert sum(field(r, SIZE) for r in parts.records) > 300_000_000
    error = refused(blob, tmp_path, r"entries 'copy000.bin' and 'copy001.bin' share the local header at byte 0")
    assert "overlapping entries are refused" in str(error)
    assert not (tmp_path / "staging").exists()


def test_an_entry_inside_another_entrys_data_is_refused(tmp_path: Path) -> None:
    """A record pointing at a local header quoted inside another entry's (stored) data."""
    inner = split(zip_of({"inner.csv": b"hidden " * 50}))
    outer = split(zip_of({"outer.bin": b"head" + inner.data + b"tail"}))
    quoted = with_field(inner.records[0], LOCAL_OFFSET, 30 + len("outer.bin") + 4)
    outer.records.append(quoted)
    refused(outer.join(), tmp_path, r"entry 'outer.bin' \(bytes 0 to at least \d+\) overlaps entry 'inner.csv' at byte 43")


def test_entries_whose_data_overlaps_the_next_local_header_are_refused(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100, "b.csv": b"b" * 100}))
    parts.records[0] = with_field(with_field(parts.records[0], COMPRESSED, 140), SIZE, 140)
    refused(parts.join(), tmp_path, r"entry 'a.csv' \(bytes 0 to at least 175\) overlaps entry 'b.csv' at byte 135")


def test_overlap_is_found_whatever_order_the_directory_lists_entries_in(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100, "b.csv": b"b" * 100, "c.csv": b"c" * 100}))
    parts.records[2] = with_field(parts.records[2], LOCAL_OFFSET, field(parts.records[0], LOCAL_OFFSET))
    parts.records.reverse()
    refused(parts.join(), tmp_path, r"share the local header at byte 0")


@pytest.mark.parametrize("offset", ["central directory", "end of file", "far past the file"])
def test_an_offset_past_the_entries_is_refused(tmp_path: Path, offset: str) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100, "b.csv": b"b" * 100}))
    size = len(parts.join())
    at = {"central directory": len(parts.data), "end of file": size, "far past the file": 0xFFFFFFF0}[offset]
    parts.records[1] = with_field(parts.records[1], LOCAL_OFFSET, at)
    refused(parts.join(), tmp_path, rf"entry 'b.csv': its data \(bytes {at} to at least \d+\) runs past "
                                    rf"the central directory at byte {len(parts.data)}")


def test_a_compressed_size_larger_than_the_file_is_refused(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100}))
    parts.records[0] = with_field(parts.records[0], COMPRESSED, 50_000_000)
    refused(parts.join(), tmp_path, r"entry 'a.csv': its data .* runs past the central directory")


@pytest.mark.parametrize("lie", ["offset", "compressed"])
def test_zip64_fields_that_lie_are_refused(tmp_path: Path, lie: str) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100, "b.csv": b"b" * 100}))
    record = parts.records[1]
    if lie == "offset":
        record = with_extra(with_field(record, LOCAL_OFFSET, 0xFFFFFFFF), zip64_extra(1 << 62))
    else:
        record = with_extra(with_field(record, COMPRESSED, 0xFFFFFFFF), zip64_extra(1 << 40))
    parts.records[1] = record
    refused(parts.join(), tmp_path, r"entry 'b.csv': its data .* runs past the central directory")


def test_a_zip64_field_announced_but_missing_is_refused(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100}))
    parts.records[0] = with_field(parts.records[0], SIZE, 0xFFFFFFFF)
    refused(parts.join(), tmp_path, r"entry 'a.csv': ZIP64 sizes announced but no ZIP64 extra field")


@pytest.mark.parametrize("count", [0, 1, 5, 65535])
def test_an_entry_count_that_lies_is_refused(tmp_path: Path, count: int) -> None:
    parts = split(zip_of({"a.csv": b"a", "b.csv": b"b"}))
    refused(parts.join(count=count), tmp_path, rf"the end record counts {count} entries, the central directory holds 2")
    refused(join_zip64(parts, count=count), tmp_path, rf"counts {count} entries, the central directory holds 2")


def test_a_zip64_end_record_is_read_and_one_naming_other_disks_is_refused(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a", "b.csv": b"b"}))
    assert unpack(join_zip64(parts), tmp_path) == {"a.csv": b"a", "b.csv": b"b"}
    refused(join_zip64(parts, disks=3), tmp_path, r"not a valid ZIP file: .*disks")


# -- names --------------------------------------------------------------------------------------

def test_invalid_utf8_under_the_utf8_flag_is_refused_by_entry_number(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a", "b.csv": b"b"}))
    record = with_name(parts.records[1], b"caf\xe9.csv")           # Latin-1, not UTF-8
    parts.records[1] = with_field(record, FLAGS, field(record, FLAGS, "<H") | 0x800, "<H")
    refused(parts.join(), tmp_path,
            r"^entry #2: its name is not valid UTF-8 although the package marks it UTF-8$")


def test_the_same_bytes_without_the_flag_are_cp437_and_the_local_header_must_agree(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a", "b.csv": b"b"}))
    parts.records[1] = with_name(parts.records[1], b"\xe9.csv")         # as long as 'b.csv'
    refused(parts.join(), tmp_path, r"entry '\u0398.csv': the local header names another file")


def test_a_utf8_name_round_trips(tmp_path: Path) -> None:
    assert unpack(zip_of({"日本/平安.csv": b"x", "café.csv": b"y"}), tmp_path) == {"日本/平安.csv": b"x", "café.csv": b"y"}


# -- local headers --------------------------------------------------------------------------------

def local_patched(blob: bytes, pos: int, value: int, fmt: str) -> bytes:
    """The first entry's local header with one field changed."""
    out = bytearray(blob)
    struct.pack_into(fmt, out, pos, value)
    return bytes(out)


@pytest.mark.parametrize("pos, fmt, value, match", [
    (8, "<H", 8, r"the local header says compression method 8, the central directory 0"),
    (14, "<L", 0x12345678, r"its local header's CRC-32 and sizes \(12345678, 100, 100\) disagree"),
    (18, "<L", 99, r"its local header's CRC-32 and sizes \([0-9a-f]{8}, 99, 100\) disagree"),
    (22, "<L", 0xFFFFFFFF, r"ZIP64 sizes announced but no ZIP64 extra field"),
    (28, "<H", 7, r"'a.csv': its data \(bytes 42 to 142\) runs past byte 135, where the next entry"),
])
def test_a_local_header_that_disagrees_is_refused(tmp_path: Path, pos: int, fmt: str, value: int, match: str) -> None:
    blob = zip_of({"a.csv": b"a" * 100, "b.csv": b"b" * 100})
    refused(local_patched(blob, pos, value, fmt), tmp_path, match)


def test_a_local_extra_field_may_use_the_room_before_the_central_directory(tmp_path: Path) -> None:
    """The local extra field is only known at extraction: the plan's `end` bounds it there."""
    blob = zip_of({"a.csv": b"a" * 100})
    parts = split(blob)
    padded = Parts(parts.data[:30 + 5] + b"\x99\x99\x04\x00pad!" + parts.data[35:], parts.records)
    padded.data = local_patched(padded.data, 28, 8, "<H")
    assert unpack(padded.join(), tmp_path / "fine") == {"a.csv": b"a" * 100}


def test_copy_entry_without_an_end_is_bounded_by_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(zip_of({"a.csv": b"a" * 100}))
    with open(path, "rb") as fh:
        entry = next(iter(read_directory(fh)))
    with open(path, "rb") as fh:
        out = io.BytesIO()
        copy_entry(fh.fileno(), entry, out.write)
        assert out.getvalue() == b"a" * 100
        with pytest.raises(PackageError, match=r"'a.csv': its data \(bytes 35 to 135\) runs past byte 120"):
            copy_entry(fh.fileno(), entry, out.write, end=120)


def test_a_stored_entry_whose_sizes_differ_is_refused(tmp_path: Path) -> None:
    parts = split(zip_of({"a.csv": b"a" * 100, "b.csv": b"b"}))
    parts.records[0] = with_field(parts.records[0], SIZE, 90)
    refused(parts.join(), tmp_path, r"entry 'a.csv': stored \(uncompressed\) with 100 bytes of data for a size of 90")


def test_data_descriptors_are_fine_and_their_sizes_still_checked(tmp_path: Path) -> None:
    raw = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            return raw.write(b)

    with zipfile.ZipFile(Unseekable(), "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in {"a.csv": b"a" * 1000, "b.csv": b"b" * 10}.items():
            with zf.open(name, "w") as out:
                out.write(data)
    blob = raw.getvalue()
    assert unpack(blob, tmp_path / "ok") == {"a.csv": b"a" * 1000, "b.csv": b"b" * 10}
    parts = split(blob)
    parts.records[0] = with_field(with_field(parts.records[0], SIZE, 999), CRC, zlib.crc32(b"a" * 999))
    refused(parts.join(), tmp_path / "bad", r"entry 'a.csv': more data than its declared size 999")


# -- any damage at all ----------------------------------------------------------------------------

def built(files: dict[str, bytes], method: int, zip64: bool, descriptors: bool) -> bytes:
    """A real ZIP from zipfile: ZIP64 extra fields and data descriptors (an unseekable writer) on demand."""
    raw = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            return raw.write(b)

    with zipfile.ZipFile(Unseekable() if descriptors else raw, "w", method) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, WHEN)
            info.compress_type = method
            if name.endswith("/"):
                zf.writestr(info, b"")
                continue
            with zf.open(info, "w", force_zip64=zip64) as out:
                out.write(data)
    return raw.getvalue()


def damaged(blob: bytes, mutations: list[tuple]) -> bytes:
    """Flip and overwrite bytes (anywhere, or in the central directory), truncate, splice records."""
    data = bytearray(blob)
    for kind, *args in mutations:
        if not data:
            break
        if kind == "flip":
            where, pos, bits = args
            start = data.rfind(b"PK\x01\x02") if where == "directory" else 0
            data[(max(start, 0) + pos) % len(data)] ^= bits
        elif kind == "word":
            pos, value = args
            at = pos % max(1, len(data) - 3)
            data[at:at + 4] = struct.pack("<L", value)[:len(data) - at]
        elif kind == "truncate":
            del data[args[0] % len(data):]
        else:
            data = bytearray(_spliced(bytes(data), *args))
    return bytes(data)


def _spliced(blob: bytes, how: str, i: int, j: int) -> bytes:
    try:
        parts = split(blob)
    except (AssertionError, ValueError, struct.error):
        return blob                     # already too damaged to take apart: leave it as it is
    records = parts.records
    if not records:
        return blob
    a, b = records[i % len(records)], records[j % len(records)]
    if how == "duplicate":
        records.insert(j % len(records), a)
    elif how == "drop":
        records.pop(i % len(records))
    elif how == "swap":
        records[i % len(records)], records[j % len(records)] = b, a
    elif how == "same offset":
        records[i % len(records)] = with_field(a, LOCAL_OFFSET, field(b, LOCAL_OFFSET))
    elif how == "renamed copy":
        records.append(with_name(a, b"copy-%d.bin" % j))
    return parts.join()


NAMES = ["a.csv", "b.csv", "sub/", "sub/c.csv", "sub/deep/d.bin", "日本/株価.csv", "café/été.csv", "top.txt"]
CONTENT = st.one_of(st.binary(max_size=2000), st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8),
                                                       st.integers(0, 4000)))
MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.just("anywhere"), st.integers(0, 1 << 16), st.integers(1, 255)),
    st.tuples(st.just("flip"), st.just("directory"), st.integers(0, 600), st.integers(1, 255)),
    st.tuples(st.just("word"), st.integers(0, 1 << 16),
              st.sampled_from([0, 1, 30, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF, 0x08074B50, 0x02014B50])),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16)),
    st.tuples(st.just("splice"), st.sampled_from(["duplicate", "drop", "swap", "same offset", "renamed copy"]),
              st.integers(0, 20), st.integers(0, 20)),
)


def assert_no_shared_bytes(directory) -> None:
    """Each entry's local header, name and data lie in bytes of their own, before the central directory."""
    spans = sorted((e.offset, e.offset + 30 + len(e.name.encode("utf-8" if e.flags & 0x800 else "cp437"))
                    + e.compressed, e.name) for e in directory)
    for (_, end, name), (start, _, after) in zip(spans, spans[1:]):
        assert end <= start, f"{name!r} reaches into {after!r}"
    assert not spans or spans[-1][1] <= directory.start


def tree_of(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.dictionaries(st.sampled_from(NAMES), CONTENT, min_size=1, max_size=6),
       method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]), zip64=st.booleans(),
       descriptors=st.booleans(), mutations=st.lists(MUTATION, max_size=4))
def test_any_damage_ends_as_a_package_error_or_the_right_files(files: dict[str, bytes], method: int, zip64: bool,
                                                              descriptors: bool, mutations: list[tuple]) -> None:
    files = {name: (b"" if name.endswith("/") else data) for name, data in files.items()}
    blob = damaged(built(files, method, zip64, descriptors), mutations)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "outside").mkdir()
        (root / "outside" / "keep.csv").write_bytes(b"untouched")
        before = tree_of(root)
        staging = root / "staging"
        try:
            got = unpack(blob, root)
        except (PackageError, DiskFullError) as exc:
            assert "\n" not in str(exc)
            got = None
        event("refused" if got is None else "extracted")
        written = tree_of(root) - before - {"p.zip"}
        assert all(path == "staging" or path.startswith("staging/") for path in written), written
        assert (root / "outside" / "keep.csv").read_bytes() == b"untouched"
        if got is None:
            return
        plan = inspect(root / "p.zip")
        assert_no_shared_bytes(plan.directory)
        declared = {e.target: e.view for e in plan.files}
        assert set(got) == set(declared), (set(got), set(declared))
        for name, data in got.items():
            entry = declared[name]
            assert (len(data), zlib.crc32(data)) == (entry.size, entry.crc), name
            if name in files and (entry.size, entry.crc) == (len(files[name]), zlib.crc32(files[name])):
                assert data == files[name], name
        if not mutations:
            assert got == {name: data for name, data in files.items() if not name.endswith("/")}
        assert staging.is_dir()


def test_a_plain_end_record_may_count_past_65535_entries_modulo_65536(tmp_path: Path) -> None:
    """Writers without ZIP64 wrap the 16-bit count; that is the only count that may differ."""
    parts = empty_files(65_537)
    package = tmp_path / "p.zip"
    package.write_bytes(parts.join())
    with open(package, "rb") as fh:
        assert len(read_directory(fh)) == 65_537
    package.write_bytes(parts.join(count=2))
    with open(package, "rb") as fh, pytest.raises(PackageError, match="the end record counts 2 entries, "
                                                                     "the central directory holds 65537"):
        read_directory(fh)
