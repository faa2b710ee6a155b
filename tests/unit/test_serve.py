"""`serve`: the listing it publishes and the package downloads (Range, If-Range, HEAD), on a real socket."""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import threading
import urllib.request
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest

from app.serve.server import make_server, parse_range
from tests.helpers import zip_bytes
from tests.unit.zipsplice import FLAGS, Parts, field, split, with_field, with_name

UTC = timezone.utc
MTIME = datetime(2026, 11, 28, 8, 30, 0, tzinfo=UTC).timestamp()


@dataclass
class Served:
    folder: Path
    port: int
    package: bytes

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    folder = tmp_path / "served"
    folder.mkdir()
    with zipfile.ZipFile(folder / "ds.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", "date,close\n" + "2026-11-27,1.0\n" * 200)
        zf.writestr("sub/", "")
        zf.writestr("sub/b.csv", "x" * 3000)
    os.utime(folder / "ds.zip", (MTIME, MTIME))
    (tmp_path / "secret.zip").write_bytes(b"outside the served folder")
    (folder / "notes.txt").write_text("not a package")
    server = make_server(folder, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(folder, server.server_address[1], (folder / "ds.zip").read_bytes())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_listing_fields(served: Served) -> None:
    status, headers, body = served.get("/api/datasets")
    assert status == 200 and headers["content-type"] == "application/json"
    document = json.loads(body)
    assert [d["name"] for d in document["datasets"]] == ["ds"]
    entry = document["datasets"][0]
    assert entry["last_updated"] == "2026-11-28T08:30:00Z"
    assert entry["package_ready"] is True
    assert entry["package_size"] == len(served.package)
    assert entry["sha256"] == hashlib.sha256(served.package).hexdigest()
    assert entry["file_count"] == 2                       # folders are not files
    assert entry["total_size"] == len("date,close\n" + "2026-11-27,1.0\n" * 200) + 3000


def test_listing_follows_the_folder(served: Served) -> None:
    with zipfile.ZipFile(served.folder / "new.zip", "w") as zf:
        zf.writestr("x.csv", "1")
    (served.folder / "bad name.zip").write_bytes(b"junk")
    names = [d["name"] for d in json.loads(served.get("/api/datasets")[2])["datasets"]]
    assert names == ["ds", "new"]


def test_listing_is_recomputed_when_a_package_changes(served: Served) -> None:
    before = json.loads(served.get("/api/datasets")[2])["datasets"][0]
    with zipfile.ZipFile(served.folder / "ds.zip", "w") as zf:
        zf.writestr("only.csv", "changed")
    after = json.loads(served.get("/api/datasets")[2])["datasets"][0]
    assert after["sha256"] != before["sha256"] and after["file_count"] == 1


def test_full_download_headers(served: Served) -> None:
    status, headers, body = served.get("/package/ds.zip")
    assert status == 200 and body == served.package
    assert headers["content-length"] == str(len(served.package))
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-disposition"] == 'attachment; filename="ds_20261128_083000.zip"'
    assert headers["etag"].startswith('"') and headers["last-modified"] == "Sat, 28 Nov 2026 08:30:00 GMT"


def test_range_206(served: Served) -> None:
    size = len(served.package)
    status, headers, body = served.get("/package/ds.zip", {"Range": "bytes=10-19"})
    assert status == 206 and body == served.package[10:20]
    assert headers["content-range"] == f"bytes 10-19/{size}"
    assert headers["content-length"] == "10"
    status, headers, body = served.get("/package/ds.zip", {"Range": "bytes=100-"})
    assert status == 206 and body == served.package[100:]
    assert headers["content-range"] == f"bytes 100-{size - 1}/{size}"


def test_range_probe_first_byte(served: Served) -> None:
    status, headers, body = served.get("/package/ds.zip", {"Range": "bytes=0-0"})
    assert status == 206 and body == b"P"
    assert headers["content-range"] == f"bytes 0-0/{len(served.package)}"


def test_suffix_range(served: Served) -> None:
    size = len(served.package)
    status, headers, body = served.get("/package/ds.zip", {"Range": "bytes=-22"})
    assert status == 206 and body == served.package[-22:]
    assert headers["content-range"] == f"bytes {size - 22}-{size - 1}/{size}"


def test_range_past_the_end_is_416(served: Served) -> None:
    size = len(served.package)
    status, headers, _ = served.get("/package/ds.zip", {"Range": f"bytes={size}-"})
    assert status == 416
    assert headers["content-range"] == f"bytes */{size}"


def test_if_range_with_the_etag_gets_206(served: Served) -> None:
    etag = served.get("/package/ds.zip", {"Range": "bytes=0-0"})[1]["etag"]
    status, _, body = served.get("/package/ds.zip", {"Range": "bytes=50-", "If-Range": etag})
    assert status == 206 and body == served.package[50:]


def test_if_range_with_last_modified_gets_206(served: Served) -> None:
    status, _, body = served.get("/package/ds.zip", {"Range": "bytes=50-", "If-Range": "Sat, 28 Nov 2026 08:30:00 GMT"})
    assert status == 206 and body == served.package[50:]


def test_if_range_with_a_wrong_etag_gets_the_whole_package(served: Served) -> None:
    status, headers, body = served.get("/package/ds.zip", {"Range": "bytes=50-", "If-Range": '"some-other-package"'})
    assert status == 200 and body == served.package
    assert "content-range" not in headers


def test_malformed_range_is_ignored(served: Served) -> None:
    status, _, body = served.get("/package/ds.zip", {"Range": "items=0-5"})
    assert status == 200 and body == served.package


@pytest.mark.parametrize("path", [
    "/package/../secret.zip", "/package/..%2Fsecret.zip", "/package/%2e%2e/secret.zip",
    "/package/notes.txt", "/package/notes.zip", "/package/.zip", "/package/...zip", "/secret.zip",
    "/package/sub/ds.zip", "/etc/passwd",
])
def test_path_traversal_and_unknown_paths_are_404(served: Served, path: str) -> None:
    status, _, body = served.get(path)
    assert status == 404
    assert b"outside the served folder" not in body


def test_head_works(served: Served) -> None:
    status, headers, body = served.get("/package/ds.zip", method="HEAD")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len(served.package))
    status, headers, body = served.get("/api/datasets", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_keep_alive_serves_several_requests_on_one_connection(served: Served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/package/ds.zip", headers={"Range": "bytes=0-3"})
            response = conn.getresponse()
            assert response.status == 206 and response.read() == served.package[:4]
    finally:
        conn.close()


def test_make_server_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_server(tmp_path / "absent", "127.0.0.1", 0)


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-9", (0, 9)), ("bytes=5-", (5, 99)), ("bytes=-10", (90, 99)), ("bytes=-1000", (0, 99)),
    ("bytes=90-1000", (90, 99)), ("bytes=100-", "unsatisfiable"), ("bytes=-0", "unsatisfiable"),
    ("bytes=9-2", None), ("bytes=-", None), ("bytes=0-1,5-6", None), ("lines=1-2", None),
])
def test_parse_range(header: str, expected: object) -> None:
    assert parse_range(header, 100) == expected


