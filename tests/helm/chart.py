"""The chart rendered by the real helm binary, and the objects picked out of the result."""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "datahubsync"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "sync"
HUB_URL = "https://hub.example.com"


def helm_binary() -> str:
    """The helm binary; a missing one fails the test (CI installs it), it never skips it."""
    path = shutil.which("helm")
    if path is None:
        pytest.fail("helm is not on PATH: run .ci/install-helm.sh", pytrace=False)
    return path


def run_helm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def helm_with_values(command: str, values_files: Iterable[Path] = (),
                     values: Mapping[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    """`helm COMMAND ... CHART -f FILE...`, with `values` passed as one more file (so types are
    exact, unlike --set); unchecked, for tests of rejected values too."""
    with tempfile.TemporaryDirectory(prefix="helm-values-") as tmp:
        args = [f"--values={path}" for path in values_files]
        if values is not None:
            path = Path(tmp) / "values.yaml"
            # JSON (a subset of YAML): every string quoted, so helm's YAML 1.1 parser cannot
            # read a value such as N or on as a boolean.
            path.write_text(json.dumps(dict(values)))
            args.append(f"--values={path}")
        if command in ("template", "install"):
            return run_helm(command, RELEASE, str(CHART), *args, *extra)
        return run_helm(command, str(CHART), *args, *extra)


@dataclass
class Rendered:
    """`helm template` output: the manifest text and its objects, in order."""

    text: str
    objects: list[dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}: {self.kinds()}"
        return found[0]

    def kinds(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]

    def by_name(self, kind: str) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in self.all(kind)}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that fails on a key repeated in one mapping. PyYAML keeps the last one
    silently, while the API server rejects such a manifest (or one value wins unseen)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise yaml.constructor.ConstructorError(None, None, f"repeated key(s) {repeated}", node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_manifest(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document manifest; a repeated key anywhere fails."""
    return [o for o in yaml.load_all(text, Loader=_UniqueKeyLoader) if o]


def template(values_files: Iterable[Path] = (), values: Mapping[str, Any] | None = None,
             *extra: str) -> subprocess.CompletedProcess[str]:
    return helm_with_values("template", values_files, values, *extra)


def render(values_files: Iterable[Path] = (), values: Mapping[str, Any] | None = None,
           *extra: str) -> Rendered:
    """`helm template`, which must succeed, parsed into objects."""
    proc = template(values_files, values, *extra)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return Rendered(proc.stdout, load_manifest(proc.stdout))


def pod_template(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The pod (metadata + spec) that a CronJob, a Job or a bare Pod runs."""
    kind = obj["kind"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if kind == "Job":
        return obj["spec"]["template"]
    if kind == "Pod":
        return {"metadata": obj["metadata"], "spec": obj["spec"]}
    raise AssertionError(f"{kind} runs no pod")


def container(pod: Mapping[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1, f"expected one container, got {[c['name'] for c in containers]}"
    return containers[0]


def env_entries(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env entries by name; fails on a duplicate name."""
    entries: dict[str, dict[str, Any]] = {}
    for item in container(pod).get("env", []):
        assert item["name"] not in entries, f"env {item['name']} set twice"
        assert ("value" in item) != ("valueFrom" in item), f"env {item['name']}: value or valueFrom"
        entries[item["name"]] = item
    return entries


def env_of(pod: Mapping[str, Any]) -> dict[str, str]:
    """The container's plain env values as a dict (entries with valueFrom are left out:
    see env_entries); fails on a duplicate name."""
    return {name: item["value"] for name, item in env_entries(pod).items() if "value" in item}


def mounts_of(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{mountPath: {"mount": volumeMount, "volume": the volume it names}}."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    out = {}
    for mount in container(pod).get("volumeMounts", []):
        assert mount["name"] in volumes, f"volumeMount {mount['name']} names no volume"
        out[mount["mountPath"]] = {"mount": mount, "volume": volumes[mount["name"]]}
    return out


def workloads(rendered: Rendered) -> list[dict[str, Any]]:
    """Every object that runs the program: the CronJob, the initial-sync Job, the test Pod."""
    return [o for o in rendered.objects if o["kind"] in ("CronJob", "Job", "Pod")]


@functools.lru_cache(maxsize=None)
def render_ci(filename: str) -> Rendered:
    """One ci/*-values.yaml file rendered (once per test session; treat it as read-only)."""
    return render([CHART / "ci" / filename])


def ci_values(filename: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / filename).read_text())
