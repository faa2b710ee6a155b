import datetime as dt
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.serve import sample_data

WHEN = dt.datetime(2025, 2, 4, 20, 16, 3)
REPO = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_arguments_give_the_same_bytes(tmp_path):
    first = sample_data.make_dataset_zip(tmp_path / "a.zip", n_files=12, rows=80, seed=3, when=WHEN)
    second = sample_data.make_dataset_zip(tmp_path / "b.zip", n_files=12, rows=80, seed=3, when=WHEN)
    other_seed = sample_data.make_dataset_zip(tmp_path / "c.zip", n_files=12, rows=80, seed=4, when=WHEN)
    assert digest(first) == digest(second)
    assert digest(first) != digest(other_seed)


def test_worker_processes_do_not_change_the_bytes(tmp_path):
    n_files = sample_data._CHUNK * 2 + 5  # several chunks, so the pool really splits the work
    serial = sample_data.make_dataset_zip(tmp_path / "serial.zip", n_files=n_files, rows=30, seed=9, when=WHEN)
    pooled = sample_data.make_dataset_zip(
        tmp_path / "pooled.zip", n_files=n_files, rows=30, seed=9, when=WHEN, workers=2
    )
    assert digest(serial) == digest(pooled)


def test_package_is_a_valid_deflated_zip_of_daily_bars(tmp_path):
    path = sample_data.make_dataset_zip(tmp_path / "pkg.zip", n_files=9, rows=120, seed=1, when=WHEN)
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every CRC checks out
        infos = archive.infolist()
        assert [info.filename for info in infos][:3] == ["sh600000.csv", "sz000001.csv", "sz300001.csv"]
        assert len(infos) == 9 and len({info.filename for info in infos}) == 9
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos)
        assert all("/" not in info.filename for info in infos)  # flat, like the hub's packages
        row_counts = []
        for info in infos:
            lines = archive.read(info).decode("ascii").splitlines()
            assert lines[0] == "date,open,high,low,close,volume,amount"
            row_counts.append(len(lines) - 1)
            dates = [line.split(",")[0] for line in lines[1:]]
            assert dates == sorted(dates) and len(set(dates)) == len(dates)
            assert dates[-1] == "2025-02-04"  # histories end at the content date
            assert all(dt.date.fromisoformat(day).weekday() < 5 for day in dates)
            for line in lines[1:]:
                _, op, hi, lo, cl, volume, amount = line.split(",")
                op, hi, lo, cl = map(float, (op, hi, lo, cl))
                assert 0 < lo <= min(op, cl) <= max(op, cl) <= hi
                assert int(volume) > 0 and int(volume) % 100 == 0 and int(amount) >= 0
    assert max(row_counts) == 120 and min(row_counts) >= 1
    raw = sum(info.file_size for info in infos)
    assert 1.8 < raw / path.stat().st_size < 4  # compressible like market data, not trivially


def test_newest_entry_carries_the_content_time(tmp_path):
    odd_second = dt.datetime(2026, 11, 28, 16, 30, 7, 123456)
    path = sample_data.make_dataset_zip(tmp_path / "pkg.zip", n_files=20, rows=10, seed=1, when=odd_second)
    with zipfile.ZipFile(path) as archive:
        times = [dt.datetime(*info.date_time) for info in archive.infolist()]
    assert max(times) == dt.datetime(2026, 11, 28, 16, 30, 6)  # ZIP keeps even seconds
    assert min(times) < max(times)  # not all equal: a reader must look for the newest
    assert times[-1] == max(times)


def test_aware_time_uses_its_wall_clock(tmp_path):
    shanghai = dt.timezone(dt.timedelta(hours=8))
    path = sample_data.make_dataset_zip(
        tmp_path / "pkg.zip", n_files=2, rows=5, seed=1, when=dt.datetime(2025, 2, 4, 20, 16, 4, tzinfo=shanghai)
    )
    with zipfile.ZipFile(path) as archive:
        assert max(info.date_time for info in archive.infolist()) == (2025, 2, 4, 20, 16, 4)


def test_default_time_is_now(tmp_path):
    before = dt.datetime.now().replace(microsecond=0) - dt.timedelta(seconds=2)
    path = sample_data.make_dataset_zip(tmp_path / "pkg.zip", n_files=1, rows=5, seed=1)
    after = dt.datetime.now()
    with zipfile.ZipFile(path) as archive:
        stamp = dt.datetime(*archive.infolist()[0].date_time)
    assert before <= stamp <= after


def test_directory_holds_the_same_files_with_entry_times(tmp_path):
    package = sample_data.make_dataset_zip(tmp_path / "pkg.zip", n_files=5, rows=40, seed=2, when=WHEN)
    folder = sample_data.write_dataset_dir(tmp_path / "dir", n_files=5, rows=40, seed=2, when=WHEN)
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            local = folder / info.filename
            assert local.read_bytes() == archive.read(info)
            assert dt.datetime.fromtimestamp(local.stat().st_mtime) == dt.datetime(*info.date_time)


def test_zip_writer_switches_to_zip64_for_many_entries():
    buffer = io.BytesIO()
    writer = sample_data.ZipWriter(buffer)
    count = 0xFFFF + 3  # one more than a classic end record can count
    for index in range(count):
        writer.add(f"f{index}.csv", (2025, 1, 2, 3, 4, 6), 0, 0, b"\x03\x00")  # empty deflate stream
    writer.close()
    with zipfile.ZipFile(buffer) as archive:
        infos = archive.infolist()
        assert len(infos) == count
        assert infos[-1].filename == f"f{count - 1}.csv" and archive.read(infos[-1]) == b""


@pytest.mark.skipif(shutil.which("unzip") is None, reason="Info-ZIP unzip is not installed")
def test_info_zip_unzip_accepts_the_package(tmp_path):
    path = sample_data.make_dataset_zip(tmp_path / "pkg.zip", n_files=4, rows=30, seed=5, when=WHEN)
    result = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    subprocess.run(["unzip", "-q", str(path), "-d", str(tmp_path / "out")], check=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["sh600000.csv", "sh600001.csv", "sz000001.csv", "sz300001.csv"]


def test_cli_writes_named_packages(tmp_path, capsys):
    code = sample_data.main(
        [str(tmp_path), "--datasets", "2", "--files", "3", "--rows", "20", "--seed", "7", "--when", WHEN.isoformat()]
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stock-fin-data-xbx.zip", "stock-trading-data-pro.zip"]
    out = capsys.readouterr().out
    assert "stock-trading-data-pro.zip" in out and "3 files" in out
    # Dataset i uses seed + i, so the CLI matches the library call.
    expected = sample_data.make_dataset_zip(tmp_path / "x" / "e.zip", n_files=3, rows=20, seed=8, when=WHEN)
    assert digest(tmp_path / "stock-fin-data-xbx.zip") == digest(expected)


def test_cli_rejects_bad_numbers(tmp_path, capsys):
    assert sample_data.main([str(tmp_path), "--files", "0"]) == 2
    assert "--files must be at least 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_module_runs_as_a_program(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "app.serve.sample_data", str(tmp_path), "--datasets", "1", "--files", "2", "--rows", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "stock-trading-data-pro.zip").is_file()
    assert "2 files" in result.stdout


def test_names_beyond_the_familiar_ones_are_unique():
    names = {sample_data.dataset_name(index) for index in range(60)}
    assert len(names) == 60 and "sample-dataset-059" in names
    symbols = {sample_data.symbol(index) for index in range(3000)}
    assert len(symbols) == 3000
