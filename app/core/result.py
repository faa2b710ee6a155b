"""The outcome of syncing one dataset (the original client's SyncResult, with more detail)."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.core.timeutil import utcnow


class Status(StrEnum):
    """A dataset's result: the words users see in logs, `status`, state.json and the Python API."""

    SUCCESS = "success"                       # a new version was installed
    UP_TO_DATE = "up_to_date"
    WOULD_SYNC = "would_sync"                 # --dry-run
    PACKAGE_NOT_READY = "package_not_ready"   # the hub has not built the package yet
    STALE_PACKAGE = "stale_package"           # the hub still serves an older package than it lists
    NOT_FOUND = "not_found"
    DOWNLOAD_FAILED = "download_failed"
    EXTRACT_FAILED = "extract_failed"         # the package failed its checks or could not be unpacked
    REJECTED = "rejected"                     # hooks.verify refused the new version
    HOOK_FAILED = "hook_failed"               # installed, but hooks.post_sync failed
    ERROR = "error"
    NEVER_SYNCED = "never_synced"             # shown by `status` for a dataset with no record


OK_STATUSES = (Status.SUCCESS, Status.UP_TO_DATE, Status.WOULD_SYNC)
FAIL_STATUSES = (Status.PACKAGE_NOT_READY, Status.STALE_PACKAGE, Status.NOT_FOUND, Status.DOWNLOAD_FAILED,
                 Status.EXTRACT_FAILED, Status.REJECTED, Status.HOOK_FAILED, Status.ERROR)


@dataclass
class SyncResult:
    dataset_name: str
    success: bool
    status: str
    error: str | None = None
    version: str | None = None
    files: int | None = None
    bytes: int | None = None
    duration: float = 0.0
    warning: str | None = None
    interrupted: bool = False       # stopped by a signal, not failed: its state was left as it was
    timestamp: str = field(default_factory=lambda: utcnow().isoformat())

    def __str__(self) -> str:
        if self.success:
            return f"SyncResult({self.dataset_name}: {self.status})"
        return f"SyncResult({self.dataset_name}: {self.status} - {self.error})"

    @classmethod
    def ok(cls, name: str, status: Status, **kw: Any) -> "SyncResult":
        return cls(name, True, status, **kw)

    @classmethod
    def failed(cls, name: str, status: Status, error: str, **kw: Any) -> "SyncResult":
        return cls(name, False, status, error=error, **kw)
