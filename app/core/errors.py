"""Exit codes and the domain exceptions that map onto them (mapped once, in entrypoint.main)."""
from __future__ import annotations

from enum import IntEnum

from app.core.result import Status


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 75
    TERMINATED = 143


class DataHubSyncError(Exception):
    """Base of every error the program reports as one line.

    `status` is the per-dataset result status (README, "Python API") when the error ends a dataset's sync.
    """

    exit_code = ExitCode.FAILED
    status = Status.ERROR


class ConfigError(DataHubSyncError):
    exit_code = ExitCode.USAGE


class LockedError(DataHubSyncError):
    exit_code = ExitCode.LOCKED


class Interrupted(DataHubSyncError):
    """A stop signal arrived; work stopped at a safe point."""

    exit_code = ExitCode.TERMINATED


class HubError(DataHubSyncError):
    """The hub answered badly or not at all."""

    status = Status.DOWNLOAD_FAILED

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class HubTimeout(HubError):
    """The hub did not answer in time, on every attempt."""


class AuthError(HubError):
    status = Status.ERROR


class NotPublishedError(HubError):
    """A package or dataset the hub does not have (yet)."""

    status = Status.NOT_FOUND


class InvalidEntry(HubError):
    """The hub's list entry for a dataset breaks docs/hub-api.md section 1."""

    status = Status.ERROR


class NotReady(DataHubSyncError):
    """The hub has no (new) package yet: worth waiting for (package_not_ready or stale_package)."""

    def __init__(self, message: str, status: Status):
        super().__init__(message)
        self.status = status


class Cancelled(Interrupted):
    """The caller no longer wants this download (a stale package, say)."""


class DownloadError(DataHubSyncError):
    status = Status.DOWNLOAD_FAILED


class IdentityChanged(DownloadError):
    """The package on the hub changed while we were fetching it (the download restarts)."""


class PackageAlreadySeen(DownloadError):
    """The hub still serves a package this dataset already has, or already found stale."""


class PackageError(DataHubSyncError):
    """The package is unusable: corrupt, hostile or too big."""

    status = Status.EXTRACT_FAILED


class DiskFullError(DataHubSyncError):
    """Out of space; `status` says whether it struck the download or the extraction."""

    def __init__(self, message: str, status: Status = Status.EXTRACT_FAILED):
        super().__init__(message)
        self.status = status


class Rejected(DataHubSyncError):
    """The verify hook refused the staged tree: the installed version stays."""

    status = Status.REJECTED


class InstallError(DataHubSyncError):
    status = Status.EXTRACT_FAILED
