"""A hub, a proxy or a transfer that cannot be trusted: credentials stay on the hub's origin, bad
bytes are never kept or written at the wrong place, and a changed package never sticks a dataset."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import read_state, run_cli, sha256_of, sync_env, tree, wait_for, zip_bytes
from tests.hubs import FaultyHub
from tests.hubs.common import header_of, serving
from tests.integration.common import FILES, output, random_files

pytestmark = pytest.mark.timeout(90)

TOKEN = "tok-origin-5f1c2b9a"
CF_SECRET = "cf-secret-origin-77aa"
PART = Path("state") / "downloads" / "prices.zip.part"


def _credentials(root: Path) -> dict[str, str]:
    return {"DATAHUB_TOKEN": TOKEN, "DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET": CF_SECRET,
            "DATAHUB__HUB__RETRIES": "0"}


def _leaked(hub: FaultyHub) -> list[str]:
    """Every credential header a server received."""
    found = []
    for entry in hub.requests:
        for name in ("Authorization", "CF-Access-Client-Secret"):
            if header_of(entry, name):
                found.append(f"{entry.path}: {name}")
    return found


@pytest.mark.parametrize("how", ["download_url", "redirect"])
def test_credentials_follow_the_connection_not_a_second_url_parser(tmp_path: Path, how: str) -> None:
    # `http://localhost:B\@127.0.0.1:A/...` is 127.0.0.1:A to urllib.parse but localhost:B to the HTTP
    # library: the request goes to B, so B must get no credential
    with FaultyHub() as hub, FaultyHub() as other:
        other.add_package("prices", zip_bytes(FILES))
        hub_port = hub.url.rsplit(":", 1)[1]
        tricky = f"http://localhost:{other.url.rsplit(':', 1)[1]}\\@127.0.0.1:{hub_port}"
        if how == "download_url":
            hub.add_package("prices", zip_bytes(FILES), download_url=tricky + "/package/prices.zip")
        else:
            hub.add_package("prices", zip_bytes(FILES))
            hub.redirect_packages_to = tricky
        env = sync_env(hub.url, tmp_path, ["prices"], **_credentials(tmp_path))

        code, out, err = run_cli(["sync"], env)

        # the request went where the HTTP library connects (a path it cannot serve: 404, not ready)
        assert code == 1, output(out, err)
        assert [r.path for r in other.requests] == [f"/%5C@127.0.0.1:{hub_port}/package/prices.zip"]
        assert _leaked(other) == []
        assert header_of(hub.requests.to("/api/datasets")[0], "Authorization") == f"Bearer {TOKEN}"
        assert TOKEN not in output(out, err) and CF_SECRET not in output(out, err)


def test_a_redirect_to_the_same_host_on_another_port_gets_no_credentials(tmp_path: Path) -> None:
    with FaultyHub() as hub, FaultyHub() as other:
        other.add_package("prices", zip_bytes(FILES))
        hub.add_package("prices", zip_bytes(FILES))
        hub.redirect_packages_to = other.url             # 127.0.0.1 too, another port: another origin
        code, out, err = run_cli(["sync"], sync_env(hub.url, tmp_path, ["prices"], **_credentials(tmp_path)))

        assert code == 0, output(out, err)
        assert _leaked(other) == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x.zip", "gopher://127.0.0.1:70/x"])
def test_a_redirect_to_another_scheme_is_refused(faulty_hub: FaultyHub, tmp_path: Path, target: str) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.fail_next("/package/", 302, headers={"Location": target})

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="0"))

    assert code == 1, output(out, err)
    assert "only http:// and https://" in output(out, err)
    assert not (tmp_path / "data" / "prices").exists()


def test_a_package_corrupted_in_transit_is_not_kept(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(3, 40_000)
    faulty_hub.etag = True                               # same identity both times: only the bytes differ
    faulty_hub.add_package("prices", zip_bytes(files))
    faulty_hub.corrupt = 1
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])

    code, out, err = run_cli(["sync"], env)
    assert code == 1, output(out, err)
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == "extract_failed"
    assert not (tmp_path / PART).exists(), "a package that failed its checks was kept for the next run"

    code, out, err = run_cli(["sync"], env)                # the next run downloads it again, cleanly
    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == files


def test_a_206_of_other_bytes_than_asked_is_never_written(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(4, 300_000)
    data = zip_bytes(files)
    faulty_hub.add_package("prices", data, sha256=True)
    faulty_hub.truncate = (400_000, 1)                   # the first answer breaks off: the rest is a resume
    faulty_hub.shift_ranges = (1000, 1)                  # whose first answer carries the wrong bytes
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__CONNECTIONS="1",
                   DATAHUB__HUB__BACKOFF="0", DATAHUB__HUB__RETRIES="3")

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert "wrong offset" in output(out, err)
    assert tree(tmp_path / "data" / "prices") == files
    assert read_state(tmp_path / "state")["datasets"]["prices"]["sha256"] == sha256_of(data)


def test_a_package_replaced_between_ranged_requests_restarts_in_the_same_run(
        faulty_hub: FaultyHub, tmp_path: Path) -> None:
    old, new = random_files(4, 300_000), random_files(4, 300_000)
    faulty_hub.etag = True
    faulty_hub.add_package("prices", zip_bytes(old), "2026-11-28T08:30:00Z")
    faulty_hub.truncate = (400_000, 1)

    def replace(ordinal: int) -> None:                   # the hub rebuilds the package after the first request
        if ordinal == 2:
            faulty_hub.add_package("prices", zip_bytes(new), "2026-11-28T09:00:00Z")
    faulty_hub.on_package_request = replace
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__CONNECTIONS="1",
                   DATAHUB__HUB__BACKOFF="0")

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert "downloading it again" in output(out, err)
    assert tree(tmp_path / "data" / "prices") == new
    assert read_state(tmp_path / "state")["datasets"]["prices"]["last_updated"] == "2026-11-28T09:00:00Z"


def test_a_partial_download_resumes_only_into_the_package_the_list_advertised(
        faulty_hub: FaultyHub, tmp_path: Path) -> None:
    # nginx names two packages of equal size written within one second alike (ETag = mtime + size):
    # only the list tells them apart, so a partial download of the old one is never resumed into the new
    first, second = random_files(4, 300_000), random_files(4, 300_000)
    faulty_hub.etag = True
    faulty_hub.fixed_etag = '"6750a1b2-4a1f0"'
    faulty_hub.add_package("prices", zip_bytes(first), "2026-11-28T08:30:00Z")
    faulty_hub.truncate = (500_000, 1)
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="0", DATAHUB__HUB__CONNECTIONS="1")
    code, out, err = run_cli(["sync"], env)
    assert code == 1 and (tmp_path / PART).exists(), output(out, err)

    second_zip = zip_bytes(second)
    assert len(second_zip) == len(zip_bytes(first))      # same size, same ETag: headers cannot tell
    faulty_hub.add_package("prices", second_zip, "2026-11-28T08:30:01Z")
    faulty_hub.requests.reset()
    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == second
    assert "advertises another package" in output(out, err)


def test_force_starts_from_a_clean_download(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = random_files(3, 300_000)
    faulty_hub.add_package("prices", zip_bytes(files))
    faulty_hub.truncate = (300_000, 1)
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="0", DATAHUB__HUB__CONNECTIONS="1")
    assert run_cli(["sync"], env)[0] == 1
    assert (tmp_path / PART).exists()
    faulty_hub.requests.reset()

    code, out, err = run_cli(["sync", "--force"], env)

    assert code == 0, output(out, err)
    ranges = [header_of(r, "Range") or "" for r in faulty_hub.requests.to("/package/")]
    assert ranges and all(r.startswith("bytes=0-") for r in ranges), ranges
    assert tree(tmp_path / "data" / "prices") == files


def test_a_list_larger_than_the_cap_is_refused(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    entries = [{"name": f"ds{i}", "last_updated": "2026-11-28T08:30:00Z", "pad": "x" * 1000} for i in range(9000)]
    faulty_hub.list_override = (200, "application/json", json.dumps({"datasets": entries}).encode())

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["ds1"], DATAHUB__HUB__RETRIES="0"))

    assert code == 1, output(out, err)
    assert "larger than 8 MiB" in output(out, err)
    assert read_state(tmp_path / "state")["datasets"]["ds1"]["status"] == "error"


class _Endless(BaseHTTPRequestHandler):
    """A list with no Content-Length that never ends (a proxy gone wrong)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(b'{"datasets": [')
            for _ in range(20_000):
                self.wfile.write(b'{"name": "padding", "last_updated": "2026-11-28T08:30:00Z"},' * 10)
        except OSError:
            pass


