"""Secrets stay out of every output: redaction, URLs without passwords, the log filter, credential files."""
from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from app.config import HubConfig
from app.errors import ConfigError
from app.secrets import RedactingFilter, redact, remember, resolve_credentials, safe_url


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
