"""Deterministic sample datasets: ZIP packages of CSV daily bars, like the hub's.

Used by tests (small packages with a controlled content time) and by the
benchmark (gigabytes of data), so generation avoids per-row Python code: the
columns of a file are built with ``map``/``itertools`` over slices of
pre-computed noise pools, and each row is formatted by one ``%`` in C.

    python -m app.serve.sample_data OUTDIR [--datasets N] [--files N] [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import functools
import itertools
import math
import operator
import os
import random
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

HEADER = "date,open,high,low,close,volume,amount\n"
ROW_FORMAT = "%s,%s,%s,%s,%s,%d00,%d\n"

# Names of the hub's real datasets first, so demos and docs look familiar.
DATASET_NAMES = (
    "stock-trading-data-pro",
    "stock-fin-data-xbx",
    "stock-etf-trading-data",
)

_POOL_SIZE = 1 << 15  # longer than any realistic history (~25 years), so a file never repeats itself
_POOL_SEED = 20250204
_CHUNK = 32  # files per task of a worker process


def dataset_name(index: int) -> str:
    """Name of the index-th dataset: the familiar names, then `sample-dataset-NNN`."""
    if index < len(DATASET_NAMES):
        return DATASET_NAMES[index]
    return f"sample-dataset-{index:03d}"


def symbol(index: int) -> str:
    """A stock code like the hub's file names: sh600000, sz000001, sz300001, ..."""
    exchange, offset = divmod(index, 3)
    base = ("sh600000", "sz000001", "sz300001")[offset]
    return f"{base[:2]}{int(base[2:]) + exchange:06d}"


@functools.lru_cache(maxsize=1)
def _noise_pools() -> dict[str, list[float]]:
    """Per-day factors relative to the previous close, shared by all files.

    A file reads all pools at one random offset, so each pool index is one day:
    close = prev * ret, open = prev * gap, high = prev * max(gap, ret) * up, and so
    on. Precomputing the high/low factors here keeps max/min out of the per-file
    work. Each pool is stored twice over so any slice of up to _POOL_SIZE items is
    one C-level list slice, wrap-around included.
    """
    rng = random.Random(_POOL_SEED)
    gauss = rng.gauss
    pools: dict[str, list[float]] = {"ret": [], "gap": [], "high": [], "low": [], "vol": [], "vwap": []}
    for _ in range(_POOL_SIZE):
        ret = math.exp(max(-0.095, min(0.095, gauss(0.0, 0.021))))  # the 10% limit of A shares
        gap = 1.0 + max(-0.05, min(0.05, gauss(0.0, 0.006)))
        pools["ret"].append(ret)
        pools["gap"].append(gap)
        pools["high"].append(max(ret, gap) * (1.0 + abs(gauss(0.0, 0.009))))
        pools["low"].append(min(ret, gap) * (1.0 - min(0.09, abs(gauss(0.0, 0.009)))))
        pools["vol"].append(math.exp(gauss(0.0, 0.45)))
        pools["vwap"].append(1.0 + gauss(0.0, 0.003))
    return {key: values + values for key, values in pools.items()}


@functools.lru_cache(maxsize=8)
def _trading_days(end: dt.date, count: int) -> tuple[str, ...]:
    """The last `count` weekdays up to `end`, oldest first, as ISO strings."""
    days: list[str] = []
    day = end
    one = dt.timedelta(days=1)
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day.isoformat())
        day -= one
    days.reverse()
    return tuple(days)


