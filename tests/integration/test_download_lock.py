"""Concurrent downloads of one month: a lock per month across processes, stale temporary
files of killed downloads, and a month larger than the free disk space (real HTTP)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fhvlab.data.download import download_month, inspect_parquet, lock_path
from fhvlab.data.months import parse_month
from fhvlab.errors import DiskSpaceError, DownloadError
from tests.conftest import ROOT, clean_env

pytestmark = pytest.mark.integration

MONTH = parse_month("2021-01")
NAME = "fhv_tripdata_2021-01.parquet"
SIDECAR = "fhv_tripdata_2021-01.sha256.json"

# A separate process that downloads the month (the same code path a flow run takes).
_DOWNLOAD = (
    "import sys; from pathlib import Path; from fhvlab.data.download import download_month; "
    "from fhvlab.data.months import parse_month; "
    "f = download_month(parse_month('2021-01'), Path(sys.argv[1]), sys.argv[2]); "
    "print(f.rows, f.downloaded)"
)
# A live writer: holds the month's lock and writes a temporary file until it is killed.
_HOLDER = (
    "import sys, time; from pathlib import Path; from fhvlab.data.download import month_lock; "
    "from fhvlab.data.months import parse_month; d = Path(sys.argv[1]); "
    "cm = month_lock(d, parse_month('2021-01')); cm.__enter__(); "
    "(d / '.fhv_tripdata_2021-01.parquet.live.part').write_bytes(b'x' * 100); "
    "print('locked', flush=True); time.sleep(120)"
)


def _env() -> dict[str, str]:
    return clean_env({"NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT / "src")})


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_concurrent_processes_and_threads_download_a_month_once(fhv_server, fhv_files, tmp_path):
    # Slow enough (~1 s) that every caller starts while the first is still writing.
    size = fhv_files["2021-01"].stat().st_size
    fhv_server.serve_file(NAME, fhv_files["2021-01"], bytes_per_second=size)
    dest = tmp_path / "data"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DOWNLOAD, str(dest), fhv_server.url],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results, errors = [], []

    def one() -> None:
        try:
            results.append(download_month(MONTH, dest, fhv_server.url))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert not errors, errors
    assert all(p.returncode == 0 for p in procs), outs
    assert fhv_server.hits[f"/trip-data/{NAME}"] == 1
    downloaded = [r.downloaded for r in results] + [o.split()[1] == "True" for o, _ in outs]
    assert downloaded.count(True) == 1
    assert all(r.rows == 3000 for r in results)
    # No lock or temporary file left; the month's sha256 beside it.
    assert sorted(p.name for p in dest.iterdir()) == [NAME, SIDECAR]
    assert inspect_parquet(dest / NAME) == 3000


def test_stale_parts_are_removed_only_after_their_writer_is_gone(fhv_server, tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    killed = dest / ".fhv_tripdata_2021-01.parquet.dead.part"
    killed.write_bytes(b"half a month")
    other = dest / ".fhv_tripdata_2021-02.parquet.dead.part"  # another month: not ours
    other.write_bytes(b"x")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(dest)],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    live = dest / ".fhv_tripdata_2021-01.parquet.live.part"
    outcome: list[object] = []
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        waiter = threading.Thread(
            target=lambda: outcome.append(download_month(MONTH, dest, fhv_server.url))
        )
        waiter.start()
        time.sleep(0.5)  # give the waiter time to (wrongly) touch the holder's files
        assert waiter.is_alive(), "the download did not wait for the live writer"
        assert live.exists()
        assert killed.exists()
        assert fhv_server.hits[f"/trip-data/{NAME}"] == 0
        os.killpg(holder.pid, signal.SIGKILL)  # the writer dies: the kernel drops its flock
        holder.wait(timeout=10)
        waiter.join(timeout=30)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    assert outcome
    assert outcome[0].downloaded  # type: ignore[attr-defined]
    assert not live.exists()
    assert not killed.exists()
    assert other.exists()
    assert sorted(p.name for p in dest.iterdir() if p != other) == [NAME, SIDECAR]


def test_lock_wait_is_bounded(fhv_server, tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(dest)],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DownloadError, match="another process has been downloading it"):
            download_month(MONTH, dest, fhv_server.url, lock_timeout=0.3)
        assert lock_path(dest, MONTH).exists()  # still the holder's
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert fhv_server.hits[f"/trip-data/{NAME}"] == 0


def test_month_larger_than_free_space_is_refused_before_writing(
    cli, fhv_server, fhv_files, lab_env
):
    dest = Path(lab_env["DATA_DIR"])
    dest.mkdir(parents=True)
    free = shutil.disk_usage(dest).free
    huge = free * 2 + 10**9
    fhv_server.serve_file(NAME, fhv_files["2021-01"], announce_length=huge)
    with pytest.raises(DiskSpaceError) as caught:
        download_month(MONTH, dest, fhv_server.url)
    message = str(caught.value)
    assert f"{huge:,} bytes" in message
    assert "are free in" in message
    assert list(dest.iterdir()) == []

    env = {**lab_env, "DATA_URL": fhv_server.url, "NO_PROXY": "127.0.0.1,localhost"}
    result = cli("data", "--months", "2021-01", env=env)  # the command line's one line
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "month 2021-01 needs" in errors[0]
    assert "but only" in errors[0]
    assert "Traceback" not in result.stderr
    assert list(dest.iterdir()) == []
