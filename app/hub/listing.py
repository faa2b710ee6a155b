"""The hub's dataset list (docs/hub-api.md section 1): lenient parsing, one bad entry fails only its dataset."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit

from app.core.errors import HubError, InvalidEntry, NotPublishedError
from app.core.jsonutil import describe, loads_capped
from app.core.names import is_dataset_name
from app.core.timeutil import parse_timestamp

# Matched whole (fullmatch): `$` would let a trailing newline through.
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_COUNT_TEXT = re.compile(r"[0-9]{1,19}")
_ABSOLUTE = re.compile(r"https?://", re.I)
# Sizes and counts above this are nonsense (and would not fit a file offset).
MAX_COUNT = (1 << 63) - 1


class ListingNotJSON(HubError):
    """The body of GET /api/datasets is not JSON at all (a proxy's HTML page, say)."""


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    last_updated: datetime | None       # None: the hub has no data for it
    package_ready: bool
    download_url: str
    package_size: int | None = None
    file_count: int | None = None
    total_size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Listing:
    datasets: dict[str, RemoteDataset]
    errors: dict[str, str]              # dataset name -> why its entry is unusable

    def lookup(self, name: str) -> RemoteDataset:
        if name in self.errors:
            raise InvalidEntry(f"the hub's entry for {name!r} is invalid: {self.errors[name]}")
        if name not in self.datasets:
            raise NotPublishedError(f"dataset {name!r} is not published by the hub")
        return self.datasets[name]


def join_url(hub_url: str, path_or_url: str) -> str:
    if _ABSOLUTE.match(path_or_url):
        return path_or_url
    return hub_url.rstrip("/") + "/" + path_or_url.lstrip("/")


def _count(entry: dict[str, Any], key: str, unit: str) -> int | None:
    """A size or count field: a whole number 0..MAX_COUNT (a number or a string of digits), or absent."""
    value = entry.get(key)
    if value is None:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _COUNT_TEXT.fullmatch(value):
        number = int(value)
    if number is None or not 0 <= number <= MAX_COUNT:
        raise ValueError(f"{key} is not a {unit}: {describe(value)}")
    return number


def _url(value: object, name: str) -> str:
    """download_url: absent, null or empty for the default path; else a URL or a path without spaces."""
    if value is None or value == "":
        return f"/package/{quote(name)}.zip"
    if not isinstance(value, str):
        raise ValueError(f"download_url is not a string: {describe(value)}")
    if not value.isprintable() or any(char.isspace() for char in value) or not _is_text(value):
        raise ValueError(f"download_url is not a valid URL (spaces or control characters): {describe(value)}")
    if _ABSOLUTE.match(value):
        try:
            parts = urlsplit(value)
            _ = parts.port          # ValueError when the port is not a number 0-65535
        except ValueError as exc:
            raise ValueError(f"download_url is not a valid URL ({exc}): {describe(value)}") from None
        if not parts.hostname:
            raise ValueError(f"download_url has no host: {describe(value)}")
    return value


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:      # a lone surrogate from a \ud800 escape
        return False
    return True


def _parse_entry(entry: dict[str, Any], name: str, hub_url: str, zone: tzinfo) -> RemoteDataset:
    if "last_updated" not in entry:
        raise ValueError("no last_updated")
    raw_time = entry["last_updated"]
    try:
        last_updated = None if raw_time is None else parse_timestamp(raw_time, zone)
    except ValueError as exc:
        raise ValueError(f"last_updated: {exc}") from None
    ready = entry.get("package_ready", True)
    if not isinstance(ready, bool):
        raise ValueError(f"package_ready is not true/false: {describe(ready)}")
    sha = entry.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256.fullmatch(sha)):
        raise ValueError(f"sha256 is not 64 hex digits: {describe(sha)}")
    package_size = _count(entry, "package_size", "byte count")
    size = _count(entry, "size", "byte count")      # the other name of package_size
    return RemoteDataset(
        name=name, last_updated=last_updated, package_ready=ready,
        download_url=join_url(hub_url, _url(entry.get("download_url"), name)),
        package_size=size if package_size is None else package_size, file_count=_count(entry, "file_count", "file count"),
        total_size=_count(entry, "total_size", "byte count"), sha256=sha.lower() if sha else None,
    )


def decode_listing(body: bytes, hub_url: str, zone: tzinfo) -> tuple[Listing, list[str]]:
    """The listing in the body of GET /api/datasets; ListingNotJSON when it is not JSON at all.

    A value nested too deeply fails only the entry that holds it (see jsonutil.loads_capped).
    """
    try:
        document = loads_capped(body)
    except ValueError as exc:
        raise ListingNotJSON(f"the hub's dataset list is not JSON ({exc})") from None
    return parse_listing(document, hub_url, zone)


def parse_listing(document: Any, hub_url: str, zone: tzinfo) -> tuple[Listing, list[str]]:
    """Returns the listing and warnings about entries that name no dataset at all.

    Whatever an entry holds, only that entry's dataset fails (Listing.errors); a name listed more
    than once fails that dataset, since nothing tells which of its entries is right.
    """
    if isinstance(document, dict) and isinstance(document.get("datasets"), list):
        entries = document["datasets"]
    elif isinstance(document, list):
        entries = document
    else:
        raise HubError("the hub's /api/datasets answer is JSON but not a dataset list (expected {\"datasets\": [...]} or [...])")
    datasets: dict[str, RemoteDataset] = {}
    errors: dict[str, str] = {}
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            warnings.append(f"the hub's dataset list entry #{i} has no name; ignored")
            continue
        if name in seen:
            datasets.pop(name, None)
            errors[name] = f"listed more than once (entries #{seen[name]} and #{i})"
            continue
        seen[name] = i
        if not is_dataset_name(name):
            errors[name] = "the name is not a valid dataset name"
            continue
        try:
            datasets[name] = _parse_entry(entry, name, hub_url, zone)
        except ValueError as exc:
            errors[name] = str(exc)
    return Listing(datasets, errors), warnings
