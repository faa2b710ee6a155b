"""Helpers shared by the integration tests: ZIPs, configs, the CLI as a subprocess, state."""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# Variables a test process may pass on to the CLI; everything else (DATAHUB_* above all) is dropped.
_PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR", "PYTHONPATH")


def zip_bytes(
    files: Mapping[str, bytes | str],
    when: datetime | tuple[int, ...] | None = None,
    *,
    symlinks: Mapping[str, str] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A real ZIP of {entry name: content}; names are used verbatim (hostile ones included).
    `when` stamps every entry (naive datetime = wall time as the ZIP stores it)."""
    stamp = when.timetuple()[:6] if isinstance(when, datetime) else (when or time.localtime()[:6])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, tuple(stamp))
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            zf.writestr(info, content.encode() if isinstance(content, str) else content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, tuple(stamp))
            info.create_system = 3  # unix, so the mode bits below mean "symlink"
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buf.getvalue()


def make_zip(path: Path, files: Mapping[str, bytes | str], **kwargs: Any) -> Path:
    """Write zip_bytes(files) to path and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zip_bytes(files, **kwargs))
    return path


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A controlled environment for the CLI: no inherited DATAHUB_* or proxy settings."""
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ON}
    # Coverage's own settings (COVERAGE_PROCESS_CONFIG, COVERAGE_FILE, ...): measure the CLI too when
    # the tests run under `coverage run` (.coveragerc); they never change what the CLI does.
    env.update({k: v for k, v in os.environ.items() if k.startswith("COVERAGE_")})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def cli_command(argv: list[str]) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "entrypoint.py"), *argv]


def run_cli(
    argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """Run `python entrypoint.py ARGV` from the repo root; returns (exit code, stdout, stderr)."""
    proc = subprocess.run(
        cli_command(argv), cwd=REPO_ROOT, env=clean_env(env), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr


def start_cli(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start the CLI in the background (for kill and lock tests); output goes to pipes."""
    return subprocess.Popen(
        cli_command(argv), cwd=REPO_ROOT, env=clean_env(env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )


def sync_env(hub_url: str, root: Path, names: list[str], **extra: str) -> dict[str, str]:
    """Environment for a CLI run against hub_url syncing `names` under root/data.
    Retries and timeouts are small so failing paths stay fast."""
    data = root / "data"
    env = {
        "DATAHUB_URL": hub_url,
        "DATAHUB_DATA_ROOT": str(data),
        "DATAHUB_STATE_DIR": str(root / "state"),
        "DATAHUB_DATASETS": ",".join(f"{n}={data / n}" for n in names),
        "DATAHUB__HUB__RETRIES": "1",
        "DATAHUB__HUB__CONNECT_TIMEOUT": "2",
        "DATAHUB_TIMEOUT": "10",
        "DATAHUB__HUB__BACKOFF": "0.05",
        "DATAHUB__SYNC__PACKAGE_WAIT": "0",
    }
    env.update(extra)
    return env


def write_config(path: Path, hub: Mapping[str, Any], datasets: list[Mapping[str, Any]],
                 sync: Mapping[str, Any] | None = None, **sections: Any) -> Path:
    """Write a YAML config file; returns its path."""
    doc: dict[str, Any] = {"hub": dict(hub), "datasets": [dict(d) for d in datasets]}
    if sync:
        doc["sync"] = dict(sync)
    doc.update(sections)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_state(state_dir: Path) -> dict[str, Any]:
    return json.loads((Path(state_dir) / "state.json").read_text())


def tree(folder: Path) -> dict[str, bytes]:
    """{relative posix path: bytes} of every file under folder (empty if it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def wait_for(predicate: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail loudly on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


def parse_utc(text: str) -> datetime:
    """A state timestamp ("...Z", UTC) as an aware datetime; fails if it is not UTC with Z."""
    assert isinstance(text, str) and text.endswith("Z"), f"not a UTC timestamp with Z: {text!r}"
    return datetime.fromisoformat(text[:-1] + "+00:00")


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def sha256_of(data: bytes | Path) -> str:
    return hashlib.sha256(Path(data).read_bytes() if isinstance(data, Path) else data).hexdigest()


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text exposition (AssertionError when it is not there)."""
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not exported")
