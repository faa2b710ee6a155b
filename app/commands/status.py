"""`status`: what is installed, and what the hub has (the hub may be down: status still answers)."""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, TextIO

from app.core.config import Config
from app.core.errors import DataHubSyncError
from app.core.result import Status
from app.core.secrets import redact
from app.core.timeutil import to_iso
from app.hub.client import HubClient
from app.observe.health import load_state

log = logging.getLogger("datahubsync.status")


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
            "status": entry.get("status") or Status.NEVER_SYNCED, "error": _shown(entry.get("error")),
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
