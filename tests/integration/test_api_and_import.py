"""The Python API kept from the original client, and the switch from the original client's state."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    dead_url, parse_utc, read_state, run_cli, start_cli, wait_for, tree, write_config,
)
from tests.hubs import OriginalHub
from tests.integration.common import FILES, hub_instant, original_env, output, publish, random_files

pytestmark = pytest.mark.timeout(60)


def _api_config(hub_url: str, root: Path, names: tuple[str, ...] = ("prices",), **hub: object) -> dict:
    return {
        "hub": {"url": hub_url, "retries": 1, "timezone": "Asia/Shanghai", **hub},
        "datasets": [{"name": n, "local_dir": str(root / "data" / n)} for n in names],
        "sync": {"data_root": str(root / "data"), "state_dir": str(root / "state"), "package_wait": 0},
    }


def test_api_sync_dataset_and_sync_all(original_hub: OriginalHub, tmp_path: Path, monkeypatch) -> None:
    from app import DataSyncClient

    publish(original_hub, "prices", FILES)
    # Environment variables must not override a dict passed in code.
    monkeypatch.setenv("DATAHUB_URL", dead_url())
    monkeypatch.setenv("DATAHUB_STATE_DIR", str(tmp_path / "elsewhere"))
    client = DataSyncClient(_api_config(original_hub.url, tmp_path), str(tmp_path / "state" / "state.json"))

    result = client.sync_dataset("prices")

    assert (result.dataset_name, result.success, result.status, result.error) == ("prices", True, "success", None)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert parse_utc(read_state(tmp_path / "state")["datasets"]["prices"]["last_updated"]) == hub_instant(
        original_hub.last_updated("prices"))
    assert not (tmp_path / "elsewhere").exists()

    results = client.sync_all()
    assert [(r.dataset_name, r.success, r.status) for r in results] == [("prices", True, "up_to_date")]


def test_api_reports_failures_as_results(original_hub: OriginalHub, tmp_path: Path) -> None:
    from app import DataSyncClient

    publish(original_hub, "prices", FILES)
    client = DataSyncClient(_api_config(original_hub.url, tmp_path, ("prices", "ghost")))

    results = {r.dataset_name: r for r in client.sync_all()}

    assert results["prices"].success and results["prices"].status == "success"
    assert not results["ghost"].success and results["ghost"].status == "not_found"
    assert "ghost" in results["ghost"].error
    # Default state path: <state_dir>/state.json.
    assert "prices" in read_state(tmp_path / "state")["datasets"]


@pytest.mark.slow
def test_api_fails_while_another_sync_holds_the_lock(original_hub: OriginalHub, tmp_path: Path) -> None:
    from app import DataSyncClient

    publish(original_hub, "prices", random_files(4, 500_000))
    original_hub.rate = 700_000
    cli = start_cli(["sync"], original_env(original_hub, tmp_path))
    try:
        wait_for(lambda: (tmp_path / "state" / "downloads" / "prices.zip.part").exists(), timeout=20)
        result = DataSyncClient(_api_config(original_hub.url, tmp_path)).sync_dataset("prices")
        assert not result.success
        assert "lock" in result.error.lower() or "another sync" in result.error.lower()
    finally:
        cli.communicate(timeout=40)
    assert cli.returncode == 0


def _install_like_the_original_client(hub: OriginalHub, root: Path) -> str:
    """Files already in place and the hub's naive timestamp recorded, as the original client leaves them."""
    publish(hub, "prices", FILES)
    shutil.copytree(hub.data_dir / "prices", root / "data" / "prices")
    return hub.last_updated("prices")


@pytest.mark.parametrize("where", ["state_dir", "beside_config"])
def test_original_last_sync_json_is_imported(original_hub: OriginalHub, tmp_path: Path, where: str) -> None:
    stamp = _install_like_the_original_client(original_hub, tmp_path)
    config = write_config(
        tmp_path / "conf" / "config.yaml",
        hub={"url": original_hub.url, "timeout": 300, "timezone": "Asia/Shanghai"},
        datasets=[{"name": "prices", "local_dir": str(tmp_path / "data" / "prices")}],
        sync={"data_root": str(tmp_path / "data"), "state_dir": str(tmp_path / "state")},
    )
    folder = tmp_path / "state" if where == "state_dir" else config.parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".last_sync.json").write_text(json.dumps({"prices": stamp}, indent=2))

    code, out, err = run_cli(["--config", str(config), "sync"])

    assert code == 0, output(out, err)
    assert [(r.method, r.path) for r in original_hub.requests] == [("GET", "/api/datasets")]
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    assert parse_utc(entry["last_updated"]) == hub_instant(stamp)
    assert tree(tmp_path / "data" / "prices") == FILES


def test_original_state_file_given_to_the_api(original_hub: OriginalHub, tmp_path: Path) -> None:
    from app import DataSyncClient

    stamp = _install_like_the_original_client(original_hub, tmp_path)
    legacy = tmp_path / "client" / ".last_sync.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps({"prices": stamp}))

    result = DataSyncClient(_api_config(original_hub.url, tmp_path), str(legacy)).sync_dataset("prices")

    assert (result.success, result.status) == (True, "up_to_date")
    assert original_hub.requests.to("/package/") == []


def test_original_client_config_loads_unchanged(original_hub: OriginalHub, tmp_path: Path) -> None:
    publish(original_hub, "prices", FILES)
    # The original client's file, word for word apart from the URL and paths.
    config = tmp_path / "config.yaml"
    config.write_text(
        "hub:\n"
        f'  url: "{original_hub.url}"\n'
        "  timeout: 300\n"
        "datasets:\n"
        '  - name: "prices"\n'
        f'    local_dir: "{tmp_path / "data" / "prices"}"\n'
        "logging:\n"
        '  level: "INFO"\n'
        f'  file: "{tmp_path / "logs" / "sync.log"}"\n'
    )

    code, out, err = run_cli(["--config", str(config), "sync"], {"DATAHUB_STATE_DIR": str(tmp_path / "state")})

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert (tmp_path / "logs" / "sync.log").stat().st_size > 0
