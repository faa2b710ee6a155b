"""A hub serving hostile packages, and a dataset folder with a link inside: each such dataset fails
on its own as extract_failed with one line; installed data and the links' targets stay as they were."""
from __future__ import annotations

import zipfile
from pathlib import Path

from tests.helpers import read_state, run_cli, sync_env, tree, zip_bytes
from tests.hubs import FaultyHub
from tests.integration.common import FILES, output
from tests.unit.zipsplice import FLAGS, LOCAL_OFFSET, Parts, field, split, with_field, with_name


def overlapping() -> bytes:
    """A second entry whose local header and data are quoted inside the first (stored) entry's data:
    every byte counts twice, and each entry on its own looks sound."""
    inner = split(zip_bytes({"inner.csv": "1,2\n" * 1000}, compression=zipfile.ZIP_STORED))
    outer = split(zip_bytes({"outer.bin": b"head" + inner.data}, compression=zipfile.ZIP_STORED))
    outer.records.append(with_field(inner.records[0], LOCAL_OFFSET, 30 + len("outer.bin") + 4))
    return outer.join()


def bad_name() -> bytes:
    parts = split(zip_bytes({"a.csv": "1", "b.csv": "2"}, compression=zipfile.ZIP_STORED))
    record = with_name(parts.records[1], b"caf\xe9.csv")
    return Parts(parts.data, [parts.records[0], with_field(record, FLAGS, field(record, FLAGS, "<H") | 0x800, "<H")]).join()


def no_internal_error(out: str, err: str) -> None:
    text = output(out, err)
    assert "unexpected" not in text and "internal error" not in text and "Traceback" not in text, text


def test_hostile_packages_fail_their_own_dataset_only(faulty_hub: FaultyHub, tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES))
    faulty_hub.add_package("overlap", overlapping())
    faulty_hub.add_package("badname", bad_name())
    env = sync_env(faulty_hub.url, tmp_path, ["prices", "overlap", "badname"])

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    no_internal_error(out, err)
    assert tree(tmp_path / "data" / "prices") == FILES
    state = read_state(tmp_path / "state")["datasets"]
    assert state["prices"]["status"] == "success"
    assert state["overlap"]["status"] == "extract_failed"
    assert "entry 'outer.bin' (bytes 0 to at least" in state["overlap"]["error"]
    assert "overlaps entry 'inner.csv' at byte 43: overlapping entries are refused" in state["overlap"]["error"]
    assert state["badname"]["status"] == "extract_failed"
    assert "entry #2: its name is not valid UTF-8 although the package marks it UTF-8" in state["badname"]["error"]
    for name in ("overlap", "badname"):
        assert "\n" not in state[name]["error"]
        assert tree(tmp_path / "data" / name) == {}


def test_a_link_inside_the_dataset_folder_fails_the_overlay_and_changes_nothing(faulty_hub: FaultyHub,
                                                                             tmp_path: Path) -> None:
    faulty_hub.add_package("prices", zip_bytes(FILES), "2026-11-28T08:30:00Z")
    env = sync_env(faulty_hub.url, tmp_path, ["prices"])
    assert run_cli(["sync"], env)[0] == 0
    target, elsewhere = tmp_path / "data" / "prices", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "theirs.csv").write_bytes(b"not ours")
    (target / "2025").rename(tmp_path / "moved")
    (target / "2025").symlink_to(elsewhere)
    before = tree(target)
    newer = {name: data + b"2025-11-29,1,2\n" for name, data in FILES.items()}
    faulty_hub.add_package("prices", zip_bytes(newer), "2026-11-29T08:30:00Z")

    code, out, err = run_cli(["sync"], env)

    assert code == 1, output(out, err)
    no_internal_error(out, err)
    state = read_state(tmp_path / "state")["datasets"]["prices"]
    assert state["status"] == "extract_failed"
    assert state["error"].endswith(f"{target / '2025'} is a symbolic link inside the dataset folder; DataHubSync never "
                                   "writes through links there: replace it with a real folder; nothing was changed")
    assert tree(target) == before
    assert tree(elsewhere) == {"theirs.csv": b"not ours"}
