"""state.json: atomic writes, corrupt files, the original client's format, installed vs attempt fields."""
from __future__ import annotations

import json
import logging
import threading
from datetime import timezone
from pathlib import Path
from typing import Iterator

import pytest

from app.state import INSTALLED_FIELDS, StateStore, parse_state
from app.timeutil import get_zone

UTC = timezone.utc
SHANGHAI = get_zone("Asia/Shanghai")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))


@pytest.fixture
def state_log() -> Iterator[Records]:
    """The state module's log records (a handler on its own logger: CLI tests may stop propagation)."""
    logger = logging.getLogger("datahubsync.state")
    handler = Records()
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_missing_file_is_never_synced(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json", UTC)
    assert store.datasets == {} and store.get("a") == {}
    assert not (tmp_path / "state.json").exists()


def test_update_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "st" / "state.json"
    store = StateStore(path, UTC)
    store.update("a", status="success", last_updated="2026-11-28T08:30:00.118000Z", files=3)
    document = json.loads(path.read_text())
    assert document == {"version": 1, "datasets": {"a": {
        "status": "success", "last_updated": "2026-11-28T08:30:00.118000Z", "files": 3}}}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]     # no temp file left behind
    again = StateStore(path, UTC)
    assert again.get("a") == store.get("a")


def test_get_returns_a_copy(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json", UTC)
    store.update("a", status="success")
    copy = store.get("a")
    copy["status"] = "changed"
    assert store.get("a")["status"] == "success"


def test_parallel_updates_are_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path, UTC)
    threads = [threading.Thread(target=store.update, args=(f"ds{i}",), kwargs={"status": "success", "n": i})
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    saved = json.loads(path.read_text())["datasets"]
    assert {name: entry["n"] for name, entry in saved.items()} == {f"ds{i}": i for i in range(8)}


@pytest.mark.parametrize("content", [
    pytest.param(b"{not json", id="truncated-json"), pytest.param(b"", id="empty"),
    pytest.param(b"[1, 2]", id="list"), pytest.param(b'"text"', id="string"),
    pytest.param(b'{"a": {"nested": 1}}', id="unknown-layout"),
    pytest.param(b"\xff\xfe garbage", id="not-utf8"),
])
def test_corrupt_file_means_never_synced(tmp_path: Path, state_log: Records, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    store = StateStore(path, UTC)
    assert store.datasets == {}
    assert any(level == logging.WARNING and str(path) in text for level, text in state_log.messages), state_log.messages
    # and the next write replaces it with a valid file
    store.update("a", status="success")
    assert json.loads(path.read_text())["datasets"] == {"a": {"status": "success"}}


def test_unreadable_state_path_means_never_synced(tmp_path: Path, state_log: Records) -> None:
    path = tmp_path / "state.json"
    path.mkdir()                        # reading a directory fails with an OSError
    assert StateStore(path, UTC).datasets == {}
    assert any(level == logging.WARNING for level, _ in state_log.messages)


def test_original_format_is_read_as_installed_versions(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"stock-trading-data-pro": "2025-02-04T20:16:03.118000",
                                "stock-fin-data-xbx": "2025-02-04 19:00:00"}))
    store = StateStore(path, SHANGHAI)
    assert store.get("stock-trading-data-pro")["last_updated"] == "2025-02-04T12:16:03.118000Z"
    assert store.get("stock-fin-data-xbx")["last_updated"] == "2025-02-04T11:00:00Z"
    assert store.get("stock-trading-data-pro")["status"] == "success"


def test_original_format_with_an_unreadable_time_skips_only_that_entry(tmp_path: Path, state_log: Records) -> None:
    parsed = parse_state(json.dumps({"a": "2025-02-04T20:16:03", "b": "whenever"}), UTC)
    assert list(parsed) == ["a"]
    assert any("'b'" in text for _, text in state_log.messages)


def test_import_from_candidates(tmp_path: Path) -> None:
    beside_config = tmp_path / "config" / ".last_sync.json"
    beside_config.parent.mkdir()
    beside_config.write_text(json.dumps({"ds": "2025-02-04T20:16:03.118000"}))
    path = tmp_path / "state" / "state.json"
    store = StateStore(path, SHANGHAI, (tmp_path / "state" / ".last_sync.json", beside_config))
    assert store.get("ds")["last_updated"] == "2025-02-04T12:16:03.118000Z"
    assert store.get("ds")["imported"] is True
    store.update("ds", attempted_at="2026-11-28T08:30:00Z")
    assert json.loads(path.read_text())["datasets"]["ds"]["last_updated"] == "2025-02-04T12:16:03.118000Z"


def test_import_happens_only_without_a_state_file(tmp_path: Path) -> None:
    original = tmp_path / ".last_sync.json"
    original.write_text(json.dumps({"ds": "2025-02-04T20:16:03"}))
    path = tmp_path / "state.json"
    StateStore(path, UTC).update("other", status="success")
    store = StateStore(path, UTC, (original,))
    assert store.get("ds") == {}
    assert store.get("other") == {"status": "success"}


def test_import_skips_unusable_candidates(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{oops")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"ds": 1795854600}))
    store = StateStore(tmp_path / "state.json", UTC, (tmp_path / "absent.json", broken, good))
    assert store.get("ds")["last_updated"] == "2026-11-28T08:30:00Z"


def test_replace_installed_keeps_the_other_fields(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json", UTC)
    store.update("ds", last_updated="2026-11-27T08:30:00Z", sha256="aa" * 32, files=5, bytes=50,
                 identity={"etag": '"old"'}, package_time="2026-11-27T08:00:00Z", synced_at="2026-11-27T09:00:00Z",
                 attempted_at="2026-11-28T08:29:00Z", last_ok_at="2026-11-27T09:00:00Z", imported=True)
    store.replace_installed("ds", {"last_updated": "2026-11-28T08:30:00Z", "files": 7, "bytes": 70,
                                   "synced_at": "2026-11-28T08:31:00Z"}, status="success", error=None)
    entry = store.get("ds")
    assert entry["last_updated"] == "2026-11-28T08:30:00Z" and entry["files"] == 7
    assert "sha256" not in entry and "identity" not in entry and "package_time" not in entry  # replaced as a whole
    assert "imported" not in entry
    assert entry["attempted_at"] == "2026-11-28T08:29:00Z" and entry["last_ok_at"] == "2026-11-27T09:00:00Z"
    assert entry["status"] == "success" and entry["error"] is None
    assert json.loads((tmp_path / "state.json").read_text())["datasets"]["ds"] == entry


def test_failure_update_keeps_the_installed_fields(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json", UTC)
    installed = {"last_updated": "2026-11-27T08:30:00Z", "sha256": "bb" * 32, "synced_at": "2026-11-27T09:00:00Z",
                 "files": 5, "bytes": 50, "identity": {"filename": "ds_1.zip", "total": 10}}
    store.replace_installed("ds", installed, status="success", error=None)
    store.update("ds", status="download_failed", error="HTTP 500 from the hub", attempted_at="2026-11-28T08:30:00Z")
    entry = StateStore(tmp_path / "state.json", UTC).get("ds")
    assert {k: entry[k] for k in installed} == installed
    assert entry["status"] == "download_failed" and entry["error"] == "HTTP 500 from the hub"
    assert set(installed) <= set(INSTALLED_FIELDS)
