"""A hub behind TLS: the default trust store refuses a self-signed hub, hub.verify_tls takes its CA."""
from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from app.serve.server import make_server
from tests.helpers import make_zip, run_cli, sync_env, tree
from tests.hubs.common import serving

pytestmark = pytest.mark.timeout(60)
FILES = {"a.csv": b"date,close\n2026-11-27,1\n"}


@pytest.fixture
def tls_hub(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The product's own `serve` wrapped in TLS with a certificate for 127.0.0.1 made here."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    folder = tmp_path / "hub"
    folder.mkdir()
    make_zip(folder / "prices.zip", FILES)
    server = make_server(folder, "127.0.0.1", 0)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as url:
        yield url.replace("http://", "https://"), cert


def test_self_signed_hub_is_refused_by_default(tls_hub: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_hub
    code, out, err = run_cli(["sync"], sync_env(url, tmp_path, ["prices"]))
    assert code == 1, out + err
    assert "TLS error" in err and "hub.verify_tls" in err
    assert not (tmp_path / "data" / "prices").exists()


def test_ca_bundle_in_verify_tls_is_trusted(tls_hub: tuple[str, Path], tmp_path: Path) -> None:
    url, cert = tls_hub
    code, out, err = run_cli(["sync"], sync_env(url, tmp_path, ["prices"], DATAHUB__HUB__VERIFY_TLS=str(cert)))
    assert code == 0, out + err
    assert tree(tmp_path / "data" / "prices") == FILES


def test_verify_tls_false_skips_verification(tls_hub: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_hub
    code, out, err = run_cli(["sync"], sync_env(url, tmp_path, ["prices"], DATAHUB__HUB__VERIFY_TLS="false"))
    assert code == 0, out + err
    assert tree(tmp_path / "data" / "prices") == FILES


def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    code, out, err = run_cli(["sync"], sync_env("https://127.0.0.1:9", tmp_path, ["prices"],
                                                DATAHUB__HUB__VERIFY_TLS=str(tmp_path / "nope.pem")))
    assert code == 2, out + err
    assert "hub.verify_tls" in err and "not found" in err and len(err.strip().splitlines()) == 1
