"""Fixtures shared by all test suites: hub doubles, the product's own hub, ZIPs, the CLI."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests import helpers
from tests.hubs import FaultyHub, OriginalHub
from tests.hubs.common import serving


@pytest.fixture
def original_hub(tmp_path: Path) -> Iterator[OriginalHub]:
    """The original hub double (Asia/Shanghai naive times), running."""
    with OriginalHub(tmp_path / "hub") as hub:
        yield hub


@pytest.fixture
def faulty_hub() -> Iterator[FaultyHub]:
    """A well-behaved hub until the test flips a fault switch, running on 127.0.0.1."""
    with FaultyHub() as hub:
        yield hub


@dataclass
class ServedHub:
    """The product's own `serve` over `folder` (drop NAME.zip files into it)."""

    folder: Path
    url: str


@pytest.fixture
def serve_hub(tmp_path: Path) -> Iterator[ServedHub]:
    from app.serve.server import make_server  # imported late: only these tests need the product

    folder = tmp_path / "served"
    folder.mkdir()
    with serving(make_server(str(folder), "127.0.0.1", 0)) as url:
        yield ServedHub(folder, url)


@pytest.fixture
def make_zip() -> Callable[..., Path]:
    """make_zip(path, {name: bytes}, when=None, symlinks=None) -> path of a real ZIP."""
    return helpers.make_zip


@pytest.fixture
def run_cli() -> Callable[..., tuple[int, str, str]]:
    """run_cli(argv, env=None, timeout=120) -> (exit code, stdout, stderr), a real subprocess."""
    return helpers.run_cli

