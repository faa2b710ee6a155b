"""The original client's Python API, kept: DataSyncClient(config, state_path).sync_dataset / sync_all."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .config import Config, config_from
from .errors import DataHubSyncError, LockedError
from .result import SyncResult
from .sync import SyncRun


class DataSyncClient:
    """Syncs datasets using exactly the configuration given (no environment overrides)."""

    def __init__(self, config: dict[str, Any] | Config, state_path: str | Path | None = None,
                 stop: threading.Event | None = None):
        self.config = config_from(config)
        self.state_path = Path(state_path) if state_path else None
        self.stop = stop or threading.Event()

    def _run(self, names: list[str] | None, force: bool, dry_run: bool) -> list[SyncResult]:
        targets = names or [d.name for d in self.config.datasets]
        try:
            run = SyncRun(self.config, state_path=self.state_path, stop=self.stop, force=force, dry_run=dry_run)
            return run.execute(names)
        except LockedError as exc:
            return [SyncResult.failed(n, "error", str(exc)) for n in targets]
        except DataHubSyncError as exc:
            return [SyncResult.failed(n, "error", str(exc)) for n in targets]

    def sync_dataset(self, dataset_name: str, force: bool = False, dry_run: bool = False) -> SyncResult:
        return self._run([dataset_name], force, dry_run)[0]

    def sync_all(self, force: bool = False, dry_run: bool = False) -> list[SyncResult]:
        return self._run(None, force, dry_run)
