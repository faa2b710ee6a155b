"""Hostile configuration: numbers that switch guards off, URLs parsers read differently, secrets with
control characters, YAML the loader chokes on. Every one ends in a Config or a one-line ConfigError
(exit 2) that names the key and never shows a secret."""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app.core.secrets
import entrypoint
from app.core.config import (DATASET_CHECKS, SECTIONS, Config, ConfigError, DatasetConfig, apply_environment,
                        build_config, load_config, masked)
from app.core.secrets import redact, resolve_credentials
from tests.helpers import dead_url, run_cli, start_cli, wait_for, zip_bytes
from tests.hubs import FaultyHub

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() reads os.environ: no DATAHUB_* of the test runner may leak in."""
    for name in list(os.environ):
        if name.startswith("DATAHUB"):
            monkeypatch.delenv(name)


@pytest.fixture
def own_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values these tests register as secrets (random ones too) stay out of other tests' redaction."""
    monkeypatch.setattr(app.core.secrets, "_known", set())
    monkeypatch.setattr(app.core.secrets, "_forms", [])


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refuse(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """main() on a config that must be refused: exit 2 and one line, which is returned."""
    code = entrypoint.main(["--config", str(path), "healthcheck"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err and "internal error" not in err, err
    return err


def refused_by_cli(env: dict[str, str], *argv: str, secret: str | None = None) -> str:
    """The real CLI in a subprocess: exit 2, one line on stderr, nothing of the secret anywhere."""
    code, out, err = run_cli([*argv] or ["healthcheck"], env=env, timeout=60)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("datahubsync: "), err
    assert "internal error" not in err and "Traceback" not in err
    if secret:
        assert secret not in out + err
    return lines[0]


# ---- numbers ------------------------------------------------------------------------------------------

def _numeric_keys() -> list[tuple[str, str]]:
    """Every int or float setting, found from the dataclasses so a new one cannot be missed."""
    keys = [(name, f.name) for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)
            if f.type in ("int", "float", "int | None", "float | None")]
    keys += [("datasets", f.name) for f in dataclasses.fields(DatasetConfig) if f.type in ("int", "float")]
    return keys


NUMERIC_KEYS = _numeric_keys()


def _config_with(section: str, key: str, value: Any) -> dict[str, Any]:
    if section == "datasets":
        return {"datasets": [{"name": "a", key: value}]}
    return {section: {key: value}}


def _value_of(config: Config, section: str, key: str) -> Any:
    return getattr(config.datasets[0] if section == "datasets" else getattr(config, section), key)


def _key_path(section: str, key: str) -> str:
    return f"datasets[0].{key}" if section == "datasets" else f"{section}.{key}"


def test_every_numeric_key_is_found() -> None:
    assert {("hub", "timeout"), ("hub", "connect_timeout"), ("hub", "retries"), ("hub", "connections"),
            ("hub", "backoff"), ("hub", "backoff_max"), ("sync", "parallel"), ("sync", "max_delete_ratio"),
            ("sync", "package_wait"), ("sync", "package_poll"), ("sync", "stale_package_tolerance"),
            ("sync", "max_unpacked_size"), ("sync", "max_compression_ratio"), ("health", "max_age"),
            ("health", "grace"), ("datasets", "strip_components")} <= set(NUMERIC_KEYS)


@pytest.mark.parametrize("text, expected", [
    ("sync: {max_delete_ratio: .nan}\n", "sync.max_delete_ratio: expected a finite number, got nan"),
    ("sync: {max_compression_ratio: .inf}\n", "sync.max_compression_ratio: expected a finite number, got inf"),
    ("sync: {max_compression_ratio: .Inf}\n", "sync.max_compression_ratio: expected a finite number, got inf"),
    ("hub: {timeout: -.inf}\n", "hub.timeout: expected a finite number, got -inf"),
    ("hub: {retries: .nan}\n", "hub.retries: expected a finite number, got nan"),
    ("health: {max_age: !!float 1e999}\n", "health.max_age: expected a finite number, got inf"),
    ("datasets: [{name: a, strip_components: .inf}]\n", "datasets[0].strip_components: expected a finite number"),
    ("sync: {max_delete_ratio: 1.5}\n", "sync.max_delete_ratio: must be at most 1, got 1.5"),
    ("sync: {parallel: 65}\n", "sync.parallel: must be at most 64, got 65"),
    ("hub: {connections: 1000}\n", "hub.connections: must be at most 64, got 1000"),
    ("hub: {retries: 101}\n", "hub.retries: must be at most 100, got 101"),
    ("hub: {timeout: 1e12}\n", "hub.timeout: must be at most 315360000 seconds (10 years), got '1e12'"),  # a string
    ("hub: {timeout: 1.0e+12}\n", "hub.timeout: must be at most 315360000 seconds (10 years), got 1000000000000.0"),
    ("sync: {package_wait: 99999999999999999999999}\n", "sync.package_wait: must be at most 315360000 seconds"),
    ("sync: {max_unpacked_size: 99999999999999999999999}\n", "sync.max_unpacked_size: must be at most 9223372036854775807"),
    ("datasets: [{name: a, strip_components: 100000}]\n", "datasets[0].strip_components: must be at most 1024"),
])
def test_numbers_refused_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                          expected: str) -> None:
    assert expected in refuse(write(tmp_path, text), capsys)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "+Infinity", "infinity", "1e999", "-1e999", " nan "])
