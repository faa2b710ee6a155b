"""The chart's `metrics` values: a Pushgateway URL (plain, or from the user's Secret) and a
node_exporter textfile directory on the node, rendered into every pod that runs the program,
checked by the schema and the templates, and read back by the program's own config loader."""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.config import ConfigError
from app.observe.metrics import parse_metrics
from tests.helm.chart import (
    CHART, HUB_URL, Rendered, ci_values, env_entries, env_of, helm_with_values, load_manifest, mounts_of,
    pod_template, render, render_ci, run_helm, template, workloads,
)
from tests.helm.test_config_loader import load_rendered

pytestmark = pytest.mark.helm

FULLNAME = "sync-datahubsync"
BASE: dict[str, Any] = {"hub": {"url": HUB_URL}, "config": {"datasets": [{"name": "a"}]}}
PUSHGATEWAY = "http://pushgateway.monitoring.svc:9091"
TEXTFILE_DIR = "/metrics-textfile"
NODE_DIR = "/var/lib/node_exporter/textfile_collector"
VARIABLES = ("DATAHUB__METRICS__PUSHGATEWAY", "DATAHUB__METRICS__TEXTFILE")


def with_metrics(metrics: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {**BASE, "metrics": metrics, **values}


def rejected(values: dict[str, Any]) -> str:
    proc = template((), values)
    assert proc.returncode != 0, f"accepted: {json.dumps(values)}"
    return proc.stderr


def every_pod(rendered: Rendered) -> list[dict[str, Any]]:
    pods = [pod_template(o) for o in workloads(rendered)]
    assert pods
    return pods


# -- rendering -------------------------------------------------------------------------------------

def test_off_by_default() -> None:
    """No metrics variable, no node directory; the pods still get the stable hostname."""
    for pod in every_pod(render(values={**BASE, "initialSync": {"enabled": True}})):
        env = env_entries(pod)
        assert not set(VARIABLES) & set(env)
        assert TEXTFILE_DIR not in mounts_of(pod)
        assert "metrics-textfile" not in {v["name"] for v in pod["spec"]["volumes"]}
        assert pod["spec"]["hostname"] == FULLNAME


@pytest.mark.parametrize("values_file", ["minimal-values.yaml", "pvc-token-values.yaml", "hostpath-values.yaml",
                                         "existing-claim-values.yaml"])
def test_every_pod_has_the_release_hostname(values_file: str) -> None:
    """The program names its host by hostname (the Pushgateway's instance label). The pod
    name changes at every run; the chart's hostname does not, and is the same for the
    CronJob's runs, the initial sync and the test pod."""
    rendered = render_ci(values_file)
    expected = rendered.one("CronJob")["metadata"]["name"].replace(".", "-")
    assert {pod["spec"]["hostname"] for pod in every_pod(rendered)} == {expected}


def test_a_release_name_with_dots_gives_a_dns_label_hostname() -> None:
    named = run_helm("template", "team.sync", str(CHART), f"--set=hub.url={HUB_URL}")
    assert named.returncode == 0, named.stderr
    cron = Rendered(named.stdout, load_manifest(named.stdout)).one("CronJob")
    assert cron["metadata"]["name"] == "team.sync-datahubsync"
    assert pod_template(cron)["spec"]["hostname"] == "team-sync-datahubsync"


def test_pushgateway_url_becomes_the_variable_in_every_pod() -> None:
    rendered = render_ci("pvc-token-values.yaml")
    url = ci_values("pvc-token-values.yaml")["metrics"]["pushgateway"]["url"]
    for pod in every_pod(rendered):
        assert env_of(pod)["DATAHUB__METRICS__PUSHGATEWAY"] == url
        assert "DATAHUB__METRICS__TEXTFILE" not in env_of(pod)


def test_pushgateway_secret_is_referenced_not_created() -> None:
    rendered = render_ci("existing-claim-values.yaml")
    settings_ = ci_values("existing-claim-values.yaml")["metrics"]["pushgateway"]
    for pod in every_pod(rendered):
        entry = env_entries(pod)["DATAHUB__METRICS__PUSHGATEWAY"]
        # Not optional: a missing Secret or key stops the pod with an event naming it.
        assert entry["valueFrom"] == {"secretKeyRef": {"name": settings_["existingSecret"],
                                                       "key": settings_["existingSecretKey"]}}
    assert rendered.all("Secret") == []


def test_pushgateway_secret_key_defaults_to_url() -> None:
    pod = pod_template(render(values=with_metrics({"pushgateway": {"existingSecret": "pg"}})).one("CronJob"))
    assert env_entries(pod)["DATAHUB__METRICS__PUSHGATEWAY"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "url"}


def test_textfile_mounts_the_node_directory_in_every_pod() -> None:
    rendered = render_ci("hostpath-values.yaml")
    for pod in every_pod(rendered):
        assert env_of(pod)["DATAHUB__METRICS__TEXTFILE"] == f"{TEXTFILE_DIR}/datahubsync.prom"
        mount = mounts_of(pod)[TEXTFILE_DIR]
        assert mount["volume"]["hostPath"] == {"path": NODE_DIR, "type": "Directory"}
        assert not mount["mount"].get("readOnly"), "the program writes the file there"
        assert "subPath" not in mount["mount"]
        assert "DATAHUB__METRICS__PUSHGATEWAY" not in env_of(pod)


def test_textfile_host_path_without_enabled_renders_nothing() -> None:
    pod = pod_template(render(values=with_metrics({"textfile": {"hostPath": NODE_DIR}})).one("CronJob"))
    assert TEXTFILE_DIR not in mounts_of(pod) and "DATAHUB__METRICS__TEXTFILE" not in env_of(pod)


def test_both_at_once_and_the_listener_stays_off(tmp_path: Path) -> None:
    """The rendered variables load with the program's own loader into exactly these settings."""
    values = with_metrics({"pushgateway": {"url": "https://pushgateway.example.com/prefix/"},
                           "textfile": {"enabled": True, "hostPath": NODE_DIR + "/"}})
    rendered = render(values=values)
    cfg = load_rendered(rendered, tmp_path)
    assert cfg.metrics.pushgateway == "https://pushgateway.example.com/prefix"
    assert cfg.metrics.textfile == f"{TEXTFILE_DIR}/datahubsync.prom"
    assert cfg.metrics.listen is None
    assert cfg.warnings == ()
    volume = mounts_of(pod_template(rendered.one("CronJob")))[TEXTFILE_DIR]["volume"]
    assert volume["hostPath"]["path"] == NODE_DIR + "/"


def test_config_map_carries_no_metrics_section() -> None:
    rendered = render_ci("hostpath-values.yaml")
    assert "metrics" not in rendered.one("ConfigMap")["data"]["config.yaml"]


# -- what the chart refuses ------------------------------------------------------------------------

@pytest.mark.parametrize("values, named", [
    (with_metrics({"pushgatway": {"url": PUSHGATEWAY}}), "pushgatway"),
    (with_metrics({"pushgateway": {"URL": PUSHGATEWAY}}), "URL"),
    (with_metrics({"textfile": {"enabled": True, "path": NODE_DIR}}), "path"),
    # The listener is the cron daemon's: a one-shot pod has nothing to serve it from.
    (with_metrics({"listen": ":9464"}), "listen"),
    ({**BASE, "config": {"datasets": [{"name": "a"}], "metrics": {"pushgateway": PUSHGATEWAY}}}, "metrics"),
], ids=["typo", "case", "textfile-typo", "listen", "inside-config"])
def test_unknown_keys_are_refused(values: dict[str, Any], named: str) -> None:
    assert f"'{named}'" in rejected(values)


@pytest.mark.parametrize("values, path", [
    (with_metrics({"pushgateway": {"url": 9091}}), "/metrics/pushgateway/url"),
    (with_metrics({"pushgateway": {"existingSecret": "Pushgateway_Auth"}}), "/metrics/pushgateway/existingSecret"),
    (with_metrics({"pushgateway": {"existingSecret": "pg", "existingSecretKey": ""}}),
     "/metrics/pushgateway/existingSecretKey"),
    (with_metrics({"pushgateway": {"existingSecret": "pg", "existingSecretKey": "a/b"}}),
     "/metrics/pushgateway/existingSecretKey"),
    (with_metrics({"textfile": {"enabled": "yes", "hostPath": NODE_DIR}}), "/metrics/textfile/enabled"),
    (with_metrics({"textfile": {"enabled": True, "hostPath": "var/lib/node_exporter"}}), "/metrics/textfile/hostPath"),
    (with_metrics([]), "/metrics"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_types_and_forms_are_refused_by_the_schema(values: dict[str, Any], path: str) -> None:
    assert f"'{path}'" in rejected(values)


@pytest.mark.parametrize("values, message", [
    (with_metrics({"pushgateway": {"url": PUSHGATEWAY, "existingSecret": "pg"}}),
     "metrics.pushgateway.url and metrics.pushgateway.existingSecret are both set"),
    (with_metrics({"textfile": {"enabled": True}}),
     "metrics.textfile.enabled is true but metrics.textfile.hostPath is empty"),
    (with_metrics({"textfile": {"enabled": True, "hostPath": "/var/lib/../node_exporter"}}),
     'metrics.textfile.hostPath /var/lib/../node_exporter contains ".."'),
    (with_metrics({"pushgateway": {"url": PUSHGATEWAY}}, env={"DATAHUB__METRICS__PUSHGATEWAY": "http://other:9091"}),
     "env.DATAHUB__METRICS__PUSHGATEWAY is set by the chart: use metrics.pushgateway.url or metrics.pushgateway.existingSecret"),
    (with_metrics({"pushgateway": {"existingSecret": "pg"}},
                  extraEnv=[{"name": "DATAHUB__METRICS__PUSHGATEWAY", "value": "http://other:9091"}]),
     "extraEnv[0] (DATAHUB__METRICS__PUSHGATEWAY) is set by the chart"),
    (with_metrics({"textfile": {"enabled": True, "hostPath": NODE_DIR}}, env={"DATAHUB__METRICS__TEXTFILE": "/x.prom"}),
     "env.DATAHUB__METRICS__TEXTFILE is set by the chart: use metrics.textfile"),
    (with_metrics({}, extraVolumes=[{"name": "metrics-textfile", "emptyDir": {}}]),
     "extraVolumes[0]: the name metrics-textfile is the chart's own volume (metrics.textfile)"),
    (with_metrics({}, extraVolumes=[{"name": "prom", "emptyDir": {}}],
                  extraVolumeMounts=[{"name": "prom", "mountPath": "/metrics-textfile/"}]),
     "extraVolumeMounts[0]: /metrics-textfile/ is already mounted by the chart (metrics.textfile)"),
    (with_metrics({}, persistence={"mountPath": "/metrics-textfile"}),
     "persistence.mountPath: /metrics-textfile is already mounted by the chart (metrics.textfile)"),
    (with_metrics({}, persistence={"mountPath": "/tmp"}),
     "persistence.mountPath: /tmp is already mounted by the chart (/tmp)"),
], ids=lambda v: v.split(":")[0][:60] if isinstance(v, str) else None)
def test_conflicting_values_are_refused_by_the_templates(values: dict[str, Any], message: str) -> None:
    assert message in rejected(values)


def test_the_program_s_variables_stay_free_while_the_chart_does_not_set_them() -> None:
    """Set through env (as with chart 1.1.0), they are the user's: nothing is refused."""
    values = {**BASE, "env": {"DATAHUB__METRICS__PUSHGATEWAY": PUSHGATEWAY,
                              "DATAHUB__METRICS__TEXTFILE": "/data/datahubsync.prom"}}
    env = env_of(pod_template(render(values=values).one("CronJob")))
    assert env["DATAHUB__METRICS__PUSHGATEWAY"] == PUSHGATEWAY


@pytest.mark.parametrize("url, problem", [
    ("pushgateway:9091", "expected an http:// or https:// URL"),
    ("ftp://pushgateway:9091", "expected an http:// or https:// URL"),
    ("http://:9091", "expected an http:// or https:// URL"),
    ("http://pushgateway:9091/?job=x", "expected an http:// or https:// URL"),
    ("http://pushgateway:9091/#x", "expected an http:// or https:// URL"),
    ("http://push gateway:9091", "expected an http:// or https:// URL"),
    (" http://pushgateway:9091", "expected an http:// or https:// URL"),
    ("http://pushgateway:99999", "the port must be a number from 1 to 65535"),
    ("http://pushgateway:0", "the port must be a number from 1 to 65535"),
    ("http://pushgateway:", "expected an http:// or https:// URL"),
], ids=lambda v: v if " " not in v else v.replace(" ", "_"))
def test_a_bad_pushgateway_url_is_refused_without_repeating_it(url: str, problem: str) -> None:
    message = rejected(with_metrics({"pushgateway": {"url": url}}))
    assert f"metrics.pushgateway.url: {problem}" in message, message
    assert url.strip() not in message


@pytest.mark.parametrize("url", [
    "http://pusher:s3cret-pw@pushgateway:9091",
    "https://s3cret-pw@pushgateway.example.com",
    "https://pusher:s3cret-pw@[::1]:9091/",
    "http://pusher:s3cret-pw@pushgateway:9091/?x=1",
])
def test_a_url_with_credentials_is_refused_without_showing_them(url: str) -> None:
    """Values land in the pod spec (readable by anyone who may read the CronJob) and in the
    release record: credentials belong in a Secret, and the message says so without echoing."""
    message = rejected(with_metrics({"pushgateway": {"url": url}}))
    assert "metrics.pushgateway.url carries a user or password" in message
    assert "metrics.pushgateway.existingSecret" in message
    assert "s3cret-pw" not in message and "pusher" not in message


# -- the chart and the program agree on what a Pushgateway URL is ----------------------------------

hosts = st.one_of(
    st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?){0,3}\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    # what neither should take, or only the program: empty, "_", a trailing dot, spaces, a bracket left open
    st.sampled_from(["", "push_gateway", "pushgateway.", "push gateway", "[::1", "pushgateway\\evil"]),
)
ports = st.one_of(st.none(), st.integers(0, 70000).map(str), st.sampled_from(["", "x", "09091", "-1"]))
paths = st.one_of(st.just(""), st.lists(st.text(string.ascii_letters + string.digits + "-._~%!*'", min_size=1,
                                                 max_size=8), max_size=3).map(lambda p: "/" + "/".join(p)),
                  st.sampled_from(["/", "//", "/a b", "/é"]))
suffixes = st.sampled_from(["", "", "", "", "", "?x=1", "#top", "\n", " "])


@st.composite
def pushgateway_urls(draw: st.DrawFn) -> tuple[str, str | None]:
    """(URL, the password in it or None)."""
    scheme = draw(st.sampled_from(["http", "https", "http", "https", "ftp", "HTTP"]))
    password = draw(st.one_of(st.none(), st.none(), st.text(string.ascii_letters, min_size=6, max_size=12).map(lambda p: "pw-" + p)))
    userinfo = f"pusher:{password}@" if password else ""
    port = draw(ports)
    url = f"{scheme}://{userinfo}{draw(hosts)}{'' if port is None else ':' + port}{draw(paths)}{draw(suffixes)}"
    return url, password


def program_takes(url: str) -> str | None:
    try:
        return parse_metrics({"pushgateway": url}).pushgateway
    except ConfigError:
        return None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=pushgateway_urls())
def test_every_url_the_chart_takes_the_program_takes(case: tuple[str, str | None],
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever the URL: the chart takes it only if the program does (so a release never ends
    in runs that exit 2 on the URL), the URL reaches the program unchanged through the
    rendered environment, and a URL with a password is refused without showing it."""
    url, password = case
    proc = template((), with_metrics({"pushgateway": {"url": url}}))
    if password:
        assert proc.returncode != 0, "a URL with a password must go through a Secret"
        assert password not in proc.stderr, proc.stderr
        return
    if proc.returncode != 0:
        assert "metrics.pushgateway.url" in proc.stderr, proc.stderr
        assert url.strip() == "" or url.strip() not in proc.stderr
        return
    taken = program_takes(url)
    assert taken is not None, f"the chart takes {url!r}, the program refuses it"
    rendered = Rendered(proc.stdout, load_manifest(proc.stdout))
    for pod in every_pod(rendered):
        assert env_of(pod)["DATAHUB__METRICS__PUSHGATEWAY"] == url
    cfg = load_rendered(rendered, tmp_path_factory.mktemp("pushgateway"))
    assert cfg.metrics.pushgateway == taken


def test_the_usual_urls_are_taken() -> None:
    """The control for the property above: the chart does take ordinary Pushgateway URLs."""
    for url in (PUSHGATEWAY, "https://pushgateway.example.com", "http://10.0.0.7:9091/",
                "http://[fd00::7]:9091", "https://metrics.example.com/pushgateway"):
        proc = template((), with_metrics({"pushgateway": {"url": url}}))
        assert proc.returncode == 0, (url, proc.stderr)
        assert program_takes(url) is not None


def test_a_secret_url_with_a_line_break_loads(tmp_path: Path) -> None:
    """`kubectl create secret --from-file` keeps the file's last line break; the program drops it."""
    rendered = render(values=with_metrics({"pushgateway": {"existingSecret": "pg"}}))
    cfg = load_rendered(rendered, tmp_path, valued={"DATAHUB__METRICS__PUSHGATEWAY": "https://u:p@pg.example.com:9091\n"})
    assert cfg.metrics.pushgateway == "https://u:p@pg.example.com:9091"


# -- NOTES -----------------------------------------------------------------------------------------

def notes(values: dict[str, Any]) -> str:
    proc = helm_with_values("install", (), values, "--dry-run=client")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_say_where_the_metrics_go() -> None:
    text = notes(with_metrics({"pushgateway": {"url": PUSHGATEWAY}}))
    assert f'as job="datahubsync",\n  instance="{FULLNAME}"' in text and "honor_labels: true" in text
    assert "datahubsync.prom" not in text and "PodSecurity" not in text
    secret = notes(with_metrics({"pushgateway": {"existingSecret": "pushgateway-auth"}}))
    assert "pushed to the Pushgateway in Secret pushgateway-auth" in secret
    assert "Metrics after each run" not in notes(BASE)


def test_notes_warn_about_an_unpinned_textfile_and_its_host_path() -> None:
    text = notes(with_metrics({"textfile": {"enabled": True, "hostPath": NODE_DIR}}))
    assert f"written to {NODE_DIR}/datahubsync.prom on the node that runs the sync" in text
    assert "metrics.textfile without nodeSelector or affinity" in text
    assert 'metrics.textfile.hostPath needs PodSecurity "privileged"' in text
    pinned = notes(with_metrics({"textfile": {"enabled": True, "hostPath": NODE_DIR}},
                                nodeSelector={"kubernetes.io/hostname": "research-1"},
                                persistence={"hostPath": "/srv/market-data"}))
    assert "without nodeSelector" not in pinned
    assert 'persistence.hostPath and metrics.textfile.hostPath need PodSecurity "privileged"' in pinned
