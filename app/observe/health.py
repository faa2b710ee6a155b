"""`healthcheck` (state only, no network) and the daemon's start record it needs for the grace period;
the rule itself is `readiness.problems`, shared with the listener's /readyz."""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

from app.core.config import Config
from app.core.fsutil import atomic_write
from app.core.jsonutil import describe, loads
from app.core.state import StateStore, import_candidates
from app.core.timeutil import get_zone, parse_timestamp, to_iso, utcnow
from app.observe.readiness import problems, summary

log = logging.getLogger("datahubsync.status")
DAEMON_FILE = "daemon.json"


def load_state(config: Config) -> dict[str, dict[str, Any]]:
    store = StateStore(config.state_dir / "state.json", get_zone(config.hub.timezone),
                       import_candidates(config.state_dir, config.source))
    return store.datasets



def record_daemon_start(config: Config, started: datetime | None = None) -> None:
    """The cron daemon notes when it started (`started`, else now), so `healthcheck` can apply the
    grace period."""
    doc = {"pid": os.getpid(), "started_at": to_iso(started or utcnow())}
    try:
        atomic_write(config.state_dir / DAEMON_FILE, json.dumps(doc).encode())
    except OSError as exc:
        log.warning("cannot record the daemon start in %s: %s", config.state_dir, exc.strerror)


def daemon_started(config: Config) -> datetime | None:
    """When the cron daemon started (None if it never recorded it or the record is unusable)."""
    path = config.state_dir / DAEMON_FILE
    try:
        doc = loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); the daemon's start time is unknown", path, exc.strerror or exc)
        return None
    except ValueError as exc:
        log.warning("%s is corrupt (%s); the daemon's start time is unknown", path, exc)
        return None
    stamp = doc.get("started_at") if isinstance(doc, dict) else None
    try:
        if not isinstance(stamp, str):
            raise ValueError(f"not a timestamp: {describe(stamp)}")
        return parse_timestamp(stamp)
    except ValueError as exc:
        log.warning("%s: started_at %s; the daemon's start time is unknown", path, exc)
        return None


def health_problem(config: Config, now: datetime | None = None) -> str | None:
    """None when healthy, else one line saying why not: the rule behind /readyz, over the state files."""
    found = problems(config, load_state(config), now or utcnow(), daemon_started(config))
    return summary(found)