@pytest.mark.parametrize("var, key", [("DATAHUB_TIMEOUT", "hub.timeout"), ("DATAHUB_PARALLEL", "sync.parallel"),
                                      ("DATAHUB__SYNC__MAX_DELETE_RATIO", "sync.max_delete_ratio"),
                                      ("DATAHUB__SYNC__MAX_COMPRESSION_RATIO", "sync.max_compression_ratio"),
                                      ("DATAHUB__HUB__RETRIES", "hub.retries")])
def test_non_finite_environment_values(var: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={var: value})
    assert str(caught.value) == f"{key}: expected a finite number, got {value!r}"


def test_nan_timeout_through_the_real_cli() -> None:
    line = refused_by_cli({"DATAHUB_TIMEOUT": "nan"})
    assert line == "datahubsync: hub.timeout: expected a finite number, got 'nan'"


def test_accepted_numbers_keep_their_kind() -> None:
    cfg = load_config(None, environ={"DATAHUB__HUB__RETRIES": "3.0", "DATAHUB__SYNC__MAX_DELETE_RATIO": "1",
                                     "DATAHUB_PARALLEL": " 64 ", "DATAHUB__SYNC__MAX_UNPACKED_SIZE": "1e12"})
    assert (cfg.hub.retries, cfg.sync.parallel, cfg.sync.max_unpacked_size) == (3, 64, 10**12)
    assert all(isinstance(v, int) for v in (cfg.hub.retries, cfg.sync.parallel, cfg.sync.max_unpacked_size))
    assert cfg.sync.max_delete_ratio == 1.0 and isinstance(cfg.sync.max_delete_ratio, float)


NUMBER_LIKE = st.one_of(
    st.floats(), st.integers(), st.integers(min_value=-(10**400), max_value=10**400), st.just(10**4000),
    st.booleans(), st.none(), st.text(max_size=12), st.floats().map(repr), st.integers().map(str),
    st.sampled_from(["nan", "inf", "-Infinity", "1e999", "1" * 5000, "0x10", "1_000", "\u0661\u0662", "1e3", ""]),
)


def _check_accepted(section: str, key: str, value: Any) -> None:
    """An accepted value is a finite number of the field's kind (or None where the key allows it)."""
    if value is None:
        assert (section, key) == ("sync", "max_unpacked_size")
        return
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert math.isfinite(value)
    assert value >= 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NUMERIC_KEYS), NUMBER_LIKE | st.just(10**5000))
