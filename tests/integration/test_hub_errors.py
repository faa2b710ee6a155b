"""How the client meets a hub that is down, wrong, slow to answer or hostile (docs/hub-api.md sections 5 and 6)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import dead_url, read_state, run_cli, sync_env, tree, zip_bytes
from tests.hubs import FaultyHub
from tests.integration.common import FILES, output

pytestmark = pytest.mark.timeout(60)


def _one_line_error(out: str, err: str) -> None:
    assert "Traceback" not in output(out, err)


def test_hub_down_fails_with_clear_message(tmp_path: Path) -> None:
    url = dead_url()

    code, out, err = run_cli(["sync"], sync_env(url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="0"))

    assert code == 1, output(out, err)
    text = output(out, err)
    assert url.split("//")[1] in text, "the message must name the hub it could not reach"
    _one_line_error(out, err)
    assert tree(tmp_path / "data") == {}


def test_list_404_says_hub_url_is_wrong(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url + "/wrong", tmp_path, ["prices"]))

    assert code == 1, output(out, err)
    assert "404" in output(out, err)
    assert len(faulty_hub.requests) == 1, "a 404 on the list is not retried"
    _one_line_error(out, err)


def test_dataset_missing_from_list_fails_alone(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices", "ghost"]))

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    datasets = read_state(tmp_path / "state")["datasets"]
    assert datasets["prices"]["status"] == "success"
    assert datasets["ghost"]["status"] == "not_found"
    assert "ghost" in output(out, err) and "not published" in output(out, err)
    assert len(faulty_hub.requests.to("/api/datasets")) == 1, "one list request per run"


def test_invalid_entry_fails_only_its_dataset(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.add_package("broken", zip_bytes(FILES), "not a time")

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices", "broken"]))

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert tree(tmp_path / "data" / "broken") == {}


@pytest.mark.slow
def test_retries_500_and_429_with_retry_after(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.fail_next("/api/datasets", 500, times=2)
    faulty_hub.fail_next("/package/", 429, headers={"Retry-After": "1"})
    faulty_hub.fail_next("/package/", 502)

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="3"))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    log = faulty_hub.requests
    assert [r.status for r in log.to("/api/")] == [500, 500, 200]
    package = [(r.status, t) for r, t in zip(log, log.stamps) if r.path.startswith("/package/")]
    statuses = [status for status, _ in package]
    assert statuses[:2] == [429, 502] and statuses[-1] in (200, 206), statuses
    assert package[1][1] - package[0][1] >= 0.9, "Retry-After: 1 was not honoured"


def test_retries_exhausted_fails(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.fail_next("/api/datasets", 503, times=10)

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="2"))

    assert code == 1, output(out, err)
    assert len(faulty_hub.requests) == 3
    assert "503" in output(out, err)


def test_html_instead_of_json_is_a_clear_error(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.list_override = (200, "text/html; charset=utf-8",
                                b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>")

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 1, output(out, err)
    assert "json" in output(out, err).lower()
    _one_line_error(out, err)
    assert tree(tmp_path / "data") == {}


def test_bare_array_listing_is_accepted(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.bare_list = True

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES


def test_wrong_sha256_fails_and_leaves_installed_data(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z", sha256=True)
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    assert run_cli(["sync"], env)[0] == 0
    before = read_state(tmp_path / "state")["datasets"]["prices"]
    faulty_hub.add_package("prices", zip_bytes({"a.csv": b"tampered"}), "2026-11-29T08:30:00Z", sha256="0" * 64)

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    assert "sha" in output(out, err).lower()
    assert tree(tmp_path / "data" / "prices") == FILES
    after = read_state(tmp_path / "state")["datasets"]["prices"]
    for key in ("last_updated", "sha256", "files", "bytes", "synced_at"):
        assert after[key] == before[key], key
    assert after["status"] != "success" and after["error"]


def test_wrong_package_size_fails(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), package_size=12345)

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == {}


HOSTILE = {
    "dot-dot": {"files": {"ok.csv": b"fine", "../escaped.txt": b"evil"}},
    "absolute": {"files": {"ok.csv": b"fine", "{tmp}/absolute-evil.txt": b"evil"}},
    "backslash": {"files": {"ok.csv": b"fine", "..\\escaped.txt": b"evil"}},
    "drive-letter": {"files": {"ok.csv": b"fine", "C:/evil.txt": b"evil"}},
    "symlink": {"files": {"ok.csv": b"fine"}, "symlinks": {"link": "/etc/passwd"}},
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_zip_is_rejected_before_anything_is_written(
    faulty_hub: FaultyHub, tmp_path: Path, case: str
) -> None:
    spec = HOSTILE[case]
    # The absolute entry points into this test's folder, so a vulnerable client harms nothing else.
    files = {name.replace("{tmp}", str(tmp_path)): data for name, data in spec["files"].items()}
    faulty_hub.add_package("prices", zip_bytes(files, symlinks=spec.get("symlinks")))

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == {}
    assert not (tmp_path / "data" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "absolute-evil.txt").exists()
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == "extract_failed"


def test_corrupt_entry_crc_is_rejected(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    data = bytearray(zip_bytes({"a.csv": b"x" * 5000}, compression=0))
    offset = data.index(b"x" * 100)
    data[offset] = ord("y")  # stored entry: flip one byte so only the CRC can notice
    faulty_hub.add_package("prices", bytes(data))

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"]))

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "prices") == {}


@pytest.mark.slow
def test_parallel_datasets_one_fails_one_succeeds(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    good = {f"g{i}.bin": bytes([i]) * 30_000 for i in range(3)}
    faulty_hub.add_package("good", zip_bytes(good, compression=0))
    faulty_hub.add_package("bad", zip_bytes(FILES, compression=0), sha256="f" * 64)
    faulty_hub.stall = (1_000, 2.0, 2)  # both transfers pause, so overlap shows in the log

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["good", "bad"], DATAHUB_PARALLEL="2"))

    assert code == 1, output(out, err)
    assert tree(tmp_path / "data" / "good") == good
    assert tree(tmp_path / "data" / "bad") == {}
    datasets = read_state(tmp_path / "state")["datasets"]
    assert datasets["good"]["status"] == "success" and datasets["bad"]["status"] != "success"
    log = faulty_hub.requests
    first = {}
    for entry, stamp in zip(log, log.stamps):
        if entry.path.startswith("/package/"):
            first.setdefault(entry.path, stamp)
    assert len(first) == 2
    assert abs(first["/package/good.zip"] - first["/package/bad.zip"]) < 1.5, "datasets did not run in parallel"
