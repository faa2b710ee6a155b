"""The shipped compose files, run from a copy of the checkout: with a test hub, with no settings, the demo."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests
from pytest_docker.plugin import get_docker_services

from tests.dockerutil import APP_UID, REPO_ROOT, compose, docker, free_port, project_name, wait_until
from tests.helpers import zip_bytes
from tests.hubs import FaultyHub

TEST_OVERRIDE = Path(__file__).with_name("compose.test.yaml")
DEMO_DATASETS = ("stock-trading-data-pro", "stock-fin-data-xbx", "stock-etf-trading-data")
TOKEN = "s3cret-token-from-a-file"
# The service with the documented secrets and /readyz health overrides, under the test's own settings.
COMPOSE_FILES = ("compose.yaml", "compose.override.yaml", "compose.readyz.yaml", TEST_OVERRIDE.name)


def documented_override(what: str) -> str:
    """A compose override from docs/docker.md (`<!-- tested by ...: WHAT -->`), exactly as a user would paste it."""
    text = (REPO_ROOT / "docs" / "docker.md").read_text()
    match = re.search(rf"<!-- tested by tests/docker/test_compose.py: {re.escape(what)} -->\n```yaml\n(.*?)```", text, re.S)
    assert match, f"docs/docker.md lost its tested example: {what}"
    return match.group(1)


def documented_secrets_override() -> str:
    """The compose `secrets:` example from docs/docker.md."""
    return documented_override("the secrets override")


def get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=10)
    except requests.ConnectionError:
        return None


def in_container(project: str, files: list[Path], root: Path, env: dict[str, str], path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:9464/PATH from inside the service's container."""
    probe = ("import sys, urllib.error, urllib.request\n"
             "try:\n    answer = urllib.request.urlopen(sys.argv[1], timeout=15)\n"
             "except urllib.error.HTTPError as error:\n    answer = error\n"
             "print(answer.status); sys.stdout.write(answer.read().decode())\n")
    proc = compose(project, files, "exec", "-T", "datahubsync", "python3", "-c", probe,
                   f"http://127.0.0.1:9464{path}", cwd=root, env=env)
    status, _, body = proc.stdout.partition("\n")
    return int(status), body


def pull_lines(output: str) -> list[str]:
    """What `docker compose up` printed about registries: pulling, or failing to."""
    return [line for line in output.splitlines()
            if re.search(r"\bPull(ing|ed)?\b|pull access denied|registry|Error", line)]


