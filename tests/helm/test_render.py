"""`helm template` output, parsed and checked field by field for each ci values file."""
from __future__ import annotations

import base64
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.helm.apiserver import FakeAPIServer
from tests.helm.chart import (
    CHART, CI_VALUES, REPO_ROOT, HUB_URL, Rendered, ci_values, container, env_of, helm_with_values, mounts_of,
    pod_template, render, render_ci, run_helm, workloads,
)

pytestmark = pytest.mark.helm

FULLNAME = "sync-datahubsync"
CHART_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
STANDARD_LABELS = {
    "helm.sh/chart": f"datahubsync-{CHART_VERSION}",
    "app.kubernetes.io/name": "datahubsync",
    "app.kubernetes.io/instance": "sync",
    "app.kubernetes.io/version": "1.1.0",
    "app.kubernetes.io/managed-by": "Helm",
}
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                      "capabilities": {"drop": ["ALL"]}}


def cronjob_pod(rendered: Rendered) -> dict:
    return pod_template(rendered.one("CronJob"))


# -- the CronJob ---------------------------------------------------------------------------------

def test_cronjob_defaults() -> None:
    cron = render_ci("minimal-values.yaml").one("CronJob", FULLNAME)
    assert cron["apiVersion"] == "batch/v1"
    spec = cron["spec"]
    assert spec["schedule"] == "15 8 * * *"
    assert spec["timeZone"] == "Asia/Shanghai"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert spec["startingDeadlineSeconds"] == 3600
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 3
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2
    assert job["activeDeadlineSeconds"] == 21600
    assert "ttlSecondsAfterFinished" not in job
    rules = job["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "datahubsync", "operator": "In",
                                                 "values": [2]}} in rules
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules


