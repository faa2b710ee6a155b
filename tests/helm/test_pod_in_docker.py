"""Pod-in-Docker: the chart's CronJob pod, initial-sync Job pod and `helm test` pod, each run
with `docker run` the way a kubelet would start it (tests/helm/kubelet.py), against a real
hub on 127.0.0.1, with a hostPath as the data volume."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pytest

from tests import dockerutil
from tests.helm.chart import Rendered, container, pod_template, render
from tests.helm.kubelet import Kubelet, PodRun
from tests.helpers import dead_url, make_zip, read_state, tree, zip_bytes
from tests.hubs import FaultyHub
from tests.hubs.common import header_of

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


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[tuple[FaultyHub, str, str]]:
    """A FaultyHub behind TLS with a self-signed certificate for 127.0.0.1: (hub, https URL,
    the certificate as PEM text, which is the CA bundle that trusts it)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    hub = FaultyHub()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    hub._server.socket = context.wrap_socket(hub._server.socket, server_side=True)
    with hub:
        yield hub, f"https://127.0.0.1:{hub.port}", cert.read_text()


def test_secrets_beyond_the_token_reach_the_hub(image: str, tls_hub: tuple[FaultyHub, str, str],
                                                node_dir: Path, tmp_path: Path) -> None:
    """A hub behind a private CA that wants a Cloudflare Access service token and one more
    header: the headers come from hub.headersSecret (a key named like its header, and a
    dotted key mapped to one), from extraEnv valueFrom and from envFrom; the CA bundle from
    a ConfigMap mounted through extraVolumes. Nothing secret is in the values."""
    hub, url, ca_bundle = tls_hub
    for name, files in DATASETS.items():
        hub.add_package(name, zip_bytes(files))
    wanted = {"CF-Access-Client-Id": "4f1c.access", "CF-Access-Client-Secret": "cf-s3cret-9a7e",
              "X-Tenant": "research", "X-Route": "blue"}
    hub.required_headers = dict(wanted)
    values = chart_values(url, node_dir, hub={"url": url, "headersSecret": {
        "name": "cf-access", "keys": ["CF-Access-Client-Id"], "headers": {"client.secret": "CF-Access-Client-Secret"}}})
    values["config"]["hub"]["verify_tls"] = "/etc/hub-ca/ca.crt"
    values.update({
        "extraEnv": [{"name": "DATAHUB_HEADER_X_TENANT", "valueFrom": {"secretKeyRef": {"name": "hub-tenant", "key": "tenant"}}}],
        "envFrom": [{"secretRef": {"name": "hub-route"}}],
        "extraVolumes": [{"name": "hub-ca", "configMap": {"name": "hub-ca"}}],
        "extraVolumeMounts": [{"name": "hub-ca", "mountPath": "/etc/hub-ca", "readOnly": True}],
    })
    rendered = render(values=values)
    assert not any(v in rendered.text for v in wanted.values()), "no secret in the rendered chart"
    user_objects = [
        secret("cf-access", **{"CF-Access-Client-Id": wanted["CF-Access-Client-Id"] + "\n",
                               "client.secret": wanted["CF-Access-Client-Secret"]}),
        secret("hub-tenant", tenant=wanted["X-Tenant"]),
        secret("hub-route", DATAHUB_HEADER_X_ROUTE=wanted["X-Route"]),
        {"kind": "ConfigMap", "metadata": {"name": "hub-ca"}, "data": {"ca.crt": ca_bundle}},
    ]
    result = run_pod(rendered, "CronJob", tmp_path, user_objects)
    assert result.returncode == 0
    assert_synced(node_dir)
    assert hub.requests and all(r.status < 400 for r in hub.requests)
    for name, value in wanted.items():
        assert {header_of(r, name) for r in hub.requests} == {value}, name
    # The control: without the headers Secret the same pod is refused by the hub.
    hub.requests.reset()
    del values["hub"]["headersSecret"]
    refused = run_pod(render(values=values), "Pod", tmp_path, user_objects)
    assert refused.returncode == 1
    assert {r.status for r in hub.requests} == {401}


def test_a_run_that_finds_the_lock_held_has_nothing_to_do(image: str, serve_hub: Any, node_dir: Path,
                                                         tmp_path: Path) -> None:
    """A `create job --from` (or an initial sync re-created by a rollback) that starts while
    another sync holds the data volume's lock: the pod exits 0 and says why, so its Job
    completes instead of failing, or starting pod after pod, until backoffLimit."""
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, initialSync={"enabled": True}))
    assert run_pod(rendered, "CronJob", tmp_path).returncode == 0  # the state directory exists now
    lock = node_dir / ".datahubsync" / "lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another sync", from the node's side
        for kind in ("CronJob", "Job"):
            result = run_pod(rendered, kind, tmp_path)
            assert result.returncode == 0, kind
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            assert len(lines) == 1 and "lock" in lines[0], lines
        # The control: the same pod without the option is the exit code 75 that used to fail Jobs.
        pod = pod_template(rendered.one("CronJob"))
        container(pod)["args"] = ["sync"]
        kubelet = Kubelet(tmp_path / "kubelet", rendered.all("ConfigMap"))
        assert kubelet.run(pod, timeout=240).returncode == 75
    finally:
        os.close(fd)
