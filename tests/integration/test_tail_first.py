"""A package larger than the first ranged request: its tail (the ZIP's central directory) is fetched
first, so the package is checked, and extracted, while the rest still arrives. A hostile package is
refused before most of it is downloaded; a large download that is not a ZIP is read to the end and
refused as a whole.

The hub sends each stream slowly (FaultyHub.rate), so "while the rest still arrives" is observable:
the hub's count of body bytes sent is still below the package's size.
"""
from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

from tests.helpers import read_state, run_cli, sync_env, tree, zip_bytes
from tests.hubs import FaultyHub
from tests.integration.common import output

MiB = 1 << 20
# Larger than the first request (16 MiB) by more than four tails (1 MiB each): the download plans
# an urgent tail segment. Stored, random bytes: the package is as large as its content.
BIG = 22 * MiB
RATE = 3 * MiB           # bytes/s per stream: about 2 s for the package over four streams, 0.3 s for its tail


def big_files() -> dict[str, bytes]:
    """Small entries first (their bytes arrive at once), then one large one, then another small one."""
    return {"README.txt": b"daily bars\n", "2025/01.csv": b"date,close\n2025-01-02,1\n",
            "big.bin": os.urandom(BIG), "2025/02.csv": b"date,close\n2025-02-03,2\n"}


def watch_staging(staging: Path, hub: FaultyHub, total: int, stop: threading.Event) -> list[int]:
    """Start a thread that records hub.requests.body_bytes each time it sees a staged file while the
    hub has not yet sent the whole package; returns the (growing) list of those counts."""
    seen: list[int] = []

    def run() -> None:
        while not stop.is_set():
            sent = hub.requests.body_bytes
            if sent < total and staging.is_dir() and any(p.is_file() for p in staging.rglob("*")):
                seen.append(sent)
            stop.wait(0.01)

    threading.Thread(target=run, daemon=True).start()
    return seen


def no_internal_error(out: str, err: str) -> None:
    text = output(out, err)
    assert "unexpected" not in text and "internal error" not in text and "Traceback" not in text, text


def test_a_large_package_is_extracted_while_the_rest_still_arrives(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = big_files()
    package = zip_bytes(files, compression=zipfile.ZIP_STORED)
    faulty_hub.add_package("bars", package, sha256=True)
    faulty_hub.rate = RATE
    env = sync_env(faulty_hub.url, tmp_path, ["bars"], DATAHUB__HUB__CONNECTIONS="4")
    stop = threading.Event()
    early = watch_staging(tmp_path / "state" / "staging", faulty_hub, len(package), stop)
    try:
        code, out, err = run_cli(["sync"], env)
    finally:
        stop.set()

    assert code == 0, output(out, err)
    assert tree(tmp_path / "data" / "bars") == files
    state = read_state(tmp_path / "state")["datasets"]["bars"]
    assert state["status"] == "success" and state["files"] == len(files)
    assert early, "nothing was staged before the hub had sent the whole package"
    ranges = [r.headers.get("Range") for r in faulty_hub.requests.to("/package/")]
    tail = [r for r in ranges if r and r.startswith("bytes=") and int(r[6:].split("-")[0]) >= len(package) - 2 * MiB]
    assert tail, f"no request for the package's tail: {ranges}"
    assert not (tmp_path / "state" / "staging").exists() or tree(tmp_path / "state" / "staging") == {}


def test_a_hostile_large_package_is_refused_before_most_of_it_arrives(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    files = {**big_files(), "../escape.txt": b"outside"}
    package = zip_bytes(files, compression=zipfile.ZIP_STORED)
    faulty_hub.add_package("bars", package)
    faulty_hub.rate = RATE
    env = sync_env(faulty_hub.url, tmp_path, ["bars"], DATAHUB__HUB__CONNECTIONS="4")

    code, out, err = run_cli(["sync"], env)
    sent = faulty_hub.requests.body_bytes

    assert code == 1, output(out, err)
    no_internal_error(out, err)
    state = read_state(tmp_path / "state")["datasets"]["bars"]
    assert state["status"] == "extract_failed", state
    assert "../escape.txt" in state["error"] and "\n" not in state["error"]
    assert sent < len(package) // 2, f"{sent} of {len(package)} bytes were sent before the refusal"
    assert tree(tmp_path / "data") == {}
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "escape.txt").exists()
    downloads = tmp_path / "state" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == [], "the refused package was kept"


def test_a_large_download_that_is_not_a_zip_is_read_to_the_end_and_refused(faulty_hub: FaultyHub,
                                                                           tmp_path: Path) -> None:
    blob = os.urandom(BIG)
    faulty_hub.add_package("bars", blob)
    faulty_hub.rate = 4 * RATE
    env = sync_env(faulty_hub.url, tmp_path, ["bars"], DATAHUB__HUB__CONNECTIONS="4")

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    no_internal_error(out, err)
    state = read_state(tmp_path / "state")["datasets"]["bars"]
    assert state["status"] == "extract_failed", state
    assert state["error"].startswith("not a valid ZIP file") and "\n" not in state["error"], state["error"]
    assert faulty_hub.requests.body_bytes >= len(blob)
    assert tree(tmp_path / "data") == {}
    downloads = tmp_path / "state" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == [], "the refused download was kept"
