"""First sync, no-op runs, overlay and mirror updates, dry-run and --force, through the CLI."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import make_zip, parse_utc, read_state, run_cli, sha256_of, sync_env, tree, write_config
from tests.hubs import OriginalHub
from tests.integration.common import FILES, hub_instant, original_env, output, publish

pytestmark = pytest.mark.timeout(60)


def test_first_sync_installs_files_and_records_state(original_hub: OriginalHub, tmp_path: Path) -> None:
    pkg = publish(original_hub, "prices", FILES)
    advertised = original_hub.last_updated("prices")

    code, out, err = run_cli(["sync"], original_env(original_hub, tmp_path))

    assert code == 0, err
    assert tree(tmp_path / "data" / "prices") == FILES
    state = read_state(tmp_path / "state")
    assert state["version"] == 1
    entry = state["datasets"]["prices"]
    # Naive Shanghai time on the hub, stored as the same instant in UTC, microseconds kept.
    assert parse_utc(entry["last_updated"]) == hub_instant(advertised)
    assert entry["sha256"] == sha256_of(pkg)
    assert entry["files"] == len(FILES)
    assert entry["bytes"] == sum(len(b) for b in FILES.values())
    assert entry["status"] == "success"
    assert entry["identity"], "the package identity must be recorded"
    assert entry["synced_at"]


def test_second_run_sends_only_the_list_request(original_hub: OriginalHub, tmp_path: Path) -> None:
    publish(original_hub, "prices", FILES)
    env = original_env(original_hub, tmp_path)
    assert run_cli(["sync"], env)[0] == 0
    original_hub.requests.reset()

    code, out, err = run_cli(["sync"], env)

    assert code == 0, err
    assert [(r.method, r.path) for r in original_hub.requests] == [("GET", "/api/datasets")]
    assert "up_to_date" in output(out, err)
    assert read_state(tmp_path / "state")["datasets"]["prices"]["sha256"]


def test_sync_from_product_serve(serve_hub, tmp_path: Path) -> None:
    package = make_zip(serve_hub.folder / "bars.zip", FILES)
    env = sync_env(serve_hub.url, tmp_path, ["bars"])

    code, out, err = run_cli(["sync"], env)
    assert code == 0, err
    assert tree(tmp_path / "data" / "bars") == FILES
    entry = read_state(tmp_path / "state")["datasets"]["bars"]
    assert entry["sha256"] == sha256_of(package)
    parse_utc(entry["last_updated"])

    code, out, err = run_cli(["sync"], env)
    assert code == 0, err
    assert "up_to_date" in output(out, err)


def test_overlay_update_replaces_files_and_keeps_local_extras(original_hub: OriginalHub, tmp_path: Path) -> None:
    publish(original_hub, "prices", FILES, mtime=time.time() - 3600)
    env = original_env(original_hub, tmp_path)
    assert run_cli(["sync"], env)[0] == 0
    local = tmp_path / "data" / "prices"
    (local / "my-notes.txt").write_bytes(b"mine")
    changed = {"2025/sh600000.csv": FILES["2025/sh600000.csv"] + b"2025-11-29,10.35,10.50\n",
               "2025/sh600001.csv": b"date,open,close\n"}
    original_hub.delete_file("prices", "README.txt")
    publish(original_hub, "prices", changed)

    code, out, err = run_cli(["sync"], env)

    assert code == 0, err
    # Overlay: package files replace local copies; files the package lacks stay.
    assert tree(local) == {**FILES, **changed, "my-notes.txt": b"mine"}
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    assert parse_utc(entry["last_updated"]) == hub_instant(original_hub.last_updated("prices"))


def _mirror_config(tmp_path: Path, hub: OriginalHub) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        hub={"url": hub.url, "timezone": "Asia/Shanghai", "retries": 1, "backoff": 0.05},
        datasets=[{"name": "prices", "local_dir": str(tmp_path / "data" / "prices"), "mode": "mirror"}],
        sync={"data_root": str(tmp_path / "data"), "state_dir": str(tmp_path / "state"), "package_wait": 0},
    )


@pytest.mark.slow
def test_mirror_mode_exact_tree_previous_kept_and_delete_guard(original_hub: OriginalHub, tmp_path: Path) -> None:
    config = str(_mirror_config(tmp_path, original_hub))
    local = tmp_path / "data" / "prices"
    v1 = {"a.csv": b"a1", "b.csv": b"b1", "c.csv": b"c1", "d.csv": b"d1"}
    publish(original_hub, "prices", v1, mtime=time.time() - 7200)
    assert run_cli(["--config", config, "sync"])[0] == 0
    assert tree(local) == v1

    (local / "stray.txt").write_bytes(b"local only")
    original_hub.delete_file("prices", "a.csv")
    publish(original_hub, "prices", {"b.csv": b"b2", "e.csv": b"e2"}, mtime=time.time() - 3600)
    code, out, err = run_cli(["--config", config, "sync"])
    assert code == 0, err
    v2 = {"b.csv": b"b2", "c.csv": b"c1", "d.csv": b"d1", "e.csv": b"e2"}
    assert tree(local) == v2
    assert tree(tmp_path / "state" / "previous" / "prices") == {**v1, "stray.txt": b"local only"}

    # The next package would delete 3 of 4 files (> max_delete_ratio 0.5): refused without --force.
    for name in ("c.csv", "d.csv", "e.csv"):
        original_hub.delete_file("prices", name)
    publish(original_hub, "prices", {"b.csv": b"b3"})
    code, out, err = run_cli(["--config", config, "sync"])
    assert code == 1, output(out, err)
    assert tree(local) == v2
    assert "force" in output(out, err).lower()
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] != "success"

    code, out, err = run_cli(["--config", config, "sync", "--force"])
    assert code == 0, err
    assert tree(local) == {"b.csv": b"b3"}
    assert tree(tmp_path / "state" / "previous" / "prices") == v2


def test_dry_run_writes_nothing(original_hub: OriginalHub, tmp_path: Path) -> None:
    publish(original_hub, "prices", FILES)
    env = original_env(original_hub, tmp_path)

    code, out, err = run_cli(["sync", "--dry-run"], env)

    assert code == 0, err
    assert "would_sync" in output(out, err)
    assert tree(tmp_path / "data") == {}
    assert not (tmp_path / "state" / "state.json").exists()
    assert tree(tmp_path / "state" / "downloads") == {}
    assert original_hub.requests.to("/package/") == []

    assert run_cli(["sync"], env)[0] == 0
    before = read_state(tmp_path / "state")
    code, out, err = run_cli(["sync", "--dry-run"], env)
    assert code == 0, err
    assert "up_to_date" in output(out, err)
    assert read_state(tmp_path / "state") == before


def test_force_downloads_again(original_hub: OriginalHub, tmp_path: Path) -> None:
    pkg = publish(original_hub, "prices", FILES)
    env = original_env(original_hub, tmp_path)
    assert run_cli(["sync"], env)[0] == 0
    (tmp_path / "data" / "prices" / "README.txt").write_bytes(b"edited locally")
    original_hub.requests.reset()

    code, out, err = run_cli(["sync", "--force"], env)

    assert code == 0, err
    assert original_hub.requests.body_bytes >= pkg.stat().st_size
    assert tree(tmp_path / "data" / "prices") == FILES


def test_sync_named_dataset_only(original_hub: OriginalHub, tmp_path: Path) -> None:
    publish(original_hub, "prices", FILES)
    publish(original_hub, "news", {"n.txt": b"news"})
    env = original_env(original_hub, tmp_path, ("prices", "news"))

    code, out, err = run_cli(["sync", "news"], env)

    assert code == 0, err
    assert tree(tmp_path / "data" / "news") == {"n.txt": b"news"}
    assert tree(tmp_path / "data" / "prices") == {}
    assert len(original_hub.requests.to("/api/datasets")) == 1


def test_status_json_reports_local_and_remote(original_hub: OriginalHub, tmp_path: Path) -> None:
    publish(original_hub, "prices", FILES)
    env = original_env(original_hub, tmp_path)
    assert run_cli(["sync"], env)[0] == 0
    installed = read_state(tmp_path / "state")["datasets"]["prices"]["last_updated"]

    code, out, err = run_cli(["status", "--json"], env)

    assert code == 0, err
    document = json.loads(out)
    text = json.dumps(document)
    assert "prices" in text
    assert installed in text
    assert "success" in text


def test_update_and_mirror_from_product_serve(serve_hub, tmp_path: Path) -> None:
    package = make_zip(serve_hub.folder / "bars.zip", FILES)
    os.utime(package, (time.time() - 3600, time.time() - 3600))
    config = str(write_config(
        tmp_path / "config.yaml", hub={"url": serve_hub.url, "retries": 1},
        datasets=[{"name": "bars", "local_dir": str(tmp_path / "data" / "bars"), "mode": "mirror"}],
        sync={"data_root": str(tmp_path / "data"), "state_dir": str(tmp_path / "state")},
    ))
    assert run_cli(["--config", config, "sync"])[0] == 0
    first = read_state(tmp_path / "state")["datasets"]["bars"]
    # Replace the package atomically, as an operator publishing a new version would.
    newer = {**FILES, "2025/sh600000.csv": b"date,open,close\n2025-11-29,10.4,10.6\n"}
    del newer["README.txt"]
    make_zip(serve_hub.folder / "bars.zip.tmp", newer)
    os.replace(serve_hub.folder / "bars.zip.tmp", package)

    code, out, err = run_cli(["--config", config, "sync"])

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "bars") == newer
    entry = read_state(tmp_path / "state")["datasets"]["bars"]
    assert entry["sha256"] == sha256_of(package) != first["sha256"]
    assert parse_utc(entry["last_updated"]) > parse_utc(first["last_updated"])
