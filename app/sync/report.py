"""Human and machine output of a run: the per-dataset summary lines and the exit code."""
from __future__ import annotations

import logging

from app.core.errors import ExitCode
from app.core.progress import human_bytes
from app.core.result import SyncResult

log = logging.getLogger("datahubsync.summary")


def summary_line(result: SyncResult) -> str:
    parts = [f"{result.dataset_name}: {result.status}"]
    if result.version:
        parts.append(f"version {result.version}")
    if result.files is not None:
        parts.append(f"{result.files} files")
    if result.bytes is not None:
        parts.append(human_bytes(result.bytes))
    parts.append(f"{result.duration:.1f}s")
    text = ", ".join(parts)
    if result.error:
        text += f" - {result.error}"
    if result.warning:
        text += f" (warning: {result.warning})"
    return text


def log_summary(results: list[SyncResult]) -> None:
    for result in results:
        level = logging.INFO if result.success else logging.ERROR
        log.log(level, "summary: %s", summary_line(result), extra={"dataset": result.dataset_name, "status": result.status})
    ok = sum(r.success for r in results)
    log.info("sync finished: %d of %d dataset(s) ok", ok, len(results))


def exit_code(results: list[SyncResult]) -> ExitCode:
    if any(r.interrupted for r in results):
        return ExitCode.TERMINATED
    return ExitCode.OK if all(r.success for r in results) else ExitCode.FAILED
