"""Every name and label value the chart generates fits Kubernetes' limits, for any release
name helm accepts (at most 53 characters, dots allowed) and any name override."""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helm.chart import CHART, HUB_URL, Rendered, load_manifest, pod_template, run_helm, workloads

pytestmark = pytest.mark.helm

RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def render_release(release: str, values: dict[str, Any] | None = None) -> Rendered:
    """The release with everything on, so that every object the chart can create is rendered."""
    args = [f"--set-json={key}={json.dumps(value)}" for key, value in (values or {}).items()]
    proc = run_helm("template", release, str(CHART), f"--set=hub.url={HUB_URL}", "--set=hub.token=t",
                    "--set=initialSync.enabled=true", "--set=config.datasets[0].name=a", *args)
    assert proc.returncode == 0, proc.stderr
    return Rendered(proc.stdout, load_manifest(proc.stdout))


def label_maps(rendered: Rendered) -> Iterator[tuple[str, dict[str, str]]]:
    for obj in rendered.objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        yield where, obj["metadata"].get("labels") or {}
        if obj["kind"] == "CronJob":
            yield f"{where} jobTemplate", obj["spec"]["jobTemplate"]["metadata"]["labels"]
        if obj["kind"] in ("CronJob", "Job"):
            yield f"{where} pod", pod_template(obj)["metadata"]["labels"]


def assert_names_fit(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects}
    assert kinds == {"CronJob", "Job", "Pod", "ConfigMap", "Secret", "PersistentVolumeClaim",
                     "ServiceAccount"}, kinds
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and DNS_SUBDOMAIN.fullmatch(name), f"{obj['kind']} name {name!r}"
        if obj["kind"] == "CronJob":
            # The API server's limit; the controller then appends "-" and an 8-digit time.
            assert len(name) <= 52, name
    for where, labels in label_maps(rendered):
        for key, value in labels.items():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), f"{where}: {key}={value!r}"
    for obj in workloads(rendered):
        spec = pod_template(obj)["spec"]
        names = [c["name"] for c in spec["containers"]] + [v["name"] for v in spec["volumes"]]
        assert all(len(n) <= 63 for n in names), names
        # The pods' hostname (the Pushgateway's instance label) must be a DNS label, dots included.
        assert HOSTNAME.fullmatch(spec["hostname"]) and len(spec["hostname"]) <= 63, spec["hostname"]
        assert spec["serviceAccountName"] in {o["metadata"]["name"] for o in rendered.all("ServiceAccount")}


@st.composite
def release_names(draw: st.DrawFn) -> str:
    """Valid helm release names, long ones (where the limits bite) drawn often."""
    length = draw(st.one_of(st.integers(40, 53), st.integers(1, 53)))
    chars = draw(st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-."),
                          min_size=length, max_size=length))
    for i, c in enumerate(chars):
        edge = i in (0, length - 1)
        next_to_dot = c in "-." and ((i > 0 and chars[i - 1] in ".-") or (i + 1 < length and chars[i + 1] == "."))
        if c in "-." and (edge or next_to_dot or (c == "." and i + 1 < length and chars[i + 1] == "-")):
            chars[i] = "x"
    name = "".join(chars)
    assert RELEASE_NAME.fullmatch(name), name
    return name


dns_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


@pytest.mark.parametrize("release", ["r" * 52, "r" * 53, "datahubsync-" + "r" * 41, "a." * 26 + "a"],
                         ids=["52", "53", "53-with-chart-name", "53-with-dots"])
def test_the_longest_release_names_fit(release: str) -> None:
    """The issue's case: a 52-character release name made the initial-sync Job's name and
    labels 65 characters long, and the API server refused the install."""
    assert_names_fit(render_release(release))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(release=release_names(), overrides=st.fixed_dictionaries(
    {}, optional={"nameOverride": dns_labels, "fullnameOverride": dns_labels}))
def test_every_valid_release_name_fits(release: str, overrides: dict[str, str]) -> None:
    assert_names_fit(render_release(release, overrides))


def test_shortened_names_stay_distinct() -> None:
    """Two long releases whose full names differ only at the end keep distinct Job and test
    pod names (a hash replaces the part cut off), while short names stay readable."""
    first = render_release("r" * 50 + "ab").by_name("Job")
    second = render_release("r" * 50 + "ac").by_name("Job")
    assert len(first) == len(second) == 1
    assert set(first) != set(second)
    assert all(name.endswith("-initial-sync") for name in [*first, *second])
    assert set(render_release("sync").by_name("Job")) == {"sync-datahubsync-initial-sync"}


def test_names_of_existing_releases_do_not_change() -> None:
    """Upgrading to this chart renames nothing that fitted before (a renamed PVC would be a
    new, empty volume)."""
    release = "r" * 45  # 45 + "-datahubsync" is cut to 52
    rendered = render_release(release)
    full = (release + "-datahubsync")[:52]
    assert rendered.one("CronJob")["metadata"]["name"] == full
    assert rendered.one("PersistentVolumeClaim")["metadata"]["name"] == f"{full}-data"
    assert rendered.one("Pod")["metadata"]["name"] == f"{full}-test-check"
