"""Pod-in-Docker for the `metrics` values: the chart's sync pods, run the way a kubelet would
start them (tests/helm/kubelet.py) against a real hub on 127.0.0.1, push to a real
Pushgateway (Debian's prometheus-pushgateway, as in tests/integration/test_prometheus.py)
and write node_exporter's textfile into a node directory."""
from __future__ import annotations

import base64
import stat
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import dockerutil
from tests.helm.chart import pod_template, render
from tests.helm.kubelet import Kubelet
from tests.helm.test_pod_in_docker import DATASETS, assert_synced, chart_values, publish, run_pod
from tests.integration.test_prometheus import Server, binary, free_port, gateway_samples
from tests.integration.test_prometheus import pushgateway  # noqa: F401 - a fixture

pytestmark = [pytest.mark.helm, pytest.mark.docker, pytest.mark.slow]

INSTANCE = "sync-datahubsync"   # the CronJob's name for release "sync": the pods' hostname


@pytest.fixture(scope="module")
def image() -> str:
    return dockerutil.ensure_image()


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    return dockerutil.writable_dir(tmp_path / "node" / "market-data")


def groups(gateway: str) -> dict[frozenset[tuple[str, str]], dict[tuple[str, str | None, str | None], float]]:
    """The Pushgateway's datahubsync samples by group {job, instance}:
    {(metric, dataset, result): value}."""
    out: dict[frozenset[tuple[str, str]], dict[tuple[str, str | None, str | None], float]] = {}
    for (name, labels), value in gateway_samples(gateway).items():
        found = dict(labels)
        group = frozenset({"job": found.get("job", ""), "instance": found.get("instance", "")}.items())
        out.setdefault(group, {})[(name, found.get("dataset"), found.get("result"))] = value
    return out


def runs(samples: dict[tuple[str, str | None, str | None], float], dataset: str) -> dict[str, float]:
    return {result: value for (name, ds, result), value in samples.items()
            if name == "datahubsync_runs_total" and ds == dataset and value}


def test_every_run_replaces_one_group_on_a_real_pushgateway(image: str, serve_hub: Any, node_dir: Path,
                                                            tmp_path: Path, pushgateway: str) -> None:  # noqa: F811
    """Scheduled runs and the initial sync push as instance = the CronJob's name, so the
    Pushgateway holds one group whose counters grow run by run, with no group per pod left
    behind (which the stale alert would fire on)."""
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, initialSync={"enabled": True},
                                          metrics={"pushgateway": {"url": pushgateway}}))
    assert run_pod(rendered, "Job", tmp_path).returncode == 0          # the initial sync installs
    assert_synced(node_dir)
    assert run_pod(rendered, "CronJob", tmp_path).returncode == 0      # a scheduled run: up to date
    found = groups(pushgateway)
    assert set(found) == {frozenset({"job": "datahubsync", "instance": INSTANCE}.items())}, found.keys()
    samples = next(iter(found.values()))
    for name, files in DATASETS.items():
        assert runs(samples, name) == {"success": 1, "up_to_date": 1}, name
        assert samples[("datahubsync_up_to_date", name, None)] == 1
        assert samples[("datahubsync_installed_files", name, None)] == len(files)
        assert samples[("datahubsync_last_success_timestamp_seconds", name, None)] > 1.7e9
    assert not any(name == "datahubsync_ready" for name, _, _ in samples), "a push cannot keep readiness true"

    # The control: the same pod with the kubelet's default hostname (docker's stands in for
    # the pod name) pushes a second group that the next runs would never replace.
    pod = pod_template(rendered.one("CronJob"))
    del pod["spec"]["hostname"]
    kubelet = Kubelet(tmp_path / "kubelet", rendered.all("ConfigMap"))
    assert kubelet.run(pod, timeout=240).returncode == 0
    instances = {dict(group)["instance"] for group in groups(pushgateway)}
    assert len(instances) == 2 and INSTANCE in instances, instances


