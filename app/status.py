"""`status` (what is installed, and what the hub has) and `healthcheck` (state only, no network)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from datetime import datetime, timezone
from typing import Any, TextIO

from .config import Config
from .errors import DataHubSyncError
from .fsutil import atomic_write
from .hub import HubClient
from .jsonutil import describe, loads
from .readiness import problems, summary
from .secrets import redact
from .state import StateStore, import_candidates
from .timeutil import get_zone, parse_timestamp, to_iso, utcnow

log = logging.getLogger("datahubsync.status")
DAEMON_FILE = "daemon.json"


def load_state(config: Config) -> dict[str, dict[str, Any]]:
    store = StateStore(config.state_dir / "state.json", get_zone(config.hub.timezone),
                       import_candidates(config.state_dir, config.source))
    return store.datasets


def remote_versions(config: Config) -> tuple[dict[str, str], dict[str, str], str | None]:
    """The hub's versions, its complaints about single entries, or the reason it could not tell
    (status must work with the hub down)."""
    if not config.hub.url:
        return {}, {}, "hub.url is not set"
    try:
        quick = dataclasses.replace(config.hub, retries=0, timeout=min(config.hub.timeout, 15))
        hub = HubClient(quick, pool_size=2)
        try:
            listing = hub.list_datasets()
        finally:
            hub.close()
    except DataHubSyncError as exc:
        return {}, {}, redact(str(exc))
    out = {}
    for name, remote in listing.datasets.items():
        out[name] = to_iso(remote.last_updated) if remote.last_updated else "no data"
    return out, {name: redact(why) for name, why in listing.errors.items()}, None


def _shown(text: object) -> str | None:
    """An error from state or the hub as one printable line, secrets removed."""
    if not isinstance(text, str) or not text:
        return None
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in redact(text))


def status_rows(config: Config, with_remote: bool = True) -> tuple[list[dict[str, Any]], str | None]:
    state = load_state(config)
    remote, invalid, problem = remote_versions(config) if with_remote else ({}, {}, None)
    rows = []
    for ds in config.datasets:
        entry = state.get(ds.name, {})
        rows.append({
            "name": ds.name, "local_dir": str(ds.local_dir), "mode": ds.mode,
            "local_version": entry.get("last_updated"), "remote_version": remote.get(ds.name),
            "remote_error": _shown(invalid.get(ds.name)),
            "last_sync": entry.get("synced_at"), "last_attempt": entry.get("attempted_at"),
            "status": entry.get("status") or "never_synced", "error": _shown(entry.get("error")),
            "files": entry.get("files"), "bytes": entry.get("bytes"), "sha256": entry.get("sha256"),
        })
    return rows, problem


def print_status(config: Config, out: TextIO, as_json: bool) -> None:
    rows, problem = status_rows(config)
    if as_json:
        json.dump({"datasets": rows, "hub_error": problem}, out, indent=2)
        out.write("\n")
        return
    if not rows:
        out.write("no datasets configured\n")
    for row in rows:
        out.write(f"{row['name']}: {row['status']}\n")
        out.write(f"  local version:  {row['local_version'] or '-'}\n")
        if row["remote_error"]:
            out.write(f"  remote version: - (the hub's entry is invalid: {row['remote_error']})\n")
        else:
            out.write(f"  remote version: {row['remote_version'] or '-'}\n")
        out.write(f"  last sync:      {row['last_sync'] or '-'}   last attempt: {row['last_attempt'] or '-'}\n")
        if row["files"] is not None:
            out.write(f"  files: {row['files']}, bytes: {row['bytes']}, in {row['local_dir']} ({row['mode']})\n")
        if row["error"]:
            out.write(f"  last error: {row['error']}\n")
    if problem:
        out.write(f"hub: not reachable for remote versions: {_shown(problem)}\n")


# ---- health -------------------------------------------------------------------------------------

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
    found = problems(config, load_state(config), now or datetime.now(timezone.utc), daemon_started(config))
    return summary(found)
