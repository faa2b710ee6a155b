"""Checks on a downloaded ZIP before anything is written: safe paths, no links, sizes, ZIP bombs.

The result is a plan: which entry goes to which relative path, how many bytes, and the package's
content time (its newest entry), used by the freshness rule of HUB_API section 4.
"""
from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path, PurePosixPath

from .errors import PackageError

SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DRIVE = re.compile(r"^[A-Za-z]:")
BOMB_MIN_SIZE = 1 << 20      # small entries may compress extremely well (a file of zeros): only big ones count


@dataclass(frozen=True, slots=True)
class Entry:
    info: zipfile.ZipInfo
    target: str                 # relative path under local_dir, '/'-separated
    end: int = 0                # where its bytes in the package end (the next entry, or the central directory)

    @property
    def size(self) -> int:
        return self.info.file_size


@dataclass(frozen=True)
class PackagePlan:
    files: tuple[Entry, ...]
    dirs: tuple[str, ...]
    total_bytes: int
    content_time: datetime | None

    @property
    def file_count(self) -> int:
        return len(self.files)


def _entry_kind(info: zipfile.ZipInfo) -> int:
    """The Unix file type stored in the entry, 0 when none was recorded."""
    if info.create_system == 3:          # Unix
        return stat.S_IFMT(info.external_attr >> 16)
    return 0


def _safe_parts(name: str) -> list[str]:
    if not name:
        raise PackageError("an entry has an empty name")
    if "\\" in name:
        raise PackageError(f"entry {name!r}: backslash in path")
    if name.startswith("/"):
        raise PackageError(f"entry {name!r}: absolute path")
    if _DRIVE.match(name):
        raise PackageError(f"entry {name!r}: drive letter in path")
    if "\x00" in name:
        raise PackageError(f"entry {name!r}: NUL in path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PackageError(f"entry {name!r}: '..' in path")
    return parts


class _OwnedFileZip(zipfile.ZipFile):
    """A ZipFile over a file object it owns: closing it closes the file too."""

    def __init__(self, raw):
        self._raw = raw
        super().__init__(raw)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_package(path: Path) -> zipfile.ZipFile:
    """The package's central directory, read once. Unbuffered: a buffered reader could keep bytes
    it read before a download in progress wrote them."""
    try:
        raw = open(path, "rb", buffering=0)
    except OSError as exc:
        raise PackageError(f"cannot read the package: {exc.strerror or exc}") from None
    try:
        return _OwnedFileZip(raw)
    except (zipfile.BadZipFile, OSError) as exc:
        raw.close()
        reason = f"not a valid ZIP file: {exc}" if isinstance(exc, zipfile.BadZipFile) else f"cannot read the package: {exc.strerror or exc}"
        raise PackageError(reason) from None


def inspect_package(source: Path | zipfile.ZipFile, *, strip_components: int, zone: tzinfo,
                    max_ratio: float, max_total: int | None) -> PackagePlan:
    """Read the central directory and refuse the whole package at the first unsafe entry."""
    if isinstance(source, zipfile.ZipFile):
        infos, directory_at = source.infolist(), source.start_dir
    else:
        with open_package(source) as archive:
            infos, directory_at = archive.infolist(), archive.start_dir
    following = _next_offsets(infos, directory_at)
    files: list[Entry] = []
    dirs: set[str] = set()
    seen: dict[str, str] = {}
    total = 0
    newest: tuple | None = None
    for info in infos:
        parts = _safe_parts(info.filename)
        kind = _entry_kind(info)
        is_dir = info.is_dir() or kind == stat.S_IFDIR
        if kind == stat.S_IFLNK:
            raise PackageError(f"entry {info.filename!r}: symbolic links are not allowed")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise PackageError(f"entry {info.filename!r}: special file (type {oct(kind)}) not allowed")
        if info.flag_bits & 0x1:
            raise PackageError(f"entry {info.filename!r}: encrypted entries are not supported")
        if not is_dir and info.compress_type not in SUPPORTED_METHODS:
            raise PackageError(f"entry {info.filename!r}: unsupported compression method {info.compress_type}")
        if not is_dir and len(parts) <= strip_components:
            raise PackageError(f"entry {info.filename!r}: has fewer than strip_components+1 ({strip_components + 1}) path components")
        kept = parts[strip_components:]
        if not kept:
            continue
        target = "/".join(kept)
        key = target.casefold()
        if key in seen and not (is_dir and target in dirs):
            raise PackageError(f"entry {info.filename!r}: duplicate of {seen[key]!r}")
        seen[key] = info.filename
        if is_dir:
            dirs.add(target)
            continue
        if info.file_size >= BOMB_MIN_SIZE and info.file_size > max_ratio * max(info.compress_size, 1):
            raise PackageError(f"entry {info.filename!r}: compression ratio {info.file_size / max(info.compress_size, 1):.0f}:1 "
                               f"exceeds sync.max_compression_ratio {max_ratio:g} (a ZIP bomb?)")
        total += info.file_size
        if max_total is not None and total > max_total:
            raise PackageError(f"the package unpacks to more than sync.max_unpacked_size ({max_total} bytes)")
        newest = max(newest, info.date_time) if newest else info.date_time
        files.append(Entry(info, target, following.get(info.header_offset, directory_at)))
    _check_file_dir_clash(files, dirs)
    try:
        content_time = datetime(*newest, tzinfo=zone) if newest else None
    except ValueError:
        content_time = None
    return PackagePlan(tuple(files), tuple(sorted(dirs)), total, content_time)


def _next_offsets(infos: list[zipfile.ZipInfo], directory_at: int) -> dict[int, int]:
    """For each entry's offset, where the next entry (or the central directory) starts."""
    offsets = sorted({i.header_offset for i in infos})
    return dict(zip(offsets, offsets[1:] + [directory_at]))


def _check_file_dir_clash(files: list[Entry], dirs: set[str]) -> None:
    """`a` as a file and `a/b` as another entry cannot both exist on disk."""
    file_paths = {e.target for e in files}
    for entry in files:
        for parent in PurePosixPath(entry.target).parents:
            text = str(parent)
            if text != "." and text in file_paths:
                raise PackageError(f"entry {entry.info.filename!r}: its folder {text!r} is also a file in the package")
    clash = file_paths & dirs
    if clash:
        raise PackageError(f"entry {sorted(clash)[0]!r}: both a file and a folder in the package")


def top_level_folder(plan: PackagePlan) -> str | None:
    """The single folder every entry sits under, if there is one (for the strip_components hint)."""
    tops = {e.target.split("/", 1)[0] for e in plan.files if "/" in e.target}
    if len(tops) == 1 and all("/" in e.target for e in plan.files):
        return tops.pop()
    return None
