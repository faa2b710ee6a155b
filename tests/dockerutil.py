"""Docker helpers for the container tests: build the image once, run containers on the host network, clean up.

Nothing here skips: without a working Docker engine the tests fail, because CI
must run them (`.ci/setup.sh` starts the engine).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE = "datahubsync:test"
BASE_IMAGE = "debian:trixie-slim"
# Every container the tests start carries this label, and every compose project
# this name prefix, so .ci/run can remove what a crashed test left behind.
LABEL = "datahubsync.test"
PROJECT_PREFIX = "dhstest"
APP_UID = 1000

_built: set[str] = set()


def docker(*args: str, timeout: float = 120, check: bool = True,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; output captured as text. A failed command fails the test with its output."""
    docker_bin = shutil.which("docker")
    if docker_bin is None:
        pytest.fail("the docker CLI is not on PATH: run .ci/setup.sh (the Docker tests must not be skipped)")
    proc = subprocess.run([docker_bin, *args], capture_output=True, text=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def ensure_image(tag: str = IMAGE) -> str:
    """Build the image from the working tree once per test session; returns its tag."""
    if tag in _built:
        return tag
    info = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    if info.returncode != 0:
        pytest.fail(f"no Docker engine answers (`docker info`: {info.stderr.strip()}); run .ci/setup.sh")
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True).stdout.strip() or "unknown"
    docker("build", "--tag", tag, "--build-arg", "VERSION=test", "--build-arg", f"REVISION={revision}",
           str(REPO_ROOT), timeout=900)
    _built.add(tag)
    return tag


def writable_dir(path: Path, uid: int = APP_UID, gid: int | None = None, mode: int = 0o755) -> Path:
    """Create path owned by uid:gid (as the container's user sees it). Needs root, which CI has;
    a non-root developer gets a world-writable folder instead."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        os.chown(path, uid, uid if gid is None else gid)
        path.chmod(mode)
    except PermissionError:
        path.chmod(0o777)
    return path


def env_args(env: Mapping[str, str]) -> list[str]:
    return [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]


def volume_args(volumes: Mapping[Path | str, str]) -> list[str]:
    """{host path: container spec ('/data' or '/data:ro')} -> --volume arguments."""
    return [arg for host, spec in volumes.items() for arg in ("--volume", f"{host}:{spec}")]


def run(argv: Iterable[str], *, env: Mapping[str, str] | None = None,
        volumes: Mapping[Path | str, str] | None = None, options: Iterable[str] = (),
        image: str = IMAGE, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`docker run --rm --network host IMAGE ARGV`; returns the finished process (any exit code)."""
    args = ["run", "--rm", "--network", "host", "--label", LABEL, "--stop-timeout", "10",
            *env_args(env or {}), *volume_args(volumes or {}), *options, image, *argv]
    return docker(*args, timeout=timeout, check=False)


@dataclass
class Container:
    """A detached test container; remove() is idempotent."""

    id: str
    name: str
    removed: bool = field(default=False)

    def inspect(self) -> dict[str, Any]:
        return json.loads(docker("inspect", self.id).stdout)[0]

    def state(self) -> dict[str, Any]:
        return self.inspect()["State"]

    def health(self) -> str:
        """'starting' | 'healthy' | 'unhealthy' (the Docker health status)."""
        return self.state().get("Health", {}).get("Status", "none")

    def health_log(self) -> list[dict[str, Any]]:
        return self.state().get("Health", {}).get("Log") or []

    def logs(self) -> str:
        proc = docker("logs", self.id, check=False)
        return proc.stdout + proc.stderr

    def exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.id, *argv, timeout=timeout, check=False)

    def stop(self, grace: int = 10) -> float:
        """`docker stop`; returns how long it took in seconds."""
        began = time.monotonic()
        docker("stop", "--time", str(grace), self.id, timeout=grace + 60)
        return time.monotonic() - began

    def exit_code(self) -> int:
        return int(self.state()["ExitCode"])

    def wait(self, timeout: float = 120) -> int:
        return int(docker("wait", self.id, timeout=timeout).stdout.strip())

    def remove(self) -> None:
        if not self.removed:
            docker("rm", "--force", "--volumes", self.id, check=False)
            self.removed = True


def start(argv: Iterable[str] = (), *, env: Mapping[str, str] | None = None,
          volumes: Mapping[Path | str, str] | None = None, options: Iterable[str] = (),
          image: str = IMAGE) -> Container:
    """`docker run --detach --network host IMAGE ARGV`; the caller (or the fixture) removes it."""
    name = f"{PROJECT_PREFIX}-{uuid.uuid4().hex[:10]}"
    args = ["run", "--detach", "--name", name, "--network", "host", "--label", LABEL,
            *env_args(env or {}), *volume_args(volumes or {}), *options, image, *argv]
    return Container(docker(*args, timeout=60).stdout.strip(), name)


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def compose(project: str, files: Iterable[Path], *args: str, cwd: Path,
            env: Mapping[str, str] | None = None, timeout: float = 300,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """`docker compose -p PROJECT -f FILE... ARGS` run in cwd; `env` is added to the
    environment compose interpolates from."""
    file_args = [arg for f in files for arg in ("-f", str(f))]
    cmd = [shutil.which("docker") or "docker", "compose", "-p", project, *file_args, *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def project_name() -> str:
    return f"{PROJECT_PREFIX}{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Any, timeout: float, interval: float = 0.25, what: str = "") -> Any:
    """Poll predicate() until truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback port free right now (for a server the test starts next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sync_env(hub_url: str, names: list[str], **extra: str) -> dict[str, str]:
    """Settings for a container syncing `names` into /data/NAME; failing paths stay fast."""
    env = {
        "DATAHUB_URL": hub_url,
        "DATAHUB_DATASETS": ",".join(names),
        "DATAHUB__HUB__RETRIES": "0",
        "DATAHUB__HUB__CONNECT_TIMEOUT": "2",
        "DATAHUB_TIMEOUT": "10",
        "DATAHUB__SYNC__PACKAGE_WAIT": "0",
    }
    env.update(extra)
    return env
