"""The hub client against a real local server that misbehaves: retries, Retry-After, auth, redirects."""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from app.core.config import HubConfig
from app.core.errors import AuthError, HubError, Interrupted, NotPublishedError
from app.hub.client import HubClient, retry_after_seconds

LISTING = json.dumps({"datasets": [{"name": "ds", "last_updated": "2026-11-28T08:30:00Z"}]}).encode()
TOKEN = "hub-token-never-shown-42"
CF_ID, CF_SECRET = "cf-client-id-7", "cf-client-secret-8"


class Scripted(ThreadingHTTPServer):
    """Answers each path from a script: a list of (status, headers, body); the last answer repeats."""

    daemon_threads = True

    def __init__(self, host: str):
        super().__init__((host, 0), Handler)
        self.script: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, path: str, *answers: tuple[int, dict[str, str], bytes]) -> None:
        self.script[path] = list(answers)

    def requests_to(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [headers for p, headers in self.seen if p == path]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.path, dict(self.headers.items())))
            answers = self.server.script.get(self.path) or [(404, {}, b"no such path")]
            status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def running(host: str) -> Iterator[Scripted]:
    server = Scripted(host)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session trusts the environment: a proxy setting must not catch 127.0.0.x traffic."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def hub() -> Iterator[Scripted]:
    with running("127.0.0.1") as server:
        yield server


@pytest.fixture
def other_host() -> Iterator[Scripted]:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not usable here")
    with running("127.0.0.2") as server:
        yield server


def client(server: Scripted, **kw) -> HubClient:
    settings = dict(url=server.url, backoff=0.05, backoff_max=0.2, retries=3, timeout=5, connect_timeout=2)
    settings.update(kw)
    return HubClient(HubConfig(**settings))


JSON = {"Content-Type": "application/json"}


def test_500_then_200_is_retried(hub: Scripted) -> None:
    hub.answer("/api/datasets", (500, {}, b"oops"), (502, {}, b"bad gateway"), (200, JSON, LISTING))
    listing = client(hub).list_datasets()
    assert listing.lookup("ds").name == "ds"
    assert len(hub.requests_to("/api/datasets")) == 3


def test_cloudflare_52x_is_retried(hub: Scripted) -> None:
    hub.answer("/api/datasets", (522, {}, b"origin timed out"), (200, JSON, LISTING))
    assert "ds" in client(hub).list_datasets().datasets
    assert len(hub.requests_to("/api/datasets")) == 2


def test_retries_run_out(hub: Scripted) -> None:
    hub.answer("/api/datasets", (503, {}, b"down"))
    with pytest.raises(HubError, match=r"failed after 3 attempt\(s\): HTTP 503") as caught:
        client(hub, retries=2).list_datasets()
    assert caught.value.retryable is True
    assert len(hub.requests_to("/api/datasets")) == 3


def test_429_retry_after_is_honoured(hub: Scripted) -> None:
    hub.answer("/api/datasets", (429, {"Retry-After": "1"}, b"slow down"), (200, JSON, LISTING))
    started = time.monotonic()
    client(hub).list_datasets()
    assert time.monotonic() - started >= 1.0
    assert len(hub.requests_to("/api/datasets")) == 2


def test_408_is_retried(hub: Scripted) -> None:
    hub.answer("/api/datasets", (408, {}, b""), (200, JSON, LISTING))
    client(hub).list_datasets()
    assert len(hub.requests_to("/api/datasets")) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried_and_never_show_the_token(hub: Scripted, status: int) -> None:
    hub.answer("/api/datasets", (status, {}, f"denied {TOKEN}".encode()))
    with pytest.raises(AuthError) as caught:
        client(hub, token=TOKEN).list_datasets()
    seen = hub.requests_to("/api/datasets")
    assert len(seen) == 1
    assert seen[0].get("Authorization") == f"Bearer {TOKEN}"
    assert TOKEN not in str(caught.value)
    assert f"HTTP {status}" in str(caught.value) and "token" in str(caught.value)


def test_other_4xx_is_not_retried(hub: Scripted) -> None:
    hub.answer("/api/datasets", (400, {}, b"bad request"))
    with pytest.raises(HubError, match="HTTP 400"):
        client(hub).list_datasets()
    assert len(hub.requests_to("/api/datasets")) == 1


def test_404_on_the_list_says_the_hub_url_is_wrong(hub: Scripted) -> None:
    with pytest.raises(HubError, match=r"404.*is hub.url right") as caught:
        client(hub).list_datasets()
    assert not isinstance(caught.value, NotPublishedError)
    assert len(hub.requests_to("/api/datasets")) == 1


def test_404_on_a_package_is_not_published(hub: Scripted) -> None:
    with pytest.raises(NotPublishedError):
        client(hub).request(hub.url + "/package/ds.zip", what="downloading ds")


