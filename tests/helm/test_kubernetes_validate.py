"""Every rendering validates, strictly (unknown fields are errors), against the API schemas of
every Kubernetes minor version the chart claims (Chart.yaml kubeVersion) up to the newest
that kubernetes-validate bundles (offline); the version below the claim does not."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import CHART, CI_VALUES, HUB_URL, render, render_ci, template

pytestmark = pytest.mark.helm

KUBE_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]


def oldest_claimed_minor() -> int:
    match = re.fullmatch(r">=1\.(\d+)\.0-0", KUBE_VERSION)
    assert match, f"kubeVersion {KUBE_VERSION!r}: expected a lower bound only, '>=1.N.0-0'"
    return int(match.group(1))


def bundled_minors() -> list[int]:
    """The Kubernetes minors whose strict schemas kubernetes-validate ships."""
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        pytest.fail("kubernetes-validate is not installed: run .ci/install-helm.sh", pytrace=False)
    schemas = Path(spec.origin).parent / "kubernetes-json-schema"
    found = (re.fullmatch(r"v1\.(\d+)\.0-local-strict", p.name) for p in schemas.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


OLDEST = oldest_claimed_minor()
CLAIMED = [f"1.{minor}.0" for minor in bundled_minors() if minor >= OLDEST]


def kubernetes_validate(paths: list[Path], version: str) -> subprocess.CompletedProcess[str]:
    # pip puts the script beside the interpreter, which is not always on PATH (pyenv, venvs).
    beside = Path(sys.executable).parent / "kubernetes-validate"
    tool = shutil.which("kubernetes-validate") or (str(beside) if beside.exists() else None)
    if tool is None:
        pytest.fail("kubernetes-validate is not installed: run .ci/install-helm.sh", pytrace=False)
    return subprocess.run([tool, "--strict", "--kubernetes-version", version, *map(str, paths)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_every_claimed_minor_is_validated() -> None:
    """The claim starts at a version the validator knows and runs without gaps to its newest."""
    minors = [int(v.split(".")[1]) for v in CLAIMED]
    assert minors and minors[0] == OLDEST, (KUBE_VERSION, bundled_minors())
    assert minors == list(range(OLDEST, minors[-1] + 1))
    assert minors[-1] >= 36, "the chart was tried on a 1.36 control plane"


@pytest.mark.parametrize("version", CLAIMED)
def test_rendering_validates(version: str, tmp_path: Path) -> None:
    """Helm accepts this version, and every ci values file's rendering passes its strict
    schemas: one "passed" line per object, so nothing was skipped as an unknown kind. (The
    templates do not look at the version, so each file is rendered once per session.)"""
    accepted = template([CHART / "ci" / "minimal-values.yaml"], None, f"--kube-version={version}")
    assert accepted.returncode == 0, accepted.stderr
    manifests = {}
    for values_file in CI_VALUES:
        rendered = render_ci(values_file.name)
        path = tmp_path / values_file.name
        path.write_text(rendered.text)
        manifests[path] = len(rendered.objects)
    proc = kubernetes_validate(list(manifests), version)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr
    for path, count in manifests.items():
        passed = [line for line in proc.stdout.splitlines() if f"{path} passed for resource" in line]
        assert len(passed) == count, f"{path.name}:\n{proc.stdout}"


def test_helm_refuses_a_kubernetes_older_than_claimed() -> None:
    proc = template((), {"hub": {"url": HUB_URL}}, f"--kube-version=1.{OLDEST - 1}.0")
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr and KUBE_VERSION in proc.stderr, proc.stderr


def test_the_claim_is_tight(tmp_path: Path) -> None:
    """The version just below the claim really rejects the rendering (Jobs' podFailurePolicy
    needs 1.29), so the claim is not merely cautious."""
    rendered = render([CHART / "ci" / "minimal-values.yaml"], None, f"--kube-version=1.{OLDEST}.0")
    path = tmp_path / "manifest.yaml"
    path.write_text(rendered.text)
    proc = kubernetes_validate([path], f"1.{OLDEST - 1}.0")
    assert proc.returncode != 0
    assert "podFailurePolicy" in proc.stdout, proc.stdout


@pytest.mark.parametrize("version", [CLAIMED[0], CLAIMED[-1]])
def test_validator_catches_a_stray_field(version: str, tmp_path: Path) -> None:
    """The control: the same CronJob with one misplaced field must fail, so a pass above means
    the strict schemas were really applied."""
    rendered = render([CI_VALUES[0]], None, f"--kube-version={version}")
    cron = rendered.one("CronJob")
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(cron))
    proc = kubernetes_validate([manifest], version)
    assert proc.returncode != 0
    assert "readOnlyRootFilesystem" in proc.stdout + proc.stderr
