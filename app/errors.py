"""Exit codes and the domain exceptions that map onto them (mapped once, in entrypoint.main)."""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 75
    TERMINATED = 143


class DataHubSyncError(Exception):
    """Base of every error the program reports as one line."""

    exit_code = ExitCode.FAILED


class ConfigError(DataHubSyncError):
    exit_code = ExitCode.USAGE


class LockedError(DataHubSyncError):
    exit_code = ExitCode.LOCKED


class Interrupted(DataHubSyncError):
    """A stop signal arrived; work stopped at a safe point."""

    exit_code = ExitCode.TERMINATED


class HubError(DataHubSyncError):
    """The hub answered badly or not at all."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class AuthError(HubError):
    pass


class NotPublishedError(HubError):
    """A package or dataset the hub does not have (yet)."""


class DownloadError(DataHubSyncError):
    pass


class IdentityChanged(DownloadError):
    """The package on the hub changed while we were fetching it."""


class PackageError(DataHubSyncError):
    """The package is unusable: corrupt, hostile or too big."""


class DiskFullError(PackageError):
    pass


class InstallError(DataHubSyncError):
    pass
