"""The kubelet emulation behind the Pod-in-Docker tests: the docker command it builds from a
rendered pod, and the pods it refuses to fake. No container is started here."""
from __future__ import annotations

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
