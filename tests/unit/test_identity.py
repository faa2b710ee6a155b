"""Package identity: which header decides sameness, If-Range, Content-Range parsing."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from app.hub.identity import Identity, parse_content_range
from app.serve.server import make_server
from tests.hubs.common import serving


def test_original_hub_headers_identify_by_filename_and_length() -> None:
    headers = CaseInsensitiveDict({"content-disposition": 'attachment; filename="ds_20250204_201603.zip"',
                                   "content-length": "1000"})
    ident = Identity.from_headers(headers, 1000)
    assert ident == Identity(None, None, "ds_20250204_201603.zip", 1000)
    assert ident.key() == ("name", "ds_20250204_201603.zip", 1000)
    assert ident.if_range() is None


def test_filename_forms() -> None:
    def name(value: str) -> str | None:
        return Identity.from_headers({"Content-Disposition": value}, None).filename
    assert name("attachment; filename=plain.zip") == "plain.zip"
    assert name('attachment; filename="quoted.zip"; size=3') == "quoted.zip"
    assert name("attachment; filename*=UTF-8''encoded.zip") == "encoded.zip"
    assert name("inline") is None


def test_key_precedence() -> None:
    full = Identity(etag='"abc"', last_modified="Sat, 28 Nov 2026 08:30:00 GMT", filename="f.zip", total=10)
    assert full.key() == ("etag", '"abc"', 10)
    no_etag = Identity(last_modified="Sat, 28 Nov 2026 08:30:00 GMT", filename="f.zip", total=10)
    assert no_etag.key() == ("last-modified", "Sat, 28 Nov 2026 08:30:00 GMT", 10)
    assert full.if_range() == '"abc"'
    assert no_etag.if_range() == "Sat, 28 Nov 2026 08:30:00 GMT"


def test_weak_etag_is_not_trusted() -> None:
    weak = Identity(etag='W/"abc"', last_modified="Sat, 28 Nov 2026 08:30:00 GMT", filename="f.zip", total=10)
    assert weak.key()[0] == "last-modified"
    assert weak.if_range() == "Sat, 28 Nov 2026 08:30:00 GMT"
    only_weak = Identity(etag='W/"abc"', filename="f.zip", total=10)
    assert only_weak.key() == ("name", "f.zip", 10)
    assert only_weak.if_range() is None


def test_same() -> None:
    a = Identity(filename="f_1.zip", total=10)
    assert a.same(Identity(filename="f_1.zip", total=10))
    assert not a.same(Identity(filename="f_2.zip", total=10))     # repackaged
    assert not a.same(Identity(filename="f_1.zip", total=11))     # same name, other length
    assert not a.same(None)
    assert Identity(etag='"x"', total=5).same(Identity(etag='"x"', filename="other", total=5))
    assert not Identity(etag='"x"', total=5).same(Identity(etag='"y"', total=5))


def test_json_round_trip() -> None:
    ident = Identity(etag='"e"', last_modified="lm", filename="f.zip", total=3)
    assert Identity.from_json(ident.to_json()) == ident
    assert Identity.from_json(None) is None
    assert Identity.from_json("junk") is None
    assert Identity.from_json({"filename": "f.zip"}) == Identity(filename="f.zip")


def test_describe_mentions_kind_and_total() -> None:
    assert Identity(filename="f.zip", total=3).describe() == "name f.zip (3 bytes)"
    assert Identity(etag='"e"').describe() == 'etag "e"'


@pytest.mark.parametrize("value, expected", [
    ("bytes 0-99/1000", (0, 99, 1000)),
    ("bytes 500-999/1000", (500, 999, 1000)),
    ("Bytes 0-0/1", (0, 0, 1)),
    ("bytes 0-99/*", (0, 99, None)),
    ("  bytes 1-2/3 ", (1, 2, 3)),
    ("bytes */1000", None),
    ("bytes 0-99", None),
    ("items 0-1/2", None),
    ("", None),
    (None, None),
])
def test_parse_content_range(value: str | None, expected: tuple | None) -> None:
    assert parse_content_range(value) == expected


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with zipfile.ZipFile(tmp_path / "ds.zip", "w") as zf:
        zf.writestr("a.csv", "x" * 1000)
    with serving(make_server(tmp_path, "127.0.0.1", 0)) as url:
        yield url


def test_identity_from_a_real_response(served: str) -> None:
    session = requests.Session()
    session.trust_env = False
    first = session.get(f"{served}/package/ds.zip", headers={"Range": "bytes=0-0"})
    assert first.status_code == 206
    start, end, total = parse_content_range(first.headers["Content-Range"])
    ident = Identity.from_headers(first.headers, total)
    assert (start, end) == (0, 0)
    assert ident.etag and ident.last_modified and ident.filename.startswith("ds_")
    assert ident.key() == ("etag", ident.etag, total)
    again = session.get(f"{served}/package/ds.zip")
    assert Identity.from_headers(again.headers, int(again.headers["Content-Length"])).same(ident)
    # the identity's If-Range gets a 206 from the same package
    resumed = session.get(f"{served}/package/ds.zip", headers={"Range": "bytes=10-", "If-Range": ident.if_range()})
    assert resumed.status_code == 206 and len(resumed.content) == total - 10
