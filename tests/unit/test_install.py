"""Installation of a staged tree: overlay per file, mirror swap, recovery of a cut swap, and never
writing through a link inside the dataset folder."""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from app.core.errors import InstallError
from app.package.checks import inspect_package
from app.package.install import deletion_share, install_mirror, install_overlay, recover_swap, swap_journal
from tests.unit.test_extract import SHANGHAI, UTC, make_package, tree, unpack


def test_extract_then_overlay(tmp_path: Path) -> None:
    target = tmp_path / "data"
    (target / "sub").mkdir(parents=True)
    (target / "a.csv").write_bytes(b"old a")
    (target / "sub" / "b.csv").write_bytes(b"old b")
    (target / "local-extra.txt").write_bytes(b"mine")
    package = make_package(tmp_path / "p.zip", {"a.csv": b"new a", "sub/b.csv": b"new b", "sub/deep/c.csv": b"c"})
    staging = tmp_path / "staging"
    plan = unpack(package, staging, SHANGHAI)
    assert tree(staging) == {"a.csv": b"new a", "sub/b.csv": b"new b", "sub/deep/c.csv": b"c"}
    assert tree(target)["a.csv"] == b"old a"            # nothing installed yet
    done = install_overlay(staging, plan, target)
    assert (done.files, done.bytes, done.removed) == (3, 11, 0)
    assert tree(target) == {"a.csv": b"new a", "sub/b.csv": b"new b", "sub/deep/c.csv": b"c",
                            "local-extra.txt": b"mine"}
    assert not staging.exists()
    expected = datetime(2025, 2, 4, 12, 16, 2, tzinfo=UTC).timestamp()
    for name in ("a.csv", "sub/b.csv", "sub/deep/c.csv"):
        assert (target / name).stat().st_mtime == expected, name


def test_overlay_into_a_missing_target_with_empty_folders(tmp_path: Path) -> None:
    package = make_package(tmp_path / "p.zip", {"empty/": b"", "x/y.csv": b"1"})
    staging, target = tmp_path / "staging", tmp_path / "new" / "data"
    plan = unpack(package, staging)
    install_overlay(staging, plan, target)
    assert (target / "empty").is_dir()
    assert tree(target) == {"x/y.csv": b"1"}


def test_first_overlay_moves_the_staged_tree_in_one_rename(tmp_path: Path) -> None:
    package = make_package(tmp_path / "p.zip", {"a.csv": b"a", "sub/b.csv": b"b"})
    staging, target = tmp_path / "staging", tmp_path / "new" / "data"
    plan = unpack(package, staging)
    inodes = {name: (staging / name).stat().st_ino for name in ("a.csv", "sub/b.csv")}
    folder = staging.stat().st_ino
    done = install_overlay(staging, plan, target)
    assert (done.files, done.bytes) == (2, 2)
    assert target.stat().st_ino == folder              # the staging folder itself, renamed
    assert {name: (target / name).stat().st_ino for name in inodes} == inodes
    assert not staging.exists()


def test_overlay_into_an_existing_empty_folder_keeps_that_folder(tmp_path: Path) -> None:
    """A folder the user made (owner, mode, mount point) stays; only files go into it."""
    target = tmp_path / "data"
    target.mkdir()
    os.chmod(target, 0o2770)
    folder = target.stat().st_ino
    package = make_package(tmp_path / "p.zip", {"a.csv": b"a"})
    staging = tmp_path / "staging"
    install_overlay(staging, unpack(package, staging), target)
    assert target.stat().st_ino == folder
    assert target.stat().st_mode & 0o7777 == 0o2770
    assert tree(target) == {"a.csv": b"a"}


def test_overlay_replacement_is_a_new_inode(tmp_path: Path) -> None:
    """os.replace: a reader holding the old file keeps reading the old content."""
    target = tmp_path / "data"
    target.mkdir()
    (target / "a.csv").write_bytes(b"old content")
    package = make_package(tmp_path / "p.zip", {"a.csv": b"new content"})
    with open(target / "a.csv", "rb") as reader:
        staging = tmp_path / "staging"
        install_overlay(staging, unpack(package, staging), target)
        assert reader.read() == b"old content"
    assert (target / "a.csv").read_bytes() == b"new content"


def test_strip_components_extracts_below_the_top_folder(tmp_path: Path) -> None:
    package = make_package(tmp_path / "p.zip", {"top/a.csv": b"1", "top/s/b.csv": b"2"})
    staging, target = tmp_path / "staging", tmp_path / "data"
    install_overlay(staging, unpack(package, staging, strip=1), target)
    assert tree(target) == {"a.csv": b"1", "s/b.csv": b"2"}