def test_any_value_for_any_numeric_key_is_a_config_or_a_config_error(key: tuple[str, str], value: Any) -> None:
    section, name = key
    try:
        config = build_config(_config_with(section, name, value))
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(_key_path(section, name) + ": ") and "\n" not in message and len(message) < 400
        return
    _check_accepted(section, name, _value_of(config, section, name))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([k for k in NUMERIC_KEYS if k[0] != "datasets"]), NUMBER_LIKE.map(str))
def test_any_environment_string_for_any_numeric_key(key: tuple[str, str], text: str) -> None:
    section, name = key
    try:
        config = load_config(None, environ={f"DATAHUB__{section.upper()}__{name.upper()}": text})
    except ConfigError as exc:
        assert str(exc).startswith(f"{section}.{name}: ") and "\n" not in str(exc)
        return
    _check_accepted(section, name, _value_of(config, section, name))


# ---- any value for any key -----------------------------------------------------------------------------

ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
ALL_KEYS = [(s, k) for s, cls in SECTIONS.items() for k in (f.name for f in dataclasses.fields(cls))] + \
           [("datasets", k) for k in DATASET_CHECKS if k != "name"]


@pytest.mark.usefixtures("own_secrets")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(ALL_KEYS), ANY_VALUE)
def test_any_value_for_any_key_is_a_config_or_one_line_config_error(key: tuple[str, str], value: Any) -> None:
    section, name = key
    try:
        build_config(_config_with(section, name, value))
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 500, str(exc)


@pytest.mark.parametrize("data, expected", [
    ({"hub": {"a\nb": 1}}, "hub.'a\\nb': unknown key"),
    ({"x\x1b[2J": 1}, "'x\\x1b[2J': unknown key"),
    ({"datasets": [{"name": "a", 7: 1}]}, "datasets[0].7: unknown key"),
    ({"datasets": ["a\n"]}, "datasets[0].name: 'a\\n' is not a dataset name"),
    ({"datasets": [{"name": "ok\n"}]}, "datasets[0].name: 'ok\\n' is not a dataset name"),
    ({"datasets": ["x" * 129]}, "datasets[0].name: 'xxxxxxxx"),
    ({"sync": {"data_root": "/data\n/x"}}, "sync.data_root: '/data\\n/x' contains a control character (a line break?)"),
    ({"sync": {"state_dir": "/st\x00te"}}, "sync.state_dir: '/st\\x00te' contains a control character (U+0000)"),
    ({"datasets": [{"name": "a", "local_dir": "a\tb"}]}, "datasets[0].local_dir: 'a\\tb' contains a control character"),
    ({"logging": {"file": "log\n"}}, "logging.file: 'log\\n' contains a control character"),
    ({"hub": {"verify_tls": "/ca\x00"}}, "hub.verify_tls: '/ca\\x00' contains a control character"),
    ({"hub": {"token_file": "/run/t\x00"}}, "hub.token_file: '/run/t\\x00' contains a control character"),
    ({"hub": {"timezone": "Asia/Shanghai\n"}}, "hub.timezone: unknown time zone 'Asia/Shanghai\\n'"),
    ({"schedule": {"cron": ["15 8 * * *"]}}, "schedule.cron: expected a string, got list"),
    ({"schedule": {"cron": "0\n0 * * *"}}, "schedule.cron: '0\\n0 * * *' contains a control character (a line break?)"),
    ({"schedule": {"cron": "0 8 * * *\x1b[2J"}}, "schedule.cron: '0 8 * * *\\x1b[2J' contains a control character"),
])
def test_refusals_stay_on_one_line(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(data)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value), str(caught.value)


def test_cron_fields_may_be_separated_by_tabs() -> None:
    assert build_config({"schedule": {"cron": "0\t8 * * 1-5"}}).schedule.cron == "0\t8 * * 1-5"


