"""Package checks on real ZIPs: hostile entries refused by name, sizes, bombs, strip_components, ZIP64."""
from __future__ import annotations

import io
import os
import stat
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.core.errors import PackageError
from app.package.checks import inspect_package, top_level_folder
from app.core.timeutil import get_zone

UTC = timezone.utc
WHEN = (2025, 2, 4, 20, 16, 2)


def build(path: Path, entries: list[tuple[str, bytes] | zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes]],
          compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A real ZIP; names are written verbatim (zipfile does not sanitise them when writing on Linux)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # duplicate names are deliberate in some tests
        with zipfile.ZipFile(path, "w", compression) as zf:
            for item in entries:
                if isinstance(item, tuple) and isinstance(item[0], zipfile.ZipInfo):
                    info, data = item
                elif isinstance(item, tuple):
                    info, data = zipfile.ZipInfo(item[0], WHEN), item[1]
                    info.compress_type = compression
                else:
                    info, data = item, b""
                zf.writestr(info, data)
    return path


def inspect(path: Path, *, strip: int = 0, zone=UTC, max_ratio: float = 1000, max_total: int | None = None):
    return inspect_package(path, strip_components=strip, zone=zone, max_ratio=max_ratio, max_total=max_total)


def test_plain_package(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("a.csv", b"1,2\n"), ("sub/", b""), ("sub/b.csv", b"3,4,5\n")])
    plan = inspect(pkg)
    assert [e.target for e in plan.files] == ["a.csv", "sub/b.csv"]
    assert plan.dirs == ("sub",)
    assert plan.total_bytes == 10 and plan.file_count == 2
    assert top_level_folder(plan) is None


@pytest.mark.parametrize("name, why", [
    ("../x", "'..' in path"),
    ("a/../../x", "'..' in path"),
    ("/etc/x", "absolute path"),
    ("a\\..\\x", "backslash"),
    ("C:x", "drive letter"),
    ("c:/windows/x", "drive letter"),
])
def test_unsafe_paths_are_refused_by_name(tmp_path: Path, name: str, why: str) -> None:
    pkg = build(tmp_path / "p.zip", [("fine.csv", b"ok"), (name, b"evil")])
    with pytest.raises(PackageError) as caught:
        inspect(pkg)
    assert repr(name) in str(caught.value) and why in str(caught.value)


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("data/link", WHEN)
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    pkg = build(tmp_path / "p.zip", [("data/a.csv", b"ok"), (link, b"/etc/passwd")])
    with pytest.raises(PackageError, match=r"entry 'data/link': symbolic links are not allowed"):
        inspect(pkg)


def test_unix_regular_file_mode_is_fine(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("a.csv", WHEN)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    assert inspect(build(tmp_path / "p.zip", [(info, b"ok")])).file_count == 1


def test_special_file_is_refused(tmp_path: Path) -> None:
    fifo = zipfile.ZipInfo("pipe", WHEN)
    fifo.create_system = 3
    fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
    with pytest.raises(PackageError, match=r"entry 'pipe': special file"):
        inspect(build(tmp_path / "p.zip", [(fifo, b"")]))


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("a.csv", b"1"), ("b.csv", b"2"), ("a.csv", b"3")])
    with pytest.raises(PackageError, match=r"entry 'a.csv': duplicate of 'a.csv'"):
        inspect(pkg)


def test_names_differing_only_in_case_are_duplicates(tmp_path: Path) -> None:
    # they would overwrite each other on a case-insensitive filesystem (a Windows or macOS share)
    pkg = build(tmp_path / "p.zip", [("Data.csv", b"1"), ("data.csv", b"2")])
    with pytest.raises(PackageError, match=r"entry 'data.csv': duplicate of 'Data.csv'"):
        inspect(pkg)


def test_file_and_folder_with_the_same_name_are_refused(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("a", b"file"), ("a/b.csv", b"inside")])
    with pytest.raises(PackageError, match=r"entry 'a/b.csv': its folder 'a' is also a file"):
        inspect(pkg)
    pkg2 = build(tmp_path / "p2.zip", [("x/", b""), ("x", b"file")])
    with pytest.raises(PackageError, match=r"'x'"):
        inspect(pkg2)


def test_a_file_after_a_folder_of_its_name_and_the_reverse_are_refused(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("x", b"file"), ("X/", b"")])
    with pytest.raises(PackageError, match=r"entry 'X/': duplicate of 'x'"):
        inspect(pkg)
    pkg2 = build(tmp_path / "p2.zip", [("x/", b""), ("X", b"file")])
    with pytest.raises(PackageError, match=r"entry 'X': duplicate of 'x/'"):
        inspect(pkg2)


def test_a_folder_listed_twice_and_a_case_twin_of_a_file_folder(tmp_path: Path) -> None:
    """The same folder entry twice is harmless; `A` (a file) and `a/b.csv` differ on Linux."""
    plan = inspect(build(tmp_path / "p.zip", [("d/", b""), ("d/", b""), ("A", b"1"), ("a/b.csv", b"2")]))
    assert sorted(plan.targets) == ["A", "a/b.csv"]
    assert plan.dirs == ("d",)


def test_path_hashes_in_a_nearly_full_table_find_exactly_what_was_added() -> None:
    from app.package.checks import _PathHashes
    hashes = _PathHashes(5)
    added = [f"folder/{i}.csv" for i in range(5)]
    for path in added:
        hashes.add(path)
    assert all(path in hashes for path in added)
    assert sum(f"other/{i}.csv" in hashes for i in range(1000)) == 0


