"""The hub doubles behave as docs/hub-api.md says (checked with plain requests, no product code)."""
from __future__ import annotations

import io
import re
import threading
import time
import zipfile
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests

from tests.hubs import FaultyHub, OriginalHub
from tests.hubs.common import header_of

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _listed(hub_url: str, name: str) -> dict:
    body = requests.get(hub_url + "/api/datasets", timeout=5).json()
    return next(d for d in body["datasets"] if d["name"] == name)


# -- original hub -----------------------------------------------------------------------------
def test_original_list_is_naive_local_time_of_newest_file(original_hub: OriginalHub) -> None:
    mtime = 1_764_318_603.118_000  # a fraction that must survive as microseconds
    original_hub.write_file("ds", "a.csv", "1,2\n", mtime=mtime - 100)
    original_hub.write_file("ds", "sub/b.csv", "3,4\n", mtime=mtime)
    entry = _listed(original_hub.url, "ds")
    expected = datetime.fromtimestamp(mtime, SHANGHAI).replace(tzinfo=None)
    assert datetime.fromisoformat(entry["last_updated"]) == expected
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", entry["last_updated"])
    assert entry | {"last_updated": None} == {
        "name": "ds", "last_updated": None, "file_count": 2, "total_size": 8,
        "package_ready": False, "package_size": 0, "freshness": {}, "status": "unknown",
    }


def test_original_empty_dataset_has_null_version(original_hub: OriginalHub) -> None:
    original_hub.add_dataset("empty")
    entry = _listed(original_hub.url, "empty")
    assert entry["last_updated"] is None and entry["file_count"] == 0


def test_original_package_404_then_served_with_original_headers(original_hub: OriginalHub) -> None:
    original_hub.write_file("ds", "a.csv", "x" * 1000, mtime=1_764_318_603.5)
    missing = requests.get(original_hub.url + "/package/ds.zip", timeout=5)
    assert missing.status_code == 404 and missing.json() == {"error": "Package not found"}

    pkg = original_hub.build_package("ds")
    resp = requests.get(original_hub.url + "/package/ds.zip", timeout=5)
    assert resp.status_code == 200
    assert resp.content == pkg.read_bytes()
    assert resp.headers["Content-Length"] == str(pkg.stat().st_size)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'attachment; filename="ds_\d{8}_\d{6}\.zip"', resp.headers["Content-Disposition"])
    assert "ETag" not in resp.headers and "Last-Modified" not in resp.headers
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        (info,) = zf.infolist()
    assert info.filename == "a.csv"
    # Entry time is the mtime as Shanghai wall time (ZIP keeps 2-second steps).
    assert info.date_time == (2025, 11, 28, 16, 30, 2)
    entry = _listed(original_hub.url, "ds")
    assert entry["package_ready"] is True and entry["package_size"] == pkg.stat().st_size


def test_original_ranges(original_hub: OriginalHub) -> None:
    original_hub.write_file("ds", "a.bin", bytes(range(256)) * 64)
    size = original_hub.build_package("ds").stat().st_size
    whole = requests.get(original_hub.url + "/package/ds.zip", timeout=5).content

    tail = requests.get(original_hub.url + "/package/ds.zip", headers={"Range": "bytes=100-"}, timeout=5)
    assert tail.status_code == 206
    assert tail.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    assert tail.content == whole[100:]
    probe = requests.get(original_hub.url + "/package/ds.zip", headers={"Range": "bytes=0-0"}, timeout=5)
    assert probe.status_code == 206 and probe.content == whole[:1]

    past = requests.get(original_hub.url + "/package/ds.zip", headers={"Range": f"bytes={size}-"}, timeout=5)
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{size}"
    bad = requests.get(original_hub.url + "/package/ds.zip", headers={"Range": "bytes=-5"}, timeout=5)
    assert bad.status_code == 400
    assert original_hub.requests.body_bytes == size + (size - 100) + 1


def test_original_has_no_head_and_matches_paths_exactly(original_hub: OriginalHub) -> None:
    original_hub.write_file("ds", "a.csv", "1")
    original_hub.build_package("ds")
    assert requests.head(original_hub.url + "/package/ds.zip", timeout=5).status_code == 501
    assert requests.get(original_hub.url + "/api/datasets?x=1", timeout=5).status_code == 404
    assert requests.get(original_hub.url + "/health", timeout=5).json() == {"status": "ok"}
    statuses = [(r.method, r.path, r.status) for r in original_hub.requests]
    assert statuses == [("HEAD", "/package/ds.zip", 501), ("GET", "/api/datasets?x=1", 404),
                        ("GET", "/health", 200)]


def test_original_new_data_does_not_change_the_package(original_hub: OriginalHub) -> None:
    original_hub.write_file("ds", "a.csv", "old", mtime=time.time() - 7200)
    pkg = original_hub.build_package("ds")
    before = _listed(original_hub.url, "ds")["last_updated"]
    original_hub.write_file("ds", "b.csv", "new")
    after = _listed(original_hub.url, "ds")
    assert after["last_updated"] > before and after["file_count"] == 2
    served = requests.get(original_hub.url + "/package/ds.zip", timeout=5).content
    assert served == pkg.read_bytes()
    rebuilt = original_hub.build_package("ds")
    assert rebuilt.name != pkg.name
    assert requests.get(original_hub.url + "/package/ds.zip", timeout=5).content == rebuilt.read_bytes()