def raw_exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends for one request on a connection it closes afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("path, status", [("/package/missing.zip", b"404"), ("/package/ds.zip", b"200"),
                                          ("/api/datasets", b"200")])
def test_head_answers_carry_no_body(served: Served, path: str, status: bytes) -> None:
    """A body after a HEAD answer is read as the start of the next answer on a kept-alive connection."""
    data = raw_exchange(served.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == status
    assert body == b"", f"HEAD {path} sent a body: {body[:80]!r}"


def test_head_of_a_range_past_the_end_carries_no_body(served: Served) -> None:
    size = len(served.package)
    data = raw_exchange(served.port, f"HEAD /package/ds.zip HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes={size}-\r\n"
                                     "Connection: close\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"416"
    assert body == b""


# -- packages our own reader refuses ---------------------------------------------------------------

def unsound_packages() -> dict[str, bytes]:
    """ZIPs the client would refuse, each for another reason."""
    good = zip_bytes({"a.csv": "1,2\n", "b.csv": "3,4\n"}, compression=zipfile.ZIP_STORED)
    parts = split(good)
    named = with_name(parts.records[1], b"caf\xe9.csv")
    bad_name = Parts(parts.data, [parts.records[0], with_field(named, FLAGS, field(named, FLAGS, "<H") | 0x800, "<H")])
    overlapping = Parts(parts.data, [parts.records[0], with_name(parts.records[0], b"copy.csv")])
    return {"bad-name": bad_name.join(), "overlapping": overlapping.join(), "truncated": good[:len(good) // 2],
            "junk": b"<html>not a zip</html>", "empty": b""}


def listed(url: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/datasets", timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())["datasets"]


def test_unsound_packages_are_left_out_with_one_warning_each(serve_hub, caplog: pytest.LogCaptureFixture) -> None:
    (serve_hub.folder / "good.zip").write_bytes(zip_bytes({"x.csv": "12345"}))
    for name, blob in unsound_packages().items():
        (serve_hub.folder / f"{name}.zip").write_bytes(blob)
    (serve_hub.folder / "zz-last.zip").write_bytes(zip_bytes({"y.csv": "1", "d/z.csv": "22"}))
    caplog.set_level(logging.WARNING, logger="datahubsync.serve")
    for _ in range(3):
        found = listed(serve_hub.url)
        assert [(d["name"], d["file_count"], d["total_size"]) for d in found] == [("good", 1, 5), ("zz-last", 2, 3)]
    warnings = [r.getMessage() for r in caplog.records if r.name == "datahubsync.serve"]
    assert sorted(w.split(":")[0] for w in warnings) == sorted(f"not listing {name}.zip" for name in unsound_packages())
    assert any("entry #2: its name is not valid UTF-8" in w for w in warnings)
    assert any("share the local header" in w for w in warnings)
    assert all("\n" not in w for w in warnings)


def test_a_refused_package_is_looked_at_again_when_it_changes(serve_hub, caplog: pytest.LogCaptureFixture) -> None:
    path = serve_hub.folder / "ds.zip"
    path.write_bytes(unsound_packages()["bad-name"])
    caplog.set_level(logging.WARNING, logger="datahubsync.serve")
    assert listed(serve_hub.url) == []
    path.write_bytes(unsound_packages()["overlapping"])
    os.utime(path, (MTIME, MTIME))                    # a new version of the file: warned about once more
    assert listed(serve_hub.url) == [] and listed(serve_hub.url) == []
    assert len([r for r in caplog.records if r.name == "datahubsync.serve"]) == 2
    path.write_bytes(zip_bytes({"fixed.csv": "ok"}))
    assert [d["name"] for d in listed(serve_hub.url)] == ["ds"]


def test_a_refused_package_can_still_be_downloaded_by_name(serve_hub) -> None:
    """Only the listing leaves it out; a client that asks for it gets the bytes, and refuses them itself."""
    blob = unsound_packages()["overlapping"]
    (serve_hub.folder / "ds.zip").write_bytes(blob)
    with urllib.request.urlopen(f"{serve_hub.url}/package/ds.zip", timeout=10) as response:
        assert response.read() == blob


@pytest.mark.parametrize("path", ["/package/ds.zip%0A", "/package/ds.zip%0a", "/package/ds.zip%0A%0A"])
def test_a_package_path_with_a_trailing_newline_is_not_that_package(served: Served, path: str) -> None:
    assert served.get(path)[0] == 404
    assert served.get("/package/ds.zip")[0] == 200
