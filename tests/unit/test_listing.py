"""The hub's dataset list: both layouts, per-dataset errors, URLs, sizes, lookups."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.errors import HubError, InvalidEntry, NotPublishedError
from app.core.jsonutil import Unreadable
from app.hub.listing import ListingNotJSON, decode_listing, join_url, parse_listing
from app.core.timeutil import get_zone

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


# ---- hostile entries -------------------------------------------------------------------------------

GOOD = {"name": "good", "last_updated": "2026-11-28T08:30:00Z", "package_size": 10, "file_count": 2,
        "total_size": 20, "sha256": SHA, "download_url": "/p/good.zip"}
HOSTILE_VALUES = {
    "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "1e400": 1e400, "10**400": 10**400,
    "10**5000": 10**5000, "-1": -1, "1.5": 1.5, "year-1+08": "0001-01-01T00:00:00+08:00",
    "year-9999-08": "9999-12-31T23:59:59-08:00", "year-1-naive": "0001-01-01T00:00:00", "text": "twelve",
    "digits-newline": "12\n", "list": [1], "object": {"a": 1}, "true": True, "deep": json.loads("[" * 60 + "]" * 60),
    "marker": Unreadable("nested deeper than 64 levels"), "surrogate": "\ud800", "empty-list": [],
}
CHECKED_FIELDS = ("last_updated", "package_ready", "sha256", "download_url", "package_size", "size",
                  "file_count", "total_size")
# The few (field, value) pairs that are valid after all: Unix seconds, and paths that look odd.
VALID = {("package_ready", "true"), ("last_updated", "1.5"), ("last_updated", "digits-newline"),
         *(("download_url", label) for label in ("text", "year-1+08", "year-9999-08", "year-1-naive"))}


@pytest.mark.parametrize("field", CHECKED_FIELDS)
@pytest.mark.parametrize("label", list(HOSTILE_VALUES))
def test_any_hostile_value_fails_only_its_dataset(field: str, label: str) -> None:
    bad = dict(GOOD, name="bad", **{field: HOSTILE_VALUES[label]})
    listing, warnings = parse_listing({"datasets": [bad, GOOD]}, HUB, SHANGHAI)
    assert warnings == []
    alone, _ = parse_listing([GOOD], HUB, SHANGHAI)
    assert listing.datasets["good"] == alone.datasets["good"]
    if (field, label) in VALID:
        assert "bad" in listing.datasets
        return
    assert list(listing.datasets) == ["good"]
    why = listing.errors["bad"]
    assert why.startswith(field) and "\n" not in why and len(why) < 200, why
    with pytest.raises(InvalidEntry, match=field):
        listing.lookup("bad")


@pytest.mark.parametrize("count", [0, 2**63 - 1, "0", "9223372036854775807", 7.0])
def test_whole_byte_counts_up_to_2_63_are_read(count: object) -> None:
    listing, _ = parse_listing([dict(GOOD, package_size=count, total_size=count, file_count=count)], HUB, UTC)
    ds = listing.lookup("good")
    assert ds.package_size == ds.total_size == ds.file_count == int(count)


@pytest.mark.parametrize("count", [2**63, "9223372036854775808", "0x10", " 5", "５", "1e3"])
def test_other_byte_counts_are_errors(count: object) -> None:
    listing, _ = parse_listing([dict(GOOD, package_size=count)], HUB, UTC)
    assert listing.errors["good"].startswith("package_size is not a byte count")


@pytest.mark.parametrize("url", ["http://", "https://:80/x", "http://h:99999/x", "/a b.zip", "/a\n.zip",
                                 "http://[::1/x"])
def test_unusable_download_urls_are_errors(url: str) -> None:
    listing, _ = parse_listing([dict(GOOD, download_url=url)], HUB, UTC)
    assert listing.errors["good"].startswith("download_url"), listing.errors


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_download_url_means_the_default(empty: object) -> None:
    listing, _ = parse_listing([dict(GOOD, download_url=empty)], HUB, UTC)
    assert listing.lookup("good").download_url == f"{HUB}/package/good.zip"


@pytest.mark.parametrize("name", ["good\n", "good\r\n", "\ngood", "good ", "göod"])
def test_names_are_matched_whole(name: str) -> None:
    listing, _ = parse_listing([dict(GOOD, name=name), dict(GOOD, name="other")], HUB, UTC)
    assert listing.errors == {name: "the name is not a valid dataset name"}
    with pytest.raises(NotPublishedError):
        listing.lookup("good")
    assert listing.lookup("other").name == "other"


def test_a_name_listed_twice_fails_that_dataset() -> None:
    older = dict(GOOD, last_updated="2026-11-27T08:30:00Z")
    listing, _ = parse_listing([GOOD, dict(GOOD, name="other"), older], HUB, UTC)
    assert list(listing.datasets) == ["other"]
    assert listing.errors["good"] == "listed more than once (entries #0 and #2)"
    with pytest.raises(InvalidEntry, match="listed more than once"):
        listing.lookup("good")


def test_a_name_listed_twice_stays_failed_even_when_the_second_is_broken() -> None:
    listing, _ = parse_listing([GOOD, {"name": "good", "last_updated": "junk"}, GOOD], HUB, UTC)
    assert listing.datasets == {} and "listed more than once" in listing.errors["good"]


def test_unknown_fields_are_ignored_whatever_they_hold() -> None:
    extra = {"freshness": Unreadable("nested deeper than 64 levels"), "status": float("nan"), "x": 10**5000}
    listing, _ = parse_listing([dict(GOOD, **extra)], HUB, UTC)
    assert listing.errors == {} and listing.lookup("good").name == "good"


# ---- the body ------------------------------------------------------------------------------------

def body(*entries: str) -> bytes:
    return ('{"datasets": [' + ", ".join(entries) + "]}").encode()


GOOD_TEXT = json.dumps(GOOD)


@pytest.mark.parametrize("raw", [b"", b"<html><body>Login</body></html>", b'{"datasets": [', b"\xff\xfe\x00",
                                 b"[" * 100_000, b"[" * 100_000 + b'"' + b"]" * 100_000],
                         ids=["empty", "html", "cut-short", "not-utf8", "deep-unclosed", "deep-unterminated-string"])
def test_a_body_that_is_not_json_is_listing_not_json(raw: bytes) -> None:
    with pytest.raises(ListingNotJSON, match="not JSON") as caught:
        decode_listing(raw, HUB, UTC)
    assert isinstance(caught.value, HubError)


def test_json_that_is_not_a_list_is_a_plain_hub_error() -> None:
    with pytest.raises(HubError, match="not a dataset list") as caught:
        decode_listing(b'{"data": []}', HUB, UTC)
    assert not isinstance(caught.value, ListingNotJSON)


@pytest.mark.parametrize("depth", [70, 900, 100_000])
@pytest.mark.parametrize("field", ["last_updated", "package_size", "download_url", "name"])
def test_deep_nesting_in_one_entry_fails_only_that_entry(depth: int, field: str) -> None:
    deep = "[" * depth + "]" * depth
    bad = '{"name": "bad", "last_updated": 1795854600, "' + field + '": ' + deep + "}"
    listing, warnings = decode_listing(body(bad, GOOD_TEXT), HUB, UTC)
    assert list(listing.datasets) == ["good"]
    if field == "name":
        assert warnings == ["the hub's dataset list entry #0 has no name; ignored"]
    else:
        assert listing.errors["bad"].startswith(field)


def test_deep_nesting_in_an_ignored_field_harms_nothing() -> None:
    deep = "{\"a\": " * 100_000 + "1" + "}" * 100_000
    bad = '{"name": "bad", "last_updated": 1795854600, "freshness": ' + deep + "}"
    listing, _ = decode_listing(body(bad, GOOD_TEXT), HUB, UTC)
    assert set(listing.datasets) == {"bad", "good"}


def test_json_constants_and_long_numbers_fail_only_their_entry() -> None:
    entries = ['{"name": "nan", "last_updated": NaN}', '{"name": "inf", "last_updated": 1, "size": Infinity}',
               '{"name": "long", "last_updated": 1, "file_count": ' + "9" * 10_000 + "}", GOOD_TEXT]
    listing, _ = decode_listing(body(*entries), HUB, UTC)
    assert list(listing.datasets) == ["good"]
    assert listing.errors["nan"] == "last_updated: Unix time out of range: nan"
    assert listing.errors["inf"] == "size is not a byte count: inf"
    assert listing.errors["long"] == "file_count is not a file count: <a number of 10000 digits>"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.integers(min_value=2**63 - 2, max_value=10**400)
    | st.text() | st.sampled_from(["2026-11-28T08:30:00Z", "0001-01-01T00:00:00+08:00", "1795854600", "1", SHA,
                                   "good", "http://", "/x.zip"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)
entries = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["a", "b", "a\n", ".", "x" * 129]) | json_values,
    **{field: json_values for field in CHECKED_FIELDS},
})


@settings(max_examples=150, deadline=None)
@given(json_values | st.lists(entries | json_values, max_size=4) | st.fixed_dictionaries(
    {"datasets": st.lists(entries | json_values, max_size=4)}))
def test_any_document_gives_a_listing_or_a_hub_error(document: Any) -> None:
    for attempt in (lambda: parse_listing(document, HUB, SHANGHAI),
                    lambda: decode_listing(json.dumps(document).encode(), HUB, SHANGHAI)):
        try:
            listing, warnings = attempt()
        except HubError:
            continue
        assert set(listing.datasets).isdisjoint(listing.errors)
        assert all(isinstance(w, str) for w in warnings)


@settings(max_examples=150, deadline=None)
@given(entries, st.booleans())
def test_a_bad_entry_never_affects_its_sibling(entry: dict, bad_first: bool) -> None:
    entry = dict(entry, name="bad")
    pair = [entry, GOOD] if bad_first else [GOOD, entry]
    alone, _ = parse_listing([GOOD], HUB, SHANGHAI)
    for listing, _ in (parse_listing(pair, HUB, SHANGHAI),
                       decode_listing(json.dumps(pair).encode(), HUB, SHANGHAI)):
        assert listing.datasets["good"] == alone.datasets["good"]
        assert ("bad" in listing.datasets) != ("bad" in listing.errors)
