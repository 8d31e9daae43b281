"""The in-process cache of prepared months (fhvlab.monthcache)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from fhvlab.monthcache import FileCache, file_key


def _write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # like the downloader: a new content is a new file
    return path


def test_reused_until_the_file_is_replaced(tmp_path: Path) -> None:
    calls: list[str] = []

    def read(p: Path) -> str:
        calls.append(p.name)
        return p.read_text()

    cache: FileCache[str] = FileCache()
    month = _write(tmp_path / "m.parquet", "one")
    assert cache.get(month, read) == ("one", False)
    assert cache.get(month, read) == ("one", True)
    _write(month, "two!")
    assert cache.get(month, read) == ("two!", False)
    assert calls == ["m.parquet", "m.parquet"]


def test_keeps_only_the_most_recent(tmp_path: Path) -> None:
    cache: FileCache[str] = FileCache(size=2)
    files = [_write(tmp_path / f"{i}.parquet", str(i)) for i in range(3)]
    for f in files:
        cache.get(f, Path.read_text)
    assert cache.get(files[2], Path.read_text)[1] is True
    assert cache.get(files[0], Path.read_text)[1] is False  # evicted


def test_an_error_is_not_kept(tmp_path: Path) -> None:
    cache: FileCache[str] = FileCache()
    month = _write(tmp_path / "m.parquet", "x")

    def broken(p: Path) -> str:
        raise ValueError("corrupt")

    with pytest.raises(ValueError, match="corrupt"):
        cache.get(month, broken)
    assert cache.get(month, Path.read_text) == ("x", False)


def test_a_missing_file_gets_the_computes_own_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_key(tmp_path / "absent.parquet")

    def read(p: Path) -> str:
        raise ValueError(f"{p.name} is missing")

    with pytest.raises(ValueError, match=r"absent\.parquet is missing"):
        FileCache().get(tmp_path / "absent.parquet", read)


def test_two_threads_compute_once(tmp_path: Path) -> None:
    cache: FileCache[str] = FileCache()
    month = _write(tmp_path / "m.parquet", "v")
    calls = []

    def slow(p: Path) -> str:
        calls.append(1)
        time.sleep(0.2)
        return p.read_text()

    results: list[tuple[str, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(month, slow)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(calls) == 1
    assert sorted(results) == [("v", False), ("v", True)]
