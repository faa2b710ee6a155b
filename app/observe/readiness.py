"""Whether the installed data can be trusted now: the one rule behind `healthcheck` and `/readyz`.

Pure: the caller reads the state and the daemon's start time and passes the clock in, so the same
answer comes out of the container's health check, the HTTP listener and the tests.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from app.core.config import Config
from app.core.result import OK_STATUSES, Status
from app.core.secrets import redact
from app.core.timeutil import from_iso, to_iso

# The key for missing settings: never a dataset name (those are letters, digits, '.', '_' and '-').
SETTINGS = "(settings)"


def _one_line(text: object) -> str:
    """State text as one printable line, known secrets masked (/readyz answers over the network)."""
    flat = " ".join(redact(str(text)).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat) or "no detail"


def dataset_problem(entry: Mapping[str, Any], now: datetime, started: datetime | None,
                    max_age: float, grace: float) -> str | None:
    """Why one dataset is not ready (None when it is), from its state.json record."""
    status = entry.get("status")
    if entry.get("imported") and status == Status.SUCCESS:
        return None             # installed by the original client; the first run here records its own times
    if status and status not in OK_STATUSES:
        return f"last sync failed ({_one_line(status)}): {_one_line(entry.get('error') or 'no detail')}"
    last_ok = from_iso(entry.get("last_ok_at") or entry.get("synced_at"))
    if last_ok is None:
        if started is not None and (now - started).total_seconds() > grace:
            return f"never synced successfully since the daemon started at {to_iso(started)}"
        return None
    age = (now - last_ok).total_seconds()
    if age > max_age:
        return f"last successful sync {age / 3600:.1f} h ago (health.max_age {max_age / 3600:.1f} h)"
    return None


def problems(config: Config, state: Mapping[str, Any], now: datetime,
             daemon_started: datetime | None) -> dict[str, str]:
    """{dataset: why it is not ready}, plus SETTINGS for missing settings; empty when all is ready.

    A dataset is ready when its last attempt did not fail and its last successful run (an up-to-date
    check counts: state's `last_ok_at`) is newer than health.max_age. One that never succeeded is
    ready until the daemon has been up for health.grace.
    """
    found: dict[str, str] = {}
    missing = config.missing()
    if missing:
        found[SETTINGS] = "; ".join(missing)
    for ds in config.datasets:
        entry = state.get(ds.name) if isinstance(state, Mapping) else None
        why = dataset_problem(entry if isinstance(entry, Mapping) else {}, now, daemon_started,
                              config.health.max_age, config.health.grace)
        if why:
            found[ds.name] = why
    return found


def summary(found: Mapping[str, str]) -> str | None:
    """The `healthcheck` line: None when ready, else every problem, `name: why`, joined by '; '."""
    if not found:
        return None
    return "; ".join(why if name == SETTINGS else f"{name}: {why}" for name, why in found.items())
