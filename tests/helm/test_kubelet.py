"""The kubelet emulation behind the Pod-in-Docker tests: the docker command it builds from a
rendered pod, and the pods it refuses to fake. No container is started here."""
from __future__ import annotations

import base64
import copy
import os
import stat
from pathlib import Path

import pytest

from tests.helm.chart import HUB_URL, pod_template, render
from tests.helm.kubelet import Kubelet, Unsupported, expand

pytestmark = pytest.mark.helm


def option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == option]


@pytest.fixture
def hostpath_render(tmp_path: Path):
    node = tmp_path / "node"
    node.mkdir()
    return render(values={"hub": {"url": HUB_URL, "token": "s3cret"},
                          "image": {"repository": "datahubsync", "tag": "test"},
                          "persistence": {"hostPath": str(node)}})


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B_2": "two"}
    assert expand("$(A)/$(B_2)", env) == "1/two"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(MISSING) $A", env) == "$(MISSING) $A"


def test_docker_command_mirrors_the_pod(hostpath_render, tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path / "kubelet", hostpath_render.all("ConfigMap") + hostpath_render.all("Secret"))
    pod = pod_template(hostpath_render.one("CronJob"))
    command = kubelet.docker_command(pod, "name")
    assert command[-3:] == ["datahubsync:test", "sync", "--skip-if-locked"]
    assert option_values(command, "--user") == ["1000:1000"]
    assert option_values(command, "--group-add") == ["1000"]
    assert option_values(command, "--network") == ["host"]
    assert option_values(command, "--hostname") == ["sync-datahubsync"], "the pod's hostname, not docker's"
    assert {"--read-only", "--cap-drop=ALL"} <= set(command)
    assert option_values(command, "--security-opt") == ["no-new-privileges=true"]
    assert "--entrypoint" not in command, "args only: the image's ENTRYPOINT stays"
    assert "DATAHUB_TOKEN_FILE=/run/secrets/datahub/token" in option_values(command, "--env")
    assert option_values(command, "--tmpfs") == ["/tmp:rw,exec,mode=0777"]

    mounts = {dict(kv.split("=", 1) for kv in m.split(",") if "=" in kv)["dst"]: m
              for m in option_values(command, "--mount")}
    assert set(mounts) == {"/config", "/run/secrets/datahub", "/data"}
    assert mounts["/config"].endswith(",readonly") and mounts["/run/secrets/datahub"].endswith(",readonly")
    assert not mounts["/data"].endswith(",readonly")
    src = {dst: Path(m.split("src=", 1)[1].split(",", 1)[0]) for dst, m in mounts.items()}
    assert (src["/config"] / "config.yaml").read_text() == hostpath_render.one("ConfigMap")["data"]["config.yaml"]
    token = src["/run/secrets/datahub"] / "token"
    assert token.read_text() == "s3cret"
    info = token.stat()
    assert stat.S_IMODE(info.st_mode) == 0o440 and info.st_gid == 1000 and info.st_uid == 0
    assert os.listdir(src["/run/secrets/datahub"]) == ["token"]


def test_refuses_a_pvc(tmp_path: Path) -> None:
    rendered = render(values={"hub": {"url": HUB_URL}})
    with pytest.raises(Unsupported, match="PersistentVolumeClaim"):
        Kubelet(tmp_path, rendered.all("ConfigMap")).docker_command(pod_template(rendered.one("CronJob")), "n")


def test_refuses_a_missing_host_path_directory(tmp_path: Path) -> None:
    rendered = render(values={"hub": {"url": HUB_URL}, "persistence": {"hostPath": str(tmp_path / "absent")}})
    with pytest.raises(Unsupported, match="type Directory"):
        Kubelet(tmp_path, rendered.all("ConfigMap")).docker_command(pod_template(rendered.one("CronJob")), "n")


def test_refuses_a_missing_secret(hostpath_render, tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path, hostpath_render.all("ConfigMap"))
    with pytest.raises(Unsupported, match="Secret sync-datahubsync does not exist"):
        kubelet.docker_command(pod_template(hostpath_render.one("CronJob")), "n")


def test_refuses_root_under_run_as_non_root(hostpath_render, tmp_path: Path) -> None:
    pod = copy.deepcopy(pod_template(hostpath_render.one("CronJob")))
    pod["spec"]["securityContext"]["runAsUser"] = 0
    kubelet = Kubelet(tmp_path, hostpath_render.all("ConfigMap") + hostpath_render.all("Secret"))
    with pytest.raises(Unsupported, match="runAsNonRoot"):
        kubelet.docker_command(pod, "n")


