"""Fixtures for the container tests: the image, detached containers that are always removed, data folders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests import dockerutil
from tests.dockerutil import Container


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def image() -> str:
    return dockerutil.ensure_image()


@pytest.fixture
def containers(image: str) -> Iterator[Callable[..., Container]]:
    """start(argv, env=..., volumes=..., options=...) -> Container; each is removed after the test,
    its log printed first (pytest shows it when the test fails)."""
    started: list[Container] = []

    def start(argv: list[str] | tuple[str, ...] = (), **kwargs: object) -> Container:
        container = dockerutil.start(argv, image=image, **kwargs)  # type: ignore[arg-type]
        started.append(container)
        return container

    yield start
    for container in started:
        print(f"--- log of container {container.name} ---\n{container.logs()}")
        container.remove()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty folder for /data, owned by the image's user (uid 1000)."""
    return dockerutil.writable_dir(tmp_path / "data")


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{dockerutil.free_port()}"
