"""Notifications against a real HTTP receiver on 127.0.0.1: every format's payload and signature,
retries, a hanging receiver, robots that refuse, and no secret in any problem line."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import deque
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

from app.observe.notify import NotifyTarget, send
from app.core.result import SyncResult
from app.core.secrets import redact
from tests.hubs.common import ServerThread

TOKEN = "tok-4f1d9c2ab77e40c1b2e0d5a6"       # what a robot's webhook URL carries as access_token
SECRET = "SECa1b2c3d4e5f60718293a4b5c6d7e8f"  # what DingTalk and Feishu sign with

RESULTS = [
    SyncResult.failed("prices", "download_failed", "HTTP 503 from the hub"),
    SyncResult.ok("bars", "success", version="2025-11-28T07:00:00Z", files=12, bytes=3_500_000),
    SyncResult.ok("fin", "up_to_date", version="2025-11-20T07:00:00Z"),
]
PREVIOUS = {
    "prices": {"status": "success", "last_updated": "2025-11-27T07:00:00Z"},
    "bars": {"status": "success", "last_updated": "2025-11-27T07:00:00Z"},
    "fin": {"status": "download_failed", "last_updated": "2025-11-20T07:00:00Z"},
}


class Received(NamedTuple):
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver: records each POST and answers (status, body, delay): the answer set for
    its path, else the next scripted one, else the default."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: deque[tuple[int, bytes, float]] = deque()
        self.default: tuple[int, bytes, float] = (200, b'{"errcode": 0, "errmsg": "ok"}', 0.0)
        self.by_path: dict[str, tuple[int, bytes, float]] = {}
        self.released = threading.Event()   # ends every pending delay at teardown
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                receiver.received.append(Received(parts.path, parse_qs(parts.query), dict(self.headers),
                                                  body, time.time()))
                status, answer, delay = receiver.answer(parts.path)
                if delay and receiver.released.wait(delay):
                    return
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass    # the client gave up waiting

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = ServerThread(self.server)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def script(self, *answers: tuple[int, bytes, float]) -> None:
        self.answers.extend(answers)

    def answer(self, path: str) -> tuple[int, bytes, float]:
        if path in self.by_path:
            return self.by_path[path]
        try:
            return self.answers.popleft()
        except IndexError:
            return self.default


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.released.set()
        rec.thread.stop()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "robot-secret"
    path.write_text(SECRET + "\n")
    return path


def only(receiver: Receiver) -> Received:
    assert len(receiver.received) == 1, receiver.received
    return receiver.received[0]


def assert_summary(text: str, failed: int = 1) -> None:
    """The one message names every dataset with its status, version change and error."""
    assert f": {failed} failed, 1 recovered, 1 updated, 1 up to date\n" in text
    assert "prices: download_failed [failure]: HTTP 503 from the hub; installed version 2025-11-27T07:00:00Z kept" in text
    assert "bars: success [success, change]: version 2025-11-27T07:00:00Z -> 2025-11-28T07:00:00Z, 12 files" in text
    assert "fin: up_to_date [recovery]: version 2025-11-20T07:00:00Z" in text


def test_json_payload(receiver: Receiver) -> None:
    target = NotifyTarget(receiver.url("/hooks/datahub"), "json", frozenset({"failure"}), None)
    assert send([target], RESULTS, PREVIOUS, host="research-7") == []
    got = only(receiver)
    assert got.path == "/hooks/datahub"
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    body = got.json()
    assert body["source"] == "datahubsync" and body["schema"] == 1 and body["host"] == "research-7"
    assert body["events"] == ["failure", "recovery", "success", "change"]
    assert body["summary"].startswith("DataHubSync on research-7: ")
    assert_summary(body["text"])
    by_name = {d["name"]: d for d in body["datasets"]}
    assert list(by_name) == ["prices", "bars", "fin"]
    assert by_name["prices"] == {
        "name": "prices", "status": "download_failed", "success": False, "events": ["failure"],
        "version": None, "previous_version": "2025-11-27T07:00:00Z", "previous_status": "success",
        "error": "HTTP 503 from the hub", "warning": None, "files": None, "bytes": None, "duration": 0.0}
    assert by_name["bars"]["events"] == ["success", "change"] and by_name["bars"]["bytes"] == 3_500_000
    assert by_name["fin"]["events"] == ["recovery"]
    sent_at = datetime.fromisoformat(body["time"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - sent_at).total_seconds()) < 60


def test_slack_payload(receiver: Receiver) -> None:
    results = [*RESULTS, SyncResult.failed("x<y", "error", "bad <html> & worse")]
    target = NotifyTarget(receiver.url("/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"), "slack", frozenset({"failure"}), None)
    assert send([target], results, PREVIOUS) == []
    body = only(receiver).json()
    assert list(body) == ["text"]
    assert_summary(body["text"].replace("-&gt;", "->"), failed=2)
    assert "x&lt;y: error [failure]: bad &lt;html&gt; &amp; worse" in body["text"]


def test_wecom_payload(receiver: Receiver) -> None:
    target = NotifyTarget(receiver.url(f"/cgi-bin/webhook/send?key={TOKEN}"), "wecom", frozenset({"failure"}), None)
    assert send([target], RESULTS, PREVIOUS) == []
    got = only(receiver)
    assert got.query == {"key": [TOKEN]}
    body = got.json()
    assert body["msgtype"] == "text" and list(body["text"]) == ["content"]
    assert_summary(body["text"]["content"])


def test_wecom_message_stays_within_its_size_limit(receiver: Receiver) -> None:
    results = [SyncResult.failed(f"dataset-{i:03d}", "error", "x" * 120) for i in range(60)]
    target = NotifyTarget(receiver.url("/wecom"), "wecom", frozenset({"failure"}), None)
    assert send([target], results, {}) == []
    content = only(receiver).json()["text"]["content"]
    assert len(content.encode()) <= 2048
    shown = sum(line.startswith("- dataset-") for line in content.splitlines())
    assert 0 < shown < 60
    assert content.splitlines()[-1] == f"... and {60 - shown} more dataset(s)"


def test_dingtalk_unsigned_payload(receiver: Receiver) -> None:
    target = NotifyTarget(receiver.url(f"/robot/send?access_token={TOKEN}"), "dingtalk", frozenset({"failure"}), None)
    assert send([target], RESULTS, PREVIOUS) == []
    got = only(receiver)
    assert got.query == {"access_token": [TOKEN]}
    body = got.json()
    assert body["msgtype"] == "text"
    assert_summary(body["text"]["content"])


def test_dingtalk_signature_verifies(receiver: Receiver, secret_file: Path) -> None:
    target = NotifyTarget(receiver.url(f"/robot/send?access_token={TOKEN}"), "dingtalk",
                          frozenset({"failure"}), str(secret_file))
    assert send([target], RESULTS, PREVIOUS) == []
    got = only(receiver)
    assert set(got.query) == {"access_token", "timestamp", "sign"}
    assert got.query["access_token"] == [TOKEN]
    timestamp = got.query["timestamp"][0]
    # What DingTalk checks: milliseconds within an hour of now, and
    # base64(HMAC-SHA256(key=secret, msg="timestamp\nsecret")) (parse_qs already URL-decoded it).
    assert abs(int(timestamp) - got.at * 1000) < 60_000
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest())
    assert got.query["sign"] == [expected.decode()]
    assert_summary(got.json()["text"]["content"])


def test_feishu_signature_verifies(receiver: Receiver, secret_file: Path) -> None:
    target = NotifyTarget(receiver.url("/open-apis/bot/v2/hook/0f2c5e9a-2b7d-4c1e-9f3a-6d8b1e2c4a5f"), "feishu",
                          frozenset({"failure"}), str(secret_file))
    receiver.default = (200, b'{"code": 0, "msg": "success", "data": {}}', 0.0)
    assert send([target], RESULTS, PREVIOUS) == []
    body = only(receiver).json()
    assert body["msg_type"] == "text"
    assert_summary(body["content"]["text"])
    # What Feishu checks: seconds within an hour of now, and
    # base64(HMAC-SHA256(key="timestamp\nsecret", msg=b"")).
    timestamp = body["timestamp"]
    assert isinstance(timestamp, str) and abs(int(timestamp) - time.time()) < 60
    key = f"{timestamp}\n{SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def test_feishu_unsigned_has_no_signature_fields(receiver: Receiver) -> None:
    target = NotifyTarget(receiver.url("/open-apis/bot/v2/hook/abc"), "feishu", frozenset({"failure"}), None)
    assert send([target], RESULTS, PREVIOUS) == []
    assert set(only(receiver).json()) == {"msg_type", "content"}


def test_secret_file_is_read_at_send_time(receiver: Receiver, secret_file: Path) -> None:
    target = NotifyTarget(receiver.url("/robot/send?access_token=t"), "dingtalk", frozenset({"failure"}), str(secret_file))
    rotated = "SECrotated0000000000000000000000"
    secret_file.write_text(rotated + "\n")
    assert send([target], RESULTS, PREVIOUS) == []
    got = only(receiver)
    timestamp = got.query["timestamp"][0]
    expected = base64.b64encode(hmac.new(rotated.encode(), f"{timestamp}\n{rotated}".encode(), hashlib.sha256).digest())
    assert got.query["sign"] == [expected.decode()]


def test_a_500_is_retried_until_it_succeeds(receiver: Receiver) -> None:
    receiver.script((500, b"oops", 0.0), (503, b"busy", 0.0))
    target = NotifyTarget(receiver.url("/hook"), "json", frozenset({"failure"}), None)
    assert send([target], RESULTS, PREVIOUS, timeout=2, retries=2) == []
    assert len(receiver.received) == 3
    assert receiver.received[0].body == receiver.received[2].body


def test_a_receiver_that_keeps_failing_is_a_problem_line(receiver: Receiver) -> None:
    receiver.default = (500, b"down", 0.0)
    target = NotifyTarget(receiver.url(f"/robot/send?access_token={TOKEN}"), "dingtalk", frozenset({"failure"}), None)
    problems = send([target], RESULTS, PREVIOUS, timeout=2, retries=2)
    assert problems == [f"dingtalk notification to http://127.0.0.1:{receiver.server.server_address[1]}: "
                        "HTTP 500 (after 3 attempts)"]
    assert len(receiver.received) == 3


def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.default = (404, b"no such hook", 0.0)
    target = NotifyTarget(receiver.url("/gone"), "json", frozenset({"failure"}), None)
    problems = send([target], RESULTS, PREVIOUS, timeout=2, retries=2)
    assert len(problems) == 1 and problems[0].endswith(": HTTP 404")
    assert len(receiver.received) == 1


def test_a_robot_that_refuses_is_reported_once(receiver: Receiver, secret_file: Path) -> None:
    receiver.default = (200, b'{"errcode": 310000, "errmsg": "sign not match"}', 0.0)
    target = NotifyTarget(receiver.url(f"/robot/send?access_token={TOKEN}"), "dingtalk",
                          frozenset({"failure"}), str(secret_file))
    problems = send([target], RESULTS, PREVIOUS, timeout=2, retries=2)
    assert len(problems) == 1
    assert problems[0].endswith(": the robot refused the message: code 310000 sign not match")
    assert len(receiver.received) == 1


def test_feishu_error_code_is_a_problem(receiver: Receiver) -> None:
    receiver.default = (200, b'{"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}', 0.0)
    target = NotifyTarget(receiver.url("/open-apis/bot/v2/hook/abc"), "feishu", frozenset({"failure"}), None)
    problems = send([target], RESULTS, PREVIOUS, timeout=2, retries=0)
    assert len(problems) == 1 and "code 19021 sign match fail" in problems[0]


def test_a_hanging_receiver_does_not_delay_the_sync(receiver: Receiver) -> None:
    receiver.default = (200, b"{}", 30.0)
    target = NotifyTarget(receiver.url("/slow"), "json", frozenset({"failure"}), None)
    started = time.monotonic()
    problems = send([target], RESULTS, PREVIOUS, timeout=0.5, retries=1)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 * 2 + 1.0, elapsed
    assert len(problems) == 1 and "no answer within 0.5 s (after 2 attempts)" in problems[0]
    assert len(receiver.received) == 2


def test_targets_are_sent_in_parallel(receiver: Receiver) -> None:
    receiver.by_path["/slow"] = (200, b"{}", 30.0)
    slow = NotifyTarget(receiver.url("/slow"), "json", frozenset({"failure"}), None)
    fast = NotifyTarget(receiver.url("/fast"), "slack", frozenset({"failure"}), None)
    started = time.monotonic()
    problems = send([slow, fast], RESULTS, PREVIOUS, timeout=1, retries=0)
    assert time.monotonic() - started < 2.5
    assert len(problems) == 1 and problems[0].startswith("json notification")
    assert {r.path for r in receiver.received} == {"/slow", "/fast"}


def test_connection_refused_is_a_problem_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = NotifyTarget(f"http://127.0.0.1:{port}/hook?access_token={TOKEN}", "dingtalk", frozenset({"failure"}), None)
    problems = send([target], RESULTS, PREVIOUS, timeout=1, retries=1)
    assert problems == [f"dingtalk notification to http://127.0.0.1:{port}: "
                        "cannot connect: Connection refused (after 2 attempts)"]


def test_no_event_the_target_wants_sends_nothing(receiver: Receiver) -> None:
    target = NotifyTarget(receiver.url("/hook"), "json", frozenset({"failure"}), None)
    ok = [SyncResult.ok("fin", "up_to_date", version="2025-11-20T07:00:00Z")]
    assert send([target], ok, {"fin": {"status": "success", "last_updated": "2025-11-20T07:00:00Z"}}) == []
    assert receiver.received == []


def test_unreadable_secret_file_is_a_problem_not_an_exception(receiver: Receiver, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    target = NotifyTarget(receiver.url("/robot/send?access_token=t"), "dingtalk", frozenset({"failure"}), str(missing))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    other = NotifyTarget(receiver.url("/open-apis/bot/v2/hook/x"), "feishu", frozenset({"failure"}), str(empty))
    problems = sorted(send([target, other], RESULTS, PREVIOUS, timeout=1, retries=0))
    assert problems[0].startswith("dingtalk notification to http://127.0.0.1:")
    assert problems[0].endswith(f": cannot read the secret file {missing}: No such file or directory; not sent")
    assert problems[1].endswith(f": the secret file {empty} is empty; not sent")
    assert receiver.received == []


def test_no_secret_in_problem_lines(receiver: Receiver, secret_file: Path) -> None:
    slack_token = "Zk3pQ8rT2vW9xY4bN6mC1dF7"
    targets = [
        NotifyTarget(receiver.url(f"/robot/send?access_token={TOKEN}"), "dingtalk", frozenset({"failure"}), str(secret_file)),
        NotifyTarget(receiver.url(f"/services/T0/B0/{slack_token}"), "slack", frozenset({"failure"}), None),
    ]
    receiver.by_path["/robot/send"] = (200, f'{{"errcode": 40001, "errmsg": "bad token {TOKEN} / {SECRET}"}}'.encode(), 0.0)
    receiver.by_path[f"/services/T0/B0/{slack_token}"] = (500, b"", 0.0)
    problems = send(targets, RESULTS, PREVIOUS, timeout=1, retries=0)
    assert len(problems) == 2
    for line in problems:
        assert TOKEN not in line and SECRET not in line and slack_token not in line and "/robot/send" not in line
    # and the secrets are registered, so the log filter masks them wherever they appear
    assert redact(f"{TOKEN} {SECRET} {slack_token}") == "*** *** ***"
