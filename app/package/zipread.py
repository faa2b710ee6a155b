"""A compact ZIP reader: the central directory as arrays (not one object per entry), and entries
streamed with their CRC and size checked, so memory stays flat for packages of any file count.

Only what packages use (docs/hub-api.md section 6): stored and deflated entries, ZIP64, data descriptors.
Anything else, and any directory that lies (overlapping entries, offsets or sizes past the data,
entry counts, names), is a PackageError: never another exception type.
"""
from __future__ import annotations

import array
import os
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

from app.core.errors import PackageError

STORED, DEFLATED = 0, 8
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL_SIG, _LOCAL_SIG = b"PK\x01\x02", b"PK\x03\x04"
_ZIP64_EXTRA = 0x0001
_MAX32, _MAX16 = 0xFFFFFFFF, 0xFFFF
_UTF8_NAME, _DATA_DESCRIPTOR = 0x800, 0x08
# Small, fixed-size pieces keep the heap from fragmenting: with 1 MB reads and 4 MB outputs, peak RSS
# grew with the package (45 vs 54 MB for 1.9k vs 20.6k files); with these it stays at 36-40 MB.
READ_CHUNK = 128 << 10       # compressed bytes read at once (into a reused buffer)
OUT_CHUNK = 512 << 10        # decompressed bytes held at once, whatever the compression ratio
# zipfile's reader of the end records and the layout of what it returns are private, so absent from
# its type stubs: reached through this untyped name.
_zipfile: Any = zipfile


def dos_date_time(dostime: int) -> tuple[int, int, int, int, int, int]:
    """An MS-DOS date (high 16 bits) and time (low 16 bits) as (year, month, day, hour, minute, second)."""
    d, t = dostime >> 16, dostime & 0xFFFF
    return ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2)


@dataclass(frozen=True, slots=True)
class EntryView:
    """One entry, made on demand from the arrays (never stored)."""

    index: int
    name: str
    offset: int
    compressed: int
    size: int
    crc: int
    method: int
    flags: int
    dostime: int
    mode: int            # Unix file type and permissions, 0 when the creator recorded none

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def date_time(self) -> tuple[int, int, int, int, int, int]:
        return dos_date_time(self.dostime)

    @property
    def raw_name(self) -> bytes:
        """The name's bytes as the package stores them (both decodings used here round-trip)."""
        return self.name.encode("utf-8" if self.flags & _UTF8_NAME else "cp437")


class StringTable:
    """Strings packed end to end in one UTF-8 buffer (a third of the memory of a list of str objects)."""

    __slots__ = ("_blob", "_ends")

    def __init__(self) -> None:
        self._blob = bytearray()
        self._ends = array.array("Q")

    def append(self, text: str) -> None:
        self._blob += text.encode("utf-8", "surrogateescape")
        self._ends.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i: int) -> str:
        start = self._ends[i - 1] if i > 0 else 0
        return self._blob[start:self._ends[i]].decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class CentralDirectory:
    """Every entry's facts in parallel arrays (about 60 bytes an entry, names included)."""

    def __init__(self) -> None:
        self.names = StringTable()
        self.name_sizes = array.array("H")     # each name's length in the package, in bytes
        self.offsets = array.array("Q")
        self.compressed = array.array("Q")
        self.sizes = array.array("Q")
        self.crcs = array.array("I")
        self.methods = array.array("H")
        self.flags = array.array("H")
        self.dostimes = array.array("I")
        self.modes = array.array("H")      # the Unix st_mode: 16 bits
        self.ordered = True     # each entry's data starts after the one listed before it (as writers lay them out)
        self.start = 0          # where the central directory begins (the end of the last entry)
        self.shift = 0          # bytes prepended to the archive (offsets are relative to the ZIP)

    def __len__(self) -> int:
        return len(self.names)

    def entry(self, i: int) -> EntryView:
        return EntryView(i, self.names[i], self.offsets[i] + self.shift, self.compressed[i], self.sizes[i],
                         self.crcs[i], self.methods[i], self.flags[i], self.dostimes[i], self.modes[i])

    def __iter__(self) -> Iterator[EntryView]:
        return (self.entry(i) for i in range(len(self)))


