"""Credentials (docs/hub-api.md section 3): sent to the hub only, never retried on refusal, never shown."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli, sync_env, tree, zip_bytes
from tests.hubs import FaultyHub
from tests.hubs.common import header_of
from tests.integration.common import FILES, output

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-Zq8v3XkP1s"
CF_ID = "cf-id-5531.access"
CF_SECRET = "cf-secret-9f8e7d6c"


def test_token_is_sent_as_bearer(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_TOKEN=TOKEN))

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert all(r.status in (200, 206) for r in faulty_hub.requests)


def test_token_file_is_read(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")

    code, out, err = run_cli(
        ["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_TOKEN_FILE=str(secret)))

    assert code == 0, output(out, err)


def test_cloudflare_access_headers_from_environment(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"CF-Access-Client-Id": CF_ID, "CF-Access-Client-Secret": CF_SECRET}
    secret = tmp_path / "cf-secret"
    secret.write_text(CF_SECRET)
    env = sync_env(faulty_hub.url, tmp_path, ["prices"],
                   DATAHUB_HEADER_CF_ACCESS_CLIENT_ID=CF_ID,
                   DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET_FILE=str(secret))

    code, out, err = run_cli(["sync"], env)

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    assert header_of(faulty_hub.requests[0], "CF-Access-Client-Id") == CF_ID
    assert CF_SECRET not in output(out, err)


@pytest.mark.parametrize("given,status", [(None, 401), ("wrong-token-77", 403)])
def test_refused_credentials_are_not_retried(
    faulty_hub: FaultyHub, tmp_path: Path, given: str | None, status: int
) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}"}
    extra = {"DATAHUB__HUB__RETRIES": "3"}
    if given:
        extra["DATAHUB_TOKEN"] = given

    code, out, err = run_cli(["sync"], sync_env(faulty_hub.url, tmp_path, ["prices"], **extra))

    assert code == 1, output(out, err)
    assert [r.status for r in faulty_hub.requests] == [status]
    text = output(out, err)
    assert str(status) in text
    assert "token" in text.lower() or "credential" in text.lower() or "auth" in text.lower()
    assert "Traceback" not in text
    if given:
        assert given not in text


def _assert_secret_absent(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and CF_SECRET not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".zip" and "token" not in path.name:
            data = path.read_bytes()
            assert TOKEN.encode() not in data and CF_SECRET.encode() not in data, path


@pytest.mark.slow
def test_secrets_never_appear_in_output_state_or_logs(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}", "CF-Access-Client-Secret": CF_SECRET}
    env = sync_env(faulty_hub.url, tmp_path, ["prices", "ghost"], DATAHUB_TOKEN=TOKEN,
                   DATAHUB_HEADER_CF_ACCESS_CLIENT_SECRET=CF_SECRET, DATAHUB_LOG_LEVEL="DEBUG",
                   DATAHUB_LOG_FILE=str(tmp_path / "logs" / "sync.log"))
    texts = []
    for argv in (["sync"], ["status"], ["status", "--json"], ["check"], ["healthcheck"]):
        code, out, err = run_cli(argv, env)
        texts += [out, err]
    # A refused attempt logs its own error path (DEBUG may add a traceback): still no secret.
    faulty_hub.required_headers = {"Authorization": "Bearer something-else"}
    faulty_hub.add_package("prices", zip_bytes({"x": b"y"}), "2026-12-01T00:00:00Z")
    texts += list(run_cli(["sync"], env)[1:])

    assert (tmp_path / "logs" / "sync.log").exists()
    assert any("prices" in t for t in texts)
    _assert_secret_absent(tmp_path, *texts)


def test_redirect_to_other_host_does_not_leak_credentials(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.required_headers = {"Authorization": f"Bearer {TOKEN}", "CF-Access-Client-Id": CF_ID}
    with FaultyHub(host="127.0.0.2") as cdn:
        cdn.add_package("prices", zip_bytes(FILES))
        faulty_hub.redirect_packages_to = cdn.url
        env = sync_env(faulty_hub.url, tmp_path, ["prices"], DATAHUB_TOKEN=TOKEN,
                       DATAHUB_HEADER_CF_ACCESS_CLIENT_ID=CF_ID)

        code, out, err = run_cli(["sync"], env)

        assert code == 0, output(out, err)
        assert tree(tmp_path / "data" / "prices") == FILES
        assert cdn.requests, "the redirect was not followed"
        for entry in cdn.requests:
            assert header_of(entry, "Authorization") is None
            assert header_of(entry, "CF-Access-Client-Id") is None
        assert any(r.status == 302 for r in faulty_hub.requests)
