"""Installation of a staged tree: a first install in one rename, overlay per file (never through a
link inside the dataset folder), or a mirror swap with its journal and the recovery of a cut swap."""
from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import InstallError
from app.core.fsutil import exchange, fsync_dir, remove_tree
from app.package.checks import PackagePlan

log = logging.getLogger("datahubsync.install")


@dataclass(frozen=True)
class Installed:
    files: int
    bytes: int
    removed: int = 0


def _count_files(root: Path) -> set[str]:
    found = set()
    for dirpath, _dirs, names in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in names:
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


def _kind(path: Path) -> int | None:
    """The file type of `path` itself (a link is a link), None when nothing is there."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return stat.S_IFREG         # a file where a folder on the way should be: reported at that folder


def _overlay_conflict(target: Path, plan: PackagePlan) -> str | None:
    """What stops the overlay, checked before any change: a symbolic link on the way to a file or
    folder of the package (nothing is written through links inside the dataset folder), a file
    where the package has a folder, or a folder where it has a file."""
    checked: set[str] = set()

    def folder_problem(relative: str, wanted: str) -> str | None:
        """Each folder from the dataset folder down to `relative` (itself included), top first."""
        cut = relative.find("/")
        while True:
            folder = relative if cut < 0 else relative[:cut]
            if folder not in checked:
                checked.add(folder)
                path = target / folder
                kind = _kind(path)
                if kind == stat.S_IFLNK:
                    return (f"{path} is a symbolic link inside the dataset folder; DataHubSync never writes "
                            "through links there: replace it with a real folder")
                if kind not in (None, stat.S_IFDIR):
                    return (f"the package has a folder {folder!r} where {path} is a file" if folder == wanted
                            else f"the package puts {wanted!r} under {path}, which is a file locally")
            if cut < 0:
                return None
            cut = relative.find("/", cut + 1)

    for folder in plan.dirs:
        if problem := folder_problem(folder, folder):
            return problem
    for relative in plan.targets:
        cut = relative.rfind("/")
        if cut > 0 and (problem := folder_problem(relative[:cut], relative)):
            return problem
        if _kind(target / relative) == stat.S_IFDIR:        # a link to a folder is replaced, not entered
            return f"the package has a file {relative!r} where {target / relative} is a folder"
    return None


def install_overlay(staging: Path, plan: PackagePlan, target: Path) -> Installed:
    """Each file replaces its local copy atomically; local files the package lacks stay."""
    if _move_whole(staging, target):
        return Installed(plan.file_count, plan.total_bytes)
    if not target.is_dir():
        raise InstallError(f"cannot install: {target} is not a folder (a file, or a link to nothing); "
                           "nothing was changed")
    conflict = _overlay_conflict(target, plan)
    if conflict:
        raise InstallError(f"cannot install: {conflict}; nothing was changed")
    made: set[Path] = set()
    for folder in plan.dirs:
        (target / folder).mkdir(parents=True, exist_ok=True)
    for relative in plan.targets:
        dest = target / relative
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        os.replace(staging / relative, dest)
    for parent in made | {target}:
        fsync_dir(parent)
    remove_tree(staging)
    return Installed(plan.file_count, plan.total_bytes)


def _move_whole(staging: Path, target: Path) -> bool:
    """A first install (no target yet): one rename puts the whole tree in place."""
    if target.exists() or target.is_symlink():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False        # the target appeared meanwhile: install file by file
        raise
    fsync_dir(target.parent)
    return True


def deletion_share(target: Path, plan: PackagePlan) -> tuple[int, int]:
    """(files mirror mode would delete, files there now)."""
    existing = _count_files(target) if target.is_dir() else set()
    keep = set(plan.targets)
    return len(existing - keep), len(existing)


def install_mirror(staging: Path, plan: PackagePlan, target: Path, previous: Path) -> Installed:
    """Swap the staged tree in at once; the old tree goes to `previous`."""
    removed, _ = deletion_share(target, plan)
    remove_tree(previous)
    previous.parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if _move_whole(staging, target):
        return Installed(plan.file_count, plan.total_bytes, 0)
    if not target.is_dir() or target.is_symlink():
        raise InstallError(f"{target} exists and is not a folder")
    try:
        swapped = exchange(staging, target)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise InstallError(f"mirror mode cannot swap {target}: it is a mount point; mount its parent folder instead, or use mode: overlay") from None
        raise
    if swapped:
        fsync_dir(target.parent)
        os.rename(staging, previous)          # staging now holds the old tree
    else:
        _two_step_swap(staging, target, previous)
    fsync_dir(previous.parent)
    return Installed(plan.file_count, plan.total_bytes, removed)


def swap_journal(previous: Path) -> Path:
    return previous.with_name(previous.name + ".swapping")


def _two_step_swap(staging: Path, target: Path, previous: Path) -> None:
    """For filesystems without RENAME_EXCHANGE: a journal lets the next run undo a half-done swap."""
    journal = swap_journal(previous)
    journal.write_text(str(target))
    fsync_dir(journal.parent)
    os.rename(target, previous)
    os.rename(staging, target)
    fsync_dir(target.parent)
    journal.unlink()


def recover_swap(target: Path, previous: Path) -> bool:
    """Undo a swap that a crash cut between its two renames (the old tree comes back)."""
    journal = swap_journal(previous)
    if not journal.exists():
        return False
    if not target.exists() and previous.is_dir():
        os.rename(previous, target)
        log.warning("restored %s from an interrupted install", target)
    journal.unlink()
    return True
