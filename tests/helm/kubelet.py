"""Runs a rendered pod's container with `docker run`, set up the way a kubelet would start it.

No cluster can run here, so this is the closest real thing: the same image, command and
args, environment (with `$(VAR)` expansion, `valueFrom` and `envFrom` read from the
namespace's ConfigMaps and Secrets), user and groups from the security contexts, read-only
root, dropped capabilities, the grace period, the hostname, and every volume the pod declares — ConfigMap
and Secret contents written to files with the kubelet's modes and group, hostPath
bind-mounted after the kubelet's type check (and `subPath` created the kubelet's way),
emptyDir as a fresh tmpfs. Anything the emulation does not cover (a PVC, init containers,
a runtime class, ...) raises instead of being silently skipped.
"""
from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from tests.dockerutil import LABEL, PROJECT_PREFIX

# Security-context fields the emulation understands; any other set field is an error,
# so a new chart setting cannot pass the test unexercised.
_POD_SC = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "supplementalGroups",
           "seccompProfile", "fsGroupChangePolicy"}
_CONTAINER_SC = {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
                 "allowPrivilegeEscalation", "capabilities", "seccompProfile", "privileged"}
# Pod and container fields that change nothing about how the process runs on one node,
# or that docker_command handles itself.
_IGNORED_POD = {"restartPolicy", "serviceAccountName", "automountServiceAccountToken",
                "imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName",
                "securityContext", "containers", "volumes", "enableServiceLinks",
                "terminationGracePeriodSeconds", "hostname"}
_IGNORED_CONTAINER = {"name", "image", "imagePullPolicy", "resources", "env", "envFrom", "args",
                      "command", "securityContext", "volumeMounts", "workingDir"}
# What a valid environment variable name from envFrom looks like (others are skipped, as
# the kubelet skips them with an event).
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class Unsupported(AssertionError):
    """The pod uses something this emulation cannot reproduce faithfully."""


