"""`docker run --rm IMAGE sync` and `check`: bind mounts, users, a read-only root, unwritable /data."""
from __future__ import annotations

import json
import time
from pathlib import Path

from tests.dockerutil import APP_UID, run, sync_env, writable_dir
from tests.helpers import zip_bytes
from tests.hubs import FaultyHub

V1 = "2026-11-28T08:30:00Z"
FILES = {
    "sh600000.csv": "date,open,high,low,close\n2026-11-27,10.00,10.50,9.90,10.20\n",
    "daily/sz000001.csv": "date,open,high,low,close\n2026-11-27,12.00,12.10,11.80,11.90\n",
}


def publish(hub: FaultyHub, name: str = "prices", files: dict[str, str] = FILES, when: str = V1) -> None:
    hub.add_package(name, zip_bytes(files), when, sha256=True)


def assert_installed(data: Path, name: str = "prices", files: dict[str, str] = FILES) -> None:
    for rel, content in files.items():
        assert (data / name / rel).read_text() == content


def test_sync_into_bind_mount_owned_by_uid_1000_then_up_to_date(
        image: str, faulty_hub: FaultyHub, data_dir: Path) -> None:
    publish(faulty_hub)
    env = sync_env(faulty_hub.url, ["prices"])
    proc = run(["sync"], env=env, volumes={data_dir: "/data"}, image=image)
    assert proc.returncode == 0, proc.stderr
    assert_installed(data_dir)
    owners = {p.stat().st_uid for p in (data_dir / "prices").rglob("*")}
    assert owners == {APP_UID}
    state = json.loads((data_dir / ".datahubsync" / "state.json").read_text())
    assert state["datasets"]["prices"]["last_updated"] == V1

    faulty_hub.requests.reset()
    began = time.monotonic()
    again = run(["sync"], env=env, volumes={data_dir: "/data"}, image=image)
    elapsed = time.monotonic() - began
    print(f"cold `docker run --rm IMAGE sync`, up to date: {elapsed:.2f} s")
    assert again.returncode == 0, again.stderr
    assert not faulty_hub.requests.to("/package/"), "an up-to-date dataset was downloaded again"
    assert elapsed < 10


def test_read_only_root_with_tmpfs(image: str, faulty_hub: FaultyHub, data_dir: Path) -> None:
    publish(faulty_hub)
    proc = run(["sync"], env=sync_env(faulty_hub.url, ["prices"]), volumes={data_dir: "/data"},
               options=["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                        "--security-opt", "no-new-privileges:true"], image=image)
    assert proc.returncode == 0, proc.stderr
    assert_installed(data_dir)


def test_any_user_that_owns_data(image: str, faulty_hub: FaultyHub, tmp_path: Path) -> None:
    data = writable_dir(tmp_path / "data", uid=4242, gid=4343)
    publish(faulty_hub)
    proc = run(["sync"], env=sync_env(faulty_hub.url, ["prices"]), volumes={data: "/data"},
               options=["--user", "4242:4343"], image=image)
    assert proc.returncode == 0, proc.stderr
    assert_installed(data)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (data / "prices").rglob("*")} == {(4242, 4343)}


def test_unwritable_data_exits_1_naming_uid_and_fix(image: str, faulty_hub: FaultyHub, tmp_path: Path) -> None:
    data = writable_dir(tmp_path / "data", uid=0)  # root's, 0755: uid 1000 cannot write
    publish(faulty_hub)
    proc = run(["sync"], env=sync_env(faulty_hub.url, ["prices"]), volumes={data: "/data"}, image=image)
    assert proc.returncode == 1, proc.stderr
    assert "uid 1000" in proc.stderr
    assert "chown -R 1000:1000" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(data.iterdir()) == []


def test_check_against_good_hub(image: str, faulty_hub: FaultyHub, data_dir: Path) -> None:
    publish(faulty_hub)
    proc = run(["check"], env=sync_env(faulty_hub.url, ["prices"]), volumes={data_dir: "/data"}, image=image)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "prices" in proc.stdout + proc.stderr


def test_check_against_dead_hub(image: str, dead_url: str, data_dir: Path) -> None:
    proc = run(["check"], env=sync_env(dead_url, ["prices"]), volumes={data_dir: "/data"}, image=image)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert dead_url.split("//")[1] in proc.stdout + proc.stderr


def test_missing_settings_fail_sync_with_exit_2(image: str, data_dir: Path) -> None:
    proc = run(["sync"], volumes={data_dir: "/data"}, image=image)
    assert proc.returncode == 2, proc.stderr
    assert "DATAHUB_URL" in proc.stderr