def test_dataset_names_are_matched_whole_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = refuse(write(tmp_path, 'datasets:\n  - name: "prices\\n"\n'), capsys)
    assert err == "datahubsync: datasets[0].name: 'prices\\n' is not a dataset name (letters, digits, '.', '_', '-')"


def test_strange_environment_variable_names_stay_on_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^'DATAHUB__HUB\\nX': names no configuration key"):
        apply_environment({}, {"DATAHUB__HUB\nX": "1"})
    _, warnings = apply_environment({}, {"DATAHUB_TYPO\x1b[2J": "1"})
    assert warnings == ("unknown environment variable 'DATAHUB_TYPO\\x1b[2J' ignored (a typo?)",)


@pytest.mark.parametrize("hub", [[1], "text", {"headers": ["a"]}, {"headers": "x"}])
def test_header_variables_over_a_broken_file_section(hub: Any) -> None:
    data, _ = apply_environment({"hub": hub}, {"DATAHUB_HEADER_X_KEY": "value-1234"})
    with pytest.raises(ConfigError, match=r"^hub(\.headers)?: expected a mapping"):
        build_config(data)


# ---- YAML the loader chokes on ---------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (b"[" * 100000, "invalid YAML: nested too deeply"),
    (b"a: " + b"{a: " * 50000, "invalid YAML"),
    (b"hub: {timeout: 2001-13-01}\n", "invalid YAML: a value cannot be read as its type (ValueError"),
    (b"hub: {retries: !!int many}\n", "invalid YAML: a value cannot be read as its type"),
    (b"!!timestamp not-a-time\n", "invalid YAML: a value cannot be read as its type"),
    (b"sync: {keep_packages: !!bool maybe}\n", "invalid YAML: a value cannot be read as its type (KeyError"),
    (b"? !!float x\n: 1\n", "invalid YAML: a value cannot be read as its type"),
    (b"{[1]: 2}\n", "invalid YAML: found unhashable key"),
    (b"hub: !!python/object/apply:os.system [echo owned]\n", "invalid YAML: could not determine a constructor"),
    (b"<<: 1\n", "invalid YAML"),
    (b"hub:\n  url: \x00\n", "invalid YAML"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "cannot read config file"),
    (b"hub: {url: \xc3\x28}\n", "cannot read config file"),
], ids=["deep-list", "deep-mapping", "bad-date", "bad-int-tag", "bad-timestamp-tag", "bad-bool-tag", "bad-float-key",
        "unhashable-key", "python-tag", "bad-merge", "nul", "binary", "not-utf8"])
def test_yaml_the_loader_chokes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                   problem: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    err = refuse(path, capsys)
    assert err.startswith(f"datahubsync: {path}") and problem in err, err


def test_alias_bomb_is_refused_with_a_short_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 9**9 leaves when printed whole; the message shows a few
    levels = ["&x0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 9)]
    err = refuse(write(tmp_path, "hub:\n  timeout: [" + ", ".join(levels) + "]\n"), capsys)
    assert err.startswith("datahubsync: hub.timeout: expected a number, got list [") and len(err) < 300, err


def test_config_file_too_large(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# padding\n" * 500_000)
    assert "larger than 4 MiB" in refuse(path, capsys)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.text(alphabet="[]{}:,-?!&*|>'\"#%@` \n\tab1.", max_size=60).map(str.encode)))
