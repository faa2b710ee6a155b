"""Checks on a downloaded ZIP before anything is written: safe paths, no links, sizes, ZIP bombs.

The result is a plan: which entry goes to which relative path, how many bytes, and the package's
content time (its newest entry), used by the freshness rule of docs/hub-api.md section 4. The plan keeps
its facts in arrays, so its memory hardly grows with the number of files.
"""
from __future__ import annotations

import array
import bisect
import os
import stat
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Iterator

from app.core.errors import PackageError
from app.package.zipread import DEFLATED, STORED, CentralDirectory, EntryView, StringTable, dos_date_time, read_directory

SUPPORTED_METHODS = {STORED: "stored", DEFLATED: "deflated"}
BOMB_MIN_SIZE = 1 << 20      # small entries may compress extremely well (a file of zeros): only big ones count


class Package:
    """An open package: a file descriptor (read with pread, so threads share it) and its directory."""

    def __init__(self, path: Path):
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise PackageError(f"cannot read the package: {exc.strerror or exc}") from None
        try:
            with os.fdopen(os.dup(self.fd), "rb", buffering=0) as fh:
                self.directory: CentralDirectory = read_directory(fh)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Package":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_package(path: Path) -> Package:
    return Package(path)


@dataclass(frozen=True, slots=True)
class Entry:
    """A file of the plan (made on demand)."""

    target: str                 # relative path under local_dir, '/'-separated
    view: EntryView
    end: int                    # where its bytes in the package end (the next entry, or the central directory)

    @property
    def size(self) -> int:
        return self.view.size


@dataclass(frozen=True)
class PackagePlan:
    directory: CentralDirectory
    indexes: array.array[int]   # directory positions of the files to install
    renamed: StringTable | None  # their relative paths; None: each is its entry's name (nothing stripped)
    ends: array.array[int]      # where each one's bytes end in the package
    dirs: tuple[str, ...]
    total_bytes: int
    content_time: datetime | None

    @property
    def file_count(self) -> int:
        return len(self.indexes)

    def target(self, k: int) -> str:
        return self.directory.names[self.indexes[k]] if self.renamed is None else self.renamed[k]

    @property
    def targets(self) -> Iterator[str]:
        return (self.target(k) for k in range(self.file_count))

    def entry(self, k: int) -> Entry:
        view = self.directory.entry(self.indexes[k])
        return Entry(view.name if self.renamed is None else self.renamed[k], view, self.ends[k])

    @property
    def files(self) -> Iterator[Entry]:
        return (self.entry(k) for k in range(self.file_count))


def _is_folder(e: EntryView) -> bool:
    return e.is_dir or stat.S_IFMT(e.mode) == stat.S_IFDIR


