"""The original DataSyncClient's public attributes, used as the original client's own tests use them."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import DataSyncClient


def _config(url: str = "https://test.datahub.com", **hub: object) -> dict:
    return {"hub": {"url": url, **hub},
            "datasets": [{"name": "stock-trading-data-pro", "local_dir": "/data/stock-trading-data-pro"},
                         {"name": "stock-fin-data-xbx", "local_dir": "/data/stock-fin-data-xbx"},
                         {"name": "stock-etf-trading-data", "local_dir": "/data/stock-etf-trading-data"}]}


def test_hub_url_timeout_and_datasets(tmp_path: Path) -> None:
    client = DataSyncClient(_config(timeout=600), str(tmp_path / ".last_sync.json"))
    assert client.hub_url == "https://test.datahub.com"
    assert client.timeout == 600
    assert len(client.datasets) == 3
    assert [ds["name"] for ds in client.datasets] == ["stock-trading-data-pro", "stock-fin-data-xbx",
                                                      "stock-etf-trading-data"]
    assert client.datasets[0]["local_dir"] == "/data/stock-trading-data-pro"
    assert client.sync_state_file == tmp_path / ".last_sync.json"


def test_default_timeout_and_empty_datasets(tmp_path: Path) -> None:
    client = DataSyncClient({"hub": {"url": "https://test.datahub.com"}, "datasets": []})
    assert client.timeout == 300
    assert client.datasets == []
    assert client.sync_state_file == Path("/data/.datahubsync/state.json")


@pytest.mark.parametrize("url,host,port", [
    ("https://data.quantrade.fun", "data.quantrade.fun", 443),
    ("http://localhost:8080", "localhost", 8080),
    ("https://test.example.com:9000", "test.example.com", 9000),
])
def test_url_parts(url: str, host: str, port: int) -> None:
    client = DataSyncClient({"hub": {"url": url}, "datasets": []})
    assert (client.hub_host, client.hub_port, client.hub_scheme) == (host, port, url.split(":")[0])


def test_the_attributes_are_read_only_views() -> None:
    client = DataSyncClient(_config())
    client.datasets[0]["local_dir"] = "/elsewhere"             # a copy: the configuration is untouched
    assert client.datasets[0]["local_dir"] == "/data/stock-trading-data-pro"
    with pytest.raises(AttributeError):
        client.hub_url = "http://127.0.0.1:1"                   # type: ignore[misc]
