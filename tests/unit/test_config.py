"""Configuration: the original client's file, every refusal (exit 2, key path named), the environment."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

import entrypoint
from app.core.config import ConfigError, build_config, load_config, masked
from app.core.secrets import resolve_credentials

ORIGINAL = textwrap.dedent("""\
    hub:
      url: "https://data.quantrade.fun"
      timeout: 300
    datasets:
      - name: "stock-trading-data-pro"
        local_dir: "/data/stock-trading-data-pro"
      - name: "stock-fin-data-xbx"
        local_dir: "/data/stock-fin-data-xbx"
    logging:
      level: "INFO"
      file: "logs/sync.log"
    """)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() reads os.environ: no DATAHUB_* of the test runner may leak in."""
    for name in list(os.environ):
        if name.startswith("DATAHUB"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refuse(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI on a config that must be refused; returns its one-line message."""
    code = entrypoint.main(["--config", str(path), "healthcheck"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err, f"not one line: {err!r}"
    assert "Traceback" not in err
    return err


# ---- the original client's config ---------------------------------------------------------------

def test_original_client_config_loads_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, ORIGINAL)
    cfg = load_config(str(path), environ={})
    assert cfg.hub.url == "https://data.quantrade.fun"
    assert cfg.hub.timeout == 300
    assert [d.name for d in cfg.datasets] == ["stock-trading-data-pro", "stock-fin-data-xbx"]
    assert cfg.datasets[0].local_dir == Path("/data/stock-trading-data-pro")
    assert all(d.mode == "overlay" and d.strip_components == 0 for d in cfg.datasets)
    assert cfg.logging.level == "INFO" and cfg.logging.file == "logs/sync.log"
    assert cfg.source == path
    assert cfg.state_dir == Path("/data/.datahubsync")
    assert cfg.warnings == ()
    assert cfg.missing() == []


def test_defaults_match_the_spec() -> None:
    cfg = build_config({"hub": {"url": "http://127.0.0.1:1"}, "datasets": ["a"]})
    assert (cfg.hub.retries, cfg.hub.connect_timeout, cfg.hub.verify_tls, cfg.hub.timezone) == (5, 10, True, "UTC")
    assert (cfg.sync.parallel, cfg.sync.keep_packages, cfg.sync.max_delete_ratio) == (2, False, 0.5)
    assert (cfg.sync.package_wait, cfg.sync.stale_package_tolerance) == (600, 900)
    assert (cfg.schedule.cron, cfg.schedule.run_on_start) == ("15 8 * * *", "missing")
    assert (cfg.health.max_age, cfg.health.grace) == (93600, 3600)
    assert (cfg.logging.level, cfg.logging.format) == ("INFO", "text")
    assert cfg.datasets[0].local_dir == Path("/data/a")


# ---- refusals, through the CLI --------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("hub: {url: 'http://h'}\nbogus: 1\n", "bogus: unknown key"),
    ("hub: {url: 'http://h', tokn: x}\n", "hub.tokn: unknown key"),
    ("hub: {url: 'http://h'}\ndatasets:\n  - {name: a, localdir: /x}\n", "datasets[0].localdir: unknown key"),
    ("hub: {url: 'http://h', timeout: soon}\n", "hub.timeout: expected a number, got 'soon'"),
    ("hub: {url: 'http://h', retries: 1.5}\n", "hub.retries: expected an integer"),
    ("sync: {keep_packages: maybe}\n", "sync.keep_packages: expected true or false, got 'maybe'"),
    ("hub: [1, 2]\n", "hub: expected a mapping"),
    ("datasets: just-one\n", "datasets: expected a list"),
    ("hub: {url: 'http://h', headers: [a]}\n", "hub.headers: expected a mapping"),
    ("sync: {parallel: 0}\n", "sync.parallel: must be at least 1"),
    ("logging: {level: LOUD}\n", "logging.level: expected one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', got 'LOUD'"),
    ("datasets:\n  - name: a\n  - {name: b, mode: mirorr}\n",
     "datasets[1].mode: expected 'overlay' or 'mirror', got 'mirorr'"),
    ("hub: {url: 'ftp://example.org'}\n", "hub.url: expected an http:// or https:// URL, got 'ftp://example.org'"),
    ("hub: {url: 'http://'}\n", "hub.url: expected an http:// or https:// URL"),
    ("hub: {url: 'http://h/?a=1'}\n", "hub.url: the hub URL takes no query"),
    ("datasets: [a, b, a]\n", "datasets[2].name: 'a' is listed twice (also datasets[0])"),
    ("datasets:\n  - {name: 'a/b'}\n", "datasets[0].name: 'a/b' is not a dataset name"),
    ("datasets:\n  - {name: a, local_dir: /srv/x}\n  - {name: b, local_dir: /srv/x}\n",
     "datasets[1].local_dir: '/srv/x' overlaps datasets[0].local_dir"),
    ("datasets:\n  - {name: a, local_dir: /srv/x}\n  - {name: b, local_dir: /srv/x/inner}\n",
     "datasets[1].local_dir: '/srv/x/inner' overlaps datasets[0].local_dir"),
    ("datasets:\n  - {name: a, local_dir: /srv/x/inner}\n  - {name: b, local_dir: /srv/x}\n",
     "datasets[1].local_dir: '/srv/x' overlaps datasets[0].local_dir"),
    ("hub: {url: 'http://h', timezone: Mars/Olympus_Mons}\n", "hub.timezone: unknown time zone 'Mars/Olympus_Mons'"),
    ("schedule: {timezone: Nowhere/Land}\n", "schedule.timezone: unknown time zone"),
    ("schedule: {cron: '61 8 * * *'}\n", "schedule.cron: invalid cron expression '61 8 * * *'"),
    ("schedule: {cron: 'every morning'}\n", "schedule.cron: invalid cron expression"),
    ("schedule: {run_on_start: sometimes}\n", "schedule.run_on_start: expected one of 'missing', 'always', 'never'"),
    ("- just\n- a list\n", "expected a mapping at the top level"),
])
def test_refused_with_key_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str) -> None:
    err = refuse(write(tmp_path, text), capsys)
    assert expected in err


def test_refusal_also_from_load_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^datasets\[1\]\.mode: expected 'overlay' or 'mirror', got 'mirorr'$"):
        load_config(str(write(tmp_path, "datasets:\n  - a\n  - {name: b, mode: mirorr}\n")), environ={})


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    err = refuse(path, capsys)
    assert str(path) in err and "not found" in err


def test_missing_file_named_by_datahub_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "elsewhere.yaml"
    monkeypatch.setenv("DATAHUB_CONFIG", str(path))
    assert entrypoint.main(["healthcheck"]) == 2
    assert str(path) in capsys.readouterr().err


def test_unreadable_file_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "config.yaml"
    folder.mkdir()
    err = refuse(folder, capsys)
    assert str(folder) in err and "cannot read config file" in err


def _main_as_nobody(argv: list[str]) -> tuple[int, str]:
    """Run the CLI in a forked child without root's power to read anything (root ignores file modes)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:                                      # the child: drop to nobody, run, report
        try:
            sys.stderr = os.fdopen(write_end, "w", buffering=1)
            import app.commands.status  # noqa: F401 - imported while the interpreter's files are still readable
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            code = entrypoint.main(argv)
            sys.stderr.flush()
        except BaseException as exc:                  # noqa: BLE001 - any escape is a failure code
            os.write(write_end, f"child failed: {exc!r}".encode())
            code = 99
        os._exit(int(code))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        err = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err.strip()


def test_unreadable_file_no_permission(tmp_path: Path) -> None:
    path = write(tmp_path, ORIGINAL)
    path.chmod(0)
    tmp_path.chmod(0o755)
    try:
        code, err = _main_as_nobody(["--config", str(path), "healthcheck"])
    finally:
        path.chmod(0o644)
    assert code == 2, err
    assert "\n" not in err and str(path) in err and "cannot read config file" in err


def test_unreadable_file_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"hub:\n  url: \xff\xfe\x80\n")
    err = refuse(path, capsys)
    assert str(path) in err and "cannot read config file" in err


def test_invalid_yaml_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, """\
        hub:
          url: "http://127.0.0.1:1"
        datasets:
          - name: a
           - name: b
        """)
    err = refuse(path, capsys)
    assert err.startswith(f"datahubsync: {path}:5:"), err
    assert "invalid YAML" in err


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path, "")), environ={})
    assert cfg.hub.url is None and cfg.datasets == ()
    assert len(cfg.missing()) == 2


