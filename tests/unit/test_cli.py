"""The command line: `main([...])` in process for exit codes and messages, one real `serve` process."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

import entrypoint
from app import __version__
from app.sync.lock import SyncLock

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() reads os.environ, configures the program's logger and installs signal handlers: undo all three."""
    for name in list(os.environ):
        if name.startswith("DATAHUB"):
            monkeypatch.delenv(name)
    logger = logging.getLogger("datahubsync")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            if handler not in saved[0]:
                logger.removeHandler(handler)
                handler.close()
        for handler in saved[0]:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(saved[1])
        logger.propagate = saved[2]
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"datahubsync {__version__}"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["synk"]) == 2
    err = capsys.readouterr().err
    assert "synk" in err and "Traceback" not in err


def test_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["sync", "--forse"]) == 2
    assert "--forse" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("sync", "cron", "check", "status", "healthcheck", "serve"):
        assert command in out


def test_sync_without_a_hub_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DATAHUB_DATASETS", "ds")
    assert entrypoint.main(["sync"]) == 2
    err = capsys.readouterr().err
    assert "DATAHUB_URL" in err and "hub.url" in err
    assert "Traceback" not in err
    assert not (tmp_path / "data").exists()          # nothing written


def test_sync_without_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
    assert entrypoint.main(["sync"]) == 2
    assert "DATAHUB_DATASETS" in capsys.readouterr().err


def test_sync_of_an_unconfigured_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DATAHUB_DATASETS", "ds")
    assert entrypoint.main(["sync", "nope"]) == 2
    assert "'nope' is not configured" in capsys.readouterr().err


def test_sync_with_a_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["--config", str(tmp_path / "absent.yaml"), "sync"]) == 2
    assert "absent.yaml: config file not found" in capsys.readouterr().err


def test_sync_while_another_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("DATAHUB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DATAHUB_STATE_DIR", str(state))
    monkeypatch.setenv("DATAHUB_DATASETS", "ds")
    with SyncLock(state / "lock"):
        assert entrypoint.main(["sync"]) == 75
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "another sync is running" in err


