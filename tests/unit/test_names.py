"""The dataset-name rule, and the three places that apply it agreeing on every name: the config,
the hub's list, and `serve` (its listing, its package URLs)."""
from __future__ import annotations

import http.client
import string
import tempfile
import threading
import zipfile
from datetime import timezone
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.core.config import config_from
from app.core.errors import ConfigError
from app.core.names import is_dataset_name
from app.hub.listing import parse_listing
from app.serve.server import PackageIndex, make_server

ALLOWED = set(string.ascii_letters + string.digits + "._-")
HUB = "http://127.0.0.1:8080"


def expected(text: str) -> bool:
    """The rule written out longhand, independently of the product's regular expression."""
    return 1 <= len(text) <= 128 and all(ch in ALLOWED for ch in text) and text not in (".", "..")


# mostly allowed characters, so that long valid names and near misses both come up
names = st.text(alphabet=st.sampled_from(sorted(ALLOWED) + ["/", "\n", " ", "\x00", "é", "٣", "*", ":"]),
                max_size=130) | st.sampled_from([".", "..", "...", "x" * 128, "x" * 129, "a\n", "\na"]) | st.text()


@pytest.mark.parametrize(("text", "valid"), [
    ("stock-trading-data-pro", True), ("A.b_c-9", True), ("...", True), (".hidden", True), ("x" * 128, True),
    ("", False), (".", False), ("..", False), ("x" * 129, False), ("a/b", False), ("a\n", False),
    ("a b", False), ("é", False), ("٣", False), ("a\x00", False),
])
def test_the_rule(text: str, valid: bool) -> None:
    assert is_dataset_name(text) is valid


@given(names)
@example("ok\n")
def test_the_rule_is_the_written_one(text: str) -> None:
    assert is_dataset_name(text) is expected(text)


@given(names)
@settings(max_examples=300, deadline=None)
def test_config_list_and_serve_agree_with_the_rule(text: str) -> None:
    valid = is_dataset_name(text)
    try:
        config_from({"hub": {"url": HUB}, "datasets": [text]})
    except ConfigError as exc:
        assert not valid, exc
        assert str(exc).startswith("datasets[0]")
    else:
        assert valid
    listing, _ = parse_listing({"datasets": [{"name": text, "last_updated": "2026-01-01T00:00:00Z"}]},
                               HUB, timezone.utc)
    assert (text in listing.datasets) is valid
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if valid:
            (root / f"{text}.zip").write_bytes(b"")
        assert PackageIndex(root).path_of(text) == (root / f"{text}.zip" if valid else None)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    for stem in ("ok", ".", "..", "a b", "x" * 129, "é"):
        with zipfile.ZipFile(tmp_path / f"{stem}.zip", "w") as zf:
            zf.writestr("a.csv", "1\n")
    server = make_server(tmp_path, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield tmp_path, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def status_of(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("HEAD", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_serve_lists_and_serves_only_dataset_names(served: tuple[Path, int]) -> None:
    folder, port = served
    assert [entry["name"] for entry in PackageIndex(folder).listing()] == ["ok"]
    assert status_of(port, "/package/ok.zip") == 200
    for path in ("/package/..zip", "/package/...zip", "/package/a%20b.zip", f"/package/{'x' * 129}.zip",
                 "/package/%C3%A9.zip", "/package/ok%0A.zip", "/package/%2E%2E/ok.zip", "/package/.zip"):
        assert status_of(port, path) == 404, path
