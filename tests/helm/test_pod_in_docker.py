"""Pod-in-Docker: the chart's CronJob pod, initial-sync Job pod and `helm test` pod, each run
with `docker run` the way a kubelet would start it (tests/helm/kubelet.py), against a real
hub on 127.0.0.1, with a hostPath as the data volume."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest

from tests import dockerutil
from tests.helm.chart import Rendered, pod_template, render
from tests.helm.kubelet import Kubelet, PodRun
from tests.helpers import dead_url, make_zip, read_state, tree, zip_bytes

pytestmark = [pytest.mark.helm, pytest.mark.docker, pytest.mark.slow]

DATASETS: dict[str, dict[str, str]] = {
    "daily-bars": {"2026/sh600000.csv": "date,close\n2026-11-27,10.5\n2026-11-28,10.7\n",
                   "2026/sz000001.csv": "date,close\n2026-11-27,12.1\n2026-11-28,12.0\n"},
    "fin-data": {"README.txt": "quarterly statements\n", "q3.csv": "code,revenue\n600000,1.5e9\n"},
}
TOKEN = "helm-test-token-7f3a"


@pytest.fixture(scope="module")
def image() -> str:
    return dockerutil.ensure_image()


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    """The hostPath directory, prepared the way the chart's README asks an admin to
    (it exists and belongs to the image's user)."""
    return dockerutil.writable_dir(tmp_path / "node" / "market-data")


def publish(folder: Path) -> None:
    for name, files in DATASETS.items():
        make_zip(folder / f"{name}.zip", files)


def chart_values(hub_url: str, node_dir: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "image": {"repository": "datahubsync", "tag": "test", "pullPolicy": "Never"},
        "hub": {"url": hub_url},
        "persistence": {"hostPath": str(node_dir)},
        # Few retries, short timeouts: a failure shows up in seconds, not minutes.
        "config": {"datasets": [{"name": n} for n in DATASETS],
                   "hub": {"retries": 1, "connect_timeout": 3, "timeout": 30}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def run_pod(rendered: Rendered, kind: str, tmp_path: Path,
            extra_objects: Iterable[Mapping[str, Any]] = ()) -> PodRun:
    kubelet = Kubelet(tmp_path / "kubelet", [*rendered.all("ConfigMap"), *rendered.all("Secret"),
                                             *extra_objects])
    result = kubelet.run(pod_template(rendered.one(kind)), timeout=240)
    print(result.output())  # shown by pytest when the test fails
    return result


def assert_synced(node_dir: Path) -> None:
    for name, files in DATASETS.items():
        assert tree(node_dir / name) == {k: v.encode() for k, v in files.items()}, name
    state = read_state(node_dir / ".datahubsync")
    assert sorted(state["datasets"]) == sorted(DATASETS)
    assert {v["status"] for v in state["datasets"].values()} == {"success"}, json.dumps(state, indent=1)


@pytest.mark.parametrize("mount_path", ["/data", "/market"])
def test_cronjob_pod_syncs_into_the_host_path(image: str, serve_hub: Any, node_dir: Path,
                                              tmp_path: Path, mount_path: str) -> None:
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, persistence={"mountPath": mount_path}))
    result = run_pod(rendered, "CronJob", tmp_path)
    assert result.returncode == 0
    assert "--read-only" in result.command and "--user" in result.command
    assert_synced(node_dir)
    # A second scheduled run finds everything up to date and still succeeds.
    before = {p: p.stat().st_mtime_ns for p in node_dir.rglob("*.csv")}
    again = run_pod(rendered, "CronJob", tmp_path)
    assert again.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in node_dir.rglob("*.csv")} == before


def test_initial_sync_job_pod_syncs(image: str, serve_hub: Any, node_dir: Path, tmp_path: Path) -> None:
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, initialSync={"enabled": True}))
    result = run_pod(rendered, "Job", tmp_path)
    assert result.returncode == 0
    assert_synced(node_dir)


def test_helm_test_pod_passes_check(image: str, serve_hub: Any, node_dir: Path, tmp_path: Path) -> None:
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir))
    result = run_pod(rendered, "Pod", tmp_path)
    assert result.returncode == 0
    report = result.stdout + result.stderr
    assert all(name in report for name in DATASETS), report
    assert not any((node_dir / n).exists() for n in DATASETS), "check must not sync"


def test_helm_test_pod_fails_when_the_hub_is_unreachable(image: str, node_dir: Path,
                                                          tmp_path: Path) -> None:
    """The control for the test above: `check` really asks the hub."""
    rendered = render(values=chart_values(dead_url(), node_dir))
    result = run_pod(rendered, "Pod", tmp_path)
    assert result.returncode == 1


def test_token_from_the_chart_secret_reaches_the_hub(image: str, faulty_hub: Any, node_dir: Path,
                                                     tmp_path: Path) -> None:
    for name, files in DATASETS.items():
        faulty_hub.add_package(name, zip_bytes(files))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}
    rendered = render(values=chart_values(faulty_hub.url, node_dir, hub={"token": TOKEN}))
    result = run_pod(rendered, "CronJob", tmp_path)
    assert result.returncode == 0
    assert_synced(node_dir)
    assert TOKEN not in " ".join(result.command), "the token must come from the file, not the command line"
    assert faulty_hub.requests and all(r.status < 400 for r in faulty_hub.requests)


def test_existing_secret_key_reaches_the_hub(image: str, faulty_hub: Any, node_dir: Path,
                                             tmp_path: Path) -> None:
    for name, files in DATASETS.items():
        faulty_hub.add_package(name, zip_bytes(files))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}
    rendered = render(values=chart_values(
        faulty_hub.url, node_dir, hub={"existingSecret": "datahub-credentials", "existingSecretKey": "api-token"}))
    assert rendered.all("Secret") == []
    user_secret = {"kind": "Secret", "metadata": {"name": "datahub-credentials"},
                   "data": {"api-token": base64.b64encode(f"{TOKEN}\n".encode()).decode(),
                            "other": base64.b64encode(b"unused").decode()}}
    result = run_pod(rendered, "CronJob", tmp_path, [user_secret])
    assert result.returncode == 0
    assert_synced(node_dir)


def test_wrong_token_fails_the_run(image: str, faulty_hub: Any, node_dir: Path, tmp_path: Path) -> None:
    """The control for the two tests above: the hub really checks the token."""
    for name, files in DATASETS.items():
        faulty_hub.add_package(name, zip_bytes(files))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}
    rendered = render(values=chart_values(faulty_hub.url, node_dir, hub={"token": "not-the-token"}))
    result = run_pod(rendered, "CronJob", tmp_path)
    assert result.returncode == 1
    assert not any((node_dir / n).exists() for n in DATASETS)
