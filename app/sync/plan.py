"""Pure decisions: does a dataset need syncing, is a package stale, does it fit on disk."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.core.timeutil import from_iso
from app.hub.listing import RemoteDataset

# Each file or folder may take up to one filesystem block more than its bytes (4 KiB on ext4/xfs).
BLOCK_SLACK = 4096


def sync_reason(remote: RemoteDataset, state: dict[str, Any], *, local_present: bool, force: bool) -> str | None:
    """Why the dataset must be synced now, or None when it is up to date."""
    if force:
        return "forced"
    if not local_present:
        return "no local data"
    installed = from_iso(state.get("last_updated"))
    if installed is None:
        return "never synced"
    if remote.last_updated is not None and remote.last_updated > installed:
        return "the hub has a newer version"
    if remote.sha256 and state.get("sha256") and remote.sha256 != state["sha256"]:
        return "the hub's checksum differs from the installed package"
    return None


def package_lag(remote: RemoteDataset, content_time: datetime | None) -> timedelta | None:
    """How far the package's content trails the advertised version (None when it cannot be judged)."""
    if remote.sha256 or content_time is None or remote.last_updated is None:
        return None
    return remote.last_updated - content_time


def is_stale(lag: timedelta | None, tolerance_s: float) -> bool:
    return lag is not None and lag.total_seconds() > tolerance_s


def space_needed(unpacked_bytes: int, entries: int) -> int:
    """Free bytes a package needs: its unpacked size, 4 KiB per file and folder, and 2 % of the size
    (filesystem metadata); the margin scales with the package, so a small one fits a nearly full disk."""
    return unpacked_bytes + BLOCK_SLACK * entries + unpacked_bytes // 50