def _take(pool: list[float], start: int, count: int) -> list[float]:
    if count <= _POOL_SIZE:
        return pool[start:start + count]
    repeats = pool[start:start + _POOL_SIZE] * (count // _POOL_SIZE + 1)
    return repeats[:count]


def _file_rows(rng: random.Random, rows: int) -> int:
    # Most codes have the full history; newer listings are shorter (small files).
    if rows <= 1 or rng.random() < 0.6:
        return max(rows, 1)
    return rng.randint(max(1, rows // 20), rows)


_price_strings: list[str] = []


def _prices(cents_needed: int) -> list[str]:
    """Strings for prices in cents ("0.00", "0.01", ...), grown on demand.

    A table lookup is several times faster than formatting a float per cell.
    """
    if cents_needed >= len(_price_strings):
        start = len(_price_strings)
        stop = max(cents_needed + 1, 2 * start, 1 << 14)
        _price_strings.extend([f"{c // 100}.{c % 100:02d}" for c in range(start, stop)])
    return _price_strings


def _cents(values: Iterator[float] | list[float]) -> list[int]:
    """Truncate prices already scaled to cents (monotonic, so bar invariants survive)."""
    cents = list(map(int, values))
    if min(cents, default=1) < 1:  # a long slide toward zero: keep a tradable price
        cents = list(map(max, cents, itertools.repeat(1)))
    return cents


def csv_text(rng: random.Random, rows: int, end: dt.date) -> str:
    """One file of `rows` daily bars ending at `end`, as a random walk driven by `rng`."""
    pools = _noise_pools()
    start = rng.randrange(_POOL_SIZE)

    def relative(key: str) -> list[float]:
        return list(map(operator.mul, previous, _take(pools[key], start, rows)))

    first = rng.uniform(3.0, 80.0) * 100.0  # prices are kept in cents
    previous = list(itertools.accumulate(_take(pools["ret"], start, rows - 1), operator.mul, initial=first))
    closes = list(map(operator.mul, previous, _take(pools["ret"], start, rows)))
    # Truncating is monotonic, so low <= open, close <= high still holds in cents.
    opens, highs, lows = _cents(relative("gap")), _cents(relative("high")), _cents(relative("low"))
    closes = _cents(closes)
    table = _prices(max(highs))
    # Volume in lots of 100 shares, scaled per code; more shares trade when the price is low.
    scale = rng.uniform(2e4, 8e5) * first
    volumes = map(operator.mul, _take(pools["vol"], start, rows), itertools.repeat(scale))
    lots = list(map(int, map(operator.truediv, volumes, closes)))
    # 100 shares times a price in cents is yuan
    amounts = map(int, map(operator.mul, map(operator.mul, lots, closes), _take(pools["vwap"], start, rows)))
    cells = zip(
        _trading_days(end, rows),
        map(table.__getitem__, opens),
        map(table.__getitem__, highs),
        map(table.__getitem__, lows),
        map(table.__getitem__, closes),
        lots,
        amounts,
    )
    return HEADER + "".join(map(ROW_FORMAT.__mod__, cells))


def _file(seed: int, index: int, rows: int, end: dt.date) -> tuple[str, bytes]:
    rng = random.Random(f"{seed}:{index}")  # str seeds hash with SHA-512: stable across runs
    return f"{symbol(index)}.csv", csv_text(rng, _file_rows(rng, rows), end).encode("ascii")


def iter_dataset(*, n_files: int, rows: int, seed: int, when: dt.datetime | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield (file name, CSV bytes) for each file of a dataset; same arguments, same bytes."""
    end = (when or dt.datetime.now()).date()
    for index in range(n_files):
        yield _file(seed, index, rows, end)


def _entry_times(when: dt.datetime, n_files: int) -> list[tuple[int, int, int, int, int, int]]:
    """ZIP date_time per entry: spread over the minutes before `when`, the last exactly `when`.

    Like the hub's files written one after another, so a reader must take the newest
    entry, not the first, as the package's content time.
    """
    base = when.replace(tzinfo=None, microsecond=0)
    base -= dt.timedelta(seconds=base.second % 2)  # ZIP times have 2-second resolution
    times = []
    for index in range(n_files):
        back = 2 * ((n_files - 1 - index) % 300)
        times.append((base - dt.timedelta(seconds=back)).timetuple()[:6])
    return times


class ZipWriter:
    """A minimal ZIP writer for entries deflated elsewhere (zipfile can only compress itself).

    Writes what zipfile writes for the same entries, ZIP64 records included when sizes,
    offsets or the entry count need them.
    """

    _LIMIT = 0xFFFFFFFF

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._central: list[bytes] = []
        self._offset = 0

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._offset += len(data)

    def add(self, name: str, date_time: tuple[int, ...], crc: int, size: int, deflated: bytes) -> None:
        year, month, day, hour, minute, second = date_time[:6]
        dos_date = (year - 1980) << 9 | month << 5 | day
        dos_time = hour << 11 | minute << 5 | second // 2
        raw_name = name.encode("utf-8")
        flags = 0 if raw_name.isascii() else 0x800
        offset, csize = self._offset, len(deflated)
        big = size >= self._LIMIT or csize >= self._LIMIT
        version = 45 if big or offset >= self._LIMIT else 20
        local_extra = struct.pack("<HHQQ", 1, 16, size, csize) if big else b""
        self._write(
            struct.pack(
                "<4s2B4HL2L2H", b"PK\x03\x04", version, 0, flags, zipfile.ZIP_DEFLATED, dos_time, dos_date,
                crc, self._LIMIT if big else csize, self._LIMIT if big else size, len(raw_name), len(local_extra),
            )
            + raw_name
            + local_extra
        )
        self._write(deflated)
        wide = [value for value in (size, csize) if big] + ([offset] if offset >= self._LIMIT else [])
        extra = struct.pack(f"<HH{len(wide)}Q", 1, 8 * len(wide), *wide) if wide else b""
        self._central.append(
            struct.pack(
                "<4s4B4HL2L5H2L", b"PK\x01\x02", version, 3, version, 0, flags, zipfile.ZIP_DEFLATED,
                dos_time, dos_date, crc, self._LIMIT if big else csize, self._LIMIT if big else size,
                len(raw_name), len(extra), 0, 0, 0, 0o100644 << 16, min(offset, self._LIMIT),
            )
            + raw_name
            + extra
        )

    def close(self) -> None:
        """Write the central directory; the caller closes the stream."""
        start = self._offset
        for record in self._central:
            self._write(record)
        count, length = len(self._central), self._offset - start
        if count >= 0xFFFF or start >= self._LIMIT or length >= self._LIMIT:
            zip64_end = self._offset
            self._write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, length, start))
            self._write(struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_end, 1))
        self._write(
            struct.pack(
                "<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                min(length, self._LIMIT), min(start, self._LIMIT), 0,
            )
        )


def _deflate_files(seed: int, rows: int, end: dt.date, level: int, indices: range) -> list[tuple[str, int, int, bytes]]:
    """(name, CRC-32, size, raw deflate stream) for some files; runs in worker processes."""
    entries = []
    for index in indices:
        name, data = _file(seed, index, rows, end)
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # raw deflate, as in ZIP
        entries.append((name, zlib.crc32(data), len(data), compressor.compress(data) + compressor.flush()))
    return entries


def _deflated_entries(
    seed: int, rows: int, end: dt.date, level: int, n_files: int, workers: int
) -> Iterator[tuple[str, int, int, bytes]]:
    chunks = [range(start, min(start + _CHUNK, n_files)) for start in range(0, n_files, _CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield from _deflate_files(seed, rows, end, level, chunk)
        return
    # Deflate at level 6 runs at only ~10-20 MB/s on CSV text, so gigabyte packages
    # need every core. Chunks come back in order, so the output is the same as serial.
    _noise_pools()  # built once here, inherited by forked workers
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        count = len(chunks)
        for entries in pool.map(_deflate_files, [seed] * count, [rows] * count, [end] * count, [level] * count, chunks):
            yield from entries


def make_dataset_zip(
    path: str | os.PathLike[str],
    *,
    n_files: int,
    rows: int,
    seed: int,
    when: dt.datetime | None = None,
    compresslevel: int = 6,
    workers: int = 1,
) -> Path:
    """Write a deflated ZIP of `n_files` CSVs (no top-level folder, as the hub packs them).

    `when` is the content time: the newest entry's timestamp (its wall-clock fields;
    ZIP times are naive and have 2-second resolution). Default: now. The bytes depend
    only on the arguments (not on `workers`); the file appears atomically.
    """
    when = when or dt.datetime.now()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    times = _entry_times(when, n_files)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as stream:
        writer = ZipWriter(stream)
        entries = _deflated_entries(seed, rows, when.date(), compresslevel, n_files, workers)
        for (name, crc, size, deflated), date_time in zip(entries, times):
            writer.add(name, date_time, crc, size, deflated)
        writer.close()
    os.replace(tmp, path)
    return path


def write_dataset_dir(
    directory: str | os.PathLike[str],
    *,
    n_files: int,
    rows: int,
    seed: int,
    when: dt.datetime | None = None,
) -> Path:
    """Write the same files as make_dataset_zip as a plain directory, mtimes as the entries'."""
    when = when or dt.datetime.now()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    times = _entry_times(when, n_files)
    for (name, data), date_time in zip(iter_dataset(n_files=n_files, rows=rows, seed=seed, when=when), times):
        target = directory / name  # the generator writes flat datasets, like the hub's
        target.write_bytes(data)
        stamp = dt.datetime(*date_time).timestamp()
        os.utime(target, (stamp, stamp))
    return directory


def _parse_when(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--when: expected an ISO 8601 time, got {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.serve.sample_data",
        description="Write deterministic sample packages OUTDIR/NAME.zip (CSV daily bars).",
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--datasets", type=int, default=3, help="number of packages (default 3)")
    parser.add_argument("--files", type=int, default=300, help="CSV files per package (default 300)")
    parser.add_argument("--rows", type=int, default=500, help="rows of the longest files (default 500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--when", type=_parse_when, default=None, help="content time of the packages (default now)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes that compress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for value, flag in ((args.datasets, "--datasets"), (args.files, "--files"), (args.rows, "--rows")):
        if value < 1:
            print(f"sample_data: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    for index in range(args.datasets):
        name = dataset_name(index)
        path = make_dataset_zip(
            args.outdir / f"{name}.zip", n_files=args.files, rows=args.rows, seed=args.seed + index,
            when=args.when,
            workers=args.workers,
        )
        with zipfile.ZipFile(path) as archive:
            raw = sum(info.file_size for info in archive.infolist())
        print(f"{path}\t{args.files} files\t{raw} bytes unpacked\t{path.stat().st_size} bytes zipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