def test_a_list_without_length_is_cut_at_the_cap(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endless)
    server.daemon_threads = True
    with serving(server) as url:
        code, out, err = run_cli(["sync"], sync_env(url, tmp_path, ["ds"], DATAHUB__HUB__RETRIES="0"))
    assert code == 1, output(out, err)
    assert "larger than 8 MiB" in output(out, err)


@pytest.mark.parametrize("body,status", [
    (b"[" * 200_000 + b"]" * 200_000, "not_found"),       # deeper than any parser's stack: no entry in it
    (b'{"datasets": [{"name": "prices", "last_updated": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", "error"),
    (b'{"datasets": [{"name": "prices", "last_updated": "2026-11-28T08:30:00Z", "package_size": 1e999}]}', "error"),
    (b'{"datasets": [{"name": "prices", "last_updated": "0001-01-01T00:00:00+08:00"}]}', "error"),
])
def test_a_hostile_list_fails_the_dataset_and_is_recorded_for_healthcheck(
        faulty_hub: FaultyHub, tmp_path: Path, body: bytes, status: str) -> None:
    faulty_hub.list_override = (200, "application/json", body)
    env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB__HUB__RETRIES="0")

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    assert "internal error" not in output(out, err) and "unexpected" not in output(out, err)
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == status
    code, out, _ = run_cli(["healthcheck"], env)
    assert code == 1 and "prices" in out