def test_refuses_fields_it_does_not_emulate(hostpath_render, tmp_path: Path) -> None:
    pod = copy.deepcopy(pod_template(hostpath_render.one("CronJob")))
    pod["spec"]["initContainers"] = [{"name": "x", "image": "x"}]
    kubelet = Kubelet(tmp_path, hostpath_render.all("ConfigMap") + hostpath_render.all("Secret"))
    with pytest.raises(Unsupported, match="initContainers"):
        kubelet.docker_command(pod, "n")


def secret(name: str, **data: str) -> dict:
    return {"kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def config_map(name: str, **data: str) -> dict:
    return {"kind": "ConfigMap", "metadata": {"name": name}, "data": data}


@pytest.fixture
def secrets_render(tmp_path: Path):
    node = tmp_path / "node"
    node.mkdir()
    return render(values={
        "hub": {"url": HUB_URL, "headersSecret": {"name": "cf", "keys": ["CF-Access-Client-Id"],
                                                   "headers": {"client.secret": "CF-Access-Client-Secret"}}},
        "image": {"repository": "datahubsync", "tag": "test"},
        "persistence": {"hostPath": str(node), "subPath": "market/data"},
        "extraEnv": [{"name": "DATAHUB_HEADER_X_TENANT", "valueFrom": {"secretKeyRef": {"name": "t", "key": "tenant"}}},
                     {"name": "DATAHUB_HEADER_X_OPTIONAL",
                      "valueFrom": {"configMapKeyRef": {"name": "tuning", "key": "absent", "optional": True}}}],
        "envFrom": [{"configMapRef": {"name": "tuning"}, "prefix": "DATAHUB__HUB__"}],
        "terminationGracePeriodSeconds": 45,
    })


def test_env_from_secrets_and_config_maps(secrets_render, tmp_path: Path) -> None:
    objects = [*secrets_render.all("ConfigMap"), secret("cf", **{"CF-Access-Client-Id": "id", "client.secret": "s"}),
               secret("t", tenant="research"), config_map("tuning", RETRIES="8", **{"BAD NAME": "x"})]
    command = Kubelet(tmp_path / "kubelet", objects).docker_command(pod_template(secrets_render.one("CronJob")), "n")
    env = dict(e.split("=", 1) for e in option_values(command, "--env"))
    assert env["DATAHUB_HEADER_X_TENANT"] == "research"
    assert env["DATAHUB__HUB__RETRIES"] == "8", "envFrom with its prefix"
    assert "DATAHUB_HEADER_X_OPTIONAL" not in env, "an optional missing key sets nothing"
    assert not any(" " in name for name in env), "an invalid envFrom name is skipped"
    assert option_values(command, "--stop-timeout") == ["45"]
    mounts = {dict(kv.split("=", 1) for kv in m.split(",") if "=" in kv)["dst"]: m
              for m in option_values(command, "--mount")}
    headers = Path(mounts["/run/secrets/datahub-headers"].split("src=", 1)[1].split(",", 1)[0])
    assert sorted(os.listdir(headers)) == ["CF-Access-Client-Id", "CF-Access-Client-Secret"]
    assert (headers / "CF-Access-Client-Secret").read_text() == "s"


def test_sub_path_is_created_the_kubelet_way(secrets_render, tmp_path: Path) -> None:
    """A missing subPath is made with the volume root's mode, owned by the kubelet (root)."""
    node = tmp_path / "node"
    node.chmod(0o751)
    objects = [*secrets_render.all("ConfigMap"), secret("cf", **{"CF-Access-Client-Id": "i", "client.secret": "s"}),
               secret("t", tenant="r"), config_map("tuning")]
    command = Kubelet(tmp_path / "kubelet", objects).docker_command(pod_template(secrets_render.one("CronJob")), "n")
    assert f"type=bind,src={node / 'market' / 'data'},dst=/data" in option_values(command, "--mount")
    for folder in (node / "market", node / "market" / "data"):
        info = folder.stat()
        assert stat.S_IMODE(info.st_mode) == 0o751 and info.st_uid == os.getuid()


def test_refuses_a_missing_secret_key(secrets_render, tmp_path: Path) -> None:
    objects = [*secrets_render.all("ConfigMap"), secret("cf", **{"CF-Access-Client-Id": "i", "client.secret": "s"}),
               secret("t", other="x"), config_map("tuning")]
    with pytest.raises(Unsupported, match="Secret t has no key 'tenant'"):
        Kubelet(tmp_path, objects).docker_command(pod_template(secrets_render.one("CronJob")), "n")


def test_refuses_service_links(hostpath_render, tmp_path: Path) -> None:
    pod = copy.deepcopy(pod_template(hostpath_render.one("CronJob")))
    del pod["spec"]["enableServiceLinks"]  # Kubernetes' default is on
    kubelet = Kubelet(tmp_path, hostpath_render.all("ConfigMap") + hostpath_render.all("Secret"))
    with pytest.raises(Unsupported, match="enableServiceLinks"):
        kubelet.docker_command(pod, "n")