def test_activeDeadline_shorter_than_a_daily_interval() -> None:
    job = render_ci("minimal-values.yaml").one("CronJob")["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] < 24 * 3600


def test_cronjob_custom_schedule_time_zone_suspend() -> None:
    rendered = render_ci("hostpath-values.yaml")
    spec = rendered.one("CronJob")["spec"]
    assert spec["schedule"] == "30 17 * * 1-5"
    assert spec["timeZone"] == "America/New_York"
    assert spec["suspend"] is True
    assert env_of(cronjob_pod(rendered))["TZ"] == "America/New_York"


def test_cronjob_optional_limits() -> None:
    spec = render_ci("ephemeral-values.yaml").one("CronJob", "datahub-trial")["spec"]
    assert spec["concurrencyPolicy"] == "Replace"
    assert "startingDeadlineSeconds" not in spec
    assert spec["successfulJobsHistoryLimit"] == 1 and spec["failedJobsHistoryLimit"] == 1
    job = spec["jobTemplate"]["spec"]
    assert "activeDeadlineSeconds" not in job
    assert job["ttlSecondsAfterFinished"] == 600
    assert job["backoffLimit"] == 0


# -- the pod -------------------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_pod_basics(values_file) -> None:
    rendered = render_ci(values_file.name)
    for obj in workloads(rendered):
        pod = pod_template(obj)
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never"
        assert spec["automountServiceAccountToken"] is False
        # No Service in the namespace can inject DATAHUB_* (or any) variables.
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"] == POD_SECURITY
        ctr = container(pod)
        assert ctr["securityContext"] == CONTAINER_SECURITY
        assert "command" not in ctr, "the image's ENTRYPOINT (tini + the program) must stay"
        # A sync that finds another one holding the lock has nothing to do: exit 0, not 75.
        expected_args = ["check"] if obj["kind"] == "Pod" else ["sync", "--skip-if-locked"]
        assert ctr["args"] == expected_args
        env = env_of(pod)
        assert env["DATAHUB_CONFIG"] == "/config/config.yaml"
        assert env["DATAHUB_URL"] == ci_values(values_file.name)["hub"]["url"]
        assert "DATAHUB_TOKEN" not in env


def test_image_defaults_to_app_version() -> None:
    ctr = container(cronjob_pod(render_ci("minimal-values.yaml")))
    assert ctr["image"] == "datahubsync:1.1.0"
    assert ctr["imagePullPolicy"] == "IfNotPresent"


def test_image_and_pull_secrets_from_values() -> None:
    pod = cronjob_pod(render_ci("existing-claim-values.yaml"))
    assert container(pod)["image"] == "registry.example.com/tools/datahubsync:1.0.0"
    assert container(pod)["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_resources_and_scheduling_pass_through() -> None:
    pod = cronjob_pod(render_ci("pvc-token-values.yaml"))
    assert container(pod)["resources"] == ci_values("pvc-token-values.yaml")["resources"]
    # Suggested requests by default, no limits; `requests: null` removes them.
    assert container(cronjob_pod(render_ci("minimal-values.yaml")))["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"}}
    assert "resources" not in container(cronjob_pod(render_ci("pod-settings-values.yaml")))
    hostpath = cronjob_pod(render_ci("hostpath-values.yaml"))
    assert hostpath["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "research-1"}
    assert hostpath["spec"]["tolerations"][0]["key"] == "dedicated"
    trial = cronjob_pod(render_ci("ephemeral-values.yaml"))
    assert trial["spec"]["affinity"] == ci_values("ephemeral-values.yaml")["affinity"]


def test_extra_env_is_rendered_as_strings() -> None:
    env = env_of(cronjob_pod(render_ci("hostpath-values.yaml")))
    assert env["DATAHUB__HUB__RETRIES"] == "8"
    assert env["DATAHUB_LOG_FORMAT"] == "json"
    assert env["DATAHUB_PARALLEL"] == "4"  # an integer in values.yaml


def test_data_root_follows_mount_path() -> None:
    assert "DATAHUB_DATA_ROOT" not in env_of(cronjob_pod(render_ci("minimal-values.yaml")))
    assert env_of(cronjob_pod(render_ci("hostpath-values.yaml")))["DATAHUB_DATA_ROOT"] == "/market"
    # A data_root the user chose in the config file is not overridden by the environment.
    chosen = render(values={"hub": {"url": HUB_URL}, "persistence": {"mountPath": "/market"},
                            "config": {"sync": {"data_root": "/market/data"}}})
    assert "DATAHUB_DATA_ROOT" not in env_of(cronjob_pod(chosen))


# -- volumes: config, token, data, /tmp -----------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_config_and_tmp_mounts(values_file) -> None:
    rendered = render_ci(values_file.name)
    for obj in workloads(rendered):
        mounts = mounts_of(pod_template(obj))
        config = mounts["/config"]
        assert config["mount"].get("readOnly") is True
        assert config["volume"]["configMap"]["name"] == rendered.one("ConfigMap")["metadata"]["name"]
        assert mounts["/tmp"]["volume"]["emptyDir"] == {}


def test_config_map_holds_the_config_values() -> None:
    rendered = render_ci("pvc-token-values.yaml")
    data = rendered.one("ConfigMap", FULLNAME)["data"]
    assert list(data) == ["config.yaml"]
    assert yaml.safe_load(data["config.yaml"]) == ci_values("pvc-token-values.yaml")["config"]
    assert yaml.safe_load(render_ci("minimal-values.yaml").one("ConfigMap")["data"]["config.yaml"]) == {}


def test_new_pvc_by_default() -> None:
    rendered = render_ci("minimal-values.yaml")
    pvc = rendered.one("PersistentVolumeClaim", f"{FULLNAME}-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "storageClassName" not in pvc["spec"]
    for obj in workloads(rendered):
        data = mounts_of(pod_template(obj))["/data"]
        assert data["volume"]["persistentVolumeClaim"] == {"claimName": f"{FULLNAME}-data"}
        assert not data["mount"].get("readOnly")


def test_new_pvc_with_storage_class() -> None:
    pvc = render_ci("pvc-token-values.yaml").one("PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOncePod"]
    no_class = render(values={"hub": {"url": HUB_URL}, "persistence": {"storageClass": "-"}})
    assert no_class.one("PersistentVolumeClaim")["spec"]["storageClassName"] == ""


def test_existing_claim_creates_no_pvc() -> None:
    rendered = render_ci("existing-claim-values.yaml")
    assert rendered.all("PersistentVolumeClaim") == []
    volume = mounts_of(cronjob_pod(rendered))["/data"]["volume"]
    assert volume["persistentVolumeClaim"] == {"claimName": "market-data"}


def test_host_path_creates_no_pvc() -> None:
    rendered = render_ci("hostpath-values.yaml")
    assert rendered.all("PersistentVolumeClaim") == []
    for obj in workloads(rendered):
        mounts = mounts_of(pod_template(obj))
        assert "/data" not in mounts
        assert mounts["/market"]["volume"]["hostPath"] == {"path": "/srv/market-data", "type": "Directory"}


def test_no_persistence_uses_an_empty_dir() -> None:
    rendered = render_ci("ephemeral-values.yaml")
    assert rendered.all("PersistentVolumeClaim") == []
    assert mounts_of(cronjob_pod(rendered))["/data"]["volume"]["emptyDir"] == {}


def test_no_token_no_secret() -> None:
    rendered = render_ci("minimal-values.yaml")
    assert rendered.all("Secret") == []
    for obj in workloads(rendered):
        pod = pod_template(obj)
        assert "DATAHUB_TOKEN_FILE" not in env_of(pod)
        assert "/run/secrets/datahub" not in mounts_of(pod)


def test_token_goes_into_a_secret_mounted_as_a_file() -> None:
    rendered = render_ci("pvc-token-values.yaml")
    token = ci_values("pvc-token-values.yaml")["hub"]["token"]
    secret = rendered.one("Secret", FULLNAME)
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    for obj in workloads(rendered):
        pod = pod_template(obj)
        assert env_of(pod)["DATAHUB_TOKEN_FILE"] == "/run/secrets/datahub/token"
        mount = mounts_of(pod)["/run/secrets/datahub"]
        assert mount["mount"]["readOnly"] is True
        assert mount["volume"]["secret"] == {"secretName": FULLNAME, "defaultMode": 0o440,
                                             "items": [{"key": "token", "path": "token"}]}
    # The token appears nowhere but in the Secret: not in the ConfigMap, not in any env value.
    others = [o for o in rendered.objects if o["kind"] != "Secret"]
    assert token not in yaml.safe_dump_all(others)
    assert base64.b64encode(token.encode()).decode() not in yaml.safe_dump_all(others)


def test_token_file_stays_readable_without_fs_group() -> None:
    values = {"hub": {"url": HUB_URL, "token": "t"},
              "podSecurityContext": {"fsGroup": None}}  # null removes a default in Helm
    volume = mounts_of(cronjob_pod(render(values=values)))["/run/secrets/datahub"]["volume"]
    assert volume["secret"]["defaultMode"] == 0o444


def test_existing_secret_is_mounted_not_created() -> None:
    rendered = render_ci("existing-claim-values.yaml")
    assert rendered.all("Secret") == []
    pod = cronjob_pod(rendered)
    assert env_of(pod)["DATAHUB_TOKEN_FILE"] == "/run/secrets/datahub/token"
    assert mounts_of(pod)["/run/secrets/datahub"]["volume"]["secret"]["secretName"] == "datahub-credentials"
    assert mounts_of(pod)["/run/secrets/datahub"]["volume"]["secret"]["items"] == [
        {"key": "api-token", "path": "token"}]


# -- labels, annotations, names ------------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_standard_labels_everywhere(values_file) -> None:
    rendered = render_ci(values_file.name)
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        expected = {**STANDARD_LABELS, "app.kubernetes.io/instance": "sync"}
        assert {k: labels.get(k) for k in expected} == expected, obj["metadata"]["name"]
    for obj in workloads(rendered):
        pod_labels = pod_template(obj)["metadata"]["labels"]
        assert {k: pod_labels.get(k) for k in STANDARD_LABELS} == STANDARD_LABELS
        assert pod_labels["app.kubernetes.io/component"] in ("sync", "initial-sync", "test")


def test_pod_labels_and_annotations_from_values() -> None:
    pod = cronjob_pod(render_ci("hostpath-values.yaml"))
    assert pod["metadata"]["labels"]["team"] == "quant"
    assert pod["metadata"]["annotations"]["example.com/owner"] == "research"


def checksum(rendered: Rendered) -> str:
    return cronjob_pod(rendered)["metadata"]["annotations"]["checksum/config"]


def test_checksum_annotation_follows_the_config() -> None:
    base = {"hub": {"url": HUB_URL}, "config": {"datasets": [{"name": "a"}]}}
    first = checksum(render(values=base))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert checksum(render(values=base)) == first
    assert checksum(render(values={**base, "schedule": "0 1 * * *"})) == first
    assert checksum(render(values={**base, "config": {"datasets": [{"name": "b"}]}})) != first
    # Every pod of one release carries the same checksum.
    rendered = render_ci("hostpath-values.yaml")
    assert {pod_template(o)["metadata"]["annotations"]["checksum/config"] for o in workloads(rendered)} \
        == {checksum(rendered)}


def test_names_and_service_account() -> None:
    rendered = render_ci("minimal-values.yaml")
    account = rendered.one("ServiceAccount", FULLNAME)
    assert account["automountServiceAccountToken"] is False
    assert cronjob_pod(rendered)["spec"]["serviceAccountName"] == FULLNAME
    trial = render_ci("ephemeral-values.yaml")
    assert trial.all("ServiceAccount") == []
    assert cronjob_pod(trial)["spec"]["serviceAccountName"] == "default"
    assert {o["metadata"]["name"] for o in trial.objects} == {"datahub-trial", "datahub-trial-test-check"}


def test_long_release_names_leave_room_for_job_names() -> None:
    # 53 characters: the longest release name helm accepts.
    proc = run_helm("template", "r" * 53, str(CHART), f"--set=hub.url={HUB_URL}")
    assert proc.returncode == 0, proc.stderr
    cron = next(o for o in yaml.safe_load_all(proc.stdout) if o and o["kind"] == "CronJob")
    # The controller appends "-" and an 8-to-10-digit time to name each Job; a label holds 63.
    assert len(cron["metadata"]["name"]) + 11 <= 63


# -- the initial-sync Job and the helm test pod ----------------------------------------------------

def test_initial_sync_job_runs_the_cronjob_pod() -> None:
    rendered = render_ci("hostpath-values.yaml")
    job = rendered.one("Job", f"{FULLNAME}-initial-sync")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {}), "a plain Job, not a hook"
    job_pod, cron_pod = pod_template(job), cronjob_pod(rendered)
    assert job_pod["spec"] == cron_pod["spec"]
    assert job_pod["metadata"]["labels"]["app.kubernetes.io/component"] == "initial-sync"
    assert job["spec"]["backoffLimit"] == rendered.one("CronJob")["spec"]["jobTemplate"]["spec"]["backoffLimit"]


def test_initial_sync_only_when_enabled_and_only_on_install() -> None:
    assert render_ci("minimal-values.yaml").all("Job") == []
    upgrade = render([], ci_values("hostpath-values.yaml"), "--is-upgrade")
    assert upgrade.all("Job") == [], "an upgrade must not touch the Job (its pod template is immutable)"


def test_helm_test_pod_runs_check_like_the_cronjob() -> None:
    rendered = render_ci("pvc-token-values.yaml")
    pod = rendered.one("Pod", f"{FULLNAME}-test-check")
    annotations = pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert container(pod)["args"] == ["check"]
    cron_pod = cronjob_pod(rendered)
    assert env_of(pod) == env_of(cron_pod)
    assert mounts_of(pod) == mounts_of(cron_pod)
    assert pod["spec"]["securityContext"] == cron_pod["spec"]["securityContext"]


# -- NOTES.txt -------------------------------------------------------------------------------------

def notes(values: dict) -> str:
    proc = helm_with_values("install", (), values, "--dry-run=client")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_tell_how_to_run_now_and_read_state() -> None:
    text = notes({"hub": {"url": HUB_URL}, "config": {"datasets": [{"name": "a"}]}})
    assert f"kubectl -n default create job --from=cronjob/{FULLNAME} {FULLNAME}-now-$(date +%s)" in text
    assert "helm test sync" in text
    assert "- status/" in text
    assert "WARNING" not in text


def test_notes_warn_when_no_dataset_is_configured() -> None:
    assert "no datasets are configured" in notes({"hub": {"url": HUB_URL}})
    assert "no datasets are configured" not in notes(
        {"hub": {"url": HUB_URL}, "env": {"DATAHUB_DATASETS": "a,b"}})


def test_notes_say_the_pvc_is_kept_and_how_to_delete_it() -> None:
    text = notes({"hub": {"url": HUB_URL}, "config": {"datasets": [{"name": "a"}]}})
    assert f"`helm uninstall` keeps PVC {FULLNAME}-data" in text
    assert f"kubectl -n default delete pvc {FULLNAME}-data" in text
    deleting = notes({"hub": {"url": HUB_URL}, "persistence": {"resourcePolicy": ""}})
    assert f"`helm uninstall` DELETES PVC {FULLNAME}-data" in deleting
    existing = notes({"hub": {"url": HUB_URL}, "persistence": {"existingClaim": "mine"}})
    assert "helm uninstall` keeps" not in existing and "DELETES" not in existing


def test_notes_warn_that_host_path_needs_a_privileged_namespace() -> None:
    """Without a cluster (lookup returns nothing) the notes name the PodSecurity levels that
    refuse hostPath and how to check the namespace."""
    text = notes({"hub": {"url": HUB_URL}, "persistence": {"hostPath": "/srv/market-data"}})
    assert 'persistence.hostPath needs PodSecurity "privileged"' in text
    assert '"baseline" or "restricted"' in text and "kubectl get namespace default --show-labels" in text
    assert "PodSecurity" not in notes({"hub": {"url": HUB_URL}})


def test_notes_when_tests_are_off() -> None:
    text = notes({"hub": {"url": HUB_URL}, "tests": {"enabled": False}})
    assert "helm test" not in text and "tests.enabled is false" in text
    assert f"delete pod {FULLNAME}-test-check" in notes({"hub": {"url": HUB_URL}})


def test_notes_status_command_runs_status(tmp_path) -> None:
    """The notes turn the CronJob's Job into a one-off `status` run with sed; the sed (run
    for real here, on the Job as `kubectl create job --from -o yaml` prints it) must leave
    exactly `status`, since `status --skip-if-locked` would be a usage error."""
    values = {"hub": {"url": HUB_URL}, "config": {"datasets": [{"name": "a"}]}}
    text = notes(values)
    line = next(x for x in text.splitlines() if "| sed " in x)
    sed_args = shlex.split(line.split("| sed ", 1)[1].rstrip("\\ "))
    cron = render(values=values).one("CronJob")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": cron["spec"]["jobTemplate"]["spec"]}
    printed = yaml.safe_dump(job, default_flow_style=False)  # kubectl prints lists unindented, like this
    proc = subprocess.run(["sed", *sed_args], input=printed, capture_output=True, text=True, check=True)
    assert container(pod_template(yaml.safe_load(proc.stdout)))["args"] == ["status"]
    status_help = subprocess.run([sys.executable, str(REPO_ROOT / "entrypoint.py"), "status", "--help"],
                                 capture_output=True, text=True, timeout=60)
    assert status_help.returncode == 0 and "--skip-if-locked" not in status_help.stdout


@pytest.mark.parametrize("labels, refused", [
    ({"pod-security.kubernetes.io/enforce": "restricted"}, True),
    ({"pod-security.kubernetes.io/enforce": "baseline", "team": "quant"}, True),
    ({"pod-security.kubernetes.io/enforce": "privileged"}, False),
    ({"pod-security.kubernetes.io/warn": "restricted"}, False),
], ids=["restricted", "baseline", "privileged", "warn-only"])
def test_notes_read_the_namespace_pod_security_level(labels: dict, refused: bool, tmp_path) -> None:
    """On a real install the notes look the namespace up (here on a stand-in API server) and
    warn outright when its PodSecurity level refuses hostPath volumes: the release would show
    `deployed` while every pod is refused."""
    with FakeAPIServer({"research": labels}, tmp_path) as api:
        proc = api.helm("install", "sync", str(CHART), "--namespace=research", "--dry-run=server",
                        "--disable-openapi-validation", f"--set=hub.url={HUB_URL}",
                        "--set=persistence.hostPath=/srv/market-data")
    assert proc.returncode == 0, proc.stderr
    assert "GET /api/v1/namespaces/research" in api.requests
    text = proc.stdout.split("NOTES:", 1)[1]
    level = labels.get("pod-security.kubernetes.io/enforce")
    assert (f'WARNING: namespace research enforces PodSecurity "{level}"' in text) is refused, text
    assert ('persistence.hostPath needs PodSecurity "privileged"' in text) is not refused, text