def _zip64_values(extra: bytes, wanted: list[str], name: str) -> dict[str, int]:
    """Sizes and offset that did not fit 32 bits, from the ZIP64 extra field, in their fixed order."""
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        if kind == _ZIP64_EXTRA:
            body = extra[pos + 4: pos + 4 + length]
            if len(body) < 8 * len(wanted):
                raise PackageError(f"entry {name!r}: ZIP64 extra field too short")
            return {key: struct.unpack_from("<Q", body, 8 * i)[0] for i, key in enumerate(wanted)}
        pos += 4 + length
    raise PackageError(f"entry {name!r}: ZIP64 sizes announced but no ZIP64 extra field")


def read_directory(fh: BinaryIO) -> CentralDirectory:
    """Parse the central directory and check its layout (PackageError for anything that is not a sound ZIP)."""
    try:
        directory = _read_directory(fh)
    except OSError as exc:
        raise PackageError(f"cannot read the package: {exc.strerror or exc}") from None
    check_layout(directory)
    return directory


def _read_directory(fh: BinaryIO) -> CentralDirectory:
    try:
        end = _zipfile._EndRecData(fh)       # the stdlib's reader of the end records, ZIP64 included
    except zipfile.BadZipFile as exc:       # e.g. a ZIP64 locator naming another disk
        raise PackageError(f"not a valid ZIP file: {exc}") from None
    if not end:
        raise PackageError("not a valid ZIP file: no end of central directory record")
    size, offset = end[_zipfile._ECD_SIZE], end[_zipfile._ECD_OFFSET]
    shift = end[_zipfile._ECD_LOCATION] - size - offset
    if end[_zipfile._ECD_SIGNATURE] == _zipfile.stringEndArchive64:
        shift -= _zipfile.sizeEndCentDir64 + _zipfile.sizeEndCentDir64Locator
    if shift < 0:
        raise PackageError("not a valid ZIP file: the central directory lies outside the file")
    fh.seek(offset + shift)
    directory = CentralDirectory()
    directory.start, directory.shift = offset + shift, shift
    reader = _Pieces(fh, size)
    while not reader.done:
        data, pos = reader.ensure(_CENTRAL.size)
        (sig, _cv, system, _ev, _r, flags, method, t, d, crc, csize, usize, n, m, k,
         _disk, _internal, external, offset_e) = _CENTRAL.unpack_from(data, pos)
        number = len(directory.names) + 1
        if sig != _CENTRAL_SIG:
            raise PackageError(f"not a valid ZIP file: bad central directory record (entry #{number})")
        data, pos = reader.ensure(_CENTRAL.size + n + m + k)
        raw = data[pos + _CENTRAL.size: pos + _CENTRAL.size + n]
        try:
            name = raw.decode("utf-8" if flags & _UTF8_NAME else "cp437")    # cp437 decodes any byte
        except UnicodeDecodeError:
            raise PackageError(f"entry #{number}: its name is not valid UTF-8 although the package "
                               "marks it UTF-8") from None
        extra = data[pos + _CENTRAL.size + n: pos + _CENTRAL.size + n + m]
        wanted = [key for key, value in (("size", usize), ("compressed", csize), ("offset", offset_e))
                  if value == _MAX32]
        if wanted:
            big = _zip64_values(extra, wanted, name)
            usize, csize, offset_e = big.get("size", usize), big.get("compressed", csize), big.get("offset", offset_e)
        if directory.offsets and offset_e <= directory.offsets[-1]:
            directory.ordered = False
        directory.names.append(name)
        directory.name_sizes.append(n)
        directory.offsets.append(offset_e)
        directory.compressed.append(csize)
        directory.sizes.append(usize)
        directory.crcs.append(crc)
        directory.methods.append(method)
        directory.flags.append(flags)
        directory.dostimes.append((d << 16) | t)
        directory.modes.append(external >> 16 if system == 3 else 0)
        reader.skip(_CENTRAL.size + n + m + k)
    _check_count(end, len(directory))
    return directory