@pytest.fixture
def guarded_pushgateway(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A real Pushgateway that wants basic auth: (host:port, user, password)."""
    exe = binary("prometheus-pushgateway", "prometheus-pushgateway")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt                      # bcrypt through the C library; no extra package
    user, password = "pusher", "pg-s3cret-41b7"
    home = tmp_path / "guarded-pushgateway"
    home.mkdir()
    (home / "web.yml").write_text(
        f"basic_auth_users:\n  {user}: '{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}'\n")
    address = f"127.0.0.1:{free_port()}"
    server = Server([exe, f"--web.listen-address={address}", f"--web.config.file={home / 'web.yml'}",
                     "--persistence.file=", "--log.level=warn"],
                    home / "pushgateway.log", f"http://{user}:{password}@{address}/-/ready")
    try:
        server.wait_ready()
        yield address, user, password
    finally:
        server.stop()


def url_secret(name: str, key: str, url: str) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name}, "data": {key: base64.b64encode(f"{url}\n".encode()).decode()}}


def test_a_url_with_credentials_comes_from_a_secret(image: str, serve_hub: Any, node_dir: Path, tmp_path: Path,
                                                    guarded_pushgateway: tuple[str, str, str]) -> None:
    """A Pushgateway behind basic auth: the URL with user and password lives in the user's
    Secret (with the line break `--from-file` keeps), reaches the program through valueFrom,
    and the push gets through. Nothing secret is in the rendered chart."""
    address, user, password = guarded_pushgateway
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, metrics={"pushgateway": {
        "existingSecret": "pushgateway-auth", "existingSecretKey": "push-url"}}))
    assert password not in rendered.text and address not in rendered.text
    secret = url_secret("pushgateway-auth", "push-url", f"http://{user}:{password}@{address}")
    result = run_pod(rendered, "CronJob", tmp_path, [secret])
    assert result.returncode == 0
    assert_synced(node_dir)
    assert "pushgateway" not in (result.stdout + result.stderr).lower(), "no warning: the push worked"
    found = groups(f"http://{user}:{password}@{address}")
    assert set(found) == {frozenset({"job": "datahubsync", "instance": INSTANCE}.items())}
    assert runs(next(iter(found.values())), "daily-bars") == {"success": 1}

    # The control: a wrong password is refused by the Pushgateway. The run still succeeds
    # (metrics never fail a sync), and its warning names the Pushgateway, not the password.
    wrong = url_secret("pushgateway-auth", "push-url", f"http://{user}:not-{password}@{address}")
    again = run_pod(rendered, "CronJob", tmp_path, [wrong])
    assert again.returncode == 0
    log = again.stdout + again.stderr
    assert f"metrics.pushgateway: pushing to http://{address} failed" in log and "401" in log, log
    assert password not in log and user not in log.replace(INSTANCE, "")


def test_the_textfile_lands_in_the_node_directory(image: str, serve_hub: Any, node_dir: Path,
                                                  tmp_path: Path) -> None:
    """node_exporter's textfile directory, prepared as the README asks (it exists and the
    pods' user may write it): each run leaves datahubsync.prom there, complete, readable by
    node_exporter's user, in the format its parser takes, and no temporary file."""
    textfile_dir = dockerutil.writable_dir(tmp_path / "node" / "textfile_collector")
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, metrics={
        "textfile": {"enabled": True, "hostPath": str(textfile_dir)}}))
    for expected in ({"success": 1}, {"success": 1, "up_to_date": 1}):
        result = run_pod(rendered, "CronJob", tmp_path)
        assert result.returncode == 0
        if expected == {"success": 1}:
            assert_synced(node_dir)
        assert sorted(p.name for p in textfile_dir.iterdir()) == ["datahubsync.prom"]
        prom = textfile_dir / "datahubsync.prom"
        assert stat.S_IMODE(prom.stat().st_mode) & 0o004, "node_exporter runs as another user"
        text = prom.read_text()
        samples = {(s.name, s.labels.get("dataset"), s.labels.get("result")): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        for name in DATASETS:
            assert runs(samples, name) == expected, name
            assert samples[("datahubsync_up_to_date", name, None)] == 1
    check = subprocess.run([binary("promtool"), "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_unwritable_textfile_directory_does_not_fail_the_sync(image: str, serve_hub: Any, node_dir: Path,
                                                                 tmp_path: Path) -> None:
    """The directory as node_exporter's package leaves it (root's, 0755): the data is synced,
    the run exits 0, and the log says which file could not be written."""
    textfile_dir = dockerutil.writable_dir(tmp_path / "node" / "textfile_collector", uid=0)
    publish(serve_hub.folder)
    rendered = render(values=chart_values(serve_hub.url, node_dir, metrics={
        "textfile": {"enabled": True, "hostPath": str(textfile_dir)}}))
    result = run_pod(rendered, "CronJob", tmp_path)
    assert result.returncode == 0
    assert_synced(node_dir)
    assert "metrics.textfile: cannot write /metrics-textfile/datahubsync.prom" in result.stdout + result.stderr
    assert list(textfile_dir.iterdir()) == []
