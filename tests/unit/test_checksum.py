"""A month's sha256 kept beside it (fhvlab.data.checksum): computed once, trusted only while
the file is the one it was taken of."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from fhvlab.data import checksum
from fhvlab.files import atomic_path


@pytest.fixture
def month(tmp_path):
    path = tmp_path / "fhv_tripdata_2021-06.parquet"
    path.write_bytes(b"june" * 1000)
    return path


def _count_reads(monkeypatch) -> list[str]:
    """Names of the files `checksum.compute` hashes from now on."""
    read: list[str] = []
    compute = checksum.compute

    def counting(path):
        read.append(path.name)
        return compute(path)

    monkeypatch.setattr(checksum, "compute", counting)
    return read


def test_the_sidecar_sits_beside_the_file_and_holds_hash_and_stat(month):
    digest = checksum.file_sha256(month)
    assert digest == hashlib.sha256(month.read_bytes()).hexdigest()
    side = month.parent / "fhv_tripdata_2021-06.sha256.json"
    assert checksum.sidecar_path(month) == side
    st = month.stat()
    assert json.loads(side.read_text()) == {
        "sha256": digest,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "inode": st.st_ino,
    }
    assert sorted(p.name for p in month.parent.iterdir()) == [month.name, side.name]  # no .part


def test_an_unchanged_file_is_hashed_once(month, monkeypatch):
    checksum.file_sha256(month)
    read = _count_reads(monkeypatch)
    checksum.file_sha256(month)
    checksum.file_sha256(month)
    assert read == []


@pytest.mark.parametrize("how", ["replaced", "rewritten", "touched"])
def test_a_changed_file_is_hashed_again(month, monkeypatch, how):
    """Replaced by rename (new inode), rewritten in place (size), or only its time changed."""
    old = checksum.file_sha256(month)
    if how == "replaced":
        with atomic_path(month) as tmp:
            tmp.write_bytes(b"july" * 1000)  # same size
    elif how == "rewritten":
        month.write_bytes(b"july" * 999)
    else:
        st = month.stat()
        os.utime(month, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    read = _count_reads(monkeypatch)
    new = checksum.file_sha256(month)
    assert read == [month.name]
    assert new == hashlib.sha256(month.read_bytes()).hexdigest()
    assert (new == old) == (how == "touched")
    assert checksum.read_sidecar(month).sha256 == new


BROKEN = ["", "{not json", '{"sha256": "x"}', '{"sha256": 1, "size": "a"}']


@pytest.mark.parametrize("content", BROKEN)
def test_a_missing_or_broken_sidecar_is_written_again(month, content):
    if content:
        checksum.sidecar_path(month).write_text(content)
    assert checksum.read_sidecar(month) is None
    digest = checksum.file_sha256(month)
    assert checksum.read_sidecar(month).sha256 == digest


def test_a_read_only_folder_still_gives_the_hash(month, monkeypatch):
    def refuse(path, kept):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checksum, "write_sidecar", refuse)
    assert checksum.file_sha256(month) == hashlib.sha256(month.read_bytes()).hexdigest()
    assert not checksum.sidecar_path(month).exists()


def test_a_month_present_without_sidecar_gets_one_without_a_download(tmp_path):
    """A month from an older lab, or copied in by hand: `make data` hashes it, fetches nothing."""
    from fhvlab.data.download import download_month
    from fhvlab.data.months import parse_month
    from fhvlab.data.synthetic import write_synthetic_month

    path = write_synthetic_month(
        tmp_path / "fhv_tripdata_2021-06.parquet", parse_month("2021-06"), 200, seed=3
    )
    fetched = download_month(parse_month("2021-06"), tmp_path, "http://127.0.0.1:9/unused")
    assert not fetched.downloaded
    assert checksum.read_sidecar(path) == checksum.compute(path)
