"""The values that keep the data, carry secrets from Secrets, and fit the chart into a
cluster's conventions, checked field by field in `helm template` output."""
from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    CHART, HUB_URL, Rendered, ci_values, container, env_entries, env_of, mounts_of, pod_template, render,
    render_ci, workloads,
)

pytestmark = pytest.mark.helm

BASE: dict[str, Any] = {"hub": {"url": HUB_URL}, "config": {"datasets": [{"name": "a"}]}}
HEADERS_DIR = "/run/secrets/datahub-headers"


def cronjob_pod(rendered: Rendered) -> dict[str, Any]:
    return pod_template(rendered.one("CronJob"))


# -- the data volume survives `helm uninstall` -----------------------------------------------------

def test_the_chart_pvc_is_kept_by_default() -> None:
    pvc = render_ci("minimal-values.yaml").one("PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_an_empty_resource_policy_lets_helm_delete_the_pvc() -> None:
    pvc = render_ci("pod-settings-values.yaml").one("PersistentVolumeClaim")
    assert "helm.sh/resource-policy" not in pvc["metadata"].get("annotations", {})
    # Only the chart's own annotations and commonAnnotations: nothing else leaks in.
    assert pvc["metadata"]["annotations"] == ci_values("pod-settings-values.yaml")["commonAnnotations"]


def test_new_pvc_selector_and_data_source() -> None:
    values = ci_values("pod-settings-values.yaml")["persistence"]
    spec = render_ci("pod-settings-values.yaml").one("PersistentVolumeClaim")["spec"]
    assert spec["selector"] == values["selector"]
    assert spec["dataSource"] == values["dataSource"]
    default = render_ci("minimal-values.yaml").one("PersistentVolumeClaim")["spec"]
    assert "selector" not in default and "dataSource" not in default


def test_sub_path_mounts_a_folder_of_the_volume() -> None:
    rendered = render_ci("secrets-values.yaml")
    for obj in workloads(rendered):
        data = mounts_of(pod_template(obj))["/data"]
        assert data["mount"]["subPath"] == "market-data"
        assert data["volume"]["persistentVolumeClaim"] == {"claimName": "shared-research"}
    assert "subPath" not in mounts_of(cronjob_pod(render_ci("minimal-values.yaml")))["/data"]["mount"]


# -- secrets beyond the token ----------------------------------------------------------------------

def test_headers_secret_keys_become_header_files() -> None:
    rendered = render_ci("secrets-values.yaml")
    for obj in workloads(rendered):
        pod = pod_template(obj)
        env = env_of(pod)
        assert env["DATAHUB_HEADER_CF_ACCESS_CLIENT_ID_FILE"] == f"{HEADERS_DIR}/CF-Access-Client-Id"
        assert env["DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET_FILE"] == f"{HEADERS_DIR}/CF-Access-Client-Secret"
        mount = mounts_of(pod)[HEADERS_DIR]
        assert mount["mount"]["readOnly"] is True
        # A key named like its header, and a dotted key mapped to one.
        assert mount["volume"]["secret"] == {
            "secretName": "cf-access", "defaultMode": 0o440,
            "items": [{"key": "CF-Access-Client-Id", "path": "CF-Access-Client-Id"},
                      {"key": "client.secret", "path": "CF-Access-Client-Secret"}]}


def test_header_keys_with_underscores_name_dashed_headers() -> None:
    values = {**BASE, "hub": {"url": HUB_URL, "headersSecret": {"name": "h", "keys": ["X_Api_Key"]}}}
    pod = cronjob_pod(render(values=values))
    assert env_of(pod)["DATAHUB_HEADER_X_API_KEY_FILE"] == f"{HEADERS_DIR}/X-Api-Key"
    assert mounts_of(pod)[HEADERS_DIR]["volume"]["secret"]["items"] == [{"key": "X_Api_Key", "path": "X-Api-Key"}]


def test_no_headers_secret_no_mount() -> None:
    pod = cronjob_pod(render_ci("minimal-values.yaml"))
    assert HEADERS_DIR not in mounts_of(pod)
    assert not [name for name in env_of(pod) if name.startswith("DATAHUB_HEADER_")]


def test_extra_env_and_env_from() -> None:
    values = ci_values("secrets-values.yaml")
    for obj in workloads(render_ci("secrets-values.yaml")):
        pod = pod_template(obj)
        entries = env_entries(pod)
        assert entries["DATAHUB_HEADER_X_TENANT"] == values["extraEnv"][0]
        assert entries["DATAHUB__HUB__RETRIES"] == {"name": "DATAHUB__HUB__RETRIES", "value": "8"}
        # The chart's own variables come first; extraEnv cannot displace them (refused when
        # repeated), and every `env` entry wins over envFrom in Kubernetes.
        names = list(entries)
        assert names.index("DATAHUB_URL") < names.index("DATAHUB_HEADER_X_TENANT")
        assert container(pod)["envFrom"] == values["envFrom"]
    assert "envFrom" not in container(cronjob_pod(render_ci("minimal-values.yaml")))


def test_extra_volumes_and_mounts() -> None:
    values = ci_values("secrets-values.yaml")
    for obj in workloads(render_ci("secrets-values.yaml")):
        mount = mounts_of(pod_template(obj))["/etc/hub-ca"]
        assert mount["mount"] == values["extraVolumeMounts"][0]
        assert mount["volume"] == values["extraVolumes"][0]


# -- image ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image, global_registry, expected", [
    ({"repository": "datahubsync"}, None, "datahubsync:1.1.0"),
    ({"repository": "tools/datahubsync", "registry": "registry.example.com", "tag": "1.2.3"}, None,
     "registry.example.com/tools/datahubsync:1.2.3"),
    ({"repository": "tools/datahubsync", "registry": "registry.example.com", "tag": "1.2.3",
      "digest": "sha256:" + "a" * 64}, None, "registry.example.com/tools/datahubsync@sha256:" + "a" * 64),
    ({"repository": "tools/datahubsync", "registry": "registry.example.com"}, "mirror.example.com:5000",
     "mirror.example.com:5000/tools/datahubsync:1.1.0"),
], ids=["default", "registry", "digest", "global-registry"])
def test_image_reference(image: dict[str, str], global_registry: str | None, expected: str) -> None:
    values: dict[str, Any] = {**BASE, "image": image}
    if global_registry is not None:
        values["global"] = {"imageRegistry": global_registry}
    assert {container(pod_template(o))["image"] for o in workloads(render(values=values))} == {expected}


