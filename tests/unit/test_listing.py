"""The hub's dataset list: both layouts, per-dataset errors, URLs, sizes, lookups."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.errors import HubError
from app.listing import join_url, parse_listing
from app.timeutil import get_zone

UTC = timezone.utc
SHANGHAI = get_zone("Asia/Shanghai")
HUB = "http://127.0.0.1:8080"
SHA = "ab" * 32

ORIGINAL_ANSWER = {"datasets": [
    {"name": "stock-trading-data-pro", "last_updated": "2025-02-04T20:16:03.118000",
     "file_count": 5600, "total_size": 560000000, "package_ready": True, "package_size": 180000000,
     "freshness": {}, "status": "unknown"},
]}


def test_original_hub_answer() -> None:
    listing, warnings = parse_listing(ORIGINAL_ANSWER, HUB, SHANGHAI)
    assert warnings == [] and listing.errors == {}
    ds = listing.lookup("stock-trading-data-pro")
    assert ds.last_updated == datetime(2025, 2, 4, 12, 16, 3, 118000, tzinfo=UTC)
    assert ds.package_ready is True
    assert ds.package_size == 180000000
    assert (ds.file_count, ds.total_size) == (5600, 560000000)
    assert ds.sha256 is None
    assert ds.download_url == f"{HUB}/package/stock-trading-data-pro.zip"


def test_bare_list_is_accepted() -> None:
    listing, _ = parse_listing([{"name": "a", "last_updated": "2026-11-28T08:30:00Z", "package_ready": False}], HUB, UTC)
    assert listing.lookup("a").package_ready is False
    assert listing.lookup("a").last_updated == datetime(2026, 11, 28, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("document", [{"data": []}, {"datasets": "x"}, "hello", 42, None])
def test_other_json_is_a_hub_error(document: object) -> None:
    with pytest.raises(HubError, match="not a dataset list"):
        parse_listing(document, HUB, UTC)


@pytest.mark.parametrize("bad_entry, why", [
    ({"name": "bad"}, "no last_updated"),
    ({"name": "bad", "last_updated": "last tuesday"}, "last tuesday"),
    ({"name": "bad", "last_updated": "2026-11-28T08:30:00Z", "sha256": "xyz"}, "sha256"),
    ({"name": "bad", "last_updated": "2026-11-28T08:30:00Z", "sha256": "ab" * 31}, "sha256"),
    ({"name": "bad", "last_updated": "2026-11-28T08:30:00Z", "package_ready": "yes"}, "package_ready"),
    ({"name": "bad", "last_updated": "2026-11-28T08:30:00Z", "package_size": -5}, "package_size"),
    ({"name": "bad", "last_updated": "2026-11-28T08:30:00Z", "download_url": 17}, "download_url"),
    ({"name": "bad", "last_updated": ["2026"]}, "not a timestamp"),
])
def test_a_bad_entry_fails_only_its_dataset(bad_entry: dict, why: str) -> None:
    good = {"name": "good", "last_updated": "2026-11-28T08:30:00Z"}
    listing, _ = parse_listing({"datasets": [bad_entry, good]}, HUB, UTC)
    assert list(listing.datasets) == ["good"]
    assert why in listing.errors["bad"]
    with pytest.raises(HubError, match=r"the hub's entry for 'bad' is invalid"):
        listing.lookup("bad")
    assert listing.lookup("good").name == "good"


@pytest.mark.parametrize("name", ["a/b", "..", ".", "a b", "x" * 129, "../etc"])
def test_invalid_names_are_errors(name: str) -> None:
    listing, _ = parse_listing([{"name": name, "last_updated": 1}, {"name": "ok", "last_updated": 1}], HUB, UTC)
    assert name in listing.errors and "not a valid dataset name" in listing.errors[name]
    assert list(listing.datasets) == ["ok"]


def test_entries_without_a_name_are_warnings() -> None:
    listing, warnings = parse_listing([{"last_updated": 1}, "junk", {"name": "", "last_updated": 1},
                                       {"name": "ok", "last_updated": 1}], HUB, UTC)
    assert len(warnings) == 3 and all("no name" in w for w in warnings)
    assert list(listing.datasets) == ["ok"]


def test_null_last_updated_means_no_data() -> None:
    listing, _ = parse_listing([{"name": "empty", "last_updated": None}], HUB, UTC)
    assert listing.lookup("empty").last_updated is None
    assert listing.errors == {}


def test_missing_dataset_is_not_published() -> None:
    listing, _ = parse_listing([{"name": "a", "last_updated": 1}], HUB, UTC)
    with pytest.raises(HubError, match=r"'zzz' is not published by the hub"):
        listing.lookup("zzz")


def test_download_urls() -> None:
    entries = [
        {"name": "abs", "last_updated": 1, "download_url": "https://cdn.example.org/x/abs.zip"},
        {"name": "rel", "last_updated": 1, "download_url": "/files/rel.zip"},
        {"name": "rel2", "last_updated": 1, "download_url": "files/rel2.zip"},
        {"name": "plain", "last_updated": 1},
    ]
    listing, _ = parse_listing(entries, "https://h.example/datahub", UTC)
    urls = {n: d.download_url for n, d in listing.datasets.items()}
    assert urls == {
        "abs": "https://cdn.example.org/x/abs.zip",
        "rel": "https://h.example/datahub/files/rel.zip",
        "rel2": "https://h.example/datahub/files/rel2.zip",
        "plain": "https://h.example/datahub/package/plain.zip",
    }


def test_join_url() -> None:
    assert join_url("http://h/p/", "/x") == "http://h/p/x"
    assert join_url("http://h", "x") == "http://h/x"
    assert join_url("http://h", "HTTP://Other/x") == "HTTP://Other/x"


def test_package_size_or_size() -> None:
    listing, _ = parse_listing([
        {"name": "a", "last_updated": 1, "package_size": 100},
        {"name": "b", "last_updated": 1, "size": 200},
        {"name": "c", "last_updated": 1, "size": "300"},
        {"name": "d", "last_updated": 1},
        {"name": "e", "last_updated": 1, "package_size": 7, "size": 8},
    ], HUB, UTC)
    sizes = {n: d.package_size for n, d in listing.datasets.items()}
    assert sizes == {"a": 100, "b": 200, "c": 300, "d": None, "e": 7}


def test_sha256_is_normalised_and_unknown_fields_ignored() -> None:
    listing, _ = parse_listing([{"name": "a", "last_updated": 1, "sha256": SHA.upper(), "whatever": [1]}], HUB, UTC)
    assert listing.lookup("a").sha256 == SHA


def test_unix_seconds_and_zone() -> None:
    listing, _ = parse_listing([{"name": "a", "last_updated": 1795854600},
                                {"name": "b", "last_updated": "2026-11-28 16:30:00"}], HUB, SHANGHAI)
    assert listing.lookup("a").last_updated == listing.lookup("b").last_updated


@pytest.mark.parametrize("stamp", [10**20, "99999999999999999999", 1732780800000000000])
def test_an_out_of_range_timestamp_fails_only_its_dataset(stamp: object) -> None:
    listing, _ = parse_listing([{"name": "bad", "last_updated": stamp},
                                {"name": "good", "last_updated": "2026-11-28T08:30:00Z"}], HUB, UTC)
    assert "bad" in listing.errors
    assert list(listing.datasets) == ["good"]