def test_deletion_share(tmp_path: Path) -> None:
    target = tmp_path / "data"
    (target / "d").mkdir(parents=True)
    for name in ("a.csv", "b.csv", "d/old.csv"):
        (target / name).write_bytes(b"old")
    package = make_package(tmp_path / "p.zip", {"a.csv": b"new", "n.csv": b"new"})
    plan = inspect_package(package, strip_components=0, zone=UTC, max_ratio=1000, max_total=None)
    assert deletion_share(target, plan) == (2, 3)
    assert deletion_share(tmp_path / "absent", plan) == (0, 0)


def test_mirror_swaps_in_the_exact_tree(tmp_path: Path) -> None:
    target, previous = tmp_path / "data", tmp_path / "state" / "previous" / "ds"
    (target / "d").mkdir(parents=True)
    old = {"a.csv": b"old a", "b.csv": b"old b", "d/old.csv": b"old d"}
    for name, data in old.items():
        (target / name).write_bytes(data)
    package = make_package(tmp_path / "p.zip", {"a.csv": b"new a", "n/new.csv": b"new n"})
    staging = tmp_path / "state" / "staging" / "ds"
    plan = unpack(package, staging)
    done = install_mirror(staging, plan, target, previous)
    assert tree(target) == {"a.csv": b"new a", "n/new.csv": b"new n"}
    assert tree(previous) == old
    assert (done.files, done.removed) == (2, 2)
    assert not staging.exists()
    assert not swap_journal(previous).exists()


def test_mirror_twice_keeps_only_the_last_previous(tmp_path: Path) -> None:
    target, previous = tmp_path / "data", tmp_path / "previous" / "ds"
    for version in (b"v1", b"v2", b"v3"):
        package = make_package(tmp_path / "p.zip", {"f.csv": version})
        staging = tmp_path / "staging"
        install_mirror(staging, unpack(package, staging), target, previous)
    assert tree(target) == {"f.csv": b"v3"}
    assert tree(previous) == {"f.csv": b"v2"}


def test_mirror_into_a_missing_target(tmp_path: Path) -> None:
    target, previous = tmp_path / "new" / "data", tmp_path / "previous" / "ds"
    package = make_package(tmp_path / "p.zip", {"f.csv": b"1"})
    staging = tmp_path / "staging"
    done = install_mirror(staging, unpack(package, staging), target, previous)
    assert tree(target) == {"f.csv": b"1"}
    assert done.removed == 0 and not previous.exists()


def test_recover_swap_restores_a_half_done_swap(tmp_path: Path) -> None:
    target, previous = tmp_path / "data", tmp_path / "previous" / "ds"
    previous.mkdir(parents=True)
    (previous / "f.csv").write_bytes(b"the old tree")
    # a crash between `rename(target, previous)` and `rename(staging, target)`
    swap_journal(previous).write_text(str(target))
    assert not target.exists()
    assert recover_swap(target, previous) is True
    assert tree(target) == {"f.csv": b"the old tree"}
    assert not previous.exists()
    assert not swap_journal(previous).exists()


def test_recover_swap_after_a_completed_second_rename(tmp_path: Path) -> None:
    """Journal left but both renames done: the new tree stays, only the journal goes."""
    target, previous = tmp_path / "data", tmp_path / "previous" / "ds"
    target.mkdir()
    (target / "f.csv").write_bytes(b"new")
    previous.mkdir(parents=True)
    (previous / "f.csv").write_bytes(b"old")
    swap_journal(previous).write_text(str(target))
    assert recover_swap(target, previous) is True
    assert tree(target) == {"f.csv": b"new"} and tree(previous) == {"f.csv": b"old"}
    assert not swap_journal(previous).exists()


def test_recover_swap_without_a_journal_does_nothing(tmp_path: Path) -> None:
    target, previous = tmp_path / "data", tmp_path / "previous" / "ds"
    previous.mkdir(parents=True)
    assert recover_swap(target, previous) is False
    assert not target.exists() and previous.is_dir()


@pytest.mark.parametrize("local_kind", ["folder-where-package-has-a-file", "file-where-package-has-a-folder"])
def test_overlay_conflict_changes_nothing(tmp_path: Path, local_kind: str) -> None:
    """A local path that cannot take the package's entry fails the install before any file is replaced
    (a failure at any step leaves the installed data as it was)."""
    target = tmp_path / "data"
    target.mkdir()
    (target / "a.csv").write_bytes(b"installed a")
    if local_kind == "folder-where-package-has-a-file":
        (target / "z").mkdir()
        (target / "z" / "inner.csv").write_bytes(b"local")
        files = {"a.csv": b"new a", "z": b"a file now"}
    else:
        (target / "z").write_bytes(b"a local file")
        files = {"a.csv": b"new a", "z/inner.csv": b"in a folder now"}
    before = tree(target)
    package = make_package(tmp_path / "p.zip", files)
    staging = tmp_path / "staging"
    plan = unpack(package, staging)
    with pytest.raises(Exception, match="cannot install"):
        install_overlay(staging, plan, target)
    assert tree(target) == before


# -- symbolic links inside the dataset folder ------------------------------------------------------

