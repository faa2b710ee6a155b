"""Values the chart must refuse, each with a message that names what to fix.

The schema (values.schema.json) catches typos and wrong types at lint, template and
install time; the templates refuse combinations the schema cannot express.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helm.chart import CHART, HUB_URL, template

pytestmark = pytest.mark.helm


def with_url(**values: Any) -> dict[str, Any]:
    return {"hub": {"url": HUB_URL}, **values}


def rejected(values: dict[str, Any]) -> str:
    proc = template((), values)
    assert proc.returncode != 0, f"accepted: {json.dumps(values)}"
    return proc.stderr


def test_schema_is_draft_07_and_closed_at_the_top() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False


def test_the_control_values_are_accepted() -> None:
    """The cases below differ from these values by one key each."""
    proc = template((), with_url(config={"datasets": [{"name": "a"}]}))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("values, named", [
    (with_url(schedul="0 1 * * *"), "schedul"),
    (with_url(initialsync={"enabled": True}), "initialsync"),
    (with_url(persistance={"enabled": False}), "persistance"),
    ({"hub": {"url": HUB_URL, "tokn": "x"}}, "tokn"),
    (with_url(persistence={"existingclaim": "x"}), "existingclaim"),
    (with_url(image={"repository": "x", "tags": "1"}), "tags"),
    (with_url(serviceAccount={"create": True, "nam": "x"}), "nam"),
    (with_url(initialSync={"enable": True}), "enable"),
    (with_url(tests={"enable": False}), "enable"),
    ({"hub": {"url": HUB_URL, "headersSecret": {"name": "s", "key": ["X-A"]}}}, "key"),
    (with_url(extraEnv=[{"name": "A", "value": "1", "valueForm": {}}]), "valueForm"),
    (with_url(dnsConfig={"nameserver": ["10.0.0.1"]}), "nameserver"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unknown_keys_are_rejected(values: dict, named: str) -> None:
    assert f"'{named}'" in rejected(values)


@pytest.mark.parametrize("values, path", [
    ({"hub": {"url": 5}}, "/hub/url"),
    (with_url(schedule=5), "/schedule"),
    (with_url(suspend="yes"), "/suspend"),
    (with_url(backoffLimit="2"), "/backoffLimit"),
    (with_url(backoffLimit=-1), "/backoffLimit"),
    (with_url(activeDeadlineSeconds=0), "/activeDeadlineSeconds"),
    (with_url(ttlSecondsAfterFinished="1h"), "/ttlSecondsAfterFinished"),
    (with_url(timeZone=8), "/timeZone"),
    (with_url(persistence={"enabled": "true"}), "/persistence/enabled"),
    (with_url(persistence={"size": "lots"}), "/persistence/size"),
    (with_url(persistence={"mountPath": "data"}), "/persistence/mountPath"),
    (with_url(persistence={"accessModes": ["ReadWriteSometimes"]}), "/persistence/accessModes/0"),
    (with_url(env={"DATAHUB_DATASETS": ["a", "b"]}), "/env/DATAHUB_DATASETS"),
    (with_url(env=["A=1"]), "/env"),
    (with_url(env={"1BAD NAME": "x"}), "1BAD NAME"),
    (with_url(resources="big"), "/resources"),
    (with_url(resources={"limit": {"memory": "1Gi"}}), "/resources"),
    (with_url(podLabels={"team": 1}), "/podLabels/team"),
    (with_url(tolerations={"key": "x"}), "/tolerations"),
    (with_url(imagePullSecrets=["regcred"]), "/imagePullSecrets/0"),
    (with_url(config=[]), "/config"),
    (with_url(config={"datasets": [{"local_dir": "/data/x"}]}), "/config/datasets/0"),
    (with_url(extraEnv={"A": "1"}), "/extraEnv"),
    (with_url(extraEnv=[{"name": "A"}]), "/extraEnv/0"),
    (with_url(extraEnv=[{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {}}}]), "/extraEnv/0"),
    (with_url(envFrom=[{"prefix": "X_"}]), "/envFrom/0"),
    (with_url(extraVolumes=[{"name": "ca"}]), "/extraVolumes/0"),
    (with_url(extraVolumeMounts=[{"name": "ca", "mountPath": "etc/ca"}]), "/extraVolumeMounts/0/mountPath"),
    (with_url(hostAliases=[{"ip": "10.0.0.5"}]), "/hostAliases/0"),
    (with_url(terminationGracePeriodSeconds=-1), "/terminationGracePeriodSeconds"),
    (with_url(initContainers=[{"name": "x"}]), "/initContainers/0"),
    (with_url(tests={"enabled": "no"}), "/tests/enabled"),
    (with_url(commonLabels={"team": "a b"}), "/commonLabels/team"),
    (with_url(podLabels={"team": "x" * 64}), "/podLabels/team"),
    (with_url(commonAnnotations={"a": 1}), "/commonAnnotations/a"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_types_are_rejected(values: dict, path: str) -> None:
    assert f"'{path}'" in rejected(values)


@pytest.mark.parametrize("values, path", [
    ({"hub": {"url": "hub.example.com"}}, "/hub/url"),
    ({"hub": {"url": "ftp://hub.example.com"}}, "/hub/url"),
    ({"hub": {"url": "https://"}}, "/hub/url"),
    (with_url(concurrencyPolicy="Sometimes"), "/concurrencyPolicy"),
    (with_url(image={"repository": "x", "pullPolicy": "Maybe"}), "/image/pullPolicy"),
    (with_url(schedule="daily"), "/schedule"),
    (with_url(image={"repository": "x", "digest": "latest"}), "/image/digest"),
    (with_url(image={"repository": "x", "registry": "registry.example.com/"}), "/image/registry"),
    (with_url(persistence={"resourcePolicy": "delete"}), "/persistence/resourcePolicy"),
    (with_url(persistence={"subPath": "../other"}), "/persistence/subPath"),
    (with_url(persistence={"subPath": "/srv/data"}), "/persistence/subPath"),
    ({"hub": {"url": HUB_URL, "headersSecret": {"name": "s", "keys": ["client.id"]}}}, "/hub/headersSecret/keys/0"),
    ({"hub": {"url": HUB_URL, "headersSecret": {"name": "s", "headers": {"k": "X_Tenant"}}}},
     "/hub/headersSecret/headers/k"),
    ({"hub": {"url": HUB_URL, "headersSecret": {"name": "Bad_Name", "keys": ["X-A"]}}}, "/hub/headersSecret/name"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_values_are_rejected(values: dict, path: str) -> None:
    assert f"'{path}'" in rejected(values)


def test_bad_label_keys_are_rejected() -> None:
    assert "'bad key' does not match pattern" in rejected(with_url(commonLabels={"bad key": "x"}))


def test_global_accepts_whatever_a_parent_chart_passes() -> None:
    """Helm gives every subchart the parent's `global`: a closed schema without it made the
    chart impossible to use as a dependency."""
    proc = template((), with_url(**{"global": {"imageRegistry": "", "storageClass": "fast", "anything": {"a": 1}}}))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("key", ["url", "token", "token_file"])
def test_hub_credentials_inside_config_are_rejected(key: str) -> None:
    """hub.url and the token come from the chart's `hub` values, never from the config file."""
    assert f"'/config/hub/{key}'" in rejected(with_url(config={"hub": {key: "https://other.example.com"}}))


