"""check, healthcheck, status and the sync lock, through the CLI."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import dead_url, read_state, run_cli, start_cli, sync_env, tree, wait_for, zip_bytes
from tests.hubs import FaultyHub, OriginalHub
from tests.integration.common import FILES, original_env, output, publish, random_files

pytestmark = pytest.mark.timeout(60)


@pytest.mark.slow
def test_second_sync_exits_75_while_the_first_holds_the_lock(original_hub: OriginalHub, tmp_path: Path) -> None:
    files = random_files(4, 500_000)
    publish(original_hub, "prices", files)
    original_hub.rate = 700_000  # about 3 s
    env = original_env(original_hub, tmp_path)
    first = start_cli(["sync"], env)
    try:
        part = tmp_path / "state" / "downloads" / "prices.zip.part"
        wait_for(lambda: part.exists(), timeout=20)

        code, out, err = run_cli(["sync"], env)

        assert code == 75, output(out, err)
        assert "lock" in output(out, err).lower() or "another sync" in output(out, err).lower()
    finally:
        first_out, first_err = first.communicate(timeout=40)
    assert first.returncode == 0, first_err
    assert tree(tmp_path / "data" / "prices") == files


def test_check_passes_against_a_good_hub(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))

    code, out, err = run_cli(["check"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 0, output(out, err)
    assert "prices" in output(out, err)
    assert tree(tmp_path / "data" / "prices") == {}, "check must not sync"


def test_check_fails_against_a_dead_hub(tmp_path: Path) -> None:
    url = dead_url()

    code, out, err = run_cli(["check"], sync_env(url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="0"))

    assert code == 1, output(out, err)
    assert url.split("//")[1] in output(out, err)


def test_check_fails_when_dataset_not_published(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))

    code, out, err = run_cli(["check"], sync_env(faulty_hub.url, tmp_path, ["prices", "ghost"]))

    assert code == 1, output(out, err)
    assert "ghost" in output(out, err)


def test_check_fails_on_refused_credentials(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"Authorization": "Bearer right"}

    code, out, err = run_cli(["check"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_TOKEN="wrong"))

    assert code == 1, output(out, err)
    assert "403" in output(out, err)


@pytest.mark.slow
def test_healthcheck_healthy_after_success_unhealthy_after_failure(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    assert run_cli(["sync"], env)[0] == 0

    code, out, err = run_cli(["healthcheck"], env)
    assert code == 0, output(out, err)
    # healthcheck reads state only: it works with the hub gone.
    faulty_hub.stop()
    code, out, err = run_cli(["healthcheck"], env)
    assert code == 0, output(out, err)

    # A run that cannot reach the hub makes the last attempt a failure.
    code, out, err = run_cli(["sync"], {**env, "DATAHUB_URL": dead_url(), "DATAHUB__HUB__RETRIES": "0"})
    assert code == 1
    code, out, err = run_cli(["healthcheck"], env)
    assert code == 1
    lines = [line for line in output(out, err).splitlines() if line.strip()]
    assert len(lines) == 1 and "prices" in lines[0], lines


@pytest.mark.slow
def test_healthcheck_unhealthy_when_last_success_too_old(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    assert run_cli(["sync"], env)[0] == 0

    time.sleep(1.5)
    code, out, err = run_cli(["healthcheck"], {**env, "DATAHUB__HEALTH__MAX_AGE": "1"})

    assert code == 1, output(out, err)


def test_healthcheck_unhealthy_when_settings_missing(tmp_path: Path) -> None:
    code, out, err = run_cli(["healthcheck"], {"DATAHUB_STATE_DIR": str(tmp_path / "state")})

    assert code == 1, output(out, err)
    assert "url" in output(out, err).lower()


def test_status_text_shows_local_version_and_result(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z")
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    assert run_cli(["sync"], env)[0] == 0

    code, out, err = run_cli(["status"], env)

    assert code == 0, output(out, err)
    assert "prices" in out and "2026-11-28" in out and "success" in out


def test_status_exits_0_with_the_hub_down(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    assert run_cli(["sync"], env)[0] == 0

    code, out, err = run_cli(["status"], {**env, "DATAHUB_URL": dead_url(), "DATAHUB__HUB__RETRIES": "0"})

    assert code == 0, output(out, err)
    assert "prices" in out


def test_unknown_override_variable_is_a_config_error(tmp_path: Path) -> None:
    env = sync_env("http://127.0.0.1:9", tmp_path, ["prices"], DATAHUB__HUB__NO_SUCH_KEY="1")

    code, out, err = run_cli(["sync"], env)

    assert code == 2, output(out, err)
    assert "NO_SUCH_KEY" in output(out, err).upper()


# ---- hostile list entries: one bad entry fails only its dataset, in every command ------------------

DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_ENTRIES = {
    "year-1-with-offset": '{"name": "bad", "last_updated": "0001-01-01T00:00:00+08:00"}',
    "year-9999-with-offset": '{"name": "bad", "last_updated": "9999-12-31T23:59:59-08:00"}',
    "nan-time": '{"name": "bad", "last_updated": NaN}',
    "infinite-size": '{"name": "bad", "last_updated": 1795854600, "package_size": Infinity}',
    "huge-size": '{"name": "bad", "last_updated": 1795854600, "total_size": 1' + "0" * 400 + "}",
    "very-long-number": '{"name": "bad", "last_updated": 1795854600, "file_count": ' + "9" * 6000 + "}",
    "list-time": '{"name": "bad", "last_updated": ["2026-11-28"]}',
    "deep-time": '{"name": "bad", "last_updated": ' + DEEP + "}",
    "deep-url": '{"name": "bad", "last_updated": 1795854600, "download_url": ' + DEEP + "}",
    "listed-twice": '{"name": "bad", "last_updated": 1795854600}, {"name": "bad", "last_updated": 1795854601}',
}


def hostile_hub(hub: FaultyHub, entry: str) -> None:
    """The hub lists 'prices' properly and 'bad' with the given raw entry text."""
    hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z")
    good = '{"name": "prices", "last_updated": "2026-11-28T08:30:00Z", "package_size": %d}' % len(hub.packages["prices"].data)
    hub.list_override = (200, "application/json", ('{"datasets": [' + entry + ", " + good + "]}").encode())


def blocks(status_text: str) -> dict[str, str]:
    """`status` output per dataset: {name: its lines}."""
    found: dict[str, str] = {}
    name = ""
    for line in status_text.splitlines():
        if not line.startswith(" ") and ": " in line:
            name = line.split(":", 1)[0]
        found[name] = found.get(name, "") + line + "\n"
    return found


def no_internal_error(out: str, err: str) -> None:
    assert "internal error" not in output(out, err) and "Traceback" not in output(out, err), output(out, err)


@pytest.mark.parametrize("entry", list(HOSTILE_ENTRIES))
def test_status_and_check_report_a_bad_entry_for_its_dataset_only(faulty_hub: FaultyHub, tmp_path: Path,
                                                                 entry: str) -> None:
    hostile_hub(faulty_hub, HOSTILE_ENTRIES[entry])
    env = sync_env(faulty_hub.url, tmp_path, ["prices", "bad"])

    code, out, err = run_cli(["status"], env)
    assert code == 0, output(out, err)
    no_internal_error(out, err)
    shown = blocks(out)
    assert "remote version: - (the hub's entry is invalid: " in shown["bad"], out
    assert "remote version: 2026-11-28T08:30:00Z" in shown["prices"] and "invalid" not in shown["prices"], out

    code, out, err = run_cli(["status", "--json"], env)
    assert code == 0, output(out, err)
    rows = {row["name"]: row for row in json.loads(out)["datasets"]}
    assert rows["bad"]["remote_version"] is None and rows["bad"]["remote_error"]
    assert rows["prices"]["remote_version"] == "2026-11-28T08:30:00Z" and rows["prices"]["remote_error"] is None

    code, out, err = run_cli(["check"], env)
    assert code == 1, output(out, err)
    no_internal_error(out, err)
    failed = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert len(failed) == 1 and failed[0].startswith("[FAIL] bad: the hub's entry is invalid: "), out
    assert "[ ok ] prices: published, version 2026-11-28T08:30:00Z" in out


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["year-1-with-offset", "deep-time", "infinite-size"])
def test_sync_fails_the_bad_entry_and_healthcheck_reports_it(faulty_hub: FaultyHub, tmp_path: Path,
                                                            entry: str) -> None:
    hostile_hub(faulty_hub, HOSTILE_ENTRIES[entry])
    env = sync_env(faulty_hub.url, tmp_path, ["prices", "bad"])

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    no_internal_error(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    state = read_state(tmp_path / "state")["datasets"]
    assert state["prices"]["status"] == "success"
    assert state["bad"]["status"] == "error" and "the hub's entry for 'bad' is invalid" in state["bad"]["error"]
    code, out, err = run_cli(["healthcheck"], env)
    assert code == 1 and out.startswith("unhealthy: bad: last sync failed (error)"), output(out, err)


def test_a_list_that_is_not_json_fails_check_with_one_line(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.list_override = (200, "application/json", b"[" * 100_000 + b'"')
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])

    code, out, err = run_cli(["check"], env)

    assert code == 1, output(out, err)
    no_internal_error(out, err)
    assert any(line.startswith("[FAIL] hub: ") and "not JSON" in line for line in out.splitlines()), out


# ---- hostile state files -----------------------------------------------------------------------------

@pytest.mark.parametrize("state", [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep"),
    pytest.param(b'{"version": 1, "datasets": {"prices": {"status": "success", "synced_at": '
                 b'"0001-01-01T00:00:00+08:00", "last_updated": "2026-11-28T08:30:00Z"}}}', id="year-1"),
    pytest.param(b'{"version": 1, "datasets": {"prices": {"status": "success", "files": "many"}}}', id="wrong-type"),
    pytest.param(b'{"version": 1, "datasets": {"prices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", id="deep-entry"),
    pytest.param(b'{"prices": {"when": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", id="original-format-deep"),
])
def test_every_command_treats_a_hostile_state_file_as_never_synced(faulty_hub: FaultyHub, tmp_path: Path,
                                                                   state: bytes) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z")
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(state)
    (tmp_path / "state" / "daemon.json").write_bytes(b"[" * 100_000)

    for argv, expected in ((["status"], 0), (["status", "--json"], 0), (["check"], 0), (["healthcheck"], 0)):
        code, out, err = run_cli(argv, env)
        assert code == expected, (argv, output(out, err))
        no_internal_error(out, err)
        if argv[0] == "status":
            assert "never_synced" in out, out
            assert str(tmp_path / "state" / "state.json") in err, err

    code, out, err = run_cli(["sync"], env)
    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == "success"


# ---- the crontab in check ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8", "unreadable"])
def test_check_fails_on_an_unreadable_crontab(faulty_hub: FaultyHub, tmp_path: Path, kind: str) -> None:
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    faulty_hub.add_package("prices", zip_bytes(FILES))
    path = tmp_path / "crontab"
    reason = {"missing": "No such file or directory", "directory": "Is a directory",
              "not-utf8": "not UTF-8 text (byte 28)", "unreadable": "Permission denied"}[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"15 8 * * * datahubsync sync \xff\n")
    elif kind == "unreadable":
        path.write_text("15 8 * * * datahubsync sync\n")
        path.chmod(0)

    code, out, err = run_cli(["check"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_CRONTAB=str(path)))

    assert code == 1, output(out, err)
    failed = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert failed == [f"[FAIL] cannot read crontab {path}: {reason}"], out
    assert "valid (0 job(s))" not in out


def test_check_reads_a_good_crontab(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    path = tmp_path / "crontab"
    path.write_text("CRON_TZ=Asia/Shanghai\n15 8 * * 1-5 datahubsync sync\n")

    code, out, err = run_cli(["check"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_CRONTAB=str(path)))

    assert code == 0, output(out, err)
    assert f"[ ok ] crontab {path} valid (1 job(s))" in out


# ---- schedule.timezone ---------------------------------------------------------------------------------

def test_the_daemon_reads_its_schedule_in_schedule_timezone(tmp_path: Path) -> None:
    """TZ says UTC, schedule.timezone says Kolkata (+05:30, no daylight saving): the job's next run is
    08:30 in Kolkata, as the scheduler logs it."""
    env = sync_env(dead_url(), tmp_path, ["prices"], TZ="UTC", DATAHUB_SCHEDULE="30 8 * * *",
                   DATAHUB__SCHEDULE__TIMEZONE="Asia/Kolkata", DATAHUB__SCHEDULE__RUN_ON_START="never",
                   DATAHUB_LOG_LEVEL="DEBUG")
    daemon = start_cli(["cron"], env)
    try:
        lines: list[str] = []
        assert daemon.stderr is not None
        for line in daemon.stderr:
            lines.append(line)
            if "next run at" in line:
                break
    finally:
        daemon.send_signal(signal.SIGTERM)
        rest, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0
    assert any("schedules run in time zone Asia/Kolkata (schedule.timezone)" in line for line in lines), lines
    next_run = lines[-1].split("next run at ", 1)[1].split()[0]
    assert next_run.endswith("T08:30:00+05:30"), lines[-1]
