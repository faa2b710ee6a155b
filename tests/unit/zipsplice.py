"""Take real ZIPs (made with zipfile) apart and put them back together with lies in them.

Test helper only: a ZIP as (everything before the central directory, its records, the end record).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

CENTRAL_SIG, END_SIG = b"PK\x01\x02", b"PK\x05\x06"
# byte positions inside a central directory record
FLAGS, METHOD, CRC, COMPRESSED, SIZE, NAME_LEN, LOCAL_OFFSET, NAME = 8, 10, 16, 20, 24, 28, 42, 46


@dataclass
class Parts:
    data: bytes             # the local headers and entry data
    records: list[bytes]    # one central directory record each

    def join(self, count: int | None = None) -> bytes:
        """A ZIP again, with an end record that agrees with the records (or says `count` entries)."""
        directory = b"".join(self.records)
        n = len(self.records) if count is None else count
        end = END_SIG + struct.pack("<4H2LH", 0, 0, n & 0xFFFF, n & 0xFFFF, len(directory), len(self.data), 0)
        return self.data + directory + end


def split(blob: bytes) -> Parts:
    """A plain (not ZIP64) archive's pieces."""
    end = blob.rindex(END_SIG)
    count, size, offset = struct.unpack_from("<H2L", blob, end + 10)
    records, pos = [], offset
    for _ in range(count):
        assert blob[pos:pos + 4] == CENTRAL_SIG
        n, m, k = struct.unpack_from("<3H", blob, pos + NAME_LEN)
        records.append(blob[pos:pos + NAME + n + m + k])
        pos += NAME + n + m + k
    assert pos == offset + size
    return Parts(blob[:offset], records)


def field(record: bytes, pos: int, fmt: str = "<L") -> int:
    return struct.unpack_from(fmt, record, pos)[0]


def with_field(record: bytes, pos: int, value: int, fmt: str = "<L") -> bytes:
    out = bytearray(record)
    struct.pack_into(fmt, out, pos, value)
    return bytes(out)


def with_name(record: bytes, name: bytes) -> bytes:
    """The same record under another name (its extra field and comment kept)."""
    n = field(record, NAME_LEN, "<H")
    head = with_field(record[:NAME], NAME_LEN, len(name), "<H")
    return head + name + record[NAME + n:]


def with_extra(record: bytes, extra: bytes) -> bytes:
    """The same record with another extra field (its name and comment kept)."""
    n, m = field(record, NAME_LEN, "<H"), field(record, NAME_LEN + 2, "<H")
    head = with_field(record[:NAME], NAME_LEN + 2, len(extra), "<H")
    return head + record[NAME:NAME + n] + extra + record[NAME + n + m:]


def zip64_extra(*values: int) -> bytes:
    """A ZIP64 extended information field holding `values` (size, compressed, offset: those that overflow)."""
    return struct.pack("<2H", 1, 8 * len(values)) + b"".join(struct.pack("<Q", v) for v in values)


def join_zip64(parts: Parts, count: int | None = None, disks: int = 1) -> bytes:
    """Like Parts.join, but through a ZIP64 end record and locator (the plain end record says 'see ZIP64')."""
    directory = b"".join(parts.records)
    n = len(parts.records) if count is None else count
    at = len(parts.data) + len(directory)
    record64 = b"PK\x06\x06" + struct.pack("<Q2H2L4Q", 44, 45, 45, 0, 0, n, n, len(directory), len(parts.data))
    locator = b"PK\x06\x07" + struct.pack("<LQL", 0, at, disks)
    end = END_SIG + struct.pack("<4H2LH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return parts.data + directory + record64 + locator + end


def empty_files(count: int) -> Parts:
    """`count` empty stored files, written by hand (zipfile would add ZIP64 records past 65,535)."""
    data, records = bytearray(), []
    for i in range(count):
        name = b"f%06d" % i
        records.append(CENTRAL_SIG + struct.pack("<4B4HL2L5H2L", 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 len(name), 0, 0, 0, 0, 0, len(data)) + name)
        data += b"PK\x03\x04" + struct.pack("<2B4HL2L2H", 20, 0, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
    return Parts(bytes(data), records)
