"""One sync run: fetch the hub's list once, then sync each dataset (in parallel, independently)."""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TypeVar

from app.core.config import Config, DatasetConfig
from app.core.errors import (
    ConfigError,
    DataHubSyncError,
    DiskFullError,
    DownloadError,
    IdentityChanged,
    InstallError,
    Interrupted,
    NotPublishedError,
    NotReady,
    PackageAlreadySeen,
    PackageError,
    Rejected,
)
from app.core.fsutil import free_bytes, is_disk_full, is_empty_dir, nearest_existing, permission_hint, remove_tree
from app.core.logs import current_dataset, dataset_logger
from app.core.progress import human_bytes
from app.core.result import Status, SyncResult
from app.core.secrets import redact
from app.core.state import StateStore, import_candidates
from app.core.timeutil import from_iso, get_zone, to_iso, utcnow
from app.hub.client import HubClient
from app.hub.download import Downloaded, PackageDownload
from app.hub.fetch import BackgroundDownload
from app.hub.identity import Identity
from app.hub.listing import Listing, RemoteDataset
from app.package.checks import Package, PackagePlan, inspect_package, open_package, top_level_folder
from app.package.extract import extract
from app.package.install import Installed, deletion_share, install_mirror, install_overlay, recover_swap
from app.sync.hooks import resume_hooks, run_post_sync, run_verify
from app.sync.lock import SyncLock
from app.sync.plan import is_stale, package_lag, space_needed, sync_reason

log = logging.getLogger("datahubsync.sync")
hook_log = logging.getLogger("datahubsync.hook")
_T = TypeVar("_T")


def advertised(remote: RemoteDataset) -> dict[str, object]:
    """What the hub's list says of the package: a partial download belongs to this package only."""
    return {"version": to_iso(remote.last_updated) if remote.last_updated else None,
            "sha256": remote.sha256, "package_size": remote.package_size}


def check_writable(path: Path) -> None:
    probe = nearest_existing(path)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InstallError(permission_hint(probe))


class ListingCache:
    """The list is fetched once per run; waiting datasets share re-reads (at most one per poll interval)."""

    def __init__(self, hub: HubClient):
        self.hub = hub
        self._lock = threading.Lock()
        self._listing: Listing | None = None
        self._fetched = 0.0

    def get(self, max_age: float | None = None) -> Listing:
        with self._lock:
            stale = max_age is not None and time.monotonic() - self._fetched >= max_age
            if self._listing is None or stale:
                self._listing = self.hub.list_datasets()
                self._fetched = time.monotonic()
            return self._listing


class Workspace:
    """Where a dataset's download, staging and previous trees live (same filesystem as its data)."""

    def __init__(self, state_dir: Path, ds: DatasetConfig):
        self.download = state_dir / "downloads" / f"{ds.name}.zip.part"
        self.kept = state_dir / "packages" / f"{ds.name}.zip"
        staging, previous = state_dir / "staging" / ds.name, state_dir / "previous" / ds.name
        target_dev = os.stat(nearest_existing(ds.local_dir.parent)).st_dev
        state_dev = os.stat(nearest_existing(state_dir)).st_dev
        if target_dev != state_dev:
            # a rename cannot cross filesystems: stage beside the data instead
            staging = ds.local_dir.parent / f".{ds.name}.datahubsync-staging"
            previous = ds.local_dir.parent / f".{ds.name}.datahubsync-previous"
        self.staging, self.previous = staging, previous

    @property
    def partial_files(self) -> tuple[Path, Path]:
        """The partial download and its record."""
        return self.download, self.download.with_name(self.download.name + ".json")