# -- labels and annotations -------------------------------------------------------------------------

def test_common_labels_on_every_object_and_pod() -> None:
    rendered = render_ci("pod-settings-values.yaml")
    common = ci_values("pod-settings-values.yaml")["commonLabels"]
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        assert {k: labels.get(k) for k in common} == common or obj["kind"] == "Pod", obj["metadata"]["name"]
    cron = rendered.one("CronJob")
    assert {k: cron["spec"]["jobTemplate"]["metadata"]["labels"][k] for k in common} == common


def test_pod_labels_win_over_common_labels_on_pods() -> None:
    """One `team` key per pod (the strict loader in chart.py fails on a repeated key), and
    it carries podLabels' value."""
    rendered = render_ci("pod-settings-values.yaml")
    for obj in workloads(rendered):
        labels = pod_template(obj)["metadata"]["labels"]
        assert labels["team"] == "quant-sync"
        assert labels["cost-center"] == "research"
    assert rendered.one("CronJob")["metadata"]["labels"]["team"] == "quant"


def test_annotations_at_each_level() -> None:
    rendered = render_ci("pod-settings-values.yaml")
    values = ci_values("pod-settings-values.yaml")
    common = values["commonAnnotations"]
    for obj in rendered.objects:
        annotations = obj["metadata"].get("annotations", {})
        assert {k: annotations.get(k) for k in common} == common, obj["metadata"]["name"]
    cron = rendered.one("CronJob")
    assert cron["metadata"]["annotations"] == {**common, **values["cronJobAnnotations"]}
    assert cron["spec"]["jobTemplate"]["metadata"]["annotations"] == values["jobAnnotations"]
    job = rendered.one("Job")
    assert job["metadata"]["annotations"] == {**common, **values["jobAnnotations"]}
    for obj in (cron, job):
        pod_annotations = pod_template(obj)["metadata"]["annotations"]
        assert set(pod_annotations) == {"checksum/config", *values["podAnnotations"]}


def test_the_test_pod_carries_common_annotations_and_its_hook() -> None:
    values = {**BASE, "commonAnnotations": {"example.com/owner": "ops"}, "podAnnotations": {"example.com/x": "1"}}
    pod = render(values=values).one("Pod")
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert annotations["example.com/owner"] == "ops" and annotations["example.com/x"] == "1"


# -- pod settings -----------------------------------------------------------------------------------

def test_pod_settings_pass_through() -> None:
    values = ci_values("pod-settings-values.yaml")
    for obj in workloads(render_ci("pod-settings-values.yaml")):
        spec = pod_template(obj)["spec"]
        assert spec["priorityClassName"] == "batch-low"
        assert spec["runtimeClassName"] == "gvisor"
        assert spec["terminationGracePeriodSeconds"] == 120
        assert spec["hostAliases"] == values["hostAliases"]
        assert spec["dnsConfig"] == values["dnsConfig"]
        assert spec["initContainers"] == values["initContainers"]


def test_pod_settings_are_absent_by_default() -> None:
    spec = cronjob_pod(render_ci("minimal-values.yaml"))["spec"]
    for field in ("priorityClassName", "runtimeClassName", "terminationGracePeriodSeconds", "hostAliases",
                  "dnsConfig", "initContainers"):
        assert field not in spec, field


def test_tests_can_be_switched_off() -> None:
    """The test pod outlives `helm uninstall` (a hook resource): tests.enabled=false renders none."""
    assert render_ci("pod-settings-values.yaml").all("Pod") == []
    assert len(render_ci("minimal-values.yaml").all("Pod")) == 1


# -- Chart.yaml -------------------------------------------------------------------------------------

def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.29.0-0"
    assert chart["maintainers"] and all(m.get("name") for m in chart["maintainers"])
    prefix = "data:image/svg+xml;base64,"
    assert chart["icon"].startswith(prefix), "an embedded icon needs no network at lint or display time"
    svg = ET.fromstring(base64.b64decode(chart["icon"][len(prefix):]))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"