def test_encrypted_entry_is_refused(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("secret.csv", b"hidden")], compression=zipfile.ZIP_STORED)
    data = bytearray(pkg.read_bytes())
    # zipfile writes no encrypted entries: set bit 0 of the general purpose flags by hand,
    # in the local header (offset 6) and in the central directory (offset 8)
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 6] |= 1
    data[central + 8] |= 1
    pkg.write_bytes(bytes(data))
    with zipfile.ZipFile(pkg) as zf:
        assert zf.infolist()[0].flag_bits & 1
    with pytest.raises(PackageError, match=r"entry 'secret.csv': encrypted"):
        inspect(pkg)


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    pkg = tmp_path / "bomb.zip"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("zeros.bin", WHEN)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as out:
            chunk = bytes(1 << 20)
            for _ in range(50):
                out.write(chunk)
    assert pkg.stat().st_size < 1 << 20
    with pytest.raises(PackageError, match=r"entry 'zeros.bin': compression ratio \d+:1 exceeds"):
        inspect(pkg, max_ratio=100)
    # the same entry under a generous limit passes: it is the ratio that refused it
    assert inspect(pkg, max_ratio=1e6).total_bytes == 50 << 20


def test_small_entries_may_compress_well(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("zeros.bin", bytes(500_000))])
    assert inspect(pkg, max_ratio=100).total_bytes == 500_000


def test_max_total_exceeded(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("a", b"x" * 1000), ("b", b"y" * 1000)])
    with pytest.raises(PackageError, match=r"more than sync.max_unpacked_size \(1500 bytes\)"):
        inspect(pkg, max_total=1500)
    assert inspect(pkg, max_total=2000).total_bytes == 2000


def test_top_folder_kept_by_default(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("top/", b""), ("top/a.csv", b"1"), ("top/sub/b.csv", b"2")])
    plan = inspect(pkg)
    assert [e.target for e in plan.files] == ["top/a.csv", "top/sub/b.csv"]
    assert top_level_folder(plan) == "top"


def test_strip_components_one(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("top/", b""), ("top/a.csv", b"1"), ("top/sub/b.csv", b"2")])
    plan = inspect(pkg, strip=1)
    assert [e.target for e in plan.files] == ["a.csv", "sub/b.csv"]
    assert top_level_folder(plan) is None


def test_strip_components_with_too_few_components(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("top/a.csv", b"1"), ("loose.csv", b"2")])
    with pytest.raises(PackageError, match=r"entry 'loose.csv': has fewer than strip_components\+1 \(2\)"):
        inspect(pkg, strip=1)


def test_zip64_is_accepted(tmp_path: Path) -> None:
    pkg = tmp_path / "z64.zip"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("big/a.csv", WHEN)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as out:
            out.write(b"a,b\n" * 1000)
        zf.writestr(zipfile.ZipInfo("big/b.csv", WHEN), b"c\n")
    with zipfile.ZipFile(pkg) as zf:
        assert zf.getinfo("big/a.csv").extract_version >= 45        # the ZIP64 version
    plan = inspect(pkg)
    assert plan.file_count == 2 and plan.total_bytes == 4002


def test_content_time_is_the_newest_entry_in_the_zone(tmp_path: Path) -> None:
    older = zipfile.ZipInfo("a.csv", (2025, 2, 4, 20, 10, 0))
    newest = zipfile.ZipInfo("b.csv", (2025, 2, 4, 20, 16, 2))
    middle = zipfile.ZipInfo("c/d.csv", (2025, 2, 4, 20, 12, 0))
    pkg = build(tmp_path / "p.zip", [(older, b"1"), (newest, b"2"), (middle, b"3")])
    plan = inspect(pkg, zone=get_zone("Asia/Shanghai"))
    assert plan.content_time == datetime(2025, 2, 4, 12, 16, 2, tzinfo=UTC)
    assert inspect(pkg).content_time == datetime(2025, 2, 4, 20, 16, 2, tzinfo=UTC)


def test_empty_package_has_no_content_time(tmp_path: Path) -> None:
    plan = inspect(build(tmp_path / "p.zip", []))
    assert plan.file_count == 0 and plan.content_time is None


def test_random_bytes_are_not_a_package(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(PackageError, match="not a valid ZIP file"):
        inspect(junk)


def test_truncated_package(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("a.csv", b"x" * 5000)])
    pkg.write_bytes(pkg.read_bytes()[:-30])      # the end of central directory is gone
    with pytest.raises(PackageError):
        inspect(pkg)


def test_html_page_instead_of_a_package(tmp_path: Path) -> None:
    page = tmp_path / "p.zip"
    page.write_bytes(b"<html><body>Access denied</body></html>")
    with pytest.raises(PackageError, match="not a valid ZIP"):
        inspect(page)


def test_missing_package_file(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="cannot read the package"):
        inspect(tmp_path / "absent.zip")


def test_nothing_is_written_by_inspection(tmp_path: Path) -> None:
    pkg = build(tmp_path / "p.zip", [("a.csv", b"1"), ("../escape.csv", b"2")])
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(PackageError):
        inspect(pkg)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "escape.csv").exists()


def test_entry_order_does_not_matter_for_safety(tmp_path: Path) -> None:
    # the hostile entry last: the whole package is still refused, not a partial plan
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(50):
            zf.writestr(f"f{i}.csv", b"x")
        zf.writestr("/abs.csv", b"y")
    pkg = tmp_path / "p.zip"
    pkg.write_bytes(buf.getvalue())
    with pytest.raises(PackageError, match="'/abs.csv': absolute path"):
        inspect(pkg)