@pytest.mark.slow
def test_original_serves_one_request_at_a_time(original_hub: OriginalHub) -> None:
    original_hub.write_file("ds", "a.bin", bytes(200_000))  # deflates to a few hundred bytes
    original_hub.write_file("ds", "b.bin", bytes(range(256)) * 800)
    size = original_hub.build_package("ds").stat().st_size
    original_hub.rate = size / 1.5  # the download takes about 1.5 s
    downloader = threading.Thread(
        target=requests.get, args=(original_hub.url + "/package/ds.zip",), kwargs={"timeout": 10})
    downloader.start()
    time.sleep(0.3)
    began = time.monotonic()
    requests.get(original_hub.url + "/api/datasets", timeout=10)
    waited = time.monotonic() - began
    downloader.join()
    assert waited > 0.8, "the list was answered while a download was in progress"


# -- faulty hub ---------------------------------------------------------------------------------
def test_faulty_errors_then_success(faulty_hub: FaultyHub) -> None:
    faulty_hub.add_package("ds", b"PK-data")
    faulty_hub.fail_next("/api/", 500, times=2)
    faulty_hub.fail_next("/package/", 429, headers={"Retry-After": "1"})
    codes = [requests.get(faulty_hub.url + "/api/datasets", timeout=5).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    limited = requests.get(faulty_hub.url + "/package/ds.zip", timeout=5)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert requests.get(faulty_hub.url + "/package/ds.zip", timeout=5).content == b"PK-data"
    assert [r.status for r in faulty_hub.requests] == [500, 500, 200, 429, 200]


def test_faulty_listing_fields(faulty_hub: FaultyHub) -> None:
    faulty_hub.add_package("good", b"abc", "2026-01-01T00:00:00Z", sha256=True, file_count=1)
    faulty_hub.add_package("bad", b"abc", sha256="0" * 64)
    faulty_hub.add_package("hidden", b"abc", listed=False)
    entries = {d["name"]: d for d in requests.get(faulty_hub.url + "/api/datasets", timeout=5).json()["datasets"]}
    assert set(entries) == {"good", "bad"}
    assert entries["good"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert entries["good"]["file_count"] == 1 and entries["good"]["package_size"] == 3
    assert entries["bad"]["sha256"] == "0" * 64
    faulty_hub.bare_list = True
    assert isinstance(requests.get(faulty_hub.url + "/api/datasets", timeout=5).json(), list)


def test_faulty_truncated_body(faulty_hub: FaultyHub) -> None:
    faulty_hub.add_package("ds", bytes(10_000))
    faulty_hub.truncate = (4_000, 1)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(faulty_hub.url + "/package/ds.zip", timeout=5).content  # noqa: B018
    assert len(requests.get(faulty_hub.url + "/package/ds.zip", timeout=5).content) == 10_000


def test_faulty_range_etag_if_range(faulty_hub: FaultyHub) -> None:
    pkg = faulty_hub.add_package("ds", bytes(range(100)))
    url = faulty_hub.url + "/package/ds.zip"
    resp = requests.get(url, headers={"Range": "bytes=90-"}, timeout=5)
    assert resp.status_code == 206 and resp.content == bytes(range(90, 100))
    assert "ETag" not in resp.headers
    assert requests.get(url, headers={"Range": "bytes=100-"}, timeout=5).status_code == 416

    faulty_hub.etag = True
    same = requests.get(url, headers={"Range": "bytes=90-", "If-Range": pkg.etag}, timeout=5)
    assert same.status_code == 206 and same.headers["ETag"] == pkg.etag
    other = requests.get(url, headers={"Range": "bytes=90-", "If-Range": '"old"'}, timeout=5)
    assert other.status_code == 200 and len(other.content) == 100

    faulty_hub.ignore_range = True
    assert requests.get(url, headers={"Range": "bytes=90-"}, timeout=5).status_code == 200


def test_faulty_auth(faulty_hub: FaultyHub) -> None:
    faulty_hub.add_package("ds", b"z")
    faulty_hub.required_headers = {"Authorization": "Bearer s3cret"}
    url = faulty_hub.url + "/api/datasets"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 403
    assert requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=5).status_code == 200


def test_faulty_html_instead_of_json(faulty_hub: FaultyHub) -> None:
    faulty_hub.list_override = (200, "text/html", b"<html><body>Sign in</body></html>")
    resp = requests.get(faulty_hub.url + "/api/datasets", timeout=5)
    assert resp.headers["Content-Type"] == "text/html" and resp.text.startswith("<html>")


def test_faulty_redirect_to_other_loopback_host(faulty_hub: FaultyHub) -> None:
    with FaultyHub(host="127.0.0.2") as other:
        other.add_package("ds", b"moved")
        faulty_hub.redirect_packages_to = other.url
        resp = requests.get(faulty_hub.url + "/package/ds.zip", timeout=5)
        assert resp.content == b"moved"
        assert faulty_hub.requests[0].status == 302
        assert other.requests[0].path == "/package/ds.zip"
        assert header_of(other.requests[0], "host") == f"127.0.0.2:{other.port}"


@pytest.mark.slow
def test_faulty_stall_and_rate(faulty_hub: FaultyHub) -> None:
    faulty_hub.add_package("ds", bytes(20_000))
    faulty_hub.stall = (5_000, 1.0, 1)
    began = time.monotonic()
    assert len(requests.get(faulty_hub.url + "/package/ds.zip", timeout=5).content) == 20_000
    assert time.monotonic() - began >= 1.0
    began = time.monotonic()
    requests.get(faulty_hub.url + "/package/ds.zip", timeout=5)
    assert time.monotonic() - began < 0.9, "a one-shot stall must not repeat"
    faulty_hub.rate = 20_000
    began = time.monotonic()
    requests.get(faulty_hub.url + "/package/ds.zip", timeout=5)
    assert 0.8 <= time.monotonic() - began < 3
