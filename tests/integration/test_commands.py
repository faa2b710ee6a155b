"""check, healthcheck, status and the sync lock, through the CLI."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import dead_url, run_cli, start_cli, sync_env, tree, wait_for, zip_bytes
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