def _check_count(end: list[Any], found: int) -> None:
    """The end record's entry count must match the records: a count that lies hides or invents entries.
    A plain end record holds 16 bits, so a writer without ZIP64 may wrap past 65,535 entries."""
    said = end[_zipfile._ECD_ENTRIES_TOTAL]
    wrapped = end[_zipfile._ECD_SIGNATURE] != _zipfile.stringEndArchive64 and said == found & _MAX16
    if said != found and not wrapped:
        raise PackageError(f"not a valid ZIP file: the end record counts {said} entries, "
                           f"the central directory holds {found}")


def check_layout(directory: CentralDirectory) -> None:
    """Entries may not share or overlap their local data, nor reach into the central directory.

    Several records pointing into the same bytes let a 30 KB package unpack to 300 MB while each
    entry passes the ratio check on its own; an offset or size past the data is a lie as well.
    Each entry's local data ends at the least after its header with no extra field (its size is only
    known from the local header: copy_entry checks it there), its name and its compressed data.
    """
    count = len(directory)
    if not count:
        return
    if directory.ordered:       # strictly increasing offsets: no sorting, no extra memory
        order: array.array[int] | range = range(count)
    else:
        order = array.array("I", sorted(range(count), key=directory.offsets.__getitem__))
    offsets, name_sizes, compressed = directory.offsets, directory.name_sizes, directory.compressed
    shift, fixed = directory.shift, _LOCAL.size
    previous = order[0]
    reach = offsets[previous] + fixed + name_sizes[previous] + compressed[previous]
    for i in order[1:] if count > 1 else ():
        if reach > offsets[i]:
            _overlap(directory, previous, i, reach)
        previous, reach = i, offsets[i] + fixed + name_sizes[i] + compressed[i]
    if reach + shift > directory.start:
        raise PackageError(f"entry {directory.names[previous]!r}: its data (bytes {offsets[previous] + shift} to at "
                           f"least {reach + shift}) runs past the central directory at byte {directory.start}")


def _overlap(directory: CentralDirectory, i: int, j: int, reach: int) -> None:
    names, at, shift = directory.names, directory.offsets[j] + directory.shift, directory.shift
    if directory.offsets[i] == directory.offsets[j]:
        raise PackageError(f"entries {names[i]!r} and {names[j]!r} share the local header at byte {at}: "
                           "overlapping entries are refused")
    raise PackageError(f"entry {names[i]!r} (bytes {directory.offsets[i] + shift} to at least {reach + shift}) "
                       f"overlaps entry {names[j]!r} at byte {at}: overlapping entries are refused")


class _Pieces:
    """The central directory read a piece at a time: a directory of 100,000 entries is never held whole."""

    PIECE = 256 << 10

    def __init__(self, fh: BinaryIO, size: int):
        self.fh, self.left = fh, size
        self.data, self.pos = b"", 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data) and not self.left

    def ensure(self, n: int) -> tuple[bytes, int]:
        """The buffer and position where the next `n` bytes of the directory start."""
        have = len(self.data) - self.pos
        if have < n:
            if n - have > self.left:
                raise PackageError("not a valid ZIP file: truncated central directory record")
            want = min(self.left, max(n - have, self.PIECE))
            more = self.fh.read(want)
            if len(more) != want:
                raise PackageError("not a valid ZIP file: truncated central directory")
            self.left -= want
            self.data, self.pos = self.data[self.pos:] + more, 0
        return self.data, self.pos

    def skip(self, n: int) -> None:
        self.pos += n


