"""Run notifications: the `notify:` targets, which events a run produced, one message per run, sending it.

Formats (what build_message puts in the request body):
- json: our own schema, SCHEMA_VERSION 1:
  {"source": "datahubsync", "schema": 1, "host", "time", "events": [...], "summary", "text",
   "datasets": [{"name", "status", Status.SUCCESS, "events", "version", "previous_version",
                 "previous_status", Status.ERROR, "warning", "files", "bytes", "duration"}]}
- slack: incoming webhook, {"text": ...} (&, < and > escaped as Slack asks).
- dingtalk: group robot, {"msgtype": "text", "text": {"content": ...}}. With a secret the URL gets
  `timestamp` (ms since the epoch) and `sign`: HMAC-SHA256 keyed with the secret over
  "<timestamp>\\n<secret>", base64, URL-encoded.
- wecom: group robot, {"msgtype": "text", "text": {"content": ...}} (2048 bytes at most).
- feishu: custom bot (Lark too), {"msg_type": "text", "content": {"text": ...}}. With a secret the
  body gets "timestamp" (seconds, a string) and "sign": HMAC-SHA256 keyed with
  "<timestamp>\\n<secret>" over an empty message, base64.

send() never raises and spends at most about timeout * (retries + 1) seconds per target (targets
are sent in parallel). Messages and problem lines name a target by scheme://host:port only: a
webhook's path or query usually is its access token. May import errors, secrets, result, timeutil,
progress (human_bytes).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, quote_plus, urlsplit, urlunsplit

import requests

from app.core.errors import ConfigError
from app.core.progress import human_bytes
from app.core.result import OK_STATUSES, Status, SyncResult
from app.core.secrets import redact, remember
from app.core.timeutil import to_iso

log = logging.getLogger("datahubsync.notify")

FORMATS = ("json", "slack", "dingtalk", "wecom", "feishu")
SIGNED_FORMATS = ("dingtalk", "feishu")
EVENTS = ("failure", "recovery", "success", "change")
DEFAULT_ON = frozenset({"failure", "recovery"})
KEYS = ("url", "format", "on", "secret_file")
ENV = {"url": "DATAHUB_NOTIFY_URL", "format": "DATAHUB_NOTIFY_FORMAT",
       "on": "DATAHUB_NOTIFY_ON", "secret_file": "DATAHUB_NOTIFY_SECRET_FILE"}
SCHEMA_VERSION = 1
# A robot's own webhook host says which format it speaks; any other URL defaults to json.
KNOWN_HOSTS = {"oapi.dingtalk.com": "dingtalk", "qyapi.weixin.qq.com": "wecom",
               "open.feishu.cn": "feishu", "open.larksuite.com": "feishu", "hooks.slack.com": "slack"}
# Message text limits in UTF-8 bytes (WeCom refuses text over 2048 bytes; Feishu bodies over 20 KB).
TEXT_LIMITS = {"json": 100_000, "slack": 35_000, "dingtalk": 18_000, "wecom": 2_048, "feishu": 18_000}
ERROR_CHARS = 300
_BACKOFF = 0.5
_SLACK = 1.0       # seconds send() waits beyond the targets' own budget


@dataclass(frozen=True)
class NotifyTarget:
    url: str = field(repr=False)
    format: str = "json"
    on: frozenset[str] = DEFAULT_ON
    secret_file: str | None = None

    @property
    def origin(self) -> str:
        """scheme://host[:port]: all a message may say about the target."""
        return origin(self.url)

    def __repr__(self) -> str:
        return (f"NotifyTarget({self.origin!r}, format={self.format!r}, on={sorted(self.on)!r}, "
                f"secret_file={self.secret_file!r})")


def origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def remember_url(url: str) -> None:
    """Register what in a webhook URL is a credential: the query and its long values, the password,
    and long path segments (Slack's and Feishu's tokens live in the path)."""
    parts = urlsplit(url)
    if parts.query:
        remember(parts.query)
        for _, value in parse_qsl(parts.query):
            if len(value) >= 8:
                remember(value)
    if parts.password:
        remember(parts.password)
    for segment in parts.path.split("/"):
        if len(segment) >= 16:
            remember(segment)


# ---- configuration -------------------------------------------------------------------------------

def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def parse_notify(raw: object, key: str = "notify") -> tuple[NotifyTarget, ...]:
    """Validate the YAML `notify:` value, a list of {url, format, on, secret_file} mappings."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{key}: expected a list of targets ({{url, format, on, secret_file}}), "
                          f"got {_type_name(raw)}")
    return tuple(_target_from_mapping(item, f"{key}[{i}]") for i, item in enumerate(raw))


def _target_from_mapping(item: object, where: str) -> NotifyTarget:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'url', got {_type_name(item)}")
    fields: dict[str, object] = {}
    for name, value in item.items():
        if name is True:            # YAML 1.1 reads a bare `on:` key as the boolean true
            name = "on"
        if name not in KEYS:
            raise ConfigError(f"{where}.{name}: unknown key (known: {', '.join(KEYS)})")
        if name in fields:
            raise ConfigError(f"{where}.{name}: given twice")
        fields[name] = value
    return _target(fields, lambda name: f"{where}.{name}")


def notify_from_env(environ: Mapping[str, str]) -> NotifyTarget | None:
    """The one target of DATAHUB_NOTIFY_URL, _FORMAT, _ON (comma list) and _SECRET_FILE; None when unset."""
    fields = {name: environ[var] for name, var in ENV.items() if environ.get(var, "").strip()}
    if not fields:
        return None
    if "url" not in fields:
        given = ", ".join(ENV[name] for name in fields)
        raise ConfigError(f"{given}: set without DATAHUB_NOTIFY_URL")
    return _target(fields, ENV.__getitem__)


def _target(fields: Mapping[str, object], label: Callable[[str], str]) -> NotifyTarget:
    if fields.get("url") is None:
        raise ConfigError(f"{label('url')}: required")
    url = _url(fields["url"], label("url"))
    fmt = _format(fields.get("format"), label("format"), url)
    on = _events(fields.get("on"), label("on"))
    secret_file = _secret_file(fields.get("secret_file"), label("secret_file"), fmt)
    remember_url(url)
    return NotifyTarget(url, fmt, on, secret_file)


def _url(value: object, key: str) -> str:
    """The webhook URL; errors never repeat it, since it usually carries an access token."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {_type_name(value)}")
    text = value.strip()
    if any(ch <= " " or ch == "\x7f" for ch in text):
        raise ConfigError(f"{key}: the URL contains spaces or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ConfigError(f"{key}: not a valid URL (check the host and port)") from None
    if parts.scheme.lower() not in ("http", "https"):
        got = f"a {parts.scheme!r} URL" if parts.scheme else "text without http:// or https://"
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {got}")
    if not parts.hostname:
        raise ConfigError(f"{key}: the URL has no host")
    return text


def _format(value: object, key: str, url: str) -> str:
    if value is None:
        return KNOWN_HOSTS.get(urlsplit(url).hostname or "", "json")
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in FORMATS:
        raise ConfigError(f"{key}: expected one of {', '.join(FORMATS)}, got {value!r}")
    return str(text)


def _events(value: object, key: str) -> frozenset[str]:
    if value is None:
        return DEFAULT_ON
    items: Iterable[object]
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(f"{key}: expected a list of events ({', '.join(EVENTS)}), got {_type_name(value)}")
    found = set()
    for item in items:
        name = item.strip().lower() if isinstance(item, str) else item
        if name not in EVENTS:
            raise ConfigError(f"{key}: expected one or more of {', '.join(EVENTS)}, got {item!r}")
        found.add(str(name))
    if not found:
        raise ConfigError(f"{key}: expected one or more of {', '.join(EVENTS)}, got none")
    return frozenset(found)


def _secret_file(value: object, key: str, fmt: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected the path of a file holding the signing secret, got {value!r}")
    if fmt not in SIGNED_FORMATS:
        raise ConfigError(f"{key}: the {fmt} format does not sign its requests (only "
                          f"{' and '.join(SIGNED_FORMATS)} do); remove secret_file")
    return value.strip()


# ---- events --------------------------------------------------------------------------------------

def events_for(result: SyncResult, previous: Mapping[str, Any] | None) -> frozenset[str]:
    """What one dataset's result means against its state record from before the run (None: never synced).

    failure: failed now. recovery: its last recorded status was a failure and now it is ok.
    success: a new version was installed. change: the installed version differs from before (a
    failed result that carries a version, say a post_sync hook failing after the install, counts).
    Dry runs and interrupted runs produce nothing.
    """
    if result.interrupted or result.status == Status.WOULD_SYNC:
        return frozenset()
    before = previous or {}
    events = set()
    if not result.success:
        events.add("failure")
    else:
        status = before.get("status")
        if status is not None and status not in OK_STATUSES:
            events.add("recovery")
        if result.status == Status.SUCCESS:
            events.add("success")
    if result.version is not None and result.version != before.get("last_updated"):
        events.add("change")
    return frozenset(events)


def run_events(results: Sequence[SyncResult], previous: Mapping[str, Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    return {r.dataset_name: events_for(r, previous.get(r.dataset_name)) for r in results}


# ---- the message ---------------------------------------------------------------------------------

def _line(result: SyncResult, before: Mapping[str, Any], events: frozenset[str]) -> str:
    """`- NAME: STATUS [events]: error; version (old -> new), files, size; warning`."""
    tags = f" [{', '.join(e for e in EVENTS if e in events)}]" if events else ""
    old = before.get("last_updated")
    parts = []
    if not result.success:
        error = " ".join((result.error or "unknown error").split())   # one line per dataset
        parts.append(error if len(error) <= ERROR_CHARS else error[:ERROR_CHARS - 3] + "...")
    if "change" in events:
        version = f"version {old or 'none'} -> {result.version}"
    elif not result.success:
        version = f"installed version {old} kept" if old else "nothing installed"
    else:
        version = f"version {result.version or old or 'none'}"
    if result.status == Status.SUCCESS and result.files is not None:
        version += f", {result.files} files"
        if result.bytes is not None:
            version += f", {human_bytes(result.bytes)}"
    parts.append(version)
    if result.warning:
        parts.append(f"warning: {' '.join(result.warning.split())}")
    return f"- {result.dataset_name}: {result.status}{tags}: {'; '.join(parts)}"


def _headline(results: Sequence[SyncResult], events: Mapping[str, frozenset[str]], host: str) -> str:
    counts = [("failed", sum(not r.success and not r.interrupted for r in results)),
              ("recovered", sum("recovery" in e for e in events.values())),
              ("updated", sum(r.status == Status.SUCCESS for r in results)),
              ("up to date", sum(r.status == Status.UP_TO_DATE for r in results)),
              ("interrupted", sum(r.interrupted for r in results))]
    summary = ", ".join(f"{n} {word}" for word, n in counts if n) or f"{len(results)} dataset(s)"
    return f"DataHubSync on {host}: {summary}"


def _text(headline: str, lines: list[str], limit: int) -> str:
    """The headline and as many lines as fit in `limit` UTF-8 bytes, then how many were left out."""
    kept = [headline]
    used = len(headline.encode())
    for i, line in enumerate(lines):
        after = len(lines) - i - 1
        room_for_note = len(f"\n... and {after} more dataset(s)") if after else 0
        if used + 1 + len(line.encode()) + room_for_note > limit:
            kept.append(f"... and {len(lines) - i} more dataset(s)")
            break
        kept.append(line)
        used += 1 + len(line.encode())
    return "\n".join(kept).encode()[:limit].decode(errors="ignore")


def sign(secret: str, timestamp: int, fmt: str) -> str:
    """The `sign` value DingTalk (timestamp in ms) or Feishu (timestamp in s) checks."""
    to_sign = f"{timestamp}\n{secret}".encode()
    if fmt == "dingtalk":
        return base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()).decode()
    return base64.b64encode(hmac.new(to_sign, b"", hashlib.sha256).digest()).decode()


def build_message(target: NotifyTarget, results: Sequence[SyncResult],
                  previous: Mapping[str, Mapping[str, Any]], *, secret: str | None = None,
                  now: Callable[[], float] = time.time, host: str | None = None) -> tuple[str, dict[str, Any]]:
    """(URL, JSON body) of the one message for this run; `previous` maps names to state records."""
    host = host or socket.gethostname()
    events = run_events(results, previous)
    # Datasets that failed, then those with any event, first: a cut message drops the quiet ones.
    ordered = sorted(results, key=lambda r: (r.success, not events[r.dataset_name]))
    lines = [_line(r, previous.get(r.dataset_name) or {}, events[r.dataset_name]) for r in ordered]
    headline = _headline(results, events, host)
    text = _text(headline, lines, TEXT_LIMITS[target.format])
    url = target.url
    stamp = now()
    if target.format == "json":
        body: dict[str, Any] = {
            "source": "datahubsync", "schema": SCHEMA_VERSION, "host": host,
            "time": to_iso(datetime.fromtimestamp(stamp, timezone.utc)),
            "events": [e for e in EVENTS if any(e in found for found in events.values())],
            "summary": headline, "text": text,
            "datasets": [_record(r, previous.get(r.dataset_name) or {}, events[r.dataset_name]) for r in results]}
    elif target.format == "slack":
        body = {"text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")}
    elif target.format in ("dingtalk", "wecom"):
        body = {"msgtype": "text", "text": {"content": text}}
    else:
        body = {"msg_type": "text", "content": {"text": text}}
    if secret and target.format == "dingtalk":
        millis = int(stamp * 1000)
        parts = urlsplit(url)
        query = (parts.query + "&" if parts.query else "") + f"timestamp={millis}&sign={quote_plus(sign(secret, millis, 'dingtalk'))}"
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    elif secret and target.format == "feishu":
        seconds = int(stamp)
        body["timestamp"] = str(seconds)
        body["sign"] = sign(secret, seconds, "feishu")
    return url, body


def _record(result: SyncResult, before: Mapping[str, Any], events: frozenset[str]) -> dict[str, Any]:
    return {"name": result.dataset_name, "status": result.status, "success": result.success,
            "events": [e for e in EVENTS if e in events], "version": result.version,
            "previous_version": before.get("last_updated"), "previous_status": before.get("status"),
            "error": result.error, "warning": result.warning, "files": result.files,
            "bytes": result.bytes, "duration": round(result.duration, 3)}


# ---- sending -------------------------------------------------------------------------------------

def send(targets: Sequence[NotifyTarget], results: Sequence[SyncResult],
         previous: Mapping[str, Mapping[str, Any]], *, timeout: float = 5, retries: int = 2,
         host: str | None = None) -> list[str]:
    """Send this run's message to every target whose `on` events it produced; returns the problems."""
    events = run_events(results, previous)
    fired = frozenset().union(*events.values())
    due = [t for t in targets if t.on & fired]
    if not due:
        return []
    host = host or socket.gethostname()
    # Plain daemon threads, not a pool: a target stuck where no timeout reaches (a slow DNS lookup)
    # is left behind instead of holding up the sync or the interpreter's exit.
    budget = timeout * (retries + 1) + _SLACK
    outcomes: dict[int, str | None] = {}

    def deliver(i: int, target: NotifyTarget) -> None:
        outcomes[i] = _deliver(target, results, previous, timeout, retries, host)

    threads = [threading.Thread(target=deliver, args=(i, t), name=f"notify-{i}", daemon=True)
               for i, t in enumerate(due)]
    for thread in threads:
        thread.start()
    end = time.monotonic() + budget
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    problems: list[str] = []
    for i, target in enumerate(due):
        if i not in outcomes:
            problems.append(f"{_label(target)}: not done after {budget:g} s; given up")
        elif problem := outcomes[i]:
            problems.append(problem)
    return problems


def _label(target: NotifyTarget) -> str:
    return f"{target.format} notification to {target.origin}"


def _deliver(target: NotifyTarget, results: Sequence[SyncResult], previous: Mapping[str, Mapping[str, Any]],
             timeout: float, retries: int, host: str) -> str | None:
    try:
        remember_url(target.url)
        secret = None
        if target.secret_file:
            secret = _read_secret(target.secret_file)
        url, body = build_message(target, results, previous, secret=secret, host=host)
        problem = _post(target, url, json.dumps(body, ensure_ascii=False).encode(), timeout, retries)
    except _SecretProblem as exc:
        problem = f"{exc}; not sent"
    except Exception as exc:  # noqa: BLE001 - a notification must never end the sync
        log.debug("notification failed", exc_info=True)
        problem = f"unexpected {type(exc).__name__}; not sent"
    if problem is None:
        log.info("%s sent", _label(target))
        return None
    return redact(f"{_label(target)}: {problem}")


class _SecretProblem(Exception):
    pass


def _read_secret(path: str) -> str:
    """The signing secret, read now (a rotated file needs no restart); one trailing newline dropped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _SecretProblem(f"cannot read the secret file {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise _SecretProblem(f"the secret file {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise _SecretProblem(f"the secret file {path} is empty")
    remember(text)
    return text


def _post(target: NotifyTarget, url: str, data: bytes, timeout: float, retries: int) -> str | None:
    """POST with retries on no answer, 408, 429 and 5xx, all within timeout * (retries + 1).

    A retry after a timeout goes at once (the wait was long enough); after a quick refusal it
    backs off 0.5 s, then 1 s, ...
    """
    deadline = time.monotonic() + timeout * (retries + 1)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "datahubsync"}
    problem, attempts = "no time left to send", 0
    with requests.Session() as session:
        for attempt in range(retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            attempts += 1
            wait = min(timeout, remaining)
            timed_out = False
            try:
                response = session.post(url, data=data, headers=headers, timeout=(wait, wait), allow_redirects=False)
            except requests.Timeout:
                problem, retry, timed_out = f"no answer within {timeout:g} s", True, True
            except requests.ConnectionError as exc:
                problem, retry = f"cannot connect: {_os_reason(exc)}", True
            except requests.RequestException as exc:
                problem, retry = f"request failed ({type(exc).__name__})", False
            else:
                verdict = _judge(target.format, response)
                if verdict is None:
                    return None
                problem, retry = verdict
            if not retry or attempt == retries:
                break
            if not timed_out:
                time.sleep(max(0.0, min(_BACKOFF * 2 ** attempt, deadline - time.monotonic())))
    return problem + (f" (after {attempts} attempts)" if attempts > 1 else "")


def _os_reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (never the URL, which requests puts in its text)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return "the connection failed"


def _judge(fmt: str, response: requests.Response) -> tuple[str, bool] | None:
    """None when delivered; else (problem, worth retrying). Robots answer 200 with an error code."""
    status = response.status_code
    if status in (408, 429) or status >= 500:
        return f"HTTP {status}", True
    if not 200 <= status < 300:
        return f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else ""), False
    if fmt not in ("dingtalk", "wecom", "feishu"):
        return None
    try:
        answer = response.json()
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
    if code in (0, None):
        return None
    message = str(answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or "")[:200]
    return f"the robot refused the message: code {code} {message}".rstrip(), False