def _safe_parts(name: str) -> list[str]:
    if not name:
        raise PackageError("an entry has an empty name")
    if "\\" in name:
        raise PackageError(f"entry {name!r}: backslash in path")
    if name.startswith("/"):
        raise PackageError(f"entry {name!r}: absolute path")
    if name[1:2] == ":" and name[0].isascii() and name[0].isalpha():
        raise PackageError(f"entry {name!r}: drive letter in path")
    if "\x00" in name:
        raise PackageError(f"entry {name!r}: NUL in path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PackageError(f"entry {name!r}: '..' in path")
    return parts


def _check_entry(e: EntryView, is_dir: bool, parts: list[str], strip_components: int, max_ratio: float) -> None:
    kind = stat.S_IFMT(e.mode)
    if kind == stat.S_IFLNK:
        raise PackageError(f"entry {e.name!r}: symbolic links are not allowed")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise PackageError(f"entry {e.name!r}: special file (type {oct(kind)}) not allowed")
    if e.flags & 0x1:
        raise PackageError(f"entry {e.name!r}: encrypted entries are not supported")
    if is_dir:
        return
    if e.method not in SUPPORTED_METHODS:
        raise PackageError(f"entry {e.name!r}: unsupported compression method {e.method} (stored or deflated only)")
    if e.method == STORED and e.compressed != e.size:
        raise PackageError(f"entry {e.name!r}: stored (uncompressed) with {e.compressed} bytes of data "
                           f"for a size of {e.size}")
    if len(parts) <= strip_components:
        raise PackageError(f"entry {e.name!r}: has fewer than strip_components+1 ({strip_components + 1}) path components")
    if e.size >= BOMB_MIN_SIZE and e.size > max_ratio * max(e.compressed, 1):
        raise PackageError(f"entry {e.name!r}: compression ratio {e.size / max(e.compressed, 1):.0f}:1 "
                           f"exceeds sync.max_compression_ratio {max_ratio:g} (a ZIP bomb?)")


def inspect_package(source: Path | Package, *, strip_components: int, zone: tzinfo,
                    max_ratio: float, max_total: int | None) -> PackagePlan:
    """Refuse the whole package at the first unsafe entry (its directory's layout was checked when read)."""
    if isinstance(source, Package):
        directory = source.directory
    else:
        with open_package(source) as package:
            directory = package.directory
    # entry starts in ascending order: the directory's own offsets when it lists entries in data order
    starts = directory.offsets if directory.ordered else array.array("Q", sorted(set(directory.offsets)))
    indexes, ends = array.array("I"), array.array("Q")
    renamed: StringTable | None = None
    folders: dict[str, str] = {}                      # casefold key -> path (folders are few)
    file_keys = _PathHashes(len(directory))           # casefold keys of files: duplicates, also by case
    file_paths = _PathHashes(len(directory))          # exact paths of files: folder/file clashes
    total = 0
    newest = 0
    for e in directory:
        parts = _safe_parts(e.name)
        is_dir = _is_folder(e)
        _check_entry(e, is_dir, parts, strip_components, max_ratio)
        kept = parts[strip_components:]
        if not kept:
            continue
        target = "/".join(kept)
        key = target.casefold()
        if folders.get(key, target) != target or (not is_dir and key in folders) or (
                key in file_keys and _earlier(directory, e.index, key, strip_components, files=True)):
            raise PackageError(f"entry {e.name!r}: duplicate of {_first_named(directory, key, strip_components)!r}")
        if is_dir:
            folders[key] = target
            continue
        file_keys.add(key)
        file_paths.add(target)
        total += e.size
        if max_total is not None and total > max_total:
            raise PackageError(f"the package unpacks to more than sync.max_unpacked_size ({max_total} bytes)")
        newest = max(newest, e.dostime)
        if renamed is None and target != e.name:
            renamed = StringTable()          # from the first changed path on, every path is kept
            for i in indexes:
                renamed.append(directory.names[i])
        if renamed is not None:
            renamed.append(target)
        indexes.append(e.index)
        ends.append(_end_of(starts, e.offset - directory.shift, directory))
    del file_keys
    plan = PackagePlan(directory, indexes, renamed, ends, tuple(sorted(folders.values())), total,
                       _content_time(newest, zone))
    _check_file_dir_clash(plan, file_paths)
    return plan


class _PathHashes:
    """A set of paths kept as their 64-bit hashes in one array (open addressing): checking 20k paths
    holds no str objects (a dict of them held 1.6 MB while the download ran). `in` can say yes for a
    path never added when two hashes collide, so a yes is confirmed against the entries themselves."""

    def __init__(self, capacity: int):
        size = 8
        while size * 2 < capacity * 3:       # at most two thirds full
            size *= 2
        self._slots = array.array("q", bytes(8 * size))
        self._mask = size - 1

    def _slot(self, text: str) -> tuple[int, int]:
        h = hash(text) or 1                  # 0 marks an empty slot
        i = h & self._mask
        while (seen := self._slots[i]) and seen != h:
            i = (i + 1) & self._mask
        return i, h

    def add(self, text: str) -> None:
        i, h = self._slot(text)
        self._slots[i] = h

    def __contains__(self, text: str) -> bool:
        i, h = self._slot(text)
        return self._slots[i] == h


def _content_time(dostime: int, zone: tzinfo) -> datetime | None:
    if not dostime:
        return None
    try:
        return datetime(*dos_date_time(dostime), tzinfo=zone)
    except ValueError:
        return None


def _end_of(starts: array.array[int], raw_offset: int, directory: CentralDirectory) -> int:
    """Where an entry's bytes end: the next entry's start, or the central directory."""
    i = bisect.bisect_right(starts, raw_offset)
    return starts[i] + directory.shift if i < len(starts) else directory.start


def _earlier(directory: CentralDirectory, before: int, key: str, strip_components: int,
             files: bool | None = None) -> str | None:
    """The name of the first entry before `before` whose path is `key` once case-folded (files only,
    folders only, or either), for confirming a duplicate and wording its error."""
    for i in range(before):
        e = directory.entry(i)
        if files is not None and _is_folder(e) == files:
            continue
        kept = _safe_parts(e.name)[strip_components:]    # entries before `before` passed these checks
        if kept and "/".join(kept).casefold() == key:
            return e.name
    return None


def _first_named(directory: CentralDirectory, key: str, strip_components: int) -> str:
    """The earlier entry a duplicate repeats (only looked up to word the error)."""
    return _earlier(directory, len(directory), key, strip_components) or key


def _check_file_dir_clash(plan: PackagePlan, file_paths: _PathHashes) -> None:
    """`a` as a file and `a/b` as another entry cannot both exist on disk."""
    for k, target in enumerate(plan.targets):
        cut = target.rfind("/")
        while cut > 0:              # each parent folder, as text (pathlib would intern every part for good)
            parent = target[:cut]
            if parent in file_paths and any(path == parent for path in plan.targets):
                raise PackageError(f"entry {plan.directory.names[plan.indexes[k]]!r}: "
                                   f"its folder {parent!r} is also a file in the package")
            cut = target.rfind("/", 0, cut)


def top_level_folder(plan: PackagePlan) -> str | None:
    """The single folder every entry sits under, if there is one (for the strip_components hint)."""
    tops = {t.split("/", 1)[0] for t in plan.targets if "/" in t}
    if len(tops) == 1 and all("/" in t for t in plan.targets):
        return tops.pop()
    return None