def test_any_file_is_a_config_or_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    try:
        load_config(str(path), environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600


# ---- URLs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, problem", [
    ("http://h.example:99999", "hub.url: the port must be a number from 1 to 65535 in 'http://h.example:99999'"),
    ("http://h.example:0/", "hub.url: the port must be a number from 1 to 65535"),
    ("http://h.example:-1", "hub.url: the port must be a number from 1 to 65535"),
    ("http://h.example:http", "hub.url: the port must be a number from 1 to 65535"),
    ("http://h.example:\uff18\uff10", "hub.url: the port must be a number from 1 to 65535"),
    ("http://h.example:1:2", "hub.url: the port must be a number from 1 to 65535"),
    ("http://[::1", "hub.url: an IPv6 address without its closing ']'"),
    ("http://[::1]x/", "hub.url: unexpected 'x' after the IPv6 address"),
    ("http://[nope]/", "hub.url: '[nope]' is not an IPv6 address in brackets"),
    ("http://::1/", "hub.url: expected an http:// or https:// URL with a host name"),
    ("http:///path", "hub.url: expected an http:// or https:// URL with a host name"),
    ("http://:80/", "hub.url: expected an http:// or https:// URL with a host name"),
    ("http://user@/", "hub.url: expected an http:// or https:// URL with a host name"),
    ("http://h.example /x", "hub.url: contains whitespace or a control character"),
    ("http://h.ex\tample", "hub.url: contains whitespace or a control character"),
    ("http://h.example/\x00", "hub.url: contains whitespace or a control character"),
    ("http://h.example\\@evil.example/", "hub.url: contains a backslash"),
    ("http://h.example\\x/", "hub.url: contains a backslash"),
    ("http://a@b@evil.example/", "hub.url: more than one '@' before the host"),
    ("http://h.example/?", "hub.url: the hub URL takes no query or fragment"),
    ("http://h.example/#", "hub.url: the hub URL takes no query or fragment"),
    ("http://b\u00fccher.example/", "hub.url: the host name must be ASCII"),
    ("http://h%2Eexample/", "hub.url: 'h%2Eexample' is not a valid host name"),
    ("http:h.example", "hub.url: expected an http:// or https:// URL"),
    ("h.example", "hub.url: expected an http:// or https:// URL"),
    ("file:///etc/passwd", "hub.url: expected an http:// or https:// URL"),
])
def test_bad_urls_name_the_key(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"hub": {"url": url}})
    assert str(caught.value).startswith(problem) and "\n" not in str(caught.value), str(caught.value)


@pytest.mark.usefixtures("own_secrets")
@pytest.mark.parametrize("url", [
    "https://user:Pw-9xq@h.example:99999/",
    "https://user:Pw-9xq@h.example\\@evil.example/",
    "https://user:Pw-9xq@b@evil.example/",
    "https://user:Pw-9xq/more@h.example/",           # an unencoded '/' ends the host part early
    "https://user:Pw-9xq@h.example/?q",
    "https://user:Pw-9xq@[::1/",
    "ftp://user:Pw-9xq@h.example/",
])
def test_a_refused_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"hub": {"url": url}})
    assert str(caught.value).startswith("hub.url: ") and "Pw-9xq" not in str(caught.value), str(caught.value)


@pytest.mark.parametrize("url, stored", [
    ("https://data.quantrade.fun", "https://data.quantrade.fun"),
    ("  http://127.0.0.1:8080/hub/  \n", "http://127.0.0.1:8080/hub"),
    ("http://[::1]:8080/", "http://[::1]:8080"),
    ("HTTPS://Hub.Example:443/Base", "HTTPS://Hub.Example:443/Base"),
    ("http://user:p%40ss@hub.example/", "http://user:p%40ss@hub.example"),
    ("http://hub_1.internal:65535/a@b/", "http://hub_1.internal:65535/a@b"),   # '@' in the path is no user part
])
def test_good_urls_accepted(url: str, stored: str) -> None:
    assert build_config({"hub": {"url": url}}).hub.url == stored


def test_port_error_through_the_real_cli() -> None:
    line = refused_by_cli({"DATAHUB_URL": "http://user:Cli-Pw-4417@127.0.0.1:70000"}, secret="Cli-Pw-4417")
    assert line == "datahubsync: hub.url: the port must be a number from 1 to 65535 in 'http://127.0.0.1:70000'"


