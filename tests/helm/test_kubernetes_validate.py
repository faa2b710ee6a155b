"""Every rendering validates against the Kubernetes 1.30 and 1.33 API schemas, strictly
(unknown fields are errors), with kubernetes-validate's bundled schemas (offline)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import CI_VALUES, render

pytestmark = pytest.mark.helm

# The oldest Kubernetes the chart targets in practice and a current one; both ship in
# kubernetes-validate as `v1.30.0-local-strict` and `v1.33.0-local-strict`.
KUBERNETES_VERSIONS = ["1.30.0", "1.33.0"]


def kubernetes_validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    # pip puts the script beside the interpreter, which is not always on PATH (pyenv, venvs).
    beside = Path(sys.executable).parent / "kubernetes-validate"
    tool = shutil.which("kubernetes-validate") or (str(beside) if beside.exists() else None)
    if tool is None:
        pytest.fail("kubernetes-validate is not installed: run .ci/install-helm.sh", pytrace=False)
    return subprocess.run([tool, "--strict", "--kubernetes-version", version, str(path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_rendering_validates(values_file: Path, version: str, tmp_path: Path) -> None:
    rendered = render([values_file], None, f"--kube-version={version}")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(rendered.text)
    proc = kubernetes_validate(manifest, version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One "passed" line per object: nothing was skipped as an unknown kind.
    passed = [line for line in proc.stdout.splitlines() if "passed for resource" in line]
    assert len(passed) == len(rendered.objects), proc.stdout
    assert "ERROR" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validator_catches_a_stray_field(version: str, tmp_path: Path) -> None:
    """The control: the same CronJob with one misplaced field must fail, so a pass above means
    the strict schemas were really applied."""
    rendered = render([CI_VALUES[0]], None, f"--kube-version={version}")
    cron = rendered.one("CronJob")
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(cron))
    proc = kubernetes_validate(manifest, version)
    assert proc.returncode != 0
    assert "readOnlyRootFilesystem" in proc.stdout + proc.stderr
