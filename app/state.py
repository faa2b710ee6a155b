"""Per-dataset state in <state_dir>/state.json, written atomically; the original client's format is read too."""
from __future__ import annotations

import json
import logging
import threading
from datetime import tzinfo
from pathlib import Path
from typing import Any

from .fsutil import atomic_write
from .timeutil import parse_timestamp, to_iso

log = logging.getLogger("datahubsync.state")

FORMAT_VERSION = 1
# What describes the installed version: a failed attempt never touches these.
INSTALLED_FIELDS = ("last_updated", "sha256", "synced_at", "files", "bytes", "identity", "package_time")


def _convert_original(data: dict[str, Any], zone: tzinfo) -> dict[str, dict[str, Any]]:
    """{"name": "2025-02-04T20:16:03.118000"} (naive hub time) -> our per-dataset records."""
    out = {}
    for name, stamp in data.items():
        try:
            when = parse_timestamp(stamp, zone)
        except (ValueError, TypeError):
            log.warning("original state: ignoring %r: unreadable time %r", name, stamp)
            continue
        out[name] = {"last_updated": to_iso(when), "status": "success", "imported": True}
    return out


def parse_state(text: str, zone: tzinfo) -> dict[str, dict[str, Any]]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if "datasets" in data and isinstance(data.get("datasets"), dict) and "version" in data:
        return {k: v for k, v in data["datasets"].items() if isinstance(v, dict)}
    if all(isinstance(v, (str, int, float)) for v in data.values()):
        return _convert_original(data, zone)
    raise ValueError("unrecognised layout")


def import_candidates(state_dir: Path, config_source: Path | None) -> tuple[Path, ...]:
    """Where the original client's .last_sync.json may be: in state_dir, or beside the config file."""
    found = [state_dir / ".last_sync.json"]
    if config_source is not None:
        found.append(config_source.parent / ".last_sync.json")
    return tuple(found)


class StateStore:
    """Thread-safe: datasets sync in parallel and each records its own entry."""

    def __init__(self, path: Path, zone: tzinfo, import_candidates: tuple[Path, ...] = ()):
        self.path = path
        self.zone = zone
        self._lock = threading.Lock()
        self._dirty = False
        self.datasets: dict[str, dict[str, Any]] = self._load(import_candidates)

    def _load(self, import_candidates: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._import(import_candidates)
        except UnicodeDecodeError:
            log.warning("state file %s is corrupt (not UTF-8); treating every dataset as never synced", self.path)
            return {}
        except OSError as exc:
            log.warning("cannot read state file %s (%s); treating every dataset as never synced", self.path, exc.strerror)
            return {}
        try:
            return parse_state(text, self.zone)
        except ValueError as exc:
            log.warning("state file %s is corrupt (%s); treating every dataset as never synced", self.path, exc)
            return {}

    def _import(self, candidates: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
        for candidate in candidates:
            try:
                datasets = _convert_original(json.loads(candidate.read_text(encoding="utf-8")), self.zone)
            except (OSError, ValueError, AttributeError):
                continue
            log.info("imported %d installed version(s) from the original client's state file %s", len(datasets), candidate)
            return datasets
        return {}

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.datasets.get(name, {}))

    def update(self, name: str, *, defer: bool = False, **fields: Any) -> None:
        """Record fields; `defer` leaves the write to flush() (a no-op run writes the file once)."""
        with self._lock:
            entry = self.datasets.setdefault(name, {})
            entry.update(fields)
            if defer:
                self._dirty = True
            else:
                self._write()

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._write()

    def replace_installed(self, name: str, installed: dict[str, Any], **fields: Any) -> None:
        """Record a new installed version: the installed fields are replaced as a whole."""
        with self._lock:
            entry = {k: v for k, v in self.datasets.get(name, {}).items() if k not in INSTALLED_FIELDS and k != "imported"}
            entry.update(installed)
            entry.update(fields)
            self.datasets[name] = entry
            self._write()

    def _write(self) -> None:
        self._dirty = False
        document = {"version": FORMAT_VERSION, "datasets": self.datasets}
        atomic_write(self.path, json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n")
