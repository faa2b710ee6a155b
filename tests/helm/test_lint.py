"""`helm lint --strict` over every ci values file, and hub.url as the one required value."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helm.chart import CHART, CI_VALUES, HUB_URL, ci_values, helm_with_values, run_helm

pytestmark = pytest.mark.helm


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict_passes(values_file: Path) -> None:
    proc = run_helm("lint", "--strict", str(CHART), f"--values={values_file}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout
    # Not even [INFO] (e.g. "icon is recommended").
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout and "[INFO]" not in proc.stdout, proc.stdout


def test_ci_values_cover_every_case_the_chart_supports() -> None:
    docs = {p.name: ci_values(p.name) for p in CI_VALUES}
    assert all(d["hub"]["url"] for d in docs.values()), "every ci values file must set hub.url"

    def some(predicate: Any) -> bool:
        return any(predicate(d) for d in docs.values())

    persistence = lambda d: d.get("persistence", {})  # noqa: E731 - a one-line accessor
    covered = {
        "existingClaim": some(lambda d: persistence(d).get("existingClaim")),
        "hostPath": some(lambda d: persistence(d).get("hostPath")),
        "new PVC": some(lambda d: persistence(d).get("enabled", True)
                        and not persistence(d).get("existingClaim") and not persistence(d).get("hostPath")),
        "no persistence": some(lambda d: persistence(d).get("enabled") is False),
        "token": some(lambda d: d["hub"].get("token")),
        "existingSecret": some(lambda d: d["hub"].get("existingSecret")),
        "initialSync": some(lambda d: d.get("initialSync", {}).get("enabled")),
        "suspend": some(lambda d: d.get("suspend") is True),
        "custom schedule": some(lambda d: d.get("schedule") not in (None, "15 8 * * *")),
        "custom timeZone": some(lambda d: d.get("timeZone") not in (None, "Asia/Shanghai")),
        "extra env": some(lambda d: d.get("env")),
        "resources": some(lambda d: d.get("resources")),
        "no requests": some(lambda d: (d.get("resources") or {}).get("requests", {}) is None),
        "headersSecret": some(lambda d: d["hub"].get("headersSecret")),
        "extraEnv valueFrom": some(lambda d: any("valueFrom" in e for e in d.get("extraEnv", []))),
        "envFrom": some(lambda d: d.get("envFrom")),
        "extraVolumes": some(lambda d: d.get("extraVolumes") and d.get("extraVolumeMounts")),
        "image registry + digest": some(lambda d: d.get("image", {}).get("registry") and d["image"].get("digest")),
        "subPath": some(lambda d: persistence(d).get("subPath")),
        "PVC deleted with the release": some(lambda d: persistence(d).get("resourcePolicy") == ""),
        "PVC selector + dataSource": some(lambda d: persistence(d).get("selector") and persistence(d).get("dataSource")),
        "common labels + annotations": some(lambda d: d.get("commonLabels") and d.get("commonAnnotations")),
        "CronJob + Job annotations": some(lambda d: d.get("cronJobAnnotations") and d.get("jobAnnotations")),
        "pod scheduling + runtime": some(lambda d: all(d.get(k) for k in (
            "priorityClassName", "runtimeClassName", "terminationGracePeriodSeconds", "hostAliases", "dnsConfig",
            "initContainers"))),
        "no test pod": some(lambda d: d.get("tests", {}).get("enabled") is False),
        "Pushgateway URL": some(lambda d: d.get("metrics", {}).get("pushgateway", {}).get("url")),
        "Pushgateway URL from a Secret": some(lambda d: d.get("metrics", {}).get("pushgateway", {}).get("existingSecret")),
        "node_exporter textfile": some(lambda d: d.get("metrics", {}).get("textfile", {}).get("enabled")),
    }
    assert [case for case, ok in covered.items() if not ok] == []


@pytest.mark.parametrize("values", [None, {"hub": {"url": ""}}, {"hub": {"url": None}}],
                         ids=["default", "empty", "null"])
@pytest.mark.parametrize("command", ["lint", "template", "install"])
def test_missing_hub_url_fails_naming_it(command: str, values: dict | None) -> None:
    if command == "lint":
        proc = helm_with_values("lint", (), values, "--strict")
    elif command == "template":
        proc = helm_with_values("template", (), values)
    else:
        # --dry-run=client renders and validates exactly as an install does, without a cluster.
        proc = helm_with_values("install", (), values, "--dry-run=client")
    assert proc.returncode != 0, proc.stdout
    assert "hub.url" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_install_dry_run_succeeds_with_hub_url() -> None:
    """The positive twin of the test above: the same command works once hub.url is set."""
    proc = helm_with_values("install", (), {"hub": {"url": HUB_URL}}, "--dry-run=client")
    assert proc.returncode == 0, proc.stderr
    assert "kind: CronJob" in proc.stdout


def test_templates_name_hub_url_even_without_the_schema() -> None:
    """A second guard in the templates, for tools that skip schema validation."""
    proc = helm_with_values("template", (), None, "--skip-schema-validation")
    assert proc.returncode != 0
    assert "hub.url is required" in proc.stderr, proc.stderr