class DatasetSync:
    """Syncs one dataset; every failure ends as a SyncResult, never as damage to installed data."""

    def __init__(self, run: SyncRun, parts: RunParts, ds: DatasetConfig):
        self.run = run
        self.config = run.config
        self.ds = ds
        self.log = dataset_logger(ds.name)
        self.hub, self.listing, self.store = parts.hub, parts.listing, parts.store
        self.work = Workspace(run.state_dir, ds)
        self.deadline = time.monotonic() + self.config.sync.package_wait
        self.downloaded = 0        # bytes received from the hub, over every attempt of this run
        self.retries = 0

    # ---- the steps ----------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        name = self.ds.name
        if self.ds.mode == "mirror":
            recover_swap(self.ds.local_dir, self.work.previous)
        remote = self._remote()
        assert remote.last_updated is not None          # _remote refuses an entry without data
        state = self.store.get(name)
        local_present = not is_empty_dir(self.ds.local_dir)
        reason = sync_reason(remote, state, local_present=local_present, force=self.run.force)
        version = to_iso(remote.last_updated)
        if reason is None:
            self.log.info("up to date (version %s)", state.get("last_updated"))
            if not self.run.dry_run:
                now = to_iso(utcnow())
                self.store.update(name, defer=True, status=Status.UP_TO_DATE, error=None, attempted_at=now, last_ok_at=now)
            return SyncResult.ok(name, Status.UP_TO_DATE, version=state.get("last_updated"), files=state.get("files"), bytes=state.get("bytes"))
        if self.run.dry_run:
            self.log.info("would sync: %s (hub version %s)", reason, version)
            return SyncResult.ok(name, Status.WOULD_SYNC, version=version)
        self.log.info("syncing: %s (hub version %s, installed %s)", reason, version, state.get("last_updated") or "none")
        check_writable(self.ds.local_dir)
        if self.run.force:
            self._discard_partial()           # --force starts clean, whatever an earlier run left
        restarts = 0
        while True:
            try:
                return self._fetch_and_install(remote, state, local_present)
            except NotReady as exc:
                remote = self._wait(exc)
            except IdentityChanged as exc:
                # the hub replaced the package between two requests: start again (the part is gone)
                restarts += 1
                if restarts > self.config.hub.retries:
                    raise
                self.log.warning("%s; downloading it again (restart %d of at most %d)", exc, restarts,
                                 self.config.hub.retries)
                remote = self._remote(max_age=0)

    def _remote(self, max_age: float | None = None) -> RemoteDataset:
        """This dataset's entry in the list (re-read when older than max_age); it must have data."""
        remote = self.listing.get(max_age=max_age).lookup(self.ds.name)
        if remote.last_updated is None:
            raise NotPublishedError(f"the hub has no data for {self.ds.name!r} (its last_updated is null)")
        return remote

    def _discard_partial(self) -> None:
        for path in self.work.partial_files:
            remove_tree(path)

    def _wait(self, why: NotReady) -> RemoteDataset:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise why
        pause = min(self.config.sync.package_poll, left)
        self.log.info("%s; checking again in %.0fs (waiting up to %.0fs more)", why, pause, left)
        self.hub.wait(pause)
        return self._remote(max_age=pause * 0.9)

    def _refused_identities(self, remote: RemoteDataset, state: dict[str, Any], local_present: bool) -> tuple[Identity, ...]:
        """Packages not worth fetching again: the installed one and a stale one already seen."""
        if self.run.force or not local_present or remote.sha256:
            return ()
        found = [Identity.from_json(state.get(key)) for key in ("identity", "stale_identity")]
        return tuple(i for i in found if i is not None)

    def _fetch_and_install(self, remote: RemoteDataset, state: dict[str, Any], local_present: bool) -> SyncResult:
        name = self.ds.name
        if not remote.package_ready:
            raise NotReady(f"the hub is still building the package for {name!r} (package_ready: false)", Status.PACKAGE_NOT_READY)
        self.work.download.parent.mkdir(parents=True, exist_ok=True)
        download = PackageDownload(self.hub, remote.download_url, self.work.download,
                                   connections=self.config.hub.connections, logger=self.log,
                                   expected_size=remote.package_size, tail_first=True,
                                   refuse=self._refused_identities(remote, state, local_present),
                                   advertised=advertised(remote))
        fetch = BackgroundDownload(download, self.run.stop)
        try:
            return self._check_and_install(remote, state, local_present, download, fetch)
        except PackageError:
            # a package that fails its checks (CRC, not a ZIP, hostile entries) is never "already
            # downloaded": the next run, and --force, start from a clean download
            fetch.cancel()
            download.discard()
            raise
        finally:
            fetch.cancel()
            self.downloaded += download.received
            self.retries += download.retries

    def _check_and_install(self, remote: RemoteDataset, state: dict[str, Any], local_present: bool,
                           download: PackageDownload, fetch: BackgroundDownload) -> SyncResult:
        name = self.ds.name
        early = self._obtain(download, fetch.wait_directory)
        with open_package(download.part) as package:    # its central directory is read once
            plan = inspect_package(package, strip_components=self.ds.strip_components, zone=self.run.zone,
                                   max_ratio=self.config.sync.max_compression_ratio,
                                   max_total=self.config.sync.max_unpacked_size)
            self._report_shape(remote, plan)
            version_time, warning = self._judge_freshness(remote, state, local_present, plan, fetch)
            self._check_space(plan)
            if self.ds.mode == "mirror":
                self._guard_deletions(plan)
            try:
                self._extract(package, plan, fetch, early)
            except BaseException:
                remove_tree(self.work.staging)
                raise
        try:
            got, sha = self._obtain(download, fetch.result)
            self._verify(download, remote, got.size, sha)
            self._quality_gate(version_time, state)
            if self.ds.mode == "mirror":
                done = install_mirror(self.work.staging, plan, self.ds.local_dir, self.work.previous)
            else:
                done = install_overlay(self.work.staging, plan, self.ds.local_dir)
        except BaseException:
            remove_tree(self.work.staging)
            raise
        self._record_installed(got, sha, plan, version_time, warning, done)
        self._keep_or_drop(download)
        version = to_iso(version_time)
        problem = self._after_install(version, state.get("last_updated"))
        if problem:
            return SyncResult.failed(name, Status.HOOK_FAILED, problem, version=version, files=done.files, bytes=done.bytes)
        return SyncResult.ok(name, Status.SUCCESS, version=version, files=done.files, bytes=done.bytes, warning=warning)

    def _quality_gate(self, version_time: datetime, state: dict[str, Any]) -> None:
        """hooks.verify on the staged tree: anything but success keeps the installed version."""
        outcome = run_verify(self.config.hooks, self.work.staging, self.ds.name, to_iso(version_time),
                             state.get("last_updated"), hook_log, self.run.stop)
        if outcome is None or outcome.ok:
            return
        if outcome.interrupted:
            raise Interrupted("stopped by signal during the verify hook")
        raise Rejected(f"the verify hook refused version {to_iso(version_time)}: {outcome.error}; "
                       "the installed version stays")

    def _after_install(self, version: str, previous: str | None) -> str | None:
        """hooks.post_sync once the new version is installed; its failure fails the dataset (data stays)."""
        outcome = run_post_sync(self.config.hooks, self.run.state_dir, self.ds.name, self.ds.local_dir,
                                version, previous, hook_log, self.run.stop)
        if outcome is None or outcome.ok:
            return None
        if outcome.interrupted:
            raise Interrupted("stopped by signal during the post_sync hook (it runs again at the next start)")
        problem = f"version {version} is installed, but the post_sync hook failed: {outcome.error}"
        self.store.update(self.ds.name, status=Status.HOOK_FAILED, error=redact(problem), attempted_at=to_iso(utcnow()))
        return problem

    def _record_installed(self, got: Downloaded, sha: str, plan: PackagePlan, version_time: datetime, warning: str | None,
                          done: Installed) -> None:
        now = to_iso(utcnow())
        self.store.replace_installed(self.ds.name, {
            "last_updated": to_iso(version_time), "sha256": sha, "synced_at": now, "files": done.files,
            "bytes": done.bytes, "identity": got.identity.to_json(),
            "package_time": to_iso(plan.content_time) if plan.content_time else None,
        }, status=Status.SUCCESS, error=None, attempted_at=now, last_ok_at=now, warning=warning, stale_identity=None)
        self.log.info("installed version %s: %d files, %s%s", to_iso(version_time), done.files, human_bytes(done.bytes),
                      f", {done.removed} removed" if done.removed else "")

    def _obtain(self, download: PackageDownload, step: Callable[[], _T]) -> _T:
        """Run a download step, turning what the hub answered into this dataset's outcome."""
        try:
            return step()
        except NotPublishedError:
            raise NotReady(f"the hub has no package for {self.ds.name!r} yet (HTTP 404)", Status.PACKAGE_NOT_READY) from None
        except PackageAlreadySeen as exc:
            raise NotReady(f"the hub still serves an older package than its list says ({exc})", Status.STALE_PACKAGE) from None
        except IdentityChanged:
            download.discard()
            raise
        except DiskFullError:
            download.discard()
            raise

    def _extract(self, package: Package, plan: PackagePlan, fetch: BackgroundDownload, early: bool) -> None:
        """Unpack into staging: while the download goes on when its central directory came first."""
        try:
            extract(package, plan, self.work.staging, self.run.stop, self.run.zone,
                    source=fetch.download if early else None)
        except DownloadError:
            if not fetch.running():
                self._obtain(fetch.download, fetch.result)     # the download's own error says more
            raise

    def _judge_freshness(self, remote: RemoteDataset, state: dict[str, Any], local_present: bool, plan: PackagePlan,
                         fetch: BackgroundDownload) -> tuple[datetime, str | None]:
        """The version to record, and a warning when the package lags the hub's list (docs/hub-api.md section 4)."""
        lag = package_lag(remote, plan.content_time)
        if not is_stale(lag, self.config.sync.stale_package_tolerance):
            if remote.last_updated is None:        # every read of the list is checked (_remote)
                raise NotPublishedError(f"the hub has no data for {self.ds.name!r} (its last_updated is null)")
            return remote.last_updated, None
        assert remote.last_updated is not None and plan.content_time is not None     # package_lag judged both
        installed_time = from_iso(state.get("last_updated"))
        if installed_time is not None and local_present and plan.content_time <= installed_time:
            fetch.cancel()
            self.store.update(self.ds.name, stale_identity=fetch.download.identity.to_json())
            fetch.download.discard()
            raise NotReady(f"the hub's package is older than its list says (content {to_iso(plan.content_time)}, "
                           f"listed {to_iso(remote.last_updated)}); the hub has not rebuilt it yet", Status.STALE_PACKAGE)
        warning = (f"the package lags the hub's list by {lag}; installed its content time "
                   f"{to_iso(plan.content_time)} so the next run looks again")
        self.log.warning(warning)
        return plan.content_time, warning

    def _verify(self, download: PackageDownload, remote: RemoteDataset, size: int, sha: str) -> None:
        if remote.package_size is not None and remote.package_size != size:
            download.discard()
            raise DownloadError(f"size mismatch: the hub lists {remote.package_size} bytes, downloaded {size}")
        if remote.sha256 and sha != remote.sha256:
            download.discard()
            raise DownloadError(f"SHA-256 mismatch: the hub lists {remote.sha256}, the download is {sha}")

    def _report_shape(self, remote: RemoteDataset, plan: PackagePlan) -> None:
        if remote.file_count is not None and remote.file_count != plan.file_count:
            self.log.info("the package holds %d files, the hub's folder %d (normal while the hub is packaging)",
                          plan.file_count, remote.file_count)
        top = top_level_folder(plan)
        if top and self.ds.strip_components == 0:
            self.log.info("every entry sits under %r/; set strip_components: 1 to drop that folder", top)

    def _check_space(self, plan: PackagePlan) -> None:
        need = space_needed(plan.total_bytes, plan.file_count + len(plan.dirs))
        free = free_bytes(self.work.staging.parent)
        if free < need:
            raise DiskFullError(f"not enough disk space to unpack: need {human_bytes(need)}, "
                                f"{human_bytes(free)} free at {nearest_existing(self.work.staging.parent)}")

    def _guard_deletions(self, plan: PackagePlan) -> None:
        deleted, existing = deletion_share(self.ds.local_dir, plan)
        ratio = self.config.sync.max_delete_ratio
        if existing and deleted / existing > ratio and not self.run.force:
            raise InstallError(f"mirror mode would delete {deleted} of {existing} local files "
                               f"(more than sync.max_delete_ratio {ratio:g}); run with --force if that is intended")

    def _keep_or_drop(self, download: PackageDownload) -> None:
        if self.config.sync.keep_packages:
            self.work.kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(download.part, self.work.kept)
        download.discard()