def test_other_hub_settings_inside_config_are_accepted() -> None:
    proc = template((), with_url(config={"hub": {"timeout": 60, "retries": 8}}))
    assert proc.returncode == 0, proc.stderr


def test_unknown_config_section_is_rejected() -> None:
    assert "'dataset'" in rejected(with_url(config={"dataset": [{"name": "a"}]}))


@pytest.mark.parametrize("values, message", [
    ({"hub": {"url": HUB_URL, "token": "t", "existingSecret": "s"}},
     "hub.token and hub.existingSecret are both set"),
    (with_url(persistence={"existingClaim": "c", "hostPath": "/srv/data"}),
     "persistence.existingClaim and persistence.hostPath are both set"),
    (with_url(persistence={"enabled": False, "hostPath": "/srv/data"}),
     "persistence.hostPath is set but persistence.enabled is false"),
    (with_url(env={"DATAHUB_URL": "https://other.example.com"}), "env.DATAHUB_URL is set by the chart: use hub.url"),
    (with_url(env={"DATAHUB_TOKEN": "secret"}), "env.DATAHUB_TOKEN is set by the chart: use hub.token"),
    (with_url(env={"DATAHUB__HUB__TOKEN": "secret"}), "env.DATAHUB__HUB__TOKEN is set by the chart"),
    (with_url(env={"TZ": "UTC"}), "env.TZ is set by the chart: use timeZone"),
    (with_url(env={"DATAHUB_CONFIG": "/etc/x.yaml"}), "env.DATAHUB_CONFIG is set by the chart"),
    (with_url(env={"DATAHUB__HUB__TOKEN_FILE": "/x"}), "env.DATAHUB__HUB__TOKEN_FILE is set by the chart"),
    # hub.headersSecret: what it owns, and lists that contradict themselves
    (with_url(hub={"url": HUB_URL, "headersSecret": {"name": "cf"}}),
     "hub.headersSecret.name is cf but no key is listed"),
    (with_url(hub={"url": HUB_URL, "headersSecret": {"keys": ["X-A"]}}),
     "hub.headersSecret lists keys but no Secret"),
    (with_url(hub={"url": HUB_URL, "headersSecret": {"name": "cf", "keys": ["X-A"], "headers": {"xa": "x-a"}}}),
     "hub.headersSecret: keys X-A and xa both send the header x-a"),
    (with_url(hub={"url": HUB_URL, "headersSecret": {"name": "cf", "keys": ["X_A", "X-A"]}}),
     "both send the header"),
    (with_url(hub={"url": HUB_URL, "headersSecret": {"name": "cf", "keys": ["X-A"], "headers": {"X-A": "X-B"}}}),
     "hub.headersSecret: key X-A is in both keys and headers"),
    (with_url(hub={"url": HUB_URL, "token": "t", "headersSecret": {"name": "cf", "keys": ["Authorization"]}}),
     "hub.headersSecret: key Authorization sends Authorization, which the hub token"),
    (with_url(hub={"url": HUB_URL, "headersSecret": {"name": "cf", "keys": ["CF-Access-Client-Id"]}},
              env={"DATAHUB_HEADER_CF_ACCESS_CLIENT_ID": "x"}),
     "env.DATAHUB_HEADER_CF_ACCESS_CLIENT_ID is set by the chart: use hub.headersSecret (key CF-Access-Client-Id)"),
    (with_url(hub={"url": HUB_URL, "headersSecret": {"name": "cf", "keys": ["CF-Access-Client-Id"]}},
              extraEnv=[{"name": "DATAHUB_HEADER_CF_ACCESS_CLIENT_ID_FILE", "value": "/x"}]),
     "extraEnv[0] (DATAHUB_HEADER_CF_ACCESS_CLIENT_ID_FILE) is set by the chart"),
    # extraEnv
    (with_url(extraEnv=[{"name": "TZ", "value": "UTC"}]), "extraEnv[0] (TZ) is set by the chart: use timeZone"),
    (with_url(env={"A": "1"}, extraEnv=[{"name": "A", "value": "2"}]), "extraEnv[0] (A) is also in env"),
    (with_url(extraEnv=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
     "extraEnv[1] (A) repeats extraEnv[0]"),
    # extraVolumes and extraVolumeMounts
    (with_url(extraVolumes=[{"name": "data", "emptyDir": {}}]),
     "extraVolumes[0]: the name data is the chart's own volume (persistence)"),
    (with_url(extraVolumes=[{"name": "ca", "emptyDir": {}}, {"name": "ca", "emptyDir": {}}]),
     "extraVolumes[1]: the name ca is used twice"),
    (with_url(extraVolumeMounts=[{"name": "ca", "mountPath": "/etc/ca"}]),
     "extraVolumeMounts[0]: no volume named ca"),
    (with_url(extraVolumes=[{"name": "ca", "emptyDir": {}}], extraVolumeMounts=[{"name": "ca", "mountPath": "/tmp/"}]),
     "extraVolumeMounts[0]: /tmp/ is already mounted by the chart"),
    (with_url(extraVolumes=[{"name": "ca", "emptyDir": {}}], persistence={"mountPath": "/market"},
              extraVolumeMounts=[{"name": "ca", "mountPath": "/market"}]),
     "extraVolumeMounts[0]: /market is already mounted by the chart (persistence.mountPath)"),
    # labels and annotations the chart sets itself
    (with_url(commonLabels={"app.kubernetes.io/name": "x"}), "commonLabels.app.kubernetes.io/name is set by the chart"),
    (with_url(podLabels={"app.kubernetes.io/instance": "x"}), "podLabels.app.kubernetes.io/instance is set by the chart"),
    (with_url(podLabels={"app.kubernetes.io/component": "x"}), "podLabels.app.kubernetes.io/component is set by the chart"),
    (with_url(commonLabels={"helm.sh/chart": "x"}), "commonLabels.helm.sh/chart is set by the chart"),
    (with_url(podAnnotations={"checksum/config": "x"}), "podAnnotations.checksum/config is set by the chart"),
    (with_url(commonAnnotations={"helm.sh/resource-policy": "keep"}),
     "commonAnnotations.helm.sh/resource-policy: helm.sh/ annotations"),
    (with_url(podAnnotations={"helm.sh/hook": "test"}), "podAnnotations.helm.sh/hook: helm.sh/ annotations"),
    (with_url(jobAnnotations={"helm.sh/hook-weight": "1"}), "jobAnnotations.helm.sh/hook-weight"),
], ids=lambda v: v.split(":")[0] if isinstance(v, str) else None)
def test_conflicting_values_are_rejected_by_the_templates(values: dict, message: str) -> None:
    assert message in rejected(values)