URL_PART = st.text(alphabet="aZ09.-_:@[]/\\%?#+ \t\u00e9\uff10", max_size=12)


@pytest.mark.usefixtures("own_secrets")
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=30),
    st.builds(lambda s, a, p: f"{s}://{a}{p}", st.sampled_from(["http", "https", "HTTP", "ftp", "http:"]), URL_PART,
              st.sampled_from(["", "/", "/api", "/a@b", "?x", "#f", "\\x"])),
    st.builds(lambda u, h, port: f"http://{u}@{h}:{port}/", URL_PART, URL_PART, st.integers(-5, 70000).map(str) | URL_PART),
))
def test_an_accepted_url_reads_the_same_to_both_parsers(url: str) -> None:
    try:
        config = build_config({"hub": {"url": url}})
    except ConfigError as exc:
        assert str(exc).startswith("hub.url: ") and "\n" not in str(exc)
        return
    stored = config.hub.url
    if stored is None:
        return
    ours, theirs = urlsplit(stored), urllib3.util.parse_url(stored)
    assert ours.scheme == (theirs.scheme or "").lower() and ours.scheme in ("http", "https")
    assert ours.hostname and ours.hostname == (theirs.host or "").lower().strip("[]")
    assert ours.port == theirs.port


# ---- the URL's password, masked everywhere ---------------------------------------------------------

@pytest.mark.usefixtures("own_secrets")
def test_masked_and_redacted_url_password() -> None:
    cfg = build_config({"hub": {"url": "https://reader:Url-Pw-7731@hub.example:8443/base"}})
    assert cfg.hub.url == "https://reader:Url-Pw-7731@hub.example:8443/base"     # requests needs it
    assert masked(cfg)["hub"]["url"] == "https://reader:***@hub.example:8443/base"
    assert "Url-Pw-7731" not in repr(masked(cfg))
    assert redact(f"GET {cfg.hub.url}/api/datasets failed") == "GET https://***@hub.example:8443/base/api/datasets failed"
    assert redact("percent-encoded Url-Pw-7731 and Url%2DPw%2D7731?") == "percent-encoded *** and Url%2DPw%2D7731?"


@pytest.mark.usefixtures("own_secrets")
def test_a_lone_user_name_is_masked_too() -> None:
    # https://TOKEN@host is how several hubs take a token
    cfg = build_config({"hub": {"url": "https://ghp_tok3n9x@hub.example/"}})
    assert masked(cfg)["hub"]["url"] == "https://***@hub.example"
    assert "ghp_tok3n9x" not in redact(f"error at {cfg.hub.url}")


def test_daemon_effective_config_line_hides_the_url_password(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    proc = start_cli(["cron"], env={
        "DATAHUB_URL": "http://reader:Daemon-Pw-5520@127.0.0.1:9", "DATAHUB_DATASETS": "a",
        "DATAHUB_DATA_ROOT": str(tmp_path / "data"), "DATAHUB_LOG_FILE": str(log),
        "DATAHUB__SCHEDULE__RUN_ON_START": "never", "DATAHUB_SCHEDULE": "0 0 1 1 *"})
    try:
        wait_for(lambda: log.exists() and "effective config" in log.read_text(), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    line = next(x for x in log.read_text().splitlines() if "effective config" in x)
    assert "'url': 'http://reader:***@127.0.0.1:9'" in line
    assert "Daemon-Pw-5520" not in log.read_text() + out + err


def test_sync_failure_never_shows_the_url_password(tmp_path: Path) -> None:
    url = dead_url().replace("http://", "http://reader:Sync-Pw-8812@")
    env = {"DATAHUB_URL": url, "DATAHUB_DATASETS": "a", "DATAHUB_DATA_ROOT": str(tmp_path / "data"),
           "DATAHUB_STATE_DIR": str(tmp_path / "state"), "DATAHUB__HUB__RETRIES": "0"}
    code, out, err = run_cli(["sync"], env=env, timeout=60)
    assert code == 1, (out, err)
    state = (tmp_path / "state" / "state.json").read_text()
    assert "cannot reach the hub" in state
    code, status_out, status_err = run_cli(["status", "--json"], env=env, timeout=60)
    for text in (out, err, state, status_out, status_err):
        assert "Sync-Pw-8812" not in text


# ---- secrets at load time ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, sent", [
    ('hub:\n  headers:\n    X-Key: |\n      block-1234\n', "block-1234"),      # a block scalar ends in "\n"
    ('hub:\n  headers:\n    X-Key: "dq-1234\\r\\n"\n', "dq-1234"),
    ('hub:\n  headers:\n    X-Key: "  spaced-1234  "\n', "spaced-1234"),
    ('hub:\n  headers:\n    X-Key: |-\n      plain-1234\n', "plain-1234"),
])
def test_inline_header_one_line_break_dropped(tmp_path: Path, text: str, sent: str) -> None:
    cfg = load_config(str(write(tmp_path, text)), environ={})
    assert cfg.hub.headers["X-Key"] == sent
    assert resolve_credentials(cfg.hub)["X-Key"] == sent