@dataclass(frozen=True)
class RunParts:
    """What the datasets of one run share, built together once the run may write (lock held)."""

    hub: HubClient
    listing: ListingCache
    store: StateStore


class SyncRun:
    """One run: the config, the flags and the stop flag; its shared parts are built by execute()."""

    def __init__(self, config: Config, *, state_path: Path | None = None, stop: threading.Event | None = None,
                 force: bool = False, dry_run: bool = False):
        missing = config.missing()
        if missing:
            raise ConfigError("; ".join(missing))
        self.config = config
        self.state_dir = config.state_dir
        self.state_path = state_path or self.state_dir / "state.json"
        self.stop = stop or threading.Event()
        self.force, self.dry_run = force, dry_run
        self.zone = get_zone(config.hub.timezone)
        self.downloaded: dict[str, int] = {}      # per dataset, for the run's metrics
        self.retries: dict[str, int] = {}

    def execute(self, names: list[str] | None = None) -> list[SyncResult]:
        datasets = [self.config.dataset(n) for n in names] if names else list(self.config.datasets)
        if self.dry_run:                      # writes nothing, so it needs no lock either
            return self._with_parts(datasets)[0]
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            raise InstallError(permission_hint(nearest_existing(self.state_dir))) from None
        try:
            with SyncLock(self.state_dir / "lock"):
                resume_hooks(self.config.hooks, self.state_dir, hook_log, self.stop)
                results, previous = self._with_parts(datasets)
                report_run(self.config, results, previous, self.downloaded, self.retries)
                return results
        except PermissionError as exc:
            raise InstallError(permission_hint(Path(exc.filename or self.state_dir))) from None

    def _with_parts(self, datasets: list[DatasetConfig]) -> tuple[list[SyncResult], dict[str, dict[str, Any]]]:
        """The run's results, and each dataset's state before it (what notifications compare with)."""
        store = StateStore(self.state_path, self.zone, import_candidates(self.state_dir, self.config.source))
        previous = {ds.name: store.get(ds.name) for ds in datasets}
        hub = HubClient(self.config.hub, stop=self.stop,
                        pool_size=max(8, self.config.hub.connections * self.config.sync.parallel + 2))
        parts = RunParts(hub, ListingCache(hub), store)
        try:
            return self._execute(datasets, parts), previous
        finally:
            hub.close()
            if not self.dry_run:
                store.flush()

    def _execute(self, datasets: list[DatasetConfig], parts: RunParts) -> list[SyncResult]:
        try:
            parts.listing.get()
        except DataHubSyncError as exc:
            # a hub that cannot list fails every dataset with the same reason
            return [self._fail(parts.store, ds.name, Status.ERROR, str(exc)) for ds in datasets]
        except Exception as exc:       # noqa: BLE001 - recorded, so healthcheck and status see it
            log.debug("unexpected error reading the list", exc_info=True)
            return [self._fail(parts.store, ds.name, Status.ERROR,
                               f"cannot read the hub's list: unexpected {type(exc).__name__}") for ds in datasets]
        workers = min(self.config.sync.parallel, len(datasets)) or 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset") as pool:
            return list(pool.map(lambda ds: self._one(ds, parts), datasets))

    def _one(self, ds: DatasetConfig, parts: RunParts) -> SyncResult:
        token = current_dataset.set(ds.name)
        started = time.monotonic()
        try:
            result = self._guarded(ds, parts)
        finally:
            current_dataset.reset(token)
        result.duration = time.monotonic() - started
        return result

    def _guarded(self, ds: DatasetConfig, parts: RunParts) -> SyncResult:
        one = None
        fail = functools.partial(self._fail, parts.store)
        try:
            if self.stop.is_set():
                raise Interrupted("stopped by signal")
            one = DatasetSync(self, parts, ds)
            return one.sync()
        except Interrupted as exc:
            # a stop is not the dataset's failure: its recorded state stays as it was
            return SyncResult.failed(ds.name, Status.ERROR, f"interrupted: {exc} (the next run resumes)", interrupted=True)
        except DiskFullError as exc:
            self._drop_partial(ds)
            return fail(ds.name, exc.status, str(exc))
        except DataHubSyncError as exc:
            return fail(ds.name, exc.status, str(exc))
        except OSError as exc:
            if is_disk_full(exc):
                self._drop_partial(ds)
                return fail(ds.name, Status.EXTRACT_FAILED, f"disk full: {exc.strerror} {exc.filename or ''}".strip())
            if isinstance(exc, PermissionError):
                return fail(ds.name, Status.ERROR, permission_hint(Path(exc.filename or ds.local_dir)))
            return fail(ds.name, Status.ERROR, f"{exc.strerror or exc}: {exc.filename or ''}".strip(": "))
        except Exception as exc:        # noqa: BLE001 - one dataset never stops the others
            log.debug("unexpected error", exc_info=True)
            return fail(ds.name, Status.ERROR, f"unexpected {type(exc).__name__}: {exc}")
        finally:
            if one is not None:
                self.downloaded[ds.name] = one.downloaded
                self.retries[ds.name] = one.retries

    def _drop_partial(self, ds: DatasetConfig) -> None:
        """A full disk is left no fuller than before the run."""
        work = Workspace(self.state_dir, ds)
        remove_tree(work.staging)
        for path in work.partial_files:
            remove_tree(path)

    def _fail(self, store: StateStore, name: str, status: Status, error: str) -> SyncResult:
        """The dataset's failed result, recorded in state (a failure updates status, error and time only)."""
        error = redact(error)
        if not self.dry_run:
            try:
                store.update(name, status=status, error=error, attempted_at=to_iso(utcnow()))
            except OSError as exc:
                log.error("cannot record the failure in %s: %s", store.path, exc.strerror)
        return SyncResult.failed(name, status, error)



def report_run(config: Config, results: list[SyncResult], previous: dict[str, dict[str, Any]],
               downloaded: dict[str, int], retries: dict[str, int]) -> None:
    """After a run (holding the lock): metrics.json, the textfile and Pushgateway, notifications.
    None of them fails the run or changes its exit code: a problem is a warning in the log."""
    from app.observe.metrics import push, record_run, write_textfile
    from app.observe.notify import send
    record_run(config.state_dir, results, downloaded, retries)
    problems = []
    if config.metrics.textfile:
        problems.append(write_textfile(config, config.metrics.textfile))
    if config.metrics.pushgateway:
        problems.append(push(config, config.metrics.pushgateway))
    if config.notify:
        problems += send(config.notify, results, previous)
    for problem in problems:
        if problem:
            log.warning(redact(problem))