def test_the_lock_holder_is_not_disturbed_by_a_skipping_run(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    from app.sync.lock import SyncLock
    faulty_hub.add_package("prices", zip_bytes(FILES))
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    with SyncLock(tmp_path / "state" / "lock"):
        code, out, err = run_cli(["sync", "--skip-if-locked"], env)
    assert code == 0, output(out, err)
    assert "nothing to do" in output(out, err)
    assert faulty_hub.requests.to("/") == []            # it did not even ask the hub
    assert run_cli(["sync"], env)[0] == 0


def test_check_never_shows_the_password_in_the_hub_url(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    url = faulty_hub.url.replace("http://", "http://reader:Pw-9d8c7b6a@")
    code, out, err = run_cli(["check"], sync_env(url, tmp_path, ["prices"]))
    assert code == 0, output(out, err)
    assert "reachable" in out and "Pw-9d8c7b6a" not in output(out, err)


def test_a_list_reread_while_waiting_that_loses_the_data_fails_cleanly(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    # the first read has data but no package yet; the re-read while waiting says "no data" (null)
    faulty_hub.add_package("prices", zip_bytes(FILES), package_ready=False)
    def lose_data() -> None:                      # once the client has read the list the first time
        wait_for(lambda: faulty_hub.requests.to("/api/datasets"), timeout=30)
        faulty_hub.add_package("prices", zip_bytes(FILES), None)
    changer = threading.Thread(target=lose_data, daemon=True)
    changer.start()
    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"],
                                                DATAHUB__SYNC__PACKAGE_WAIT="5", DATAHUB__SYNC__PACKAGE_POLL="1"))
    changer.join(timeout=30)
    assert code == 1, output(out, err)
    assert "still building the package" in output(out, err)        # it waited, then re-read the list
    assert "last_updated is null" in output(out, err) and "unexpected" not in output(out, err)
    assert read_state(tmp_path / "state")["datasets"]["prices"]["status"] == "not_found"
