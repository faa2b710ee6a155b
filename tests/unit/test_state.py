"""state.json: atomic writes, corrupt files, the original client's format, installed vs attempt fields."""
from __future__ import annotations

import json
import logging
import threading
from datetime import timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.hub.identity import Identity
from app.core.result import FAIL_STATUSES, OK_STATUSES
from app.core.state import INSTALLED_FIELDS, StateStore, parse_state
from app.core.timeutil import from_iso, get_zone

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


# ---- hostile state files ---------------------------------------------------------------------------

GOOD_ENTRY = {"last_updated": "2026-11-28T08:30:00Z", "sha256": "ab" * 32, "synced_at": "2026-11-28T08:31:00Z",
              "attempted_at": "2026-11-28T08:31:00Z", "last_ok_at": "2026-11-28T08:31:00Z", "status": "success",
              "error": None, "files": 3, "bytes": 30, "identity": {"etag": '"x"', "last_modified": None,
                                                                 "filename": "ds_1.zip", "total": 10},
              "stale_identity": None, "package_time": "2026-11-28T08:00:00Z", "warning": None}
HOSTILE = {"year-1": "0001-01-01T00:00:00+08:00", "year-9999": "9999-12-31T23:59:59-08:00", "nan": float("nan"),
           "inf": float("inf"), "huge": 10**400, "minus-1": -1, "list": [1], "object": {"a": []}, "text": "soon",
           "true": True, "surrogate": "\ud800", "number": 1795854600}
# What stays valid: any text as a message, a count as a count, an identity that names nothing known.
VALID_HOSTILE = {*((field, label) for field in ("error", "warning") for label in ("text", "year-1", "year-9999")),
                 ("files", "number"), ("bytes", "number"), ("identity", "object"), ("stale_identity", "object")}