def test_inline_token_block_scalar(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path, "hub:\n  token: |\n    yaml-token-1234\n")), environ={})
    assert resolve_credentials(cfg.hub)["Authorization"] == "Bearer yaml-token-1234"


@pytest.mark.parametrize("environ, sent", [
    ({"DATAHUB_TOKEN": "env-token-1234\n"}, {"Authorization": "Bearer env-token-1234"}),
    ({"DATAHUB_TOKEN": ""}, {}),                                          # an empty variable: no token
    ({"DATAHUB_HEADER_CF_ACCESS_CLIENT_ID": "cf-id-1234\r\n"}, {"CF-Access-Client-Id": "cf-id-1234"}),
])
def test_environment_secrets_one_line_break_dropped(environ: dict[str, str], sent: dict[str, str]) -> None:
    assert resolve_credentials(load_config(None, environ=environ).hub) == sent


LATIN_1 = "{}: contains a character outside Latin-1, which an HTTP header cannot carry"


@pytest.mark.parametrize("text, expected", [
    ('hub:\n  headers:\n    CF-Access-Client-Secret: "Hdr-Secret-61\\nX-Evil: 1"\n',
     "hub.headers.CF-Access-Client-Secret: contains a control character (a line break?)"),
    ('hub:\n  headers:\n    CF-Access-Client-Secret: "Hdr-Secret-61\\n\\n"\n',
     "hub.headers.CF-Access-Client-Secret: contains a control character (a line break?)"),
    ('hub:\n  headers:\n    X-Key: "Hdr-Secret-61\\x1b"\n', "hub.headers.X-Key: contains a control character (U+001B)"),
    ('hub:\n  headers:\n    X-Key: "Hdr-Secret-61\\u20ac"\n', LATIN_1.format("hub.headers.X-Key")),
    ('hub:\n  headers:\n    X-Key: ""\n', "hub.headers.X-Key: is empty"),
    ('hub:\n  headers:\n    X-Key: [Hdr-Secret-61]\n', "hub.headers.X-Key: expected a string, got list"),
    ('hub:\n  headers:\n    X-Key: {Hdr-Secret-61: 1}\n', "hub.headers.X-Key: expected a string, got dict"),
    ('hub:\n  headers:\n    X-Key: "file:"\n', "hub.headers.X-Key: 'file:' names no file"),
    ('hub:\n  token: "Hdr-Secret-61\\t"\n', "hub.token: contains a control character (a tab)"),
    ('hub:\n  token: 0123\n', "hub.token: expected a string (quote it: YAML may have changed a number), got int"),
    ('hub:\n  token: [Hdr-Secret-61]\n', "hub.token: expected a string, got list"),
    ('hub:\n  token: "   "\n', "hub.token: is empty"),
])
def test_bad_inline_secrets_refused_without_the_value(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      text: str, expected: str) -> None:
    err = refuse(write(tmp_path, text), capsys)
    assert err == f"datahubsync: {expected}"
    assert "Hdr-Secret-61" not in err


