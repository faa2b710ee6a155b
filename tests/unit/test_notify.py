"""Notification building blocks without a network: the `notify:` config, the environment form,
which events a run produces, and each format's message (signatures recomputed here)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import textwrap
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import ConfigError
from app.observe.notify import (
    DEFAULT_ON,
    EVENTS,
    FORMATS,
    TEXT_LIMITS,
    NotifyTarget,
    build_message,
    events_for,
    notify_from_env,
    parse_notify,
)
from app.core.result import FAIL_STATUSES, OK_STATUSES, SyncResult
from app.core.secrets import redact

NOW = 1_764_300_000.123   # a fixed clock: signatures become exact values


def parse_yaml(text: str) -> tuple[NotifyTarget, ...]:
    return parse_notify(yaml.safe_load(textwrap.dedent(text))["notify"])


# ---- configuration -------------------------------------------------------------------------------

def test_yaml_targets_with_every_key() -> None:
    targets = parse_yaml("""
        notify:
          - url: https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789
            secret_file: /run/secrets/dingtalk
            on: [failure, recovery, change]
          - url: http://alerts.internal:8080/datahub
            format: JSON
            on: [success]
        """)
    assert targets == (
        NotifyTarget("https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789", "dingtalk",
                     frozenset({"failure", "recovery", "change"}), "/run/secrets/dingtalk"),
        NotifyTarget("http://alerts.internal:8080/datahub", "json", frozenset({"success"}), None),
    )


def test_bare_on_key_is_read_although_yaml_makes_it_true() -> None:
    raw = yaml.safe_load("notify: [{url: 'http://127.0.0.1/x', on: [change]}]")["notify"]
    assert True in raw[0]      # what YAML 1.1 does to an unquoted `on:`
    assert parse_notify(raw)[0].on == frozenset({"change"})


@pytest.mark.parametrize("url, fmt", [
    ("https://oapi.dingtalk.com/robot/send?access_token=x", "dingtalk"),
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", "wecom"),
    ("https://open.feishu.cn/open-apis/bot/v2/hook/x", "feishu"),
    ("https://open.larksuite.com/open-apis/bot/v2/hook/x", "feishu"),
    ("https://hooks.slack.com/services/T/B/x", "slack"),
    ("https://example.org/hook", "json"),
])
def test_format_defaults_to_what_the_host_speaks(url: str, fmt: str) -> None:
    (target,) = parse_notify([{"url": url}])
    assert target.format == fmt
    assert target.on == DEFAULT_ON == frozenset({"failure", "recovery"})


@pytest.mark.parametrize("raw, message", [
    ({"x": 1}, "notify: expected a list of targets ({url, format, on, secret_file}), got dict"),
    ([5], "notify[0]: expected a mapping with 'url', got int"),
    ([{"format": "json"}], "notify[0].url: required"),
    ([{"url": "http://h/", "fromat": "json"}], "notify[0].fromat: unknown key (known: url, format, on, secret_file)"),
    ([{"url": "http://h/", "format": "teams"}],
     "notify[0].format: expected one of json, slack, dingtalk, wecom, feishu, got 'teams'"),
    ([{"url": "http://h/"}, {"url": "http://h/", "on": ["failure", "sucess"]}],
     "notify[1].on: expected one or more of failure, recovery, success, change, got 'sucess'"),
    ([{"url": "http://h/", "on": []}], "notify[0].on: expected one or more of failure, recovery, success, change, got none"),
    ([{"url": "http://h/", "on": {"failure": 1}}],
     "notify[0].on: expected a list of events (failure, recovery, success, change), got dict"),
    ([{"url": 42}], "notify[0].url: expected an http:// or https:// URL, got int"),
    ([{"url": "hooks.slack.com/services/T/B/x"}],
     "notify[0].url: expected an http:// or https:// URL, got text without http:// or https://"),
    ([{"url": "http:///path-only"}], "notify[0].url: the URL has no host"),
    ([{"url": "http://h:99999/"}], "notify[0].url: not a valid URL (check the host and port)"),
    ([{"url": "http://h/a b"}], "notify[0].url: the URL contains spaces or control characters"),
    ([{"url": "https://hooks.slack.com/services/T/B/x", "secret_file": "/s"}],
     "notify[0].secret_file: the slack format does not sign its requests (only dingtalk and feishu do); remove secret_file"),
    ([{"url": "http://h/", "format": "feishu", "secret_file": ""}],
     "notify[0].secret_file: expected the path of a file holding the signing secret, got ''"),
])
def test_bad_targets_name_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notify(raw)
    assert str(caught.value) == message


def test_a_bad_url_is_never_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_notify([{"url": "ftp://robot.example/send?access_token=s3cr3t-token-value"}])
    assert str(caught.value) == "notify[0].url: expected an http:// or https:// URL, got a 'ftp' URL"


def test_the_target_repr_and_registered_secrets_hide_the_token() -> None:
    (target,) = parse_notify([{"url": "https://oapi.dingtalk.com/robot/send?access_token=0a1b2c3d4e5f6a7b8c9d"}])
    assert "0a1b2c3d4e5f6a7b8c9d" not in repr(target)
    assert repr(target) == ("NotifyTarget('https://oapi.dingtalk.com', format='dingtalk', "
                            "on=['failure', 'recovery'], secret_file=None)")
    assert redact("refused access_token=0a1b2c3d4e5f6a7b8c9d") == "refused ***"
    assert redact("token 0a1b2c3d4e5f6a7b8c9d") == "token ***"
    (slack,) = parse_notify([{"url": "https://hooks.slack.com/services/T00/B00/Zk3pQ8rT2vW9xY4bN6mC1dF7"}])
    assert redact("posting to Zk3pQ8rT2vW9xY4bN6mC1dF7") == "posting to ***"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
    | st.sampled_from(["http://127.0.0.1/x", "https://h/y?k=v", *FORMATS, *EVENTS, "url", "format", "on"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["url", "format", "on", "secret_file", "x"]) | st.booleans(), inner, max_size=5),
    max_leaves=12)


@given(json_values)
def test_any_value_is_a_target_tuple_or_a_config_error(raw: Any) -> None:
    try:
        targets = parse_notify(raw)
    except ConfigError as exc:
        assert str(exc).startswith("notify") and "\n" not in str(exc)
        return
    assert all(t.format in FORMATS and t.on and t.on <= set(EVENTS) for t in targets)


def test_environment_form() -> None:
    assert notify_from_env({}) is None
    assert notify_from_env({"DATAHUB_NOTIFY_URL": " "}) is None
    assert notify_from_env({"DATAHUB_NOTIFY_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}) == \
        NotifyTarget("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "wecom", DEFAULT_ON, None)
    assert notify_from_env({
        "DATAHUB_NOTIFY_URL": "http://127.0.0.1:9/hook", "DATAHUB_NOTIFY_FORMAT": "feishu",
        "DATAHUB_NOTIFY_ON": "failure, change", "DATAHUB_NOTIFY_SECRET_FILE": "/run/secrets/feishu",
    }) == NotifyTarget("http://127.0.0.1:9/hook", "feishu", frozenset({"failure", "change"}), "/run/secrets/feishu")


@pytest.mark.parametrize("env, message", [
    ({"DATAHUB_NOTIFY_FORMAT": "slack"}, "DATAHUB_NOTIFY_FORMAT: set without DATAHUB_NOTIFY_URL"),
    ({"DATAHUB_NOTIFY_URL": "http://h/", "DATAHUB_NOTIFY_FORMAT": "msteams"},
     "DATAHUB_NOTIFY_FORMAT: expected one of json, slack, dingtalk, wecom, feishu, got 'msteams'"),
    ({"DATAHUB_NOTIFY_URL": "http://h/", "DATAHUB_NOTIFY_ON": "failure,never"},
     "DATAHUB_NOTIFY_ON: expected one or more of failure, recovery, success, change, got 'never'"),
    ({"DATAHUB_NOTIFY_URL": "http://h/", "DATAHUB_NOTIFY_ON": ","},
     "DATAHUB_NOTIFY_ON: expected one or more of failure, recovery, success, change, got none"),
    ({"DATAHUB_NOTIFY_URL": "smtp://h"}, "DATAHUB_NOTIFY_URL: expected an http:// or https:// URL, got a 'smtp' URL"),
    ({"DATAHUB_NOTIFY_URL": "http://h/", "DATAHUB_NOTIFY_SECRET_FILE": "/s"},
     "DATAHUB_NOTIFY_SECRET_FILE: the json format does not sign its requests (only dingtalk and feishu do); remove secret_file"),
])
def test_environment_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        notify_from_env(env)
    assert str(caught.value) == message


# ---- events --------------------------------------------------------------------------------------

V1, V2 = "2025-11-27T07:00:00Z", "2025-11-28T07:00:00Z"


@pytest.mark.parametrize("result, previous, expected", [
    (SyncResult.failed("d", "download_failed", "503"), {"status": "success", "last_updated": V1}, {"failure"}),
    (SyncResult.failed("d", "error", "x"), None, {"failure"}),
    (SyncResult.failed("d", "error", "x"), {"status": "error", "last_updated": V1}, {"failure"}),
    (SyncResult.ok("d", "up_to_date", version=V1), {"status": "error", "last_updated": V1}, {"recovery"}),
    (SyncResult.ok("d", "up_to_date", version=V1), {"status": "rejected", "last_updated": V1}, {"recovery"}),
    (SyncResult.ok("d", "up_to_date", version=V1), {"status": "success", "last_updated": V1}, set()),
    (SyncResult.ok("d", "success", version=V2), {"status": "success", "last_updated": V1}, {"success", "change"}),
    (SyncResult.ok("d", "success", version=V2), {"status": "extract_failed", "last_updated": V1},
     {"recovery", "success", "change"}),
    (SyncResult.ok("d", "success", version=V1), {"status": "success", "last_updated": V1}, {"success"}),  # --force
    (SyncResult.ok("d", "success", version=V1), None, {"success", "change"}),                          # first install
    (SyncResult.ok("d", "would_sync", version=V2), {"status": "error", "last_updated": V1}, set()),     # dry run
    (SyncResult.failed("d", "error", "interrupted", interrupted=True), {"status": "success"}, set()),
    # a post_sync hook failing after the install: a failure, and the version did change
    (SyncResult.failed("d", "hook_failed", "exit status 1", version=V2), {"status": "success", "last_updated": V1},
     {"failure", "change"}),
])
def test_events(result: SyncResult, previous: dict[str, Any] | None, expected: set[str]) -> None:
    assert events_for(result, previous) == expected


versions = st.sampled_from([None, V1, V2])


@given(st.booleans(), st.sampled_from(OK_STATUSES + FAIL_STATUSES), versions, st.booleans(),
       st.none() | st.sampled_from(OK_STATUSES + FAIL_STATUSES + ("rejected",)), versions)
def test_event_rules_hold_for_every_combination(success: bool, status: str, version: str | None,
                                                interrupted: bool, before: str | None, old: str | None) -> None:
    result = SyncResult("d", success, status, version=version, interrupted=interrupted)
    previous = None if before is None else {"status": before, "last_updated": old}
    events = events_for(result, previous)
    assert events <= set(EVENTS)
    if interrupted or status == "would_sync":
        assert events == set()
        return
    assert ("failure" in events) == (not success)
    assert ("recovery" in events) == (success and before is not None and before not in OK_STATUSES)
    assert ("success" in events) == (success and status == "success")
    assert ("change" in events) == (version is not None and version != (old if previous else None))


# ---- messages ------------------------------------------------------------------------------------

RESULTS = [
    SyncResult.ok("bars", "up_to_date", version=V1),
    SyncResult.failed("prices", "download_failed", "HTTP 503 from the hub", warning=None),
    SyncResult.ok("fin", "success", version=V2, files=3, bytes=2048, warning="2 files kept locally"),
]
PREVIOUS = {"bars": {"status": "success", "last_updated": V1}, "prices": {"status": "success", "last_updated": V1},
            "fin": {"status": "error", "last_updated": V1}}
TEXT = (f"DataHubSync on host-1: 1 failed, 1 recovered, 1 updated, 1 up to date\n"
        f"- prices: download_failed [failure]: HTTP 503 from the hub; installed version {V1} kept\n"
        f"- fin: success [recovery, success, change]: version {V1} -> {V2}, 3 files, 2.0 KiB; warning: 2 files kept locally\n"
        f"- bars: up_to_date: version {V1}")


def message(fmt: str, url: str = "http://127.0.0.1:9/hook", secret: str | None = None) -> tuple[str, dict[str, Any]]:
    return build_message(NotifyTarget(url, fmt, DEFAULT_ON, None), RESULTS, PREVIOUS,
                         secret=secret, now=lambda: NOW, host="host-1")


def test_message_text_is_one_line_per_dataset_failures_first() -> None:
    url, body = message("wecom")
    assert url == "http://127.0.0.1:9/hook"
    assert body == {"msgtype": "text", "text": {"content": TEXT}}


def test_each_format_body() -> None:
    assert message("slack")[1] == {"text": TEXT.replace(">", "&gt;")}
    assert message("dingtalk")[1] == {"msgtype": "text", "text": {"content": TEXT}}
    assert message("feishu")[1] == {"msg_type": "text", "content": {"text": TEXT}}
    body = message("json")[1]
    assert body["text"] == TEXT and body["time"] == "2025-11-28T03:20:00.123000Z"
    assert [d["name"] for d in body["datasets"]] == ["bars", "prices", "fin"]


def test_dingtalk_signature_is_added_to_the_query() -> None:
    url, _ = message("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token=abc", secret="SECxyz")
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["abc"] and query["timestamp"] == ["1764300000123"]
    digest = hmac.new(b"SECxyz", b"1764300000123\nSECxyz", hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(digest).decode()]
    assert "+" not in urlsplit(url).query.split("sign=")[1].replace("%2B", "")   # URL-encoded


def test_feishu_signature_is_added_to_the_body() -> None:
    url, body = message("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/h", secret="s3cret")
    assert url == "https://open.feishu.cn/open-apis/bot/v2/hook/h"
    assert body["timestamp"] == "1764300000"
    digest = hmac.new(b"1764300000\ns3cret", b"", hashlib.sha256).digest()
    assert body["sign"] == base64.b64encode(digest).decode()


def test_long_errors_are_shortened() -> None:
    results = [SyncResult.failed("d", "error", "e" * 1000)]
    text = build_message(NotifyTarget("http://h/", "json"), results, {}, now=lambda: NOW, host="h")[1]["text"]
    assert text.splitlines()[1] == f"- d: error [failure]: {'e' * 297}...; nothing installed"


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)


@given(st.sampled_from(FORMATS), st.lists(st.tuples(names, st.booleans(), st.text(max_size=400)), max_size=80))
def test_text_fits_the_format_and_accounts_for_every_dataset(fmt: str, rows: list[tuple[str, bool, str]]) -> None:
    results = [SyncResult.ok(n, "success", version=V2) if ok else SyncResult.failed(n, "error", err or "x")
               for n, ok, err in rows]
    _, body = build_message(NotifyTarget("http://h/", fmt), results, {}, now=lambda: NOW, host="h")
    text = {"json": lambda b: b["text"], "slack": lambda b: b["text"], "feishu": lambda b: b["content"]["text"],
            "dingtalk": lambda b: b["text"]["content"], "wecom": lambda b: b["text"]["content"]}[fmt](body)
    assert len(text.encode()) <= TEXT_LIMITS[fmt]
    lines = text.split("\n")
    assert lines[0].startswith("DataHubSync on h: ")
    shown = [line for line in lines[1:] if line.startswith("- ")]
    left = [line for line in lines[1:] if line.startswith("... and ")]
    if left:
        assert left == [lines[-1]] and lines[-1] == f"... and {len(results) - len(shown)} more dataset(s)"
    else:
        assert len(shown) == len(results)      # errors with line breaks are flattened to one line
