"""The outcome of syncing one dataset (the original client's SyncResult, with more detail)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OK_STATUSES = ("success", "up_to_date", "would_sync")
FAIL_STATUSES = ("package_not_ready", "stale_package", "not_found", "download_failed", "extract_failed", "rejected",
                 "hook_failed", "error")


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
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def __str__(self) -> str:
        if self.success:
            return f"SyncResult({self.dataset_name}: {self.status})"
        return f"SyncResult({self.dataset_name}: {self.status} - {self.error})"

    @classmethod
    def ok(cls, name: str, status: str, **kw: Any) -> "SyncResult":
        return cls(name, True, status, **kw)

    @classmethod
    def failed(cls, name: str, status: str, error: str, **kw: Any) -> "SyncResult":
        return cls(name, False, status, error=error, **kw)
