"""The hub's dataset list (HUB_API section 1): lenient parsing, one bad entry fails only its dataset."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

from .errors import HubError, InvalidEntry, NotPublishedError
from .timeutil import parse_timestamp

NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


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
    if re.match(r"^https?://", path_or_url, re.I):
        return path_or_url
    return hub_url.rstrip("/") + "/" + path_or_url.lstrip("/")


def _optional_int(entry: dict, *keys: str) -> int | None:
    for key in keys:
        value = entry.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) and value >= 0:
            return int(value)
        if isinstance(value, str) and value.isdigit():
            return int(value)
        raise ValueError(f"{key} is not a byte count: {value!r}")
    return None


def _parse_entry(entry: dict, hub_url: str, zone: tzinfo) -> RemoteDataset:
    name = entry["name"]
    raw_time = entry.get("last_updated", ...)
    if raw_time is ...:
        raise ValueError("no last_updated")
    last_updated = None if raw_time is None else parse_timestamp(raw_time, zone)
    ready = entry.get("package_ready", True)
    if not isinstance(ready, bool):
        raise ValueError(f"package_ready is not true/false: {ready!r}")
    sha = entry.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256.match(sha)):
        raise ValueError(f"sha256 is not 64 hex digits: {sha!r}")
    url = entry.get("download_url") or f"/package/{quote(name)}.zip"
    if not isinstance(url, str):
        raise ValueError(f"download_url is not a string: {url!r}")
    return RemoteDataset(
        name=name, last_updated=last_updated, package_ready=ready, download_url=join_url(hub_url, url),
        package_size=_optional_int(entry, "package_size", "size"),
        file_count=_optional_int(entry, "file_count"), total_size=_optional_int(entry, "total_size"),
        sha256=sha.lower() if sha else None,
    )


def parse_listing(document: Any, hub_url: str, zone: tzinfo) -> tuple[Listing, list[str]]:
    """Returns the listing and warnings about entries that name no dataset at all."""
    if isinstance(document, dict) and isinstance(document.get("datasets"), list):
        entries = document["datasets"]
    elif isinstance(document, list):
        entries = document
    else:
        raise HubError("the hub's /api/datasets answer is JSON but not a dataset list (expected {\"datasets\": [...]} or [...])")
    datasets: dict[str, RemoteDataset] = {}
    errors: dict[str, str] = {}
    warnings: list[str] = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            warnings.append(f"the hub's dataset list entry #{i} has no name; ignored")
            continue
        if not NAME.match(name) or name in (".", ".."):
            errors[name] = "the name is not a valid dataset name"
            continue
        try:
            datasets[name] = _parse_entry(entry, hub_url, zone)
        except (ValueError, TypeError) as exc:
            errors[name] = str(exc)
    return Listing(datasets, errors), warnings
