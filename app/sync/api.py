"""The original client's Python API, kept: DataSyncClient(config, state_path).sync_dataset / sync_all."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.core.config import Config, config_from
from app.core.errors import DataHubSyncError
from app.core.result import Status, SyncResult
from app.sync.run import SyncRun


class DataSyncClient:
    """Syncs datasets using exactly the configuration given (no environment overrides).

    Scripts written for the original client read its public attributes (`hub_url`, `timeout`,
    `datasets`, `hub_host`, `hub_port`, `hub_scheme`, `sync_state_file`): they are read-only views
    of the validated configuration here, in the original's shapes (`datasets` as a list of dicts).
    """

    def __init__(self, config: dict[str, Any] | Config, state_path: str | Path | None = None,
                 stop: threading.Event | None = None):
        self.config = config_from(config)
        self.state_path = Path(state_path) if state_path else None
        self.stop = stop or threading.Event()

    @property
    def hub_url(self) -> str | None:
        return self.config.hub.url

    @property
    def timeout(self) -> float:
        return self.config.hub.timeout

    @property
    def datasets(self) -> list[dict[str, Any]]:
        """Each configured dataset as the original's dict (a fresh copy: changing it changes nothing)."""
        return [{"name": d.name, "local_dir": str(d.local_dir), "mode": d.mode, "strip_components": d.strip_components}
                for d in self.config.datasets]

    @property
    def hub_scheme(self) -> str | None:
        return urlsplit(self.hub_url).scheme if self.hub_url else None

    @property
    def hub_host(self) -> str | None:
        return urlsplit(self.hub_url).hostname if self.hub_url else None

    @property
    def hub_port(self) -> int | None:
        if not self.hub_url:
            return None
        parts = urlsplit(self.hub_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def sync_state_file(self) -> Path:
        return self.state_path or self.config.state_dir / "state.json"

    def _run(self, names: list[str] | None, force: bool, dry_run: bool) -> list[SyncResult]:
        targets = names or [d.name for d in self.config.datasets]
        try:
            run = SyncRun(self.config, state_path=self.state_path, stop=self.stop, force=force, dry_run=dry_run)
            return run.execute(names)
        except DataHubSyncError as exc:           # a config error, or another sync holds the lock
            return [SyncResult.failed(n, Status.ERROR, str(exc)) for n in targets]

    def sync_dataset(self, dataset_name: str, force: bool = False, dry_run: bool = False) -> SyncResult:
        return self._run([dataset_name], force, dry_run)[0]

    def sync_all(self, force: bool = False, dry_run: bool = False) -> list[SyncResult]:
        return self._run(None, force, dry_run)
