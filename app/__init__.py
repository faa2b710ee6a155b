"""DataHubSync: keep local copies of data hub datasets up to date."""
from typing import Any

__version__ = "1.1.0"


def __getattr__(name: str) -> Any:
    # Imported lazily so `import app` stays cheap for the CLI and the crontab tools.
    if name in ("DataSyncClient", "SyncResult"):
        from app.sync import api as client
        return getattr(client, name)
    raise AttributeError(name)


__all__ = ["DataSyncClient", "SyncResult", "__version__"]