def test_relative_local_dir_goes_under_data_root(tmp_path: Path) -> None:
    cfg = build_config({"sync": {"data_root": str(tmp_path)},
                        "datasets": [{"name": "a", "local_dir": "sub/a"}, {"name": "b"}]})
    assert cfg.datasets[0].local_dir == tmp_path / "sub" / "a"
    assert cfg.datasets[1].local_dir == tmp_path / "b"
    assert cfg.state_dir == tmp_path / ".datahubsync"


def test_mirror_over_the_state_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^datasets\[0\]\.local_dir: mirror mode would replace"):
        build_config({"sync": {"data_root": str(tmp_path)},
                      "datasets": [{"name": "a", "local_dir": str(tmp_path), "mode": "mirror"}]})
    # the same directory in overlay mode is fine, and so is mirror with the state elsewhere
    build_config({"sync": {"data_root": str(tmp_path)}, "datasets": [{"name": "a", "local_dir": str(tmp_path)}]})
    build_config({"sync": {"data_root": str(tmp_path), "state_dir": str(tmp_path.parent / "st")},
                  "datasets": [{"name": "a", "local_dir": str(tmp_path), "mode": "mirror"}]})


# ---- the environment ------------------------------------------------------------------------------

def test_precedence_defaults_file_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "hub: {url: 'http://127.0.0.1:1', timeout: 100}\ndatasets: [a]\n")
    assert build_config({}).hub.timeout == 300
    assert load_config(str(path), environ={}).hub.timeout == 100
    cfg = load_config(str(path), environ={"DATAHUB_TIMEOUT": "200", "DATAHUB_URL": "https://other.example/hub/"})
    assert cfg.hub.timeout == 200
    assert cfg.hub.url == "https://other.example/hub"