def test_sync_skip_if_locked_is_nothing_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("DATAHUB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("DATAHUB_STATE_DIR", str(state))
    monkeypatch.setenv("DATAHUB_DATASETS", "ds")
    with SyncLock(state / "lock"):
        assert entrypoint.main(["sync", "--skip-if-locked"]) == 0
    err = capsys.readouterr().err
    assert "nothing to do" in err and "another sync is running" in err
    assert not (tmp_path / "data").exists()          # it did nothing at all
    assert not (state / "state.json").exists()


@pytest.mark.parametrize("port", ["70000", "-1", "http", "99999999999999999999"])
def test_serve_refuses_a_port_out_of_range(tmp_path: Path, port: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["serve", str(tmp_path), "--port", port]) == 2
    err = capsys.readouterr().err.strip()
    assert "--port" in err and "0-65535" in err and len(err.splitlines()) == 1


class Refusing(BaseHTTPRequestHandler):
    """A hub that refuses every credential, echoing the Authorization header back (as some proxies do)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = f"denied: {self.headers.get('Authorization')}".encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_auth_failure_exits_1_without_printing_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        token = tmp_path / "token"
        token.write_text("cli-secret-token-5150\n")
        monkeypatch.setenv("DATAHUB_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("DATAHUB_TOKEN_FILE", str(token))
        monkeypatch.setenv("DATAHUB_DATA_ROOT", str(tmp_path / "data"))
        monkeypatch.setenv("DATAHUB_DATASETS", "ds")
        monkeypatch.setenv("DATAHUB__HUB__RETRIES", "0")
        code = entrypoint.main(["sync"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "401" in captured.err
    assert "cli-secret-token-5150" not in captured.err + captured.out
    assert not (tmp_path / "data" / "ds").exists()


def crontab(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crontab"
    path.write_text(text)
    return path


def test_cron_test_with_a_bad_crontab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = crontab(tmp_path, "# nightly\n15 8 * * * datahubsync sync\n61 * * * * datahubsync sync\n")
    assert entrypoint.main(["cron", "--crontab", str(path), "--test"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "line 3" in err
    assert "crontab is valid" not in err


def test_cron_test_with_a_good_crontab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = crontab(tmp_path, "CRON_TZ=Asia/Shanghai\n15 8 * * 1-5 datahubsync sync\n*/5 * * * * echo hi\n")
    assert entrypoint.main(["cron", "--crontab", str(path), "--test"]) == 0
    assert capsys.readouterr().out.strip() == "crontab is valid"


def test_cron_test_reads_datahub_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB_CRONTAB", str(crontab(tmp_path, "not a cron line\n")))
    assert entrypoint.main(["cron", "--test"]) == 2
    assert "line 1" in capsys.readouterr().err


def test_cron_test_with_an_unreadable_crontab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["cron", "--crontab", str(tmp_path / "absent"), "--test"]) == 2
    assert "cannot read crontab" in capsys.readouterr().err


def test_cron_test_default_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["cron", "--test"]) == 0
    assert "crontab is valid" in capsys.readouterr().out


def test_cron_test_bad_datahub_schedule(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATAHUB_SCHEDULE", "15 25 * * *")
    assert entrypoint.main(["cron", "--test"]) == 2
    assert "schedule.cron" in capsys.readouterr().err


def test_serve_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["serve", str(tmp_path / "absent"), "--host", "127.0.0.1", "--port", "0"]) == 2
    assert "absent" in capsys.readouterr().err


def test_serve_process_logs_its_address_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "ds.zip").write_bytes(b"PK\x05\x06" + bytes(18))      # an empty ZIP
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB")}
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "entrypoint.py"), "serve", str(tmp_path),
                             "--host", "127.0.0.1", "--port", "0"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"{url}/api/datasets", timeout=10) as r:
            names = [d["name"] for d in json.load(r)["datasets"]]
        assert names == ["ds"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-headers"),
    pytest.param({"DATAHUB_HEADER_CF_ACCESS_CLIENT_ID": "cf-id-for-daemon",
                  "DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET": "cf-secret-for-daemon"}, id="cloudflare-access-headers"),
])
def test_cron_daemon_starts_and_stops_on_sigterm(tmp_path: Path, headers: dict[str, str]) -> None:
    """The daemon logs its masked config at start, keeps running, and stops cleanly (headers are the
    typical deployment behind Cloudflare Access)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB")}
    env.update({"DATAHUB_URL": "http://127.0.0.1:9", "DATAHUB_DATASETS": "ds",
                "DATAHUB_DATA_ROOT": str(tmp_path / "data"), "DATAHUB__SCHEDULE__RUN_ON_START": "never"})
    env.update(headers)
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "entrypoint.py"), "cron"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        if "cron starting" not in first:
            proc.kill()
            pytest.fail(f"the daemon did not start: {(first + proc.stderr.read())[-600:]}")
        assert "cf-secret-for-daemon" not in first and "cf-id-for-daemon" not in first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest and "cf-secret-for-daemon" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_main_takes_its_environment_in_and_leaves_globals_as_it_found_them(tmp_path: Path) -> None:
    import io
    import logging
    import signal
    from datetime import datetime, timezone

    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("datahubsync")
    before = (list(logger.handlers), logger.level, logger.propagate, signal.getsignal(signal.SIGTERM))
    environ = {"DATAHUB_URL": "http://127.0.0.1:9", "DATAHUB_DATASETS": "prices", "DATAHUB__HUB__RETRIES": "0",
               "DATAHUB_DATA_ROOT": str(tmp_path / "data"), "DATAHUB_STATE_DIR": str(tmp_path / "state")}
    env = entrypoint.Environment(out, err, environ, handle_signals=False,
                                 clock=lambda: datetime(2030, 1, 1, tzinfo=timezone.utc))

    assert entrypoint.main(["healthcheck"], env) == 0          # nothing failed yet, no daemon: healthy
    assert out.getvalue() == "healthy\n"
    assert entrypoint.main(["sync"], env) == 1                 # the hub is not there
    assert "cannot reach the hub" in err.getvalue()
    assert entrypoint.main(["cron", "--test"], env) == 0
    assert out.getvalue().endswith("crontab is valid\n")
    assert (list(logger.handlers), logger.level, logger.propagate, signal.getsignal(signal.SIGTERM)) == before
