"""Per-dataset state in <state_dir>/state.json, written atomically; the original client's format is read too."""
from __future__ import annotations

import json
import logging
import re
import threading
from datetime import tzinfo
from pathlib import Path
from typing import Any

from app.core.fsutil import atomic_write
from app.core.jsonutil import Unreadable, describe, loads_capped
from app.core.result import FAIL_STATUSES, OK_STATUSES, Status
from app.core.timeutil import parse_timestamp, to_iso

log = logging.getLogger("datahubsync.state")

FORMAT_VERSION = 1
# What describes the installed version: a failed attempt never touches these.
INSTALLED_FIELDS = ("last_updated", "sha256", "synced_at", "files", "bytes", "identity", "package_time")
TIME_FIELDS = ("last_updated", "synced_at", "attempted_at", "last_ok_at", "package_time")
TEXT_FIELDS = ("error", "warning")
COUNT_FIELDS = ("files", "bytes")
IDENTITY_FIELDS = ("identity", "stale_identity")
STATUSES = OK_STATUSES + FAIL_STATUSES
MAX_COUNT = (1 << 63) - 1
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _is_text(value: object) -> bool:
    """A str that can be printed and written as UTF-8 (JSON lets a lone surrogate through)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _unreadable_inside(value: Any) -> Unreadable | None:
    """The first marker jsonutil left in `value` (nested too deeply, too many digits), if any."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, Unreadable):
            return item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _identity_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"is not an object: {describe(value)}"
    for key in ("etag", "last_modified", "filename"):
        if value.get(key) is not None and not _is_text(value[key]):
            return f"has a {key} that is not text: {describe(value[key])}"
    if value.get("total") is not None and not _is_count(value["total"]):
        return f"has a total that is not a byte count: {describe(value['total'])}"
    return None


def _field_problem(key: str, value: Any) -> str | None:
    """What is wrong with one field of a dataset's entry, or None (null is fine for every field)."""
    if value is None:
        return None
    if key in TIME_FIELDS:
        if not isinstance(value, str):
            return f"is not a timestamp: {describe(value)}"
        try:
            parse_timestamp(value)
        except ValueError as exc:
            return f"is unreadable: {exc}"
        return None
    if key == "sha256":
        ok = isinstance(value, str) and _SHA256.fullmatch(value) is not None
    elif key == "status":
        ok = isinstance(value, str) and value in STATUSES
    elif key in TEXT_FIELDS:
        ok = _is_text(value)
    elif key in COUNT_FIELDS:
        ok = _is_count(value)
    elif key in IDENTITY_FIELDS:
        return _identity_problem(value)
    elif key == "imported":
        ok = isinstance(value, bool)
    else:                           # a field this version does not know: kept if it can be written back
        marker = _unreadable_inside(value)
        return None if marker is None else f"holds {describe(marker)}"
    return None if ok else f"is invalid: {describe(value)}"


def entry_problem(entry: Any) -> str | None:
    """Why a dataset's state entry cannot be trusted (its first bad field), or None."""
    if not isinstance(entry, dict):
        return f"is not an object: {describe(entry)}"
    for key, value in entry.items():
        problem = _field_problem(key, value)
        if problem:
            return f"{key} {problem}"
    return None


def _convert_original(data: dict[str, Any], zone: tzinfo, source: str) -> dict[str, dict[str, Any]]:
    """{"name": "2025-02-04T20:16:03.118000"} (naive hub time) -> our per-dataset records."""
    out = {}
    for name, stamp in data.items():
        try:
            when = parse_timestamp(stamp, zone)
        except ValueError as exc:
            log.warning("%s (the original client's format): ignoring dataset %s: %s", source, describe(name), exc)
            continue
        out[name] = {"last_updated": to_iso(when), "status": Status.SUCCESS, "imported": True}
    return out


def parse_state(text: str | bytes, zone: tzinfo, source: str = "state file") -> dict[str, dict[str, Any]]:
    """The datasets a state document records; ValueError when it is no usable document at all.

    An entry with an invalid field is dropped with a warning naming it (that dataset counts as
    never synced); the other entries are kept.
    """
    data = loads_capped(text)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object but {describe(data)}")
    if "version" not in data or "datasets" not in data:
        return _convert_original(data, zone, source)
    if not isinstance(data["datasets"], dict):
        raise ValueError(f"its datasets are not an object but {describe(data['datasets'])}")
    kept = {}
    for name, entry in data["datasets"].items():
        problem = entry_problem(entry)
        if problem:
            log.warning("%s: dataset %s: %s; treating it as never synced", source, describe(name), problem)
        else:
            kept[name] = entry
    return kept


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
            data = self.path.read_bytes()
        except FileNotFoundError:
            return self._import(import_candidates)
        except OSError as exc:
            log.warning("cannot read state file %s (%s); treating every dataset as never synced",
                        self.path, exc.strerror or exc)
            return {}
        try:
            return parse_state(data, self.zone, f"state file {self.path}")
        except ValueError as exc:
            log.warning("state file %s is corrupt (%s); treating every dataset as never synced", self.path, exc)
            return {}

    def _import(self, candidates: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
        for candidate in candidates:
            try:
                document = loads_capped(candidate.read_bytes())
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot read the original client's state file %s (%s); not imported",
                            candidate, exc.strerror or exc)
                continue
            except ValueError as exc:
                log.warning("the original client's state file %s is not JSON (%s); not imported", candidate, exc)
                continue
            if not isinstance(document, dict):
                log.warning("the original client's state file %s is not a JSON object; not imported", candidate)
                continue
            datasets = _convert_original(document, self.zone, f"state file {candidate}")
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