_buffers = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer, reused for every entry (allocating a megabyte per read fragments the heap)."""
    buffer = getattr(_buffers, "view", None)
    if buffer is None:
        buffer = _buffers.view = memoryview(bytearray(READ_CHUNK))
    return buffer


def _data_start(fd: int, entry: EntryView, limit: int) -> int:
    """Check the entry's local header against the central directory; where its data starts."""
    if entry.offset + _LOCAL.size > limit:
        raise PackageError(f"entry {entry.name!r}: its local header at byte {entry.offset} lies past byte {limit}")
    header = os.pread(fd, _LOCAL.size, entry.offset)
    if len(header) != _LOCAL.size or header[:4] != _LOCAL_SIG:
        raise PackageError(f"entry {entry.name!r}: bad local header")
    _sig, _version, _system, flags, method, _t, _d, crc, compressed, size, n, m = _LOCAL.unpack(header)
    start: int = entry.offset + _LOCAL.size + n + m
    if start + entry.compressed > limit:
        raise PackageError(f"entry {entry.name!r}: its data (bytes {start} to {start + entry.compressed}) runs past "
                           f"byte {limit}, where the next entry or the central directory starts")
    local = os.pread(fd, n + m, entry.offset + _LOCAL.size)
    if local[:n] != entry.raw_name:
        raise PackageError(f"entry {entry.name!r}: the local header names another file")
    if method != entry.method:
        raise PackageError(f"entry {entry.name!r}: the local header says compression method {method}, "
                           f"the central directory {entry.method}")
    if not flags & _DATA_DESCRIPTOR:         # otherwise the local CRC and sizes may be left blank
        if _MAX32 in (size, compressed):
            big = _zip64_values(local[n:], ["size", "compressed"], entry.name)
            size, compressed = big["size"], big["compressed"]
        if (crc, compressed, size) != (entry.crc, entry.compressed, entry.size):
            raise PackageError(f"entry {entry.name!r}: its local header's CRC-32 and sizes ({crc:08x}, {compressed}, "
                               f"{size}) disagree with the central directory's ({entry.crc:08x}, "
                               f"{entry.compressed}, {entry.size})")
    return start


def copy_entry(fd: int, entry: EntryView, write: Callable[[bytes | memoryview], object],
               should_stop: Callable[[], bool] = lambda: False, end: int | None = None) -> None:
    """Stream one entry's bytes to `write`, checking the local header, the size and the CRC.

    `end` is where the entry's bytes must stop (the plan's next entry or the central directory);
    without it, the end of the file.
    """
    start = _data_start(fd, entry, os.fstat(fd).st_size if end is None else end)
    pos, left = start, entry.compressed
    inflater = zlib.decompressobj(-15) if entry.method == DEFLATED else None
    crc, produced = 0, 0

    def emit(data: bytes | memoryview) -> None:
        nonlocal crc, produced
        produced += len(data)
        if produced > entry.size:
            raise PackageError(f"entry {entry.name!r}: more data than its declared size {entry.size}")
        crc = zlib.crc32(data, crc)
        write(data)

    buffer = _read_buffer()
    try:
        while left > 0:
            if should_stop():
                return
            n = os.preadv(fd, [buffer[:min(left, READ_CHUNK)]], pos)
            if not n:
                raise PackageError(f"entry {entry.name!r}: the package ends inside its data")
            chunk: bytes | memoryview = buffer[:n]
            pos, left = pos + n, left - n
            if inflater is None:
                emit(chunk)
                continue
            while chunk:
                emit(inflater.decompress(chunk, OUT_CHUNK))
                chunk = inflater.unconsumed_tail
        if inflater is not None:
            while not inflater.eof and (rest := inflater.decompress(b"", OUT_CHUNK)):
                emit(rest)
            if not inflater.eof:
                raise PackageError(f"entry {entry.name!r}: its compressed data ends early")
    except zlib.error as exc:
        raise PackageError(f"entry {entry.name!r}: corrupt compressed data ({exc})") from None
    if produced != entry.size:
        raise PackageError(f"entry {entry.name!r}: {produced} bytes, its header says {entry.size}")
    if crc != entry.crc:
        raise PackageError(f"entry {entry.name!r}: bad CRC-32 (the data is corrupt)")