def test_html_instead_of_json(hub: Scripted) -> None:
    page = b"<!DOCTYPE html><html><body>Cloudflare Access: sign in</body></html>"
    hub.answer("/api/datasets", (200, {"Content-Type": "text/html"}, page))
    with pytest.raises(HubError, match=r"not JSON \(text/html, starts with '<!DOCTYPE html>") as caught:
        client(hub).list_datasets()
    assert "proxy or login page" in str(caught.value)


def test_json_that_is_not_a_list(hub: Scripted) -> None:
    hub.answer("/api/datasets", (200, JSON, b'{"error": "maintenance"}'))
    with pytest.raises(HubError, match="not a dataset list"):
        client(hub).list_datasets()


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    hub = HubClient(HubConfig(url=f"http://user:pw@127.0.0.1:{port}", backoff=0.01, backoff_max=0.02,
                              retries=2, connect_timeout=1))
    with pytest.raises(HubError, match=r"failed after 3 attempt\(s\): cannot reach the hub") as caught:
        hub.list_datasets()
    assert ":pw@" not in str(caught.value)
    assert time.monotonic() - started < 10


def test_stop_interrupts_the_backoff(hub: Scripted) -> None:
    hub.answer("/api/datasets", (503, {"Retry-After": "30"}, b"down"))
    stop = threading.Event()
    api = HubClient(HubConfig(url=hub.url, retries=5, backoff=0.05), stop=stop)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        api.list_datasets()
    assert time.monotonic() - started < 5


def test_credentials_and_user_agent_go_to_the_hub(hub: Scripted) -> None:
    hub.answer("/api/datasets", (200, JSON, LISTING))
    client(hub, token=TOKEN, headers={"CF-Access-Client-Id": CF_ID, "CF-Access-Client-Secret": CF_SECRET}).list_datasets()
    sent = hub.requests_to("/api/datasets")[0]
    assert sent["Authorization"] == f"Bearer {TOKEN}"
    assert sent["CF-Access-Client-Id"] == CF_ID and sent["CF-Access-Client-Secret"] == CF_SECRET
    assert sent["User-Agent"].startswith("datahubsync/")


def test_redirect_to_another_host_drops_credentials(hub: Scripted, other_host: Scripted) -> None:
    other_host.answer("/cdn/ds.zip", (200, {"Content-Type": "application/zip"}, b"PK-bytes"))
    hub.answer("/package/ds.zip", (302, {"Location": f"{other_host.url}/cdn/ds.zip"}, b""))
    api = client(hub, token=TOKEN, headers={"CF-Access-Client-Id": CF_ID, "CF-Access-Client-Secret": CF_SECRET})
    response = api.request(hub.url + "/package/ds.zip", what="downloading ds")
    assert response.content == b"PK-bytes"
    first = hub.requests_to("/package/ds.zip")[0]
    assert first["Authorization"] == f"Bearer {TOKEN}"
    followed = other_host.requests_to("/cdn/ds.zip")
    assert len(followed) == 1
    lowered = {k.lower(): v for k, v in followed[0].items()}
    assert "authorization" not in lowered
    assert "cf-access-client-id" not in lowered and "cf-access-client-secret" not in lowered
    assert TOKEN not in repr(followed[0]) and CF_SECRET not in repr(followed[0])


def test_redirect_to_another_port_drops_credentials(hub: Scripted) -> None:
    with running("127.0.0.1") as other:
        other.answer("/x.zip", (200, {}, b"data"))
        hub.answer("/package/ds.zip", (307, {"Location": f"{other.url}/x.zip"}, b""))
        client(hub, token=TOKEN).request(hub.url + "/package/ds.zip")
        assert "Authorization" not in other.requests_to("/x.zip")[0]


def test_redirect_on_the_same_host_keeps_credentials(hub: Scripted) -> None:
    hub.answer("/package/ds.zip", (301, {"Location": "/real/ds.zip"}, b""))
    hub.answer("/real/ds.zip", (200, {}, b"PK-bytes"))
    api = client(hub, token=TOKEN, headers={"CF-Access-Client-Id": CF_ID, "CF-Access-Client-Secret": CF_SECRET})
    assert api.request(hub.url + "/package/ds.zip").content == b"PK-bytes"
    followed = hub.requests_to("/real/ds.zip")
    assert len(followed) == 1
    assert followed[0]["Authorization"] == f"Bearer {TOKEN}"
    assert followed[0]["CF-Access-Client-Id"] == CF_ID and followed[0]["CF-Access-Client-Secret"] == CF_SECRET


def test_redirect_loop_is_an_error(hub: Scripted) -> None:
    hub.answer("/loop", (302, {"Location": "/loop"}, b""))
    with pytest.raises(HubError, match="too many redirects"):
        client(hub).request(hub.url + "/loop")


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("5") == 5.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Sat, 28 Nov 2026 08:30:10 GMT", now=1795854600.0) == pytest.approx(10.0)
    assert retry_after_seconds("Sat, 28 Nov 2026 08:29:00 GMT", now=1795854600.0) == 0.0