def test_environment_alone_needs_no_file(tmp_path: Path) -> None:
    cfg = load_config(None, environ={
        "DATAHUB_URL": "http://127.0.0.1:9", "DATAHUB_DATA_ROOT": str(tmp_path),
        "DATAHUB_DATASETS": f"alpha=/srv/alpha, beta ,gamma={tmp_path}/g",
        "DATAHUB_PARALLEL": "3", "DATAHUB_STATE_DIR": str(tmp_path / "st"),
        "DATAHUB_SCHEDULE": "0 6 * * 1-5", "DATAHUB_LOG_LEVEL": "debug", "DATAHUB_LOG_FORMAT": "json",
    })
    assert cfg.source is None
    assert [(d.name, d.local_dir) for d in cfg.datasets] == [
        ("alpha", Path("/srv/alpha")), ("beta", tmp_path / "beta"), ("gamma", tmp_path / "g")]
    assert cfg.sync.parallel == 3 and cfg.state_dir == tmp_path / "st"
    assert cfg.schedule.cron == "0 6 * * 1-5"
    assert (cfg.logging.level, cfg.logging.format) == ("DEBUG", "json")


def test_datahub_datasets_replaces_the_file_list(tmp_path: Path) -> None:
    path = write(tmp_path, "datasets: [a, b]\n")
    cfg = load_config(str(path), environ={"DATAHUB_DATASETS": "c"})
    assert [d.name for d in cfg.datasets] == ["c"]


def test_datahub_datasets_empty_dir_refused() -> None:
    with pytest.raises(ConfigError, match="DATAHUB_DATASETS"):
        load_config(None, environ={"DATAHUB_DATASETS": "a="})


def test_header_variables(tmp_path: Path) -> None:
    secret = tmp_path / "x-secret"
    secret.write_text("from-a-file\n")
    path = write(tmp_path, "hub:\n  url: 'http://127.0.0.1:1'\n  headers: {X-Keep: kept}\n")
    cfg = load_config(str(path), environ={
        "DATAHUB_HEADER_CF_ACCESS_CLIENT_ID": "client-id-123",
        "DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET_FILE": str(secret),
        "DATAHUB_HEADER_X_FILE": str(secret),
    })
    assert cfg.hub.headers["CF-Access-Client-Id"] == "client-id-123"
    assert cfg.hub.headers["X"] == f"file:{secret}"
    assert cfg.hub.headers["X-Keep"] == "kept"
    sent = resolve_credentials(cfg.hub)
    assert sent["CF-Access-Client-Id"] == "client-id-123"
    assert sent["CF-Access-Client-Secret"] == "from-a-file"
    assert sent["X"] == "from-a-file"
    assert "Authorization" not in sent
    # read at run time, not at load time
    secret.write_text("rotated-value\n")
    assert resolve_credentials(cfg.hub)["X"] == "rotated-value"


