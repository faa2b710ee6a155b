"""The compact ZIP reader agrees with the stdlib's zipfile on real archives and refuses broken ones."""
from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

import pytest

from app.core.errors import PackageError
from app.package import zipread
from app.package.zipread import StringTable, copy_entry, read_directory


def read_all(path: Path) -> dict[str, bytes]:
    out = {}
    fd = os.open(path, os.O_RDONLY)
    try:
        with open(path, "rb") as fh:
            directory = read_directory(fh)
        for entry in directory:
            if entry.is_dir:
                continue
            buf = io.BytesIO()
            copy_entry(fd, entry, buf.write)
            out[entry.name] = buf.getvalue()
    finally:
        os.close(fd)
    return out


def stdlib(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


FILES = {"a.csv": b"date,close\n" * 500, "sub/b.csv": os.urandom(70_000), "empty.txt": b"", "日本/c.csv": b"x,y\n"}


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_same_bytes_and_facts_as_zipfile(tmp_path: Path, method: int) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.mkdir("sub")
        for name, data in FILES.items():
            zf.writestr(name, data)
    assert read_all(path) == stdlib(path) == FILES
    with open(path, "rb") as fh, zipfile.ZipFile(path) as zf:
        directory = read_directory(fh)
        for entry, info in zip(directory, zf.infolist(), strict=True):
            assert (entry.name, entry.offset, entry.size, entry.compressed, entry.crc, entry.date_time) == \
                   (info.filename, info.header_offset, info.file_size, info.compress_size, info.CRC, info.date_time)
        assert directory.start == zf.start_dir


def test_zip64_and_data_descriptors(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with open(path, "wb") as raw:
        # a non-seekable writer makes zipfile use data descriptors (flag bit 3)
        class Unseekable(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b) -> int:
                return raw.write(b)

        with zipfile.ZipFile(Unseekable(), "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in FILES.items():
                with zf.open(name, "w", force_zip64=True) as out:
                    out.write(data)
    with zipfile.ZipFile(path) as zf:
        assert all(i.flag_bits & 0x08 for i in zf.infolist())
    assert read_all(path) == FILES


def test_a_directory_read_in_small_pieces_gives_the_same_entries(tmp_path: Path, monkeypatch) -> None:
    """Records (ZIP64 extras included) cut at every possible place between two reads of the directory."""
    path = tmp_path / "p.zip"
    files = {f"folder-{i % 7}/{'long-name-' * (i % 5)}{i}.csv": os.urandom(i * 37 % 900) for i in range(300)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            with zf.open(name, "w", force_zip64=bool(len(data) % 2)) as out:
                out.write(data)
    monkeypatch.setattr(zipread._Pieces, "PIECE", 61)     # smaller than one record
    assert read_all(path) == files == stdlib(path)


def test_a_directory_shorter_than_its_end_record_says_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(5):
            zf.writestr(f"{i}.csv", b"x" * 10)
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    size = struct.unpack_from("<L", data, end + 12)[0]
    struct.pack_into("<L", data, end + 12, size + 40)        # the directory "ends" inside the end record
    struct.pack_into("<L", data, end + 16, struct.unpack_from("<L", data, end + 16)[0] - 40)
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="not a valid ZIP file"):
        read_all(path)


def test_bytes_before_the_archive_are_allowed(tmp_path: Path) -> None:
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", FILES["a.csv"])
    shifted = tmp_path / "shifted.zip"
    shifted.write_bytes(b"#!/bin/sh\nexit 0\n" + plain.read_bytes())
    assert read_all(shifted) == {"a.csv": FILES["a.csv"]}


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    path.write_bytes(os.urandom(5000))
    with pytest.raises(PackageError, match="not a valid ZIP"):
        read_all(path)


def _one_entry(tmp_path: Path, data: bytes, method: int = zipfile.ZIP_STORED) -> tuple[Path, int]:
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("a.csv", data)
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    return path, info.header_offset + 30 + len(info.filename.encode())


def test_flipped_byte_fails_the_crc(tmp_path: Path) -> None:
    path, data_at = _one_entry(tmp_path, b"0123456789" * 100)
    blob = bytearray(path.read_bytes())
    blob[data_at + 5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(PackageError, match="'a.csv'.*CRC"):
        read_all(path)


def test_a_size_that_lies_is_caught(tmp_path: Path) -> None:
    path, _ = _one_entry(tmp_path, b"z" * 100_000, zipfile.ZIP_DEFLATED)
    blob = bytearray(path.read_bytes())
    # shrink the declared size in both headers: the data inflates to more than declared
    central = blob.rfind(b"PK\x01\x02")
    struct.pack_into("<L", blob, central + 24, 10)
    struct.pack_into("<L", blob, 22, 10)
    path.write_bytes(bytes(blob))
    with pytest.raises(PackageError, match="more data than its declared size 10"):
        read_all(path)


def test_local_header_naming_another_file_is_refused(tmp_path: Path) -> None:
    path, _ = _one_entry(tmp_path, b"abc")
    blob = bytearray(path.read_bytes())
    blob[30:35] = b"b.csv"            # the local header's name only
    path.write_bytes(bytes(blob))
    with pytest.raises(PackageError, match="local header names another file"):
        read_all(path)


def test_truncated_data_is_refused(tmp_path: Path) -> None:
    path, data_at = _one_entry(tmp_path, os.urandom(50_000))
    blob = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    fd = os.open(path, os.O_RDONLY)
    try:
        with open(path, "rb") as fh:
            entry = next(iter(read_directory(fh)))
        os.close(fd)
        path.write_bytes(blob[: data_at + 100])          # the archive ends inside the entry's data
        fd = os.open(path, os.O_RDONLY)
        with pytest.raises(PackageError, match=r"'a.csv': its data \(bytes 35 to 50035\) runs past byte 135"):
            copy_entry(fd, entry, io.BytesIO().write)
    finally:
        os.close(fd)
    assert info.file_size == 50_000


def test_string_table_gives_back_each_string() -> None:
    texts = ["a.csv", "", "日线/平安银行.csv", "caf\u00e9/\u00e9t\u00e9.csv", "x" * 5000, "last"]
    table = StringTable()
    for text in texts:
        table.append(text)
    assert len(table) == len(texts)
    assert [table[i] for i in range(len(texts))] == texts
    assert list(table) == texts
