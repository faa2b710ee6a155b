"""The chart as a `file://` dependency of a small parent chart: Helm passes the parent's
`global` to it, and it renders, lints and validates there as it does on its own."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import CHART, helm_binary, load_manifest, pod_template

pytestmark = pytest.mark.helm

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())


def helm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """helm with its config, cache and repository list in `home`: nothing from the machine's
    own helm setup (no repositories to refresh), nothing written outside the test."""
    env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env=env)


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A parent chart that depends on this one by path, with its dependencies fetched."""
    root = tmp_path_factory.mktemp("parent")
    chart = root / "research-platform"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "research-platform", "version": "0.1.0",
        "icon": CHART_META["icon"],
        "dependencies": [{"name": "datahubsync", "version": CHART_META["version"],
                          "repository": f"file://{CHART}", "condition": "datahubsync.enabled"}],
    }))
    # A parent's own object, and the global values its other subcharts would read.
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-platform\n"
        "data:\n  registry: {{ .Values.global.imageRegistry | quote }}\n")
    (chart / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "registry.example.com", "storageClass": "fast-ssd"},
        "datahubsync": {"enabled": True, "hub": {"url": "https://hub.example.com"},
                        "config": {"datasets": [{"name": "stock-trading-data-pro"}]}},
    }))
    proc = helm("dependency", "update", str(chart), home=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (chart / "charts" / f"datahubsync-{CHART_META['version']}.tgz").is_file(), proc.stdout
    return chart


def test_parent_chart_lints_strictly(parent: Path) -> None:
    proc = helm("lint", "--strict", str(parent), home=parent.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_parent_chart_renders_the_subchart_with_globals(parent: Path) -> None:
    proc = helm("template", "lab", str(parent), home=parent.parent)
    assert proc.returncode == 0, proc.stderr
    objects = load_manifest(proc.stdout)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ConfigMap", "lab-platform") in kinds and ("CronJob", "lab-datahubsync") in kinds
    cron = next(o for o in objects if o["kind"] == "CronJob")
    image = pod_template(cron)["spec"]["containers"][0]["image"]
    assert image == f"registry.example.com/datahubsync:{CHART_META['appVersion']}", "global.imageRegistry is used"


def test_parent_chart_still_refuses_a_typo_in_the_subchart_values(parent: Path) -> None:
    """Accepting `global` must not open the schema to anything else."""
    proc = helm("template", "lab", str(parent), "--set", "datahubsync.schedul=0 1 * * *", home=parent.parent)
    assert proc.returncode != 0
    assert "schedul" in proc.stderr, proc.stderr


def test_parent_chart_can_leave_the_subchart_out(parent: Path) -> None:
    proc = helm("template", "lab", str(parent), "--set", "datahubsync.enabled=false", home=parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert {o["kind"] for o in load_manifest(proc.stdout)} == {"ConfigMap"}
