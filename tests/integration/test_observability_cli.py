"""The sync command with hooks, notifications and one-shot metrics switched on, end to end through
the CLI, against a hub on 127.0.0.1, a webhook receiver and a real Pushgateway."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import read_state, run_cli, start_cli, sync_env, tree, wait_for, write_config, zip_bytes
from tests.hubs import FaultyHub
from tests.integration.common import FILES, output
from tests.integration.test_notify_receiver import Receiver, receiver  # noqa: F401 - a fixture
from tests.integration.test_prometheus import gateway_samples, pushgateway  # noqa: F401 - a fixture

pytestmark = pytest.mark.timeout(120)

NEW = {"README.txt": b"daily bars, v2\n"}


def _with_hooks(tmp_path: Path, hub: FaultyHub, hooks: dict) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    write_config(config, {"url": hub.url, "retries": 1, "backoff": 0.05},
                 [{"name": "prices", "local_dir": str(tmp_path / "data" / "prices")}],
                 hooks=hooks, sync={"state_dir": str(tmp_path / "state"), "package_wait": 0})
    return {"DATAHUB_CONFIG": str(config)}


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_post_sync_hook_sees_the_new_version_in_its_environment(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z")
    seen = tmp_path / "seen.json"
    hook = _script(tmp_path, "hook", f"""import json, os
json.dump({{k: v for k, v in os.environ.items() if k.startswith("DATAHUB_")}}, open({str(seen)!r}, "w"))
print("indicators rebuilt")
""")
    env = _with_hooks(tmp_path, faulty_hub, {"post_sync": hook, "timeout": 30})

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    got = json.loads(seen.read_text())
    assert got["DATAHUB_DATASET"] == "prices"
    assert got["DATAHUB_DIR"] == str(tmp_path / "data" / "prices")
    assert got["DATAHUB_VERSION"] == "2026-11-28T08:30:00Z"
    assert got["DATAHUB_PREVIOUS_VERSION"] == ""
    assert got["DATAHUB_STATUS"] == "success"
    assert "indicators rebuilt" in err                     # the hook's output goes to the log

    faulty_hub.add_package("prices", zip_bytes({**FILES, **NEW}), "2026-11-29T08:30:00Z")
    assert run_cli(["sync"], env)[0] == 0
    got = json.loads(seen.read_text())
    assert (got["DATAHUB_VERSION"], got["DATAHUB_PREVIOUS_VERSION"]) == ("2026-11-29T08:30:00Z", "2026-11-28T08:30:00Z")


def test_a_failing_post_sync_hook_fails_the_dataset_but_keeps_the_data(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    env = _with_hooks(tmp_path, faulty_hub, {"post_sync": _script(tmp_path, "bad", "raise SystemExit(3)")})

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    assert entry["status"] == "hook_failed" and "post_sync hook failed" in entry["error"]
    assert entry["last_updated"] == "2026-11-28T08:30:00Z"   # the installed version is recorded
    assert run_cli(["healthcheck"], env)[0] == 1


def test_a_verify_hook_that_refuses_keeps_the_installed_version(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z")
    gate = _script(tmp_path, "gate", """import os, sys
sys.exit(0 if os.path.exists(os.path.join(os.environ["DATAHUB_DIR"], "2025")) else 1)
""")
    env = _with_hooks(tmp_path, faulty_hub, {"verify": gate})
    assert run_cli(["sync"], env)[0] == 0

    faulty_hub.add_package("prices", zip_bytes(NEW), "2026-11-29T08:30:00Z")   # lost its data folder
    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    entry = read_state(tmp_path / "state")["datasets"]["prices"]
    assert entry["status"] == "rejected" and entry["last_updated"] == "2026-11-28T08:30:00Z"
    assert "verify hook refused" in output(out, err)
    assert not list((tmp_path / "state").glob("staging/*")), "the refused tree was left behind"


def test_a_post_sync_hook_cut_short_by_a_kill_runs_again_at_the_next_start(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    started, finished = tmp_path / "started", tmp_path / "finished"
    hook = _script(tmp_path, "slow", f"""import os, pathlib, time
pathlib.Path({str(started)!r}).open("a").write(os.environ["DATAHUB_VERSION"] + "\\n")
time.sleep(float(os.environ.get("HOOK_SLEEP", "30")))
pathlib.Path({str(finished)!r}).write_text(os.environ["DATAHUB_VERSION"])
""")
    env = _with_hooks(tmp_path, faulty_hub, {"post_sync": hook})
    proc = start_cli(["sync"], env)
    try:
        wait_for(started.exists, timeout=30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert not finished.exists()

    code, out, err = run_cli(["sync"], {**env, "HOOK_SLEEP": "0"})

    assert code == 0, output(out, err)
    assert finished.read_text() == "2026-11-28T08:30:00Z"     # the same version's hook, run to its end
    assert "did not finish; running it again" in output(out, err)


def test_notifications_say_failure_then_recovery(faulty_hub: FaultyHub, tmp_path: Path,
                                                  receiver: Receiver) -> None:  # noqa: F811
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.fail_next("/api/datasets", 500, times=2)
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_NOTIFY_URL=receiver.url("/hook"),
                   DATAHUB_NOTIFY_FORMAT="json")

    assert run_cli(["sync"], env)[0] == 1
    assert run_cli(["sync"], env)[0] == 0
    assert run_cli(["sync"], env)[0] == 0          # up to date again: nothing to say

    messages = [r.json() for r in receiver.received]
    assert len(messages) == 2, messages
    assert "failure" in json.dumps(messages[0]) and "prices" in json.dumps(messages[0])
    assert "recovery" in json.dumps(messages[1])


def test_a_one_shot_sync_pushes_its_metrics_and_writes_the_textfile(faulty_hub: FaultyHub, tmp_path: Path,
                                                                   pushgateway: str) -> None:  # noqa: F811
    faulty_hub.add_package("prices", zip_bytes(FILES))
    textfile = tmp_path / "textfile" / "datahubsync.prom"
    textfile.parent.mkdir()
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__METRICS__PUSHGATEWAY=pushgateway,
                   DATAHUB__METRICS__TEXTFILE=str(textfile))

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    pushed = {(name, dict(labels).get("dataset"), dict(labels).get("result")): value
              for (name, labels), value in gateway_samples(pushgateway).items()}
    assert pushed[("datahubsync_runs_total", "prices", "success")] == 1
    assert pushed[("datahubsync_installed_files", "prices", None)] == len(FILES)
    assert pushed[("datahubsync_downloaded_bytes_total", "prices", None)] > 0
    written = {s.name: s.value for family in text_string_to_metric_families(textfile.read_text())
               for s in family.samples if s.labels.get("dataset") == "prices"}
    assert written["datahubsync_up_to_date"] == 1
    assert written["datahubsync_last_success_timestamp_seconds"] > 1.7e9