@dataclass
class PodRun:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str

    def output(self) -> str:
        return f"$ {' '.join(self.command)}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` is a literal `$`,
    anything else stays as written."""
    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


class Kubelet:
    """One node: `objects` are the ConfigMaps and Secrets in the pod's namespace;
    `workdir` holds the files of projected volumes."""

    def __init__(self, workdir: Path, objects: Iterable[Mapping[str, Any]]) -> None:
        self.workdir = Path(workdir)
        self.objects = list(objects)

    # -- the docker command ---------------------------------------------------------------------
    def docker_command(self, pod: Mapping[str, Any], name: str) -> list[str]:
        spec = pod["spec"]
        unknown = set(spec) - _IGNORED_POD
        if unknown:
            raise Unsupported(f"pod fields not emulated: {sorted(unknown)}")
        if len(spec["containers"]) != 1:
            raise Unsupported("only single-container pods are emulated")
        ctr = spec["containers"][0]
        unknown = set(ctr) - _IGNORED_CONTAINER
        if unknown:
            raise Unsupported(f"container fields not emulated: {sorted(unknown)}")

        if spec.get("enableServiceLinks", True):
            # A node injects every Service of the namespace as *_SERVICE_HOST/_PORT variables.
            raise Unsupported("enableServiceLinks (on by default): Service variables not emulated")
        cmd = ["docker", "run", "--rm", "--name", name, "--label", f"{LABEL}=helm-pod",
               "--pull", "never", "--network", "host"]
        # The pod's hostname (the pod name when unset; docker's is the container id, as random).
        if spec.get("hostname"):
            cmd += ["--hostname", spec["hostname"]]
        if spec.get("terminationGracePeriodSeconds") is not None:
            cmd += ["--stop-timeout", str(spec["terminationGracePeriodSeconds"])]
        cmd += self._security_options(spec.get("securityContext") or {},
                                      ctr.get("securityContext") or {}, ctr["image"])
        env = self._env_from(ctr.get("envFrom") or [])
        env.update(self._env(ctr.get("env") or [], env))
        for key, value in env.items():
            cmd += ["--env", f"{key}={value}"]
        if ctr.get("workingDir"):
            cmd += ["--workdir", ctr["workingDir"]]
        cmd += self._volume_options(spec, ctr)
        command = [expand(c, env) for c in ctr.get("command") or []]
        args = [expand(a, env) for a in ctr.get("args") or []]
        if command:
            # `command` replaces the image's ENTRYPOINT; docker takes its first word only.
            cmd += ["--entrypoint", command[0]]
        cmd.append(ctr["image"])
        return cmd + command[1:] + args

    def _security_options(self, pod_sc: Mapping[str, Any], ctr_sc: Mapping[str, Any],
                          image: str) -> list[str]:
        for sc, known, where in ((pod_sc, _POD_SC, "pod"), (ctr_sc, _CONTAINER_SC, "container")):
            unknown = set(sc) - known
            if unknown:
                raise Unsupported(f"{where} securityContext fields not emulated: {sorted(unknown)}")
        merged = {**pod_sc, **ctr_sc}  # the container's settings win, as in Kubernetes
        opts: list[str] = []
        uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
        if merged.get("runAsNonRoot"):
            # The kubelet refuses to start a container that would run as root.
            effective = uid if uid is not None else _image_user(image)
            if not str(effective).isdigit() or int(effective) == 0:
                raise Unsupported(f"runAsNonRoot: the container would run as {effective!r} "
                                  "(the kubelet needs a numeric non-zero user)")
        if uid is not None:
            opts += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
        for group in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]:
            if group is not None:
                opts += ["--group-add", str(group)]
        if merged.get("readOnlyRootFilesystem"):
            opts.append("--read-only")
        if merged.get("allowPrivilegeEscalation") is False:
            opts += ["--security-opt", "no-new-privileges=true"]
        if merged.get("privileged"):
            opts.append("--privileged")
        caps = merged.get("capabilities") or {}
        opts += [f"--cap-drop={c}" for c in caps.get("drop") or []]
        opts += [f"--cap-add={c}" for c in caps.get("add") or []]
        seccomp = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            opts += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":  # RuntimeDefault is docker's own default profile
            raise Unsupported(f"seccompProfile {seccomp} not emulated")
        return opts

    def _env(self, items: list[Mapping[str, Any]], earlier: Mapping[str, str]) -> dict[str, str]:
        """`env` entries; they win over envFrom, and may refer to earlier variables."""
        env: dict[str, str] = {}
        for item in items:
            if "valueFrom" in item:
                value = self._value_from(item["name"], item["valueFrom"])
                if value is None:
                    continue  # an optional reference to a missing key: the variable is not set
                env[item["name"]] = value
            else:
                env[item["name"]] = expand(str(item.get("value", "")), {**earlier, **env})
        return env

    def _value_from(self, name: str, source: Mapping[str, Any]) -> str | None:
        refs = {"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"}
        if len(source) != 1 or next(iter(source)) not in refs:
            raise Unsupported(f"env {name}: valueFrom {sorted(source)} not emulated")
        field, ref = next(iter(source.items()))
        obj = self._find(refs[field], ref["name"])
        contents = _contents(obj) if obj is not None else {}
        if ref["key"] not in contents:
            if ref.get("optional"):
                return None
            raise Unsupported(f"env {name}: {refs[field]} {ref['name']} has no key {ref['key']!r} "
                              "(the pod would not start)")
        return contents[ref["key"]].decode()

    def _env_from(self, sources: list[Mapping[str, Any]]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in sources:
            kinds = {"secretRef": "Secret", "configMapRef": "ConfigMap"}
            field = next((f for f in kinds if f in source), None)
            if field is None or set(source) - {field, "prefix"}:
                raise Unsupported(f"envFrom {sorted(source)} not emulated")
            ref = source[field]
            obj = self._find(kinds[field], ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise Unsupported(f"envFrom: {kinds[field]} {ref['name']} does not exist (the pod would not start)")
            for key, value in _contents(obj).items():
                var = source.get("prefix", "") + key
                if _ENV_NAME.fullmatch(var):
                    env[var] = value.decode()
        return env

    # -- volumes ---------------------------------------------------------------------------------
    def _volume_options(self, spec: Mapping[str, Any], ctr: Mapping[str, Any]) -> list[str]:
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        opts: list[str] = []
        for mount in ctr.get("volumeMounts") or []:
            if set(mount) - {"name", "mountPath", "readOnly", "subPath"}:
                raise Unsupported(f"volumeMount fields not emulated: {sorted(mount)}")
            volume = volumes[mount["name"]]
            dst, read_only = mount["mountPath"], bool(mount.get("readOnly"))
            if mount.get("subPath") and "hostPath" not in volume:
                raise Unsupported(f"volumeMount {mount['name']}: subPath is emulated on a hostPath only")
            if "configMap" in volume:
                src = self._project(volume["name"], volume["configMap"], "ConfigMap", fs_group)
                opts += ["--mount", f"type=bind,src={src},dst={dst},readonly"]
            elif "secret" in volume:
                src = self._project(volume["name"], volume["secret"], "Secret", fs_group)
                opts += ["--mount", f"type=bind,src={src},dst={dst},readonly"]
            elif "hostPath" in volume:
                src = _host_path(volume["hostPath"])
                if mount.get("subPath"):
                    src = _sub_path(Path(src), mount["subPath"])
                opts += ["--mount", f"type=bind,src={src},dst={dst}" + (",readonly" if read_only else "")]
            elif "emptyDir" in volume:
                size = (volume["emptyDir"] or {}).get("sizeLimit")
                # An emptyDir is a fresh world-writable directory, as the kubelet makes it.
                opts += ["--tmpfs", f"{dst}:{'ro' if read_only else 'rw'},exec,mode=0777"
                         + (f",size={_bytes(size)}" if size else "")]
            else:
                raise Unsupported(f"volume {volume['name']}: {sorted(set(volume) - {'name'})} not emulated "
                                  "(a PersistentVolumeClaim needs a cluster)")
        return opts

    def _find(self, kind: str, name: str) -> Mapping[str, Any] | None:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        return None

    def _project(self, volume: str, source: Mapping[str, Any], kind: str,
                 fs_group: int | None) -> Path:
        """Write a ConfigMap's or Secret's keys as files, as the kubelet's atomic writer
        does: mode from items/defaultMode (0644 by default), group fsGroup plus group read."""
        name = source["name"] if kind == "ConfigMap" else source["secretName"]
        obj = self._find(kind, name)
        if obj is None:
            raise Unsupported(f"volume {volume}: {kind} {name} does not exist (the pod would not start)")
        contents = _contents(obj)
        default_mode = source.get("defaultMode", 0o644)
        items = source.get("items") or [{"key": k, "path": k} for k in contents]
        folder = self.workdir / f"{volume}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        os.chmod(folder, 0o755)
        for item in items:
            if item["key"] not in contents:
                raise Unsupported(f"volume {volume}: {kind} {name} has no key {item['key']!r}")
            path = folder / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(contents[item["key"]])
            mode = item.get("mode", default_mode)
            if fs_group is not None:
                os.chown(path, 0, fs_group)
                mode |= 0o440
            os.chmod(path, mode)
        return folder

    # -- running ---------------------------------------------------------------------------------
    def run(self, pod: Mapping[str, Any], timeout: float) -> PodRun:
        name = f"{PROJECT_PREFIX}-helm-{uuid.uuid4().hex[:10]}"
        command = self.docker_command(pod, name)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=60)
            raise
        return PodRun(command, proc.returncode, proc.stdout, proc.stderr)


def _contents(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys and their bytes."""
    contents: dict[str, bytes] = {}
    if obj["kind"] == "ConfigMap":
        contents.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
        contents.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    else:
        contents.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        contents.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    return contents


