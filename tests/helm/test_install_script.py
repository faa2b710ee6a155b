"""CI installs helm, kubectl and kubernetes-validate with .ci/install-helm.sh on every machine."""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.helm.chart import REPO_ROOT

pytestmark = pytest.mark.helm


def run_script() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO_ROOT / ".ci" / "install-helm.sh")], capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_install_script_is_idempotent() -> None:
    first = run_script()  # installs whatever is missing (nothing, on a prepared machine)
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_script()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "helm and kubectl already in" in second.stdout
    assert "kubernetes-validate already installed" in second.stdout
    assert re.search(r"^v4\.", second.stdout, flags=re.M), second.stdout
    assert re.search(r"^Client Version: v1\.35\.", second.stdout, flags=re.M), second.stdout
