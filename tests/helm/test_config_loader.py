"""The chart and the program agree on the config format: the rendered ConfigMap's file,
with the rendered container environment, loads with the product's own loader."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.config import Config, ConfigError, load_config
from app.core.secrets import resolve_credentials
from tests.helm.chart import (
    CI_VALUES, HUB_URL, Rendered, ci_values, env_entries, env_of, load_manifest, pod_template, render, render_ci,
    template,
)

pytestmark = pytest.mark.helm


TOKEN_FILE = "/run/secrets/datahub/token"


def load_rendered(rendered: Rendered, tmp_path: Path, files: Mapping[str, str] | None = None,
                  valued: Mapping[str, str] | None = None) -> Config:
    """load_config() on the ConfigMap's config.yaml and the CronJob container's environment.
    `files` are what the pod's mounts would hold ({in-container path: text}: the token, header
    files, a CA bundle from an extra volume): they are written under tmp_path and their paths
    moved there, in the environment and in the config file alike. `valued` gives the values
    of the variables that come from a Secret or ConfigMap (valueFrom)."""
    moved = {path: tmp_path / "pod" / path.lstrip("/") for path in files or {}}
    for path, host in moved.items():
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text((files or {})[path])

    # One pass, longest path first: /x/A must not rewrite part of /x/A0.
    pattern = re.compile("|".join(re.escape(p) for p in sorted(moved, key=len, reverse=True)) or "(?!)")

    def move(text: str) -> str:
        return pattern.sub(lambda m: str(moved[m.group(0)]), text)

    config_file = tmp_path / "config.yaml"
    config_file.write_text(move(rendered.one("ConfigMap")["data"]["config.yaml"]))
    pod = pod_template(rendered.one("CronJob"))
    environ = {name: move(value) for name, value in env_of(pod).items()}
    from_refs = {name for name, item in env_entries(pod).items() if "valueFrom" in item}
    assert from_refs == set(valued or {}), "pass a value for each valueFrom variable"
    environ.update(valued or {})
    assert environ["DATAHUB_CONFIG"] == "/config/config.yaml"
    environ["DATAHUB_CONFIG"] = str(config_file)
    return load_config(None, environ)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_rendered_config_loads(values_file: Path, tmp_path: Path) -> None:
    values = ci_values(values_file.name)
    files = {TOKEN_FILE: values["hub"].get("token") or "from-an-existing-secret"}
    verify_tls = values.get("config", {}).get("hub", {}).get("verify_tls")
    if isinstance(verify_tls, str):
        files[verify_tls] = "a CA bundle from an extra volume"
    valued = {item["name"]: "from-a-secret" for item in values.get("extraEnv", []) if "valueFrom" in item}
    metrics = values.get("metrics", {})
    pushgateway = metrics.get("pushgateway", {}).get("url")
    if metrics.get("pushgateway", {}).get("existingSecret"):
        pushgateway = "https://pusher:s3cret@pushgateway.example.com:9091"
        valued["DATAHUB__METRICS__PUSHGATEWAY"] = pushgateway + "\n"   # as `kubectl create secret --from-file` may hold it
    cfg = load_rendered(render_ci(values_file.name), tmp_path, files, valued)
    assert cfg.metrics.pushgateway == pushgateway
    textfile = metrics.get("textfile", {}).get("enabled")
    assert cfg.metrics.textfile == ("/metrics-textfile/datahubsync.prom" if textfile else None)
    assert cfg.metrics.listen is None
    assert cfg.warnings == (), "the chart sets a DATAHUB_* variable the program does not know"
    assert cfg.hub.url.rstrip("/") == values["hub"]["url"].rstrip("/")
    mount = values.get("persistence", {}).get("mountPath", "/data")
    assert cfg.sync.data_root == Path(mount)
    assert cfg.state_dir == Path(mount) / ".datahubsync", "state must live on the data volume"
    configured = [d["name"] for d in values.get("config", {}).get("datasets", [])]
    from_env = [n for n in values.get("env", {}).get("DATAHUB_DATASETS", "").split(",") if n]
    assert [d.name for d in cfg.datasets] == (from_env or configured)
    for ds in cfg.datasets:
        assert Path(mount) in ds.local_dir.parents, f"{ds.name} would be written outside the volume"


def test_config_values_reach_the_program(tmp_path: Path) -> None:
    cfg = load_rendered(render_ci("pvc-token-values.yaml"), tmp_path, {TOKEN_FILE: "ci-token-not-secret"})
    assert cfg.hub.timeout == 120 and cfg.hub.retries == 8 and cfg.hub.timezone == "Asia/Shanghai"
    assert cfg.sync.parallel == 3 and cfg.sync.keep_packages is True
    assert cfg.logging.level == "DEBUG" and cfg.logging.format == "json"
    fin = cfg.dataset("stock-fin-data-xbx")
    assert fin.mode == "mirror" and fin.local_dir == Path("/data/fin")
    assert cfg.dataset("stock-trading-data-pro").local_dir == Path("/data/stock-trading-data-pro")
    # The token reaches the program through the mounted file only.
    assert cfg.hub.token is None
    assert resolve_credentials(cfg.hub)["Authorization"] == "Bearer ci-token-not-secret"


def test_extra_env_overrides_the_file(tmp_path: Path) -> None:
    cfg = load_rendered(render_ci("hostpath-values.yaml"), tmp_path)
    assert cfg.hub.retries == 8 and cfg.sync.parallel == 4 and cfg.logging.format == "json"


def test_minimal_install_reports_missing_datasets(tmp_path: Path) -> None:
    """With hub.url alone the file loads; the program then names what is missing (and so do
    the chart's NOTES)."""
    cfg = load_rendered(render_ci("minimal-values.yaml"), tmp_path)
    assert cfg.missing() == ["no datasets configured (set DATAHUB_DATASETS or datasets: in the config file)"]


@pytest.mark.parametrize("config, named", [
    ({"datasets": [{"name": "a", "mode": "mirorr"}]}, "datasets[0].mode"),
    ({"sync": {"paralel": 2}, "datasets": [{"name": "a"}]}, "sync.paralel"),
    ({"datasets": [{"name": "a"}, {"name": "a"}]}, "datasets[1].name"),
])
def test_loader_refuses_what_only_the_program_knows(config: dict, named: str, tmp_path: Path) -> None:
    """The chart's schema checks only the config's outline, so the loader is the real judge;
    these pass `helm template` and must fail here, naming the key."""
    rendered = render(values={"hub": {"url": HUB_URL}, "config": config})
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_rendered(rendered, tmp_path)


def test_secrets_beyond_the_token_reach_the_program(tmp_path: Path) -> None:
    """hub.headersSecret's files and an extraEnv header from a Secret become request headers;
    the CA bundle from an extra volume becomes hub.verify_tls."""
    files = {TOKEN_FILE: "t0ken",
             "/run/secrets/datahub-headers/CF-Access-Client-Id": "id.access\n",
             "/run/secrets/datahub-headers/CF-Access-Client-Secret": "s3cret\n",
             "/etc/hub-ca/ca.crt": "a CA bundle"}
    cfg = load_rendered(render_ci("secrets-values.yaml"), tmp_path, files,
                        {"DATAHUB_HEADER_X_TENANT": "research"})
    assert resolve_credentials(cfg.hub) == {
        "CF-Access-Client-Id": "id.access", "CF-Access-Client-Secret": "s3cret", "X-Tenant": "research",
        "Authorization": "Bearer t0ken"}
    assert str(cfg.hub.verify_tls).endswith("/etc/hub-ca/ca.crt")
    assert cfg.hub.retries == 8


header_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{0,7}(-[A-Za-z0-9]{1,8}){0,3}\Z")
# A key that names its header may use "_" for "-".
header_keys = st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{0,7}([-_][A-Za-z0-9]{1,8}){0,3}\Z")
secret_keys = st.from_regex(r"\A[-._a-zA-Z0-9]{1,20}\Z").filter(lambda k: k not in (".", ".."))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(by_key=st.lists(header_keys, max_size=3, unique=True),
       mapped=st.dictionaries(secret_keys, header_names, max_size=3))
def test_every_header_secret_key_sends_its_header(by_key: list[str], mapped: dict[str, str],
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever the Secret's keys and header names, the program sends each header (header
    names compare without case) with the content of its key's file, and the chart refuses
    two keys that would send the same header."""
    named = {key: key.replace("_", "-") for key in by_key}
    sent = [h.lower() for h in [*named.values(), *mapped.values()]]
    values: dict[str, Any] = {"hub": {"url": HUB_URL, "headersSecret": {
        "name": "hub-headers", "keys": by_key, "headers": mapped}},
        "config": {"datasets": [{"name": "a"}]}}
    if not sent:
        return
    proc = template((), values)
    if set(by_key) & set(mapped):
        assert proc.returncode != 0 and "is in both keys and headers" in proc.stderr, proc.stderr
        return
    if len(set(sent)) < len(sent):
        assert proc.returncode != 0 and "both send the header" in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    rendered = Rendered(proc.stdout, load_manifest(proc.stdout))
    volume = next(v for v in pod_template(rendered.one("CronJob"))["spec"]["volumes"] if v["name"] == "hub-headers")
    contents = {**{k: f"value of {k}" for k in by_key}, **{k: f"value of {k}" for k in mapped}}
    files = {f"/run/secrets/datahub-headers/{item['path']}": contents[item["key"]]
             for item in volume["secret"]["items"]}
    assert sorted(item["key"] for item in volume["secret"]["items"]) == sorted(contents)
    cfg = load_rendered(rendered, tmp_path_factory.mktemp("headers"), files)
    headers = {name.lower(): value for name, value in resolve_credentials(cfg.hub).items()}
    expected = {**{h.lower(): f"value of {k}" for k, h in named.items()},
                **{h.lower(): f"value of {k}" for k, h in mapped.items()}}
    assert headers == expected


def test_notify_and_hooks_in_config_reach_the_program(tmp_path: Path) -> None:
    values = {"hub": {"url": HUB_URL}, "config": {
        "datasets": [{"name": "prices"}],
        "notify": [{"url": "https://hooks.example.com/services/T0/B0/x", "format": "slack", "on": ["failure"]}],
        "hooks": {"post_sync": ["python3", "/config/run_indicators.py"], "timeout": 120}}}
    cfg = load_rendered(render(values=values), tmp_path)
    assert [(t.format, sorted(t.on)) for t in cfg.notify] == [("slack", ["failure"])]
    assert cfg.hooks.post_sync == ("python3", "/config/run_indicators.py") and cfg.hooks.timeout == 120
