"""Secrets stay out of every output: redaction, URLs without passwords, the log filter, credential files."""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Callable
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import pytest
import urllib3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import app.core.secrets
from app.core.config import HubConfig
from app.core.errors import ConfigError
from app.core.secrets import RedactingFilter, clean_secret, redact, remember, resolve_credentials, safe_url


def test_redact_registered_secrets() -> None:
    remember("s3cret-value-1234")
    assert redact("token s3cret-value-1234 was refused") == "token *** was refused"
    assert redact("twice s3cret-value-1234/s3cret-value-1234") == "twice ***/***"
    assert redact("nothing to hide") == "nothing to hide"


def test_longer_secret_is_masked_before_its_prefix() -> None:
    remember("prefix-secret")
    remember("prefix-secret-longer")
    assert redact("x prefix-secret-longer y") == "x *** y"


def test_short_values_are_not_registered() -> None:
    remember("ab")
    remember("")
    assert redact("ab cd ab") == "ab cd ab"


@pytest.mark.parametrize("url, expected", [
    ("http://user:pw@127.0.0.1:8080/api?x=1", "http://127.0.0.1:8080/api?x=1"),
    ("https://user@hub.example/p", "https://hub.example/p"),
    ("https://:onlypass@hub.example/", "https://hub.example/"),
    ("https://hub.example/datahub", "https://hub.example/datahub"),
])
def test_safe_url(url: str, expected: str) -> None:
    assert safe_url(url) == expected
    assert "pw" not in safe_url(url) and "onlypass" not in safe_url(url)


def test_redacting_filter_on_a_log_record() -> None:
    remember("log-secret-9876")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_secrets.redacting")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("sending %s to %s", "Bearer log-secret-9876", "the hub")
        logger.warning("plain %d", 5)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "log-secret-9876" not in out
    assert "sending Bearer *** to the hub" in out
    assert "plain 5" in out


def test_filter_leaves_clean_records_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", ("fine",), None)
    assert RedactingFilter().filter(record) is True
    assert record.args == ("fine",) and record.getMessage() == "value fine"


def test_resolve_credentials_registers_what_it_reads(tmp_path: Path) -> None:
    secret_file = tmp_path / "cf-secret"
    secret_file.write_text("cf-secret-from-file\n")
    hub = HubConfig(url="http://127.0.0.1:1", token=" bearer-token-abcd ",
                    headers={"CF-Access-Client-Id": "cf-id-value", "CF-Access-Client-Secret": f"file:{secret_file}"})
    headers = resolve_credentials(hub)
    assert headers == {"CF-Access-Client-Id": "cf-id-value", "CF-Access-Client-Secret": "cf-secret-from-file",
                       "Authorization": "Bearer bearer-token-abcd"}
    text = redact("bearer-token-abcd cf-secret-from-file cf-id-value")
    assert text == "*** *** ***"


def test_token_file_wins_over_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file-tok")
    headers = resolve_credentials(HubConfig(url="http://127.0.0.1:1", token="inline", token_file=str(token_file)))
    assert headers["Authorization"] == "Bearer from-the-file-tok"


def test_secret_files_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hub.headers.X-Key: cannot read secret file"):
        resolve_credentials(HubConfig(url="http://h", headers={"X-Key": f"file:{tmp_path / 'absent'}"}))
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match=r"hub.token_file: secret file .* is empty"):
        resolve_credentials(HubConfig(url="http://h", token_file=str(empty)))


def test_no_credentials_no_headers() -> None:
    assert resolve_credentials(HubConfig(url="http://h")) == {}


# ---- what a secret may hold -------------------------------------------------------------------------

@pytest.mark.parametrize("given, sent", [
    ("tok-abcd\n", "tok-abcd"),                 # echo, most Kubernetes secrets
    ("tok-abcd\r\n", "tok-abcd"),               # a file saved on Windows
    ("  tok-abcd \n", "tok-abcd"),
    ("tok with inner space", "tok with inner space"),
    ("caf\u00e9-latin-1", "caf\u00e9-latin-1"),  # Latin-1 is what HTTP header values carry
])
def test_clean_secret_accepts(given: str, sent: str) -> None:
    assert clean_secret(given, "hub.token") == sent


