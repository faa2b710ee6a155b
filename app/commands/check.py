"""`check`: a pre-flight report (config, crontab, hub, datasets, targets, disk) before the first run."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Mapping, TextIO

from app.core.config import Config, DatasetConfig
from app.core.errors import DataHubSyncError, ExitCode
from app.core.fsutil import free_bytes, nearest_existing, permission_hint
from app.core.progress import human_bytes
from app.core.secrets import redact, safe_url
from app.core.timeutil import to_iso
from app.hub.client import HubClient
from app.hub.listing import Listing, RemoteDataset
from app.sync.plan import space_needed


class Report:
    def __init__(self, out: TextIO):
        self.out = out
        self.failed = 0

    def ok(self, what: str) -> None:
        self.out.write(f"[ ok ] {what}\n")

    def fail(self, what: str) -> None:
        self.failed += 1
        self.out.write(f"[FAIL] {what}\n")

    def warn(self, what: str) -> None:
        self.out.write(f"[warn] {what}\n")


def _writable(path: Path) -> str | None:
    probe = nearest_existing(path)
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".datahubsync-check-"):
            pass
    except OSError as exc:
        return f"{permission_hint(probe)} ({exc.strerror})"
    return None


def run_check(config: Config, out: TextIO, crontab_text: str | None, crontab_source: str,
              environ: Mapping[str, str], crontab_error: str | None = None) -> ExitCode:
    """The report; `crontab_error` says why the crontab could not be read (then its text is None)."""
    report = Report(out)
    report.ok(f"config valid ({config.source or 'environment only'}, {len(config.datasets)} dataset(s))")
    for warning in config.warnings:
        report.warn(warning)
    if crontab_error:
        report.fail(crontab_error)
    _check_crontab(report, crontab_text, crontab_source)
    for gap in config.missing():
        report.fail(gap)
    if config.missing():
        return ExitCode.FAILED
    problem = _writable(config.state_dir)
    (report.fail if problem else report.ok)(problem or f"state directory {config.state_dir} writable")
    listing = None
    try:
        hub = HubClient(dataclasses.replace(config.hub, retries=min(config.hub.retries, 1)), pool_size=2)
        try:
            listing = hub.list_datasets()
        finally:
            hub.close()
        report.ok(f"hub {safe_url(hub.url)} reachable, {len(listing.datasets)} dataset(s) published"
                  + (", credentials accepted" if hub.credentials else ""))
    except DataHubSyncError as exc:
        report.fail(f"hub: {redact(str(exc))}")
    for ds in config.datasets:
        _check_dataset(report, ds, listing)
    out.write("all checks passed\n" if not report.failed else f"{report.failed} check(s) failed\n")
    return ExitCode.OK if not report.failed else ExitCode.FAILED


def _check_crontab(report: Report, text: str | None, source: str) -> None:
    from app.crontab.parser import CrontabError, parse_crontab
    if text is None:
        return
    try:
        table = parse_crontab(text)
        report.ok(f"crontab {source} valid ({len(table.jobs)} job(s))")
    except CrontabError as exc:
        report.fail(f"crontab {source}: {exc}")


def _check_dataset(report: Report, ds: DatasetConfig, listing: Listing | None) -> None:
    if listing is not None:
        if ds.name in listing.errors:
            report.fail(f"{ds.name}: the hub's entry is invalid: {redact(listing.errors[ds.name])}")
        elif ds.name not in listing.datasets:
            report.fail(f"{ds.name}: not published by the hub")
        else:
            remote = listing.datasets[ds.name]
            if remote.last_updated is None:
                report.fail(f"{ds.name}: the hub has no data for it yet")
            else:
                ready = "" if remote.package_ready else " (package still being built)"
                report.ok(f"{ds.name}: published, version {to_iso(remote.last_updated)}{ready}")
            _check_space(report, ds, remote)
    problem = _writable(ds.local_dir)
    (report.fail if problem else report.ok)(f"{ds.name}: {problem}" if problem else f"{ds.name}: target {ds.local_dir} writable")


def _check_space(report: Report, ds: DatasetConfig, remote: RemoteDataset) -> None:
    """The hub's unpacked size (else the package size) and file count against the free space;
    folders are not listed, so they are not counted here."""
    unpacked = remote.total_size if remote.total_size is not None else remote.package_size
    if unpacked is None:
        return
    need = space_needed(unpacked, remote.file_count or 0)
    free = free_bytes(ds.local_dir)
    if free < need:
        report.fail(f"{ds.name}: {human_bytes(free)} free at {nearest_existing(ds.local_dir)}, "
                    f"needs about {human_bytes(need)}")
    else:
        report.ok(f"{ds.name}: disk space {human_bytes(free)} free (needs about {human_bytes(need)})")
