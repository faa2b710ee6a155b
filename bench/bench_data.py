"""Benchmark packages: generated once by app.serve.sample_data, cached under bench/work/data."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from app.serve import sample_data

# One fixed content time; the listing advertises the same wall time without an offset,
# which the client reads in hub.timezone (UTC by default) like the ZIP's entry times,
# so the package is never "stale" and runs are reproducible.
WHEN = dt.datetime(2025, 2, 4, 20, 16, 2)
LAST_UPDATED = WHEN.isoformat()

ROWS = 2500  # ten years of daily bars for most codes; newer listings are shorter
BYTES_PER_FILE = 107_000  # mean CSV size at ROWS rows, measured, to hit a size in MB


@dataclass(frozen=True)
class Package:
    name: str
    path: Path
    size: int  # bytes of the ZIP
    sha256: str
    files: int
    raw_bytes: int  # unpacked

    def listing_entry(self, with_sha256: bool) -> dict[str, object]:
        entry: dict[str, object] = {
            "name": self.name,
            "last_updated": LAST_UPDATED,
            "package_ready": True,
            "package_size": self.size,
            "file_count": self.files,
            "total_size": self.raw_bytes,
        }
        if with_sha256:
            entry["sha256"] = self.sha256
        return entry


def files_for(size_mb: float) -> int:
    return max(1, round(size_mb * 1e6 / BYTES_PER_FILE))


def package(cache: Path, name: str, *, n_files: int, rows: int = ROWS, seed: int, workers: int = 2) -> Package:
    """The package for these parameters, generated on first use (the same bytes every time)."""
    key = f"{n_files}x{rows}-s{seed}"
    path, meta = cache / f"{key}.zip", cache / f"{key}.json"
    if path.is_file() and meta.is_file():
        known = json.loads(meta.read_text())
        if known.get("size") == path.stat().st_size:
            return Package(name=name, path=path, size=known["size"], sha256=known["sha256"],
                           files=known["files"], raw_bytes=known["raw_bytes"])
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"  generating {path.name}: {n_files} files of up to {rows} rows ...", flush=True)
    sample_data.make_dataset_zip(path, n_files=n_files, rows=rows, seed=seed, when=WHEN, workers=workers)
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    result = Package(name=name, path=path, size=path.stat().st_size, sha256=digest.hexdigest(),
                     files=len(infos), raw_bytes=sum(info.file_size for info in infos))
    meta.write_text(json.dumps({k: v for k, v in asdict(result).items() if k not in ("name", "path")}))
    print(f"  generated {result.raw_bytes / 1e6:.0f} MB unpacked, {result.size / 1e6:.0f} MB zipped "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    return result


def build_hub(root: Path, packages: list[Package], *, with_sha256: bool = True) -> Path:
    """A static hub: root/api/datasets (JSON) and root/package/NAME.zip (hard links to the cache)."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "api").mkdir(parents=True)
    (root / "package").mkdir()
    for item in packages:
        target = root / "package" / f"{item.name}.zip"
        try:
            os.link(item.path, target)
        except OSError:
            shutil.copyfile(item.path, target)
    listing = {"datasets": [item.listing_entry(with_sha256) for item in packages]}
    (root / "api" / "datasets").write_text(json.dumps(listing, indent=1))
    return root


def warm_cache(packages: list[Package]) -> None:
    """Read the packages once so every contender finds them in the server's page cache."""
    for item in packages:
        with open(item.path, "rb") as stream:
            while stream.read(8 << 20):
                pass
