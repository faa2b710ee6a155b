"""Small pieces the integration test modules share (the doubles and CLI helpers live elsewhere)."""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo

from tests.helpers import sync_env
from tests.hubs import OriginalHub

SHANGHAI = ZoneInfo("Asia/Shanghai")

FILES: dict[str, bytes] = {
    "2025/sh600000.csv": b"date,open,close\n2025-11-27,10.10,10.20\n2025-11-28,10.20,10.35\n",
    "2025/sz000001.csv": b"date,open,close\n2025-11-27,12.00,11.90\n2025-11-28,11.90,12.05\n",
    "README.txt": b"daily bars\n",
}


def hub_instant(naive: str) -> datetime:
    """The instant the original hub means by one of its naive timestamps."""
    return datetime.fromisoformat(naive).replace(tzinfo=SHANGHAI)


def original_env(hub: OriginalHub, root: Path, names: tuple[str, ...] = ("prices",), **extra: str) -> dict[str, str]:
    """CLI environment for the original hub, configured as its users must (hub.timezone)."""
    return sync_env(hub.url, root, list(names), DATAHUB__HUB__TIMEZONE="Asia/Shanghai", **extra)


def publish(hub: OriginalHub, name: str, files: Mapping[str, bytes], mtime: float | None = None) -> Path:
    """Write the files into the hub's data directory and package them; returns the package."""
    for rel, data in files.items():
        hub.write_file(name, rel, data, mtime=mtime)
    return hub.build_package(name)


def random_files(count: int, size: int) -> dict[str, bytes]:
    """Incompressible files, so the package is as big as the data (for in-flight downloads)."""
    return {f"part{i:03d}.bin": os.urandom(size) for i in range(count)}


def output(out: str, err: str) -> str:
    return out + "\n" + err
