"""The pure decisions: must a dataset sync, does a package lag its advertised version."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.hub.listing import RemoteDataset
from app.sync.plan import is_stale, package_lag, space_needed, sync_reason

UTC = timezone.utc
V1 = datetime(2026, 11, 28, 8, 30, 0, 118000, tzinfo=UTC)
SHA_A, SHA_B = "aa" * 32, "bb" * 32


def remote(last_updated: datetime | None = V1, sha256: str | None = None) -> RemoteDataset:
    return RemoteDataset(name="ds", last_updated=last_updated, package_ready=True,
                         download_url="http://127.0.0.1:1/package/ds.zip", sha256=sha256)


INSTALLED = {"last_updated": "2026-11-28T08:30:00.118000Z", "status": "success"}


def test_forced_wins_over_everything() -> None:
    assert sync_reason(remote(), INSTALLED, local_present=True, force=True) == "forced"


def test_no_local_data() -> None:
    assert sync_reason(remote(), INSTALLED, local_present=False, force=False) == "no local data"


@pytest.mark.parametrize("state", [{}, {"status": "download_failed"}, {"last_updated": "garbage"}])
def test_never_synced(state: dict) -> None:
    assert sync_reason(remote(), state, local_present=True, force=False) == "never synced"


def test_up_to_date_at_full_precision() -> None:
    assert sync_reason(remote(), INSTALLED, local_present=True, force=False) is None


def test_one_microsecond_newer_is_newer() -> None:
    newer = remote(V1 + timedelta(microseconds=1))
    assert sync_reason(newer, INSTALLED, local_present=True, force=False) == "the hub has a newer version"


def test_older_remote_is_not_a_reason() -> None:
    older = remote(V1 - timedelta(days=1))
    assert sync_reason(older, INSTALLED, local_present=True, force=False) is None


def test_remote_without_data_is_not_newer() -> None:
    assert sync_reason(remote(None), INSTALLED, local_present=True, force=False) is None


def test_checksums_differ() -> None:
    state = dict(INSTALLED, sha256=SHA_A)
    assert sync_reason(remote(sha256=SHA_B), state, local_present=True, force=False) == \
        "the hub's checksum differs from the installed package"
    assert sync_reason(remote(sha256=SHA_A), state, local_present=True, force=False) is None


def test_checksum_known_on_one_side_only_is_not_a_reason() -> None:
    assert sync_reason(remote(sha256=SHA_B), INSTALLED, local_present=True, force=False) is None
    assert sync_reason(remote(), dict(INSTALLED, sha256=SHA_A), local_present=True, force=False) is None


def test_installed_time_in_another_offset_compares_as_an_instant() -> None:
    state = {"last_updated": "2026-11-28T16:30:00.118000+08:00"}
    assert sync_reason(remote(), state, local_present=True, force=False) is None


def test_package_lag() -> None:
    content = V1 - timedelta(hours=20)
    assert package_lag(remote(), content) == timedelta(hours=20)
    assert package_lag(remote(), V1 + timedelta(seconds=5)) == timedelta(seconds=-5)
    assert package_lag(remote(sha256=SHA_A), content) is None       # a checksum identifies exactly
    assert package_lag(remote(), None) is None
    assert package_lag(remote(None), content) is None


def test_is_stale() -> None:
    assert is_stale(timedelta(seconds=901), 900) is True
    assert is_stale(timedelta(seconds=900), 900) is False
    assert is_stale(timedelta(seconds=-60), 900) is False
    assert is_stale(None, 900) is False
    assert is_stale(timedelta(microseconds=1), 0) is True


KIB, MIB, GB = 1 << 10, 1 << 20, 10**9


def test_space_needed_is_the_size_plus_a_block_per_entry_plus_two_percent() -> None:
    assert space_needed(0, 0) == 0
    assert space_needed(0, 3) == 3 * 4 * KIB
    assert space_needed(1000, 1) == 1000 + 4 * KIB + 20
    assert space_needed(10 << 30, 0) == (10 << 30) + (10 << 30) // 50


def test_a_small_package_fits_a_nearly_full_small_volume() -> None:
    """The old fixed 64 MiB margin refused a 2 KB package on a 40 MB volume."""
    two_kb_package = space_needed(2000, 3)       # two files in one folder
    assert two_kb_package < 20 * KIB < 40 * MIB


def test_a_10_gb_package_needs_about_10_2_gb() -> None:
    need = space_needed(10 * GB, 5600)
    assert 10.2 * GB <= need <= 10.25 * GB


def test_many_small_files_need_a_block_each() -> None:
    """100k files of 100 bytes: the blocks, not the bytes, decide."""
    need = space_needed(100_000 * 100, 100_000)
    assert need >= 100_000 * 4 * KIB


def test_space_needed_grows_with_size_and_entries() -> None:
    assert space_needed(1 << 20, 10) < space_needed((1 << 20) + 1, 10) <= space_needed((1 << 20) + 1, 11)