@pytest.mark.parametrize("given, problem", [
    ("tok-abcd\n\n", "contains a control character (a line break?)"),
    ("tok\nabcd", "contains a control character (a line break?)"),
    ("tok-abcd\r", "contains a control character (a line break?)"),
    ("tok\tabcd", "contains a control character (a tab)"),
    ("tok\x00abcd", "contains a control character (U+0000)"),
    ("tok\x1babcd", "contains a control character (U+001B)"),
    ("tok\x7fabcd", "contains a control character (U+007F)"),
    ("tok\x85abcd", "contains a control character (U+0085)"),
    ("tok\x9fabcd", "contains a control character (U+009F)"),
    ("", "is empty"),
    ("\n", "is empty"),
    ("   \r\n", "is empty"),
    ("tok-\u20acabcd", "outside Latin-1"),
    ("tok-\u2028abcd", "outside Latin-1"),
    ("tok-\U0001f511abcd", "outside Latin-1"),
])
def test_clean_secret_refuses_without_showing_the_value(given: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        clean_secret(given, "hub.headers.CF-Access-Client-Secret")
    message = str(caught.value)
    assert message.startswith("hub.headers.CF-Access-Client-Secret: ") and problem in message
    assert "abcd" not in message and "\n" not in message


@given(st.text())
def test_clean_secret_returns_a_sendable_value_or_a_config_error(text: str) -> None:
    secret = "SeKr" + text
    try:
        value = clean_secret(secret, "hub.token")
    except ConfigError as exc:
        assert "SeKr" not in str(exc) and str(exc).startswith("hub.token: ")
        return
    value.encode("latin-1")
    assert value == value.strip() and value.startswith("SeKr")
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in value)


# ---- secrets read from files, at every run ----------------------------------------------------------

@pytest.mark.parametrize("content, sent", [
    (b"file-tok-1234\n", "file-tok-1234"),
    (b"file-tok-1234\r\n", "file-tok-1234"),
    (b"\xef\xbb\xbffile-tok-1234\n", "file-tok-1234"),            # a byte order mark from an editor
])
def test_secret_file_one_line_break_dropped(tmp_path: Path, content: bytes, sent: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    assert resolve_credentials(HubConfig(url="http://h", token_file=str(path)))["Authorization"] == f"Bearer {sent}"
    headers = resolve_credentials(HubConfig(url="http://h", headers={"X-Key": f"file:{path}"}))
    assert headers["X-Key"] == sent


@pytest.mark.parametrize("content, problem", [
    (b"file-tok-1234\n\n", "contains a control character (a line break?)"),
    (b"file-tok-1234\nsecond-line", "contains a control character (a line break?)"),
    (b"file-tok-1234\x00", "contains a control character (U+0000)"),
    (b"file-tok-1234\xc2\x85", "contains a control character (U+0085)"),
    (b"file-tok-1234\xe2\x82\xac", "outside Latin-1"),
    (b"file-tok-1234\xff\xfe", "is not UTF-8 text"),
    (b"\n", "is empty"),
    (b"", "is empty"),
    (b"file-tok-1234" * 6000, "is larger than 64 KiB"),
])
def test_secret_file_refused_naming_key_and_path_never_content(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "secret"
    path.write_bytes(content)
    for hub, key in ((HubConfig(url="http://h", token_file=str(path)), "hub.token_file"),
                     (HubConfig(url="http://h", headers={"CF-Access-Client-Secret": f"file:{path}"}),
                      "hub.headers.CF-Access-Client-Secret")):
        with pytest.raises(ConfigError) as caught:
            resolve_credentials(hub)
        message = str(caught.value)
        assert message.startswith(f"{key}: secret file {path}") and problem in message, message
        assert "file-tok" not in message and "\n" not in message


def test_inline_values_are_checked_again_when_resolved() -> None:
    # a HubConfig built in code skips the loader's checks; the request must still never carry them
    with pytest.raises(ConfigError, match=r"^hub\.headers\.X-Key: contains a control character \(a line break\?\)$"):
        resolve_credentials(HubConfig(url="http://h", headers={"X-Key": "inline-1234\r\nX-Evil: 1"}))
    with pytest.raises(ConfigError, match=r"^hub\.token: contains a character outside Latin-1"):
        resolve_credentials(HubConfig(url="http://h", token="t\u00f6ken-\u20ac"))


# ---- redaction of every printed form ------------------------------------------------------------------

QUOTED = "Mk7q'pa ss/\\w\u00e9rd+&=Zx4"      # quote, space, slash, backslash, non-ASCII, URL-reserved characters
BOTH = "Nb3w'x\"y\\Yt6"                     # both quotes: repr() escapes the single one


@pytest.mark.parametrize("encode", [
    pytest.param(lambda s: f"plain {s} text", id="verbatim"),
    pytest.param(lambda s: repr(f"in repr {s}"), id="repr-double-quoted"),
    pytest.param(lambda s: repr(f"in \" repr {s}"), id="repr-single-quoted"),
    pytest.param(lambda s: repr({"headers": {"X": s}}), id="repr-of-a-dict"),
    pytest.param(lambda s: json.dumps({"error": f"got {s}"}), id="json-ascii"),
    pytest.param(lambda s: json.dumps({"error": f"got {s}"}, ensure_ascii=False), id="json-unicode"),
    pytest.param(lambda s: "https://hub.example/p?t=" + quote(s, safe=""), id="percent-all"),
    pytest.param(lambda s: "https://hub.example/" + quote(s), id="percent-path"),
    pytest.param(lambda s: "https://hub.example/p?" + urlencode({"t": s}), id="percent-form"),
])
@pytest.mark.parametrize("secret", [QUOTED, BOTH], ids=["one-quote", "both-quotes"])
def test_redact_removes_escaped_forms(encode: Callable[[str], str], secret: str) -> None:
    remember(secret)
    text = encode(secret)
    assert secret[:3] in text                    # the form under test really carries the secret
    cleaned = redact(text)
    assert "***" in cleaned
    assert secret[:3] not in cleaned and secret[-3:] not in cleaned, cleaned


@pytest.fixture
def own_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of generated secrets stay out of other tests' redaction."""
    monkeypatch.setattr(app.core.secrets, "_known", set())
    monkeypatch.setattr(app.core.secrets, "_forms", [])


@pytest.mark.usefixtures("own_secrets")
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1))
def test_redact_any_secret_in_every_form(text: str) -> None:
    secret = "Hq5r" + text + "Wv8j"             # the markers survive every encoding unchanged
    remember(secret)
    for form in (secret, repr(f"a {secret} b"), repr(f"a ' \" {secret} b"), json.dumps([secret]),
                 json.dumps([secret], ensure_ascii=False), quote(secret, safe=""), quote(secret), quote_plus(secret)):
        cleaned = redact(form)
        assert "Hq5r" not in cleaned or "Wv8j" not in cleaned, (form, cleaned)