@pytest.mark.parametrize("var, value, expected", [
    ("DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET", "Env-Secret-93\nX-Evil: 1",
     "hub.headers.CF-Access-Client-Secret: contains a control character (a line break?)"),
    ("DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET", "Env-Secret-93\x7f", "hub.headers.CF-Access-Client-Secret: contains a control character (U+007F)"),
    ("DATAHUB_HEADER_X_KEY", "Env-Secret-93\u2603", LATIN_1.format("hub.headers.X-Key")),
    ("DATAHUB_TOKEN", "Env-Secret-93\n\n", "hub.token: contains a control character (a line break?)"),
    ("DATAHUB_TOKEN", "\u00a0Env-Secret-93\u20ac", LATIN_1.format("hub.token")),
])
def test_bad_environment_secrets_through_the_real_cli(var: str, value: str, expected: str) -> None:
    line = refused_by_cli({var: value, "DATAHUB_URL": "http://127.0.0.1:9"}, "status", "--json", secret="Env-Secret-93")
    assert line == f"datahubsync: {expected}"


def test_bad_secret_file_stops_the_sync_before_any_request(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    secret = tmp_path / "cf-secret"
    secret.write_bytes(b"File-Secret-27\n\n")
    env = {"DATAHUB_URL": faulty_hub.url, "DATAHUB_DATASETS": "a", "DATAHUB_DATA_ROOT": str(tmp_path / "data"),
           "DATAHUB_STATE_DIR": str(tmp_path / "state"), "DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET_FILE": str(secret)}
    line = refused_by_cli(env, "sync", secret="File-Secret-27")
    assert line == (f"datahubsync: hub.headers.CF-Access-Client-Secret: secret file {secret}: "
                    "contains a control character (a line break?)")
    assert len(faulty_hub.requests) == 0
    state = tmp_path / "state" / "state.json"
    assert not state.exists() or "File-Secret-27" not in state.read_text()


def test_secret_file_with_a_windows_line_end_is_sent_right(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("a", zip_bytes({"x.txt": b"x"}))
    faulty_hub.required_headers = {"CF-Access-Client-Secret": "Crlf-Secret-40", "Authorization": "Bearer Tok-Crlf-41"}
    (tmp_path / "cf").write_bytes(b"Crlf-Secret-40\r\n")
    (tmp_path / "token").write_bytes(b"Tok-Crlf-41\r\n")
    env = {"DATAHUB_URL": faulty_hub.url, "DATAHUB_DATASETS": "a", "DATAHUB_DATA_ROOT": str(tmp_path / "data"),
           "DATAHUB_STATE_DIR": str(tmp_path / "state"), "DATAHUB_TOKEN_FILE": str(tmp_path / "token"),
           "DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET_FILE": str(tmp_path / "cf"), "DATAHUB__SYNC__PACKAGE_WAIT": "0"}
    code, out, err = run_cli(["sync"], env=env, timeout=60)
    assert code == 0, (out, err)
    assert (tmp_path / "data" / "a" / "x.txt").read_bytes() == b"x"
    assert "Crlf-Secret-40" not in out + err and "Tok-Crlf-41" not in out + err


def test_yaml_written_by_tools_round_trips_a_secret(tmp_path: Path) -> None:
    # yaml.safe_dump writes a long value folded over lines; it must load back to the same header
    value = "v" * 150 + " w" * 30
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"hub": {"headers": {"X-Key": value}}}, width=40))
    assert load_config(str(path), environ={}).hub.headers["X-Key"] == value