@pytest.fixture
def checkout(tmp_path: Path, image: str) -> Path:
    """What a fresh clone holds for compose: the compose files, config/ and what the image is built
    from (no .env, no config.yaml, no data/)."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("compose.yaml", "compose.demo.yaml", "Dockerfile", ".dockerignore", "entrypoint.py"):
        shutil.copy(REPO_ROOT / name, root / name)
    for name in ("app", "crontabs"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "config", root / "config", ignore=shutil.ignore_patterns("config.yaml"))
    shutil.copy(TEST_OVERRIDE, root / TEST_OVERRIDE.name)
    return root


def container_of(project: str, service: str) -> dict:
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                 "--filter", f"label=com.docker.compose.service={service}").stdout.split()
    assert len(ids) == 1, f"expected one {service} container, found {ids}"
    return json.loads(docker("inspect", ids[0]).stdout)[0]


def csv_files(folder: Path) -> list[Path]:
    return list(folder.rglob("*.csv")) if folder.is_dir() else []


@pytest.fixture
def test_hub_project(checkout: Path, faulty_hub: FaultyHub, image: str) -> Iterator[tuple[str, Path]]:
    """compose.yaml + the documented secrets override + the test override, configured by a .env as
    a user would, run by pytest-docker. The hub demands the token that only the secret file holds."""
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}
    (checkout / "compose.override.yaml").write_text(documented_secrets_override())
    (checkout / "compose.readyz.yaml").write_text(documented_override("the /readyz health check"))
    secret = checkout / "secrets" / "datahub-token"
    secret.parent.mkdir()
    secret.write_text(TOKEN)
    os.chown(secret, APP_UID, APP_UID)
    secret.chmod(0o400)
    faulty_hub.add_package("prices", zip_bytes({"sh600000.csv": "date,close\n2026-11-27,v1\n"}),
                           "2026-11-28T08:30:00Z", sha256=True)
    (checkout / ".env").write_text(
        f"DATAHUBSYNC_IMAGE={image}\n"
        f"DATAHUB_URL={faulty_hub.url}\n"
        "DATAHUB_DATASETS=prices\n"
        'DATAHUB_SCHEDULE="*/2 * * * * * *"\n'
        "DATAHUB__HUB__RETRIES=0\n"
        # The service shares the host's network here: a port of its own, on loopback only
        f"DATAHUB_LISTEN=127.0.0.1:{free_port()}\n"
    )
    project = project_name()
    files = [str(checkout / name) for name in COMPOSE_FILES]
    with get_docker_services("docker compose", files, project, ["up -d"], ["down -v --remove-orphans"]):
        yield project, checkout
        print(compose(project, map(Path, files), "logs", "--no-color", cwd=checkout, check=False).stdout)


def test_compose_with_secret_token_syncs_updates_and_stops(test_hub_project: tuple[str, Path],
                                                       faulty_hub: FaultyHub) -> None:
    project, root = test_hub_project
    target = root / "data" / "prices" / "sh600000.csv"

    def has(version: str) -> bool:
        return target.is_file() and target.read_text().endswith(f",{version}\n")

    wait_until(lambda: has("v1"), 40, what="the first sync")
    assert target.stat().st_uid == APP_UID
    assert (root / "data").stat().st_uid == APP_UID  # created by Docker as root, handed over by data-dir
    wait_until(lambda: container_of(project, "datahubsync")["State"].get("Health", {}).get("Status") == "healthy",
               30, what="a healthy service")
    health = container_of(project, "datahubsync")["State"]["Health"]
    assert health["Log"][-1]["Output"].strip() == '{"ready": true}'    # Docker asked the daemon's /readyz
    listen = dict(line.split("=", 1) for line in (root / ".env").read_text().splitlines())["DATAHUB_LISTEN"]
    metrics = requests.get(f"http://{listen}/metrics", timeout=10).text
    assert 'datahubsync_installed_files{dataset="prices"} 1.0' in metrics, metrics

    faulty_hub.add_package("prices", zip_bytes({"sh600000.csv": "date,close\n2026-11-27,v2\n"}),
                           "2026-11-29T08:30:00Z", sha256=True)
    wait_until(lambda: has("v2"), 30, what="the update")

    files = [root / name for name in COMPOSE_FILES]
    began = time.monotonic()
    compose(project, files, "stop", cwd=root)
    took = time.monotonic() - began
    state = container_of(project, "datahubsync")["State"]
    assert state["ExitCode"] == 0
    assert took < 10
    logs = compose(project, files, "logs", "--no-color", cwd=root).stdout
    assert "sync finished" in logs
    assert TOKEN not in logs


def test_compose_comes_up_in_a_fresh_checkout_without_settings(checkout: Path, image: str) -> None:
    """`docker compose up -d` where the image does not exist yet: compose builds it, never asks a
    registry for it (neither for the service nor for the data-dir helper), and the service comes up."""
    project = project_name()
    files = [checkout / "compose.yaml"]
    fresh = f"{project}-image:latest"           # a tag no engine holds yet, as in a newcomer's first run
    env = {"DATAHUBSYNC_IMAGE": fresh}
    try:
        up = compose(project, files, "up", "-d", cwd=checkout, env=env)
        assert not pull_lines(up.stdout + up.stderr), up.stdout + up.stderr
        time.sleep(3)
        info = container_of(project, "datahubsync")
        assert info["Config"]["Image"] == fresh
        assert info["State"]["Running"], info["State"]
        assert info["RestartCount"] == 0
        assert info["HostConfig"]["ReadonlyRootfs"] is True
        assert (checkout / "data").stat().st_uid == APP_UID

        health = compose(project, files, "exec", "-T", "datahubsync", "datahubsync", "healthcheck",
                         cwd=checkout, env=env, check=False)
        assert health.returncode == 1
        assert "DATAHUB_URL" in health.stdout + health.stderr

        # The listener is on by default, with the same answer as the health check
        status, body = in_container(project, files, checkout, env, "/readyz")
        assert status == 503 and "DATAHUB_URL" in json.loads(body)["problems"]["(settings)"], body
        assert in_container(project, files, checkout, env, "/healthz") == (200, '{"status": "ok"}\n')

        logs = compose(project, files, "logs", "--no-color", "datahubsync", cwd=checkout, env=env).stdout
        assert "DATAHUB_URL" in logs, logs
        assert "Traceback" not in logs
        time.sleep(2)
        assert container_of(project, "datahubsync")["RestartCount"] == 0
    finally:
        compose(project, files, "down", "-v", "--remove-orphans", cwd=checkout, env=env, check=False)
        docker("image", "rm", fresh, check=False)


def test_compose_demo_fills_data_from_the_local_hub(checkout: Path, image: str) -> None:
    project = project_name()
    files = [checkout / "compose.yaml", checkout / "compose.demo.yaml"]
    listen = free_port()
    env = {"DATAHUBSYNC_IMAGE": image, "DEMO_HUB_PORT": str(free_port()), "DEMO_LISTEN_PORT": str(listen)}
    data = checkout / "data"
    try:
        compose(project, files, "up", "-d", cwd=checkout, env=env)
        wait_until(lambda: all(len(csv_files(data / name)) == 300 for name in DEMO_DATASETS), 90,
                   interval=1, what="the three demo datasets in ./data")
        wait_until(lambda: (answer := get(f"http://127.0.0.1:{listen}/readyz")) is not None
                   and (answer.status_code, answer.json()) == (200, {"ready": True}), 30,
                   what="/readyz 200 on the demo's listener")
        metrics = requests.get(f"http://127.0.0.1:{listen}/metrics", timeout=10).text
        for name in DEMO_DATASETS:
            assert f'datahubsync_installed_files{{dataset="{name}"}} 300.0' in metrics, metrics
        assert {p.stat().st_uid for p in csv_files(data / DEMO_DATASETS[0])} == {APP_UID}
        sample = sorted(csv_files(data / DEMO_DATASETS[0]))[0].read_text().splitlines()
        assert sample[0] == "date,open,high,low,close,volume,amount"
        assert len(sample) > 2
        logs = compose(project, files, "logs", "--no-color", "datahubsync", cwd=checkout, env=env).stdout
        for name in DEMO_DATASETS:
            assert name in logs
    finally:
        print(compose(project, files, "logs", "--no-color", cwd=checkout, env=env, check=False).stdout[-5000:])
        compose(project, files, "down", "-v", "--remove-orphans", cwd=checkout, env=env, check=False)