# ---- URLs -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("http://u:pw@h\\@evil.example/x", "http://evil.example/x"),     # urllib3 reads host h, urllib.parse evil
    ("http://good.example\\@evil.example/", "http://evil.example/"),
    ("http://a:pw@b:pw2@c.example/x", "http://c.example/x"),
    ("http://user:pa?ss@host.example/x", "http://host.example/x"),
    ("http://user:pa#ss@host.example/x", "http://host.example/x"),
    ("http:/\n/user:pw@host.example/", "http://host.example/"),       # urllib.parse drops tab/CR/LF first
    ("  http://user:pw@host.example/", "http://host.example/"),
    ("HTTPS://user:pw@host.example", "HTTPS://host.example"),
    ("http:user:pw@host.example", "http:host.example"),
    ("//user:pw@host.example/p", "//host.example/p"),
    ("http://[::1]:8080/p?x=a@b", "http://[::1]:8080/p?x=a@b"),        # '@' in a query is no user part
    ("http://host.example/p\x1b[31m", "http://host.example/p%1B[31m"),  # one line, no terminal escapes
])
def test_safe_url_hostile(url: str, expected: str) -> None:
    assert safe_url(url) == expected


URLISH = st.text(alphabet="hH:/\\@?#[]%.-_ \t\n\x00upw019", max_size=30)


def _user_parts(url: str) -> list[str | None]:
    found: list[str | None] = []
    try:
        parts = urlsplit(url)
        found += [parts.username, parts.password]
    except ValueError:
        pass
    for text in (url, url.strip()):              # requests strips every blank before urllib3 parses
        try:
            found.append(urllib3.util.parse_url(text).auth)
        except urllib3.exceptions.LocationParseError:
            pass
    return found


@settings(max_examples=1000)
@given(st.one_of(URLISH, st.builds(lambda a, b, c: f"{a}://{b}@{c}", URLISH, URLISH, URLISH), st.text()))
@example("@H://0@")                              # cutting the first user part makes a new scheme and user part
@example("a.b:c@d/x")                            # urllib3 reads a scheme-less text as an authority
@example("@ H://@@")                             # ... and after the cut, urllib.parse drops the leading space
def test_safe_url_leaves_no_user_part_for_any_parser(url: str) -> None:
    shown = safe_url(url)
    assert not any(_user_parts(shown)), shown
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in shown)