def installed_over_links(tmp_path: Path, files: dict[str, bytes], links: dict[str, str]) -> tuple[Path, Path, Path]:
    """A dataset folder with data in place, links made inside it, and a staged package ready to go in."""
    target, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (target / "kept").mkdir(parents=True)
    (target / "a.csv").write_bytes(b"installed a")
    (target / "kept" / "k.csv").write_bytes(b"installed k")
    elsewhere.mkdir()
    (elsewhere / "theirs.csv").write_bytes(b"not ours")
    for name, points_to in links.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).symlink_to(points_to)
    return target, elsewhere, make_package(tmp_path / "p.zip", files)


@pytest.mark.parametrize("files, links, link", [
    ({"a.csv": b"new a", "sub/b.csv": b"through the link"}, {"sub": "../elsewhere"}, "sub"),
    ({"a.csv": b"new a", "a/b/c/d.csv": b"deep"}, {"a/b": "../../elsewhere"}, "a/b"),
    ({"a.csv": b"new a", "empty/": b""}, {"empty": "../elsewhere"}, "empty"),
    ({"a.csv": b"new a", "sub/": b"", "sub/x.csv": b"x"}, {"sub": "../elsewhere/missing"}, "sub"),
    ({"sub/deep/x.csv": b"x"}, {"sub": "../elsewhere/theirs.csv"}, "sub"),
])
def test_overlay_never_writes_through_a_link_inside_the_dataset_folder(
        tmp_path: Path, files: dict[str, bytes], links: dict[str, str], link: str) -> None:
    """A linked folder, one deep down, a folder of the package's own, a dangling link, a link to a file:
    the whole install is refused, nothing changes here or in the link's target."""
    target, elsewhere, package = installed_over_links(tmp_path, files, links)
    before, theirs = tree(target), tree(elsewhere)
    staging = tmp_path / "staging"
    plan = unpack(package, staging)
    with pytest.raises(InstallError) as caught:
        install_overlay(staging, plan, target)
    assert str(caught.value) == (f"cannot install: {target / link} is a symbolic link inside the dataset folder; "
                                 "DataHubSync never writes through links there: replace it with a real folder; "
                                 "nothing was changed")
    assert caught.value.status == "extract_failed"
    assert tree(target) == before and (target / "a.csv").read_bytes() == b"installed a"
    assert tree(elsewhere) == theirs
    assert (target / link).is_symlink()


def test_the_link_is_reported_even_when_a_real_folder_comes_first(tmp_path: Path) -> None:
    files = {"kept/new.csv": b"fine", "kept/inner/x.csv": b"through the link"}
    target, elsewhere, package = installed_over_links(tmp_path, files, {"kept/inner": "../../elsewhere"})
    staging = tmp_path / "staging"
    with pytest.raises(InstallError, match=r"kept/inner is a symbolic link inside the dataset folder"):
        install_overlay(staging, unpack(package, staging), target)
    assert not (target / "kept" / "new.csv").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["theirs.csv"]


def test_a_link_where_the_package_has_a_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    """os.replace swaps the link itself for the new file; the file it pointed to stays as it was."""
    target, elsewhere, package = installed_over_links(
        tmp_path, {"a.csv": b"new a", "b.csv": b"new b", "c": b"new c"},
        {"b.csv": "../elsewhere/theirs.csv", "c": "../elsewhere"})
    staging = tmp_path / "staging"
    install_overlay(staging, unpack(package, staging), target)
    for name, data in {"b.csv": b"new b", "c": b"new c"}.items():
        assert not (target / name).is_symlink() and (target / name).read_bytes() == data
    assert tree(elsewhere) == {"theirs.csv": b"not ours"}


def test_a_linked_dataset_folder_is_the_operators_choice_of_disk(tmp_path: Path) -> None:
    disk = tmp_path / "big-disk" / "data"
    disk.mkdir(parents=True)
    (disk / "old.csv").write_bytes(b"old")
    target = tmp_path / "data"
    target.symlink_to(disk)
    package = make_package(tmp_path / "p.zip", {"a.csv": b"a", "sub/b.csv": b"b"})
    staging = tmp_path / "staging"
    install_overlay(staging, unpack(package, staging), target)
    assert target.is_symlink()
    assert tree(disk) == {"old.csv": b"old", "a.csv": b"a", "sub/b.csv": b"b"}


@pytest.mark.parametrize("kind", ["dangling link", "file"])
def test_a_dataset_folder_that_is_not_a_folder_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "data"
    if kind == "file":
        target.write_bytes(b"a file")
    else:
        target.symlink_to(tmp_path / "unmounted")
    package = make_package(tmp_path / "p.zip", {"a.csv": b"a"})
    staging = tmp_path / "staging"
    with pytest.raises(InstallError, match=rf"cannot install: {target} is not a folder .*nothing was changed"):
        install_overlay(staging, unpack(package, staging), target)
    assert not (tmp_path / "unmounted").exists()
    assert kind != "file" or target.read_bytes() == b"a file"