def write_document(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("field", sorted(set(GOOD_ENTRY)))
@pytest.mark.parametrize("label", list(HOSTILE))
def test_an_entry_with_any_invalid_field_is_never_synced_alone(tmp_path: Path, state_log: Records,
                                                               field: str, label: str) -> None:
    path = tmp_path / "state.json"
    write_document(path, {"version": 1, "datasets": {"bad": dict(GOOD_ENTRY, **{field: HOSTILE[label]}),
                                                     "good": GOOD_ENTRY}})
    store = StateStore(path, UTC)
    assert store.get("good") == GOOD_ENTRY
    if (field, label) in VALID_HOSTILE:
        assert store.get("bad")[field] == HOSTILE[label]
        return
    assert store.get("bad") == {}
    warnings = [text for level, text in state_log.messages if level == logging.WARNING]
    assert len(warnings) == 1 and "'bad'" in warnings[0] and field in warnings[0] and str(path) in warnings[0]
    assert "never synced" in warnings[0] and "\n" not in warnings[0]
    store.update("good", status="up_to_date")                  # and the file is written back without it
    assert set(json.loads(path.read_text())["datasets"]) == {"good"}


@pytest.mark.parametrize("entry", [None, 1, "success", [GOOD_ENTRY], True])
def test_an_entry_that_is_not_an_object_is_dropped(tmp_path: Path, state_log: Records, entry: object) -> None:
    path = tmp_path / "state.json"
    write_document(path, {"version": 1, "datasets": {"bad": entry, "good": GOOD_ENTRY}})
    store = StateStore(path, UTC)
    assert list(store.datasets) == ["good"]
    assert any("'bad'" in text and "not an object" in text for _, text in state_log.messages)


@pytest.mark.parametrize("where", ["last_updated", "identity", "unknown_field"])
def test_deep_nesting_drops_only_the_entry_that_holds_it(tmp_path: Path, state_log: Records, where: str) -> None:
    path = tmp_path / "state.json"
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text('{"version": 1, "datasets": {"bad": {"status": "success", "' + where + '": ' + deep + "}, "
                    '"good": ' + json.dumps(GOOD_ENTRY) + "}}")
    store = StateStore(path, UTC)
    assert list(store.datasets) == ["good"]
    assert any("'bad'" in text and where in text for _, text in state_log.messages)


def test_unknown_fields_that_can_be_written_back_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    extra = {"note": "by hand", "n": 7, "nested": {"a": [1, {"b": None}]}, "ratio": 0.5}
    write_document(path, {"version": 1, "datasets": {"ds": dict(GOOD_ENTRY, **extra)}})
    store = StateStore(path, UTC)
    assert store.get("ds") == dict(GOOD_ENTRY, **extra)


@pytest.mark.parametrize("content", [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-list"),
    pytest.param(b'{"version": 1, "datasets": [1]}', id="datasets-not-an-object"),
    pytest.param(b'{"version": 1, "datasets": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deep-datasets"),
    pytest.param(b"[" * 100_000, id="deep-and-cut-short"),
])
def test_a_file_that_is_no_usable_document_means_never_synced(tmp_path: Path, state_log: Records,
                                                              content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    assert StateStore(path, UTC).datasets == {}
    assert any(level == logging.WARNING and str(path) in text for level, text in state_log.messages)


def test_a_hostile_original_state_file_imports_what_it_can(tmp_path: Path, state_log: Records) -> None:
    original = tmp_path / ".last_sync.json"
    deep = "[" * 100_000 + "]" * 100_000
    original.write_text('{"ok": "2025-02-04T20:16:03", "deep": ' + deep + ', "old": "0001-01-01T00:00:00", '
                        '"huge": ' + "9" * 5000 + ', "nan": NaN}')
    store = StateStore(tmp_path / "state.json", SHANGHAI, (original,))
    assert list(store.datasets) == ["ok"]
    ignored = [text for _, text in state_log.messages if "ignoring" in text]
    assert len(ignored) == 4 and all(str(original) in text for text in ignored)


@pytest.mark.parametrize("make", [
    pytest.param(lambda p: p.write_text("{broken"), id="not-json"),
    pytest.param(lambda p: p.mkdir(), id="a-directory"),
    pytest.param(lambda p: p.write_text("[1, 2]"), id="not-an-object"),
])
def test_an_unusable_original_state_file_is_skipped_with_a_warning(tmp_path: Path, state_log: Records,
                                                                    make: Any) -> None:
    broken = tmp_path / "broken" / ".last_sync.json"
    broken.parent.mkdir()
    make(broken)
    good = tmp_path / ".last_sync.json"
    good.write_text(json.dumps({"ds": 1795854600}))
    store = StateStore(tmp_path / "state.json", UTC, (broken, good))
    assert store.get("ds")["last_updated"] == "2026-11-28T08:30:00Z"
    assert any(level == logging.WARNING and str(broken) in text for level, text in state_log.messages)


# Checked here independently of the module's own rules: what the rest of the program relies on.
def assert_usable(entry: dict) -> None:
    for key in ("last_updated", "synced_at", "attempted_at", "last_ok_at", "package_time"):
        value = entry.get(key)
        assert value is None or (isinstance(value, str) and 1970 <= from_iso(value).year <= 9998), (key, value)
    for key in ("files", "bytes"):
        value = entry.get(key)
        assert value is None or (type(value) is int and 0 <= value < 2**63), (key, value)
    for key in ("error", "warning"):
        value = entry.get(key)
        assert value is None or (isinstance(value, str) and value.encode("utf-8")), (key, value)
    assert entry.get("status") in (None, *OK_STATUSES, *FAIL_STATUSES)
    assert entry.get("sha256") is None or (isinstance(entry["sha256"], str) and len(entry["sha256"]) == 64)
    assert entry.get("imported") in (None, True, False)
    for key in ("identity", "stale_identity"):
        value = entry.get(key)
        if value is not None:
            identity = Identity.from_json(value)
            assert identity is not None
            identity.key(), identity.if_range(), identity.describe()


field_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.integers(min_value=2**63 - 2, max_value=10**400)
    | st.text() | st.sampled_from(["2026-11-28T08:30:00Z", "0001-01-01T00:00:00+08:00", "success", "ab" * 32]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=10,
)
identities = st.fixed_dictionaries({}, optional={k: field_values for k in ("etag", "last_modified", "filename", "total")})
state_entries = st.fixed_dictionaries({}, optional={
    **{key: field_values for key in GOOD_ENTRY}, "identity": identities | field_values, "imported": field_values,
    "custom": field_values,
}) | field_values


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), state_entries, max_size=4), st.booleans())
def test_any_state_document_loads_and_keeps_only_usable_entries(tmp_path_factory: pytest.TempPathFactory,
                                                                datasets: dict, ours: bool) -> None:
    path = tmp_path_factory.mktemp("state") / "state.json"
    document = {"version": 1, "datasets": datasets} if ours else datasets
    path.write_text(json.dumps(document))
    store = StateStore(path, SHANGHAI)
    for name, entry in store.datasets.items():
        assert isinstance(entry, dict), name
        assert_usable(entry)
    store.update("another", status="success")                    # what was kept can be written back
    assert StateStore(path, SHANGHAI).datasets == store.datasets