def test_token_file_is_read_again_on_every_resolve(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token-0001\n")
    cfg = load_config(None, environ={"DATAHUB_URL": "http://127.0.0.1:1", "DATAHUB_TOKEN_FILE": str(token)})
    assert resolve_credentials(cfg.hub)["Authorization"] == "Bearer first-token-0001"
    token.write_text("second-token-0002")
    assert resolve_credentials(cfg.hub)["Authorization"] == "Bearer second-token-0002"


def test_token_file_missing_is_a_config_error(tmp_path: Path) -> None:
    cfg = load_config(None, environ={"DATAHUB_TOKEN_FILE": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="hub.token_file"):
        resolve_credentials(cfg.hub)


def test_double_underscore_variables() -> None:
    cfg = load_config(None, environ={"DATAHUB__HUB__RETRIES": "8", "DATAHUB__SYNC__KEEP_PACKAGES": "true",
                                     "DATAHUB__HUB__BACKOFF": "0.05", "DATAHUB__HEALTH__MAX_AGE": "60"})
    assert cfg.hub.retries == 8 and isinstance(cfg.hub.retries, int)
    assert cfg.sync.keep_packages is True
    assert cfg.hub.backoff == 0.05
    assert cfg.health.max_age == 60


def test_double_underscore_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^hub\.retries: expected an integer, got 'many'"):
        load_config(None, environ={"DATAHUB__HUB__RETRIES": "many"})


@pytest.mark.parametrize("var", ["DATAHUB__NOPE__X", "DATAHUB__HUB__NOPE", "DATAHUB__HUB", "DATAHUB__HUB__HEADERS"])
def test_double_underscore_naming_no_key_is_an_error(var: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_config(None, environ={var: "1"})


def test_double_underscore_naming_no_key_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB__NOPE__X", "1")
    assert entrypoint.main(["healthcheck"]) == 2
    assert "DATAHUB__NOPE__X" in capsys.readouterr().err


def test_unknown_datahub_variable_is_a_warning() -> None:
    cfg = load_config(None, environ={"DATAHUB_FOO": "1", "DATAHUB_URL": "http://127.0.0.1:1",
                                     "DATAHUB_CRONTAB": "/x", "OTHER_FOO": "1"})
    assert len(cfg.warnings) == 1
    assert "DATAHUB_FOO" in cfg.warnings[0]
    assert cfg.hub.url == "http://127.0.0.1:1"


def test_env_value_with_wrong_enum_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^logging\.format: expected 'text' or 'json', got 'xml'$"):
        load_config(None, environ={"DATAHUB_LOG_FORMAT": "xml"})


# ---- masking --------------------------------------------------------------------------------------

def test_masked_hides_the_token() -> None:
    cfg = build_config({"hub": {"url": "http://127.0.0.1:1", "token": "tok-very-secret"}, "datasets": ["a"]})
    shown = masked(cfg)
    assert "tok-very-secret" not in repr(shown)
    assert shown["hub"]["token"] == "***"
    assert shown["hub"]["url"] == "http://127.0.0.1:1"
    assert shown["datasets"] == [{"name": "a", "local_dir": "/data/a", "mode": "overlay"}]
    assert "tok-very-secret" not in repr(cfg.hub)


def test_masked_hides_header_values() -> None:
    # headers set (as for Cloudflare Access) is the common case: the daemon logs masked(config) at start
    cfg = load_config(None, environ={"DATAHUB_URL": "http://127.0.0.1:1", "DATAHUB_TOKEN": "tok-very-secret",
                                     "DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET": "hdr-very-secret"})
    shown = masked(cfg)
    assert "tok-very-secret" not in repr(shown) and "hdr-very-secret" not in repr(shown)
    assert shown["hub"]["token"] == "***"
    assert shown["hub"]["headers"] == {"CF-Access-Client-Secret": "***"}