def _sub_path(volume_root: Path, sub_path: str) -> str:
    """The kubelet's subPath: a path inside the volume, created when missing with the volume
    root's mode, owned by root (the group follows a setgid root, as the kernel does it)."""
    parts = Path(sub_path).parts
    if Path(sub_path).is_absolute() or ".." in parts:
        raise Unsupported(f"subPath {sub_path!r} must be a relative path inside the volume")
    target = volume_root.joinpath(*parts)
    if not target.exists():
        mode = stat.S_IMODE(volume_root.stat().st_mode)
        folder = volume_root
        for part in parts:
            folder = folder / part
            if not folder.exists():
                folder.mkdir()
                os.chmod(folder, mode)
    return str(target)


def _image_user(image: str) -> str:
    proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Config.User}}", image],
                          capture_output=True, text=True, timeout=60, check=True)
    return proc.stdout.strip().split(":")[0] or "0"


def _host_path(source: Mapping[str, Any]) -> str:
    """The kubelet's hostPath type check, then the path to bind-mount."""
    path, kind = Path(source["path"]), source.get("type", "")
    if kind == "Directory" and not path.is_dir():
        raise Unsupported(f"hostPath {path}: type Directory but no such directory (the pod would not start)")
    if kind == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind not in ("", "Directory"):
        raise Unsupported(f"hostPath type {kind} not emulated")
    return str(path)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(quantity))
    if not match or match.group(2) not in units and match.group(2):
        raise Unsupported(f"quantity {quantity!r} not emulated")
    return int(match.group(1)) * units.get(match.group(2), 1)
