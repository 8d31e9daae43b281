"""`make data` against a real HTTP server on 127.0.0.1 serving generated parquet files."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fhvlab.data.download import download_month, inspect_parquet
from fhvlab.data.months import parse_month
from fhvlab.errors import DownloadError
from tests.conftest import ROOT, clean_env, run_make
from tests.fhvhttp import Route

pytestmark = pytest.mark.integration


def _data(server, lab_env, *args: str):
    env = {**lab_env, "DATA_URL": server.url, "NO_PROXY": "127.0.0.1,localhost"}
    return run_make("data", *args, env=env)


def _fetch(cli, server, lab_env, *argv: str):
    """`python -m fhvlab data ARGV` in this process (the make wiring: the tests above)."""
    env = {**lab_env, "DATA_URL": server.url, "NO_PROXY": "127.0.0.1,localhost"}
    return cli("data", "--backoff", "0.01", *argv, env=env)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_date_fetches_training_and_validation_months_then_skips_them(fhv_server, lab_env):
    data = Path(lab_env["DATA_DIR"])
    first = _data(fhv_server, lab_env, "DATE=2021-08-15")
    assert first.returncode == 0, first.stderr
    assert _files(data) == [  # each month with its sha256 beside it (fhvlab.data.checksum)
        "fhv_tripdata_2021-06.parquet",
        "fhv_tripdata_2021-06.sha256.json",
        "fhv_tripdata_2021-07.parquet",
        "fhv_tripdata_2021-07.sha256.json",
    ]
    assert json.loads((data / "fhv_tripdata_2021-06.sha256.json").read_text())["sha256"] == (
        hashlib.sha256((data / "fhv_tripdata_2021-06.parquet").read_bytes()).hexdigest()
    )
    assert inspect_parquet(data / "fhv_tripdata_2021-06.parquet") == 3000
    assert "2021-06: 3,000 rows" in first.stdout
    assert sum(fhv_server.hits.values()) == 2

    second = _data(fhv_server, lab_env, "DATE=2021-08-15")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already present, valid") == 2
    assert sum(fhv_server.hits.values()) == 2  # no request for present months

    forced = _data(fhv_server, lab_env, "DATE=2021-08-15", "FORCE=1")
    assert forced.returncode == 0, forced.stderr
    assert sum(fhv_server.hits.values()) == 4


def test_months_fetches_exactly_those(cli, fhv_server, lab_env):
    result = _fetch(cli, fhv_server, lab_env, "--months", "2021-01", "2021-02")
    assert result.returncode == 0, result.stderr
    assert _files(Path(lab_env["DATA_DIR"])) == [
        "fhv_tripdata_2021-01.parquet",
        "fhv_tripdata_2021-01.sha256.json",
        "fhv_tripdata_2021-02.parquet",
        "fhv_tripdata_2021-02.sha256.json",
    ]


def test_malformed_months_fail_before_any_request(fhv_server, lab_env):
    # The make wiring, once (each malformed MONTHS/DATE in-process: unit/test_bad_input.py).
    result = _data(fhv_server, lab_env, "MONTHS=2021-06 2021-13")
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert "YYYY-MM" in errors[0]
    assert sum(fhv_server.hits.values()) == 0
    assert _files(Path(lab_env["DATA_DIR"])) == []


@pytest.mark.parametrize("status", [404, 403])
def test_missing_month_is_named_and_other_months_still_arrive(cli, fhv_server, lab_env, status):
    fhv_server.routes["/trip-data/fhv_tripdata_2031-01.parquet"] = Route(
        body=b"<Error>AccessDenied</Error>", status=status, content_type="text/xml"
    )
    result = _fetch(cli, fhv_server, lab_env, "--months", "2021-06", "2031-01")
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert "month 2031-01 is not available" in errors[0]
    assert f"HTTP {status}" in errors[0]
    assert f"{fhv_server.url}/fhv_tripdata_2031-01.parquet" in errors[0]
    assert _files(Path(lab_env["DATA_DIR"])) == [
        "fhv_tripdata_2021-06.parquet",
        "fhv_tripdata_2021-06.sha256.json",
    ]
    assert fhv_server.hits["/trip-data/fhv_tripdata_2031-01.parquet"] == 1  # 4xx: no retry


def test_cut_connection_keeps_failing_leaves_no_file_and_keeps_good_copy(
    cli, fhv_server, fhv_files, lab_env
):
    data = Path(lab_env["DATA_DIR"])
    assert _fetch(cli, fhv_server, lab_env, "--months", "2021-06").returncode == 0
    good = (data / "fhv_tripdata_2021-06.parquet").read_bytes()
    body = fhv_files["2021-06"].read_bytes()
    fhv_server.routes["/trip-data/fhv_tripdata_2021-06.parquet"] = Route(
        body=body, truncate_to=len(body) // 2
    )
    fhv_server.hits.clear()
    result = _fetch(cli, fhv_server, lab_env, "--months", "2021-06", "--force")
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert "month 2021-06: download from" in errors[0]
    assert "failed after 3 attempts" in errors[0]
    assert fhv_server.hits["/trip-data/fhv_tripdata_2021-06.parquet"] == 3
    assert _files(data) == ["fhv_tripdata_2021-06.parquet", "fhv_tripdata_2021-06.sha256.json"]
    assert (data / "fhv_tripdata_2021-06.parquet").read_bytes() == good


def test_cut_connection_once_is_retried(fhv_server, fhv_files, tmp_path):
    body = fhv_files["2021-07"].read_bytes()
    fhv_server.routes["/trip-data/fhv_tripdata_2021-07.parquet"] = Route(
        body=body, truncate_to=1000, truncate_first=1
    )
    fetched = download_month(parse_month("2021-07"), tmp_path, fhv_server.url, backoff=0.01)
    assert fetched.rows == 3000
    assert fetched.path.read_bytes() == body
    assert fhv_server.hits["/trip-data/fhv_tripdata_2021-07.parquet"] == 2
    assert _files(tmp_path) == ["fhv_tripdata_2021-07.parquet", "fhv_tripdata_2021-07.sha256.json"]


def test_html_with_status_200_is_rejected_as_not_parquet(cli, fhv_server, lab_env):
    fhv_server.routes["/trip-data/fhv_tripdata_2021-06.parquet"] = Route(
        body=b"<html><body>Please log in to the hotel Wi-Fi</body></html>", content_type="text/html"
    )
    result = _fetch(cli, fhv_server, lab_env, "--months", "2021-06")
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert "not a parquet file" in errors[0]
    assert _files(Path(lab_env["DATA_DIR"])) == []


def test_parquet_without_fhv_columns_or_rows_is_rejected(tmp_path):
    import pandas as pd

    wrong = tmp_path / "wrong.parquet"
    pd.DataFrame({"pickup_datetime": [1], "other": [2]}).to_parquet(wrong)
    with pytest.raises(DownloadError, match="missing FHV column"):
        inspect_parquet(wrong)
    empty = tmp_path / "empty.parquet"
    pd.DataFrame(
        {
            c: pd.Series([], dtype="float64")
            for c in ("pickup_datetime", "dropOff_datetime", "PUlocationID", "DOlocationID")
        }
    ).to_parquet(empty)
    with pytest.raises(DownloadError, match="has no rows"):
        inspect_parquet(empty)


def test_503_twice_then_200_succeeds(fhv_server, fhv_files, tmp_path):
    fhv_server.serve_file(fhv_files["2021-06"].name, fhv_files["2021-06"], fail_first=2)
    fetched = download_month(parse_month("2021-06"), tmp_path, fhv_server.url, backoff=0.01)
    assert fetched.rows == 3000
    assert fhv_server.hits["/trip-data/fhv_tripdata_2021-06.parquet"] == 3


def test_unwritable_data_dir_is_a_clear_error(cli, fhv_server, lab_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    lab_env["DATA_DIR"] = str(blocker / "data")
    result = _fetch(cli, fhv_server, lab_env, "--months", "2021-06")
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert f"cannot write to data folder {blocker / 'data'}" in errors[0]
    assert sum(fhv_server.hits.values()) == 0


def test_ctrl_c_during_download_leaves_no_partial_file(fhv_server, fhv_files, tmp_path):
    body = fhv_files["2021-06"].read_bytes()
    fhv_server.routes["/trip-data/fhv_tripdata_2021-06.parquet"] = Route(
        body=body,
        bytes_per_second=len(body) / 20,  # ~20 s for the whole file
    )
    data = tmp_path / "data"
    env = clean_env({"DATA_DIR": str(data), "NO_PROXY": "127.0.0.1"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fhvlab",
            "data",
            "--months",
            "2021-06",
            "--base-url",
            fhv_server.url,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background (`make test &`) ignores SIGINT, and a child keeps
        # an ignored SIGINT ignored: give it Ctrl-C back, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 20
        while not (fhv_server.hits and any(p.suffix == ".part" for p in data.glob(".*"))):
            assert time.monotonic() < deadline, "download never started"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # well inside the ~20 s body
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)  # a bound, not a figure: a loaded machine
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert "interrupted" in stderr
    assert _files(data) == []


def test_unreachable_data_host_is_one_line_and_leaves_nothing(cli, lab_env):
    from tests.conftest import free_port

    env = {**lab_env, "DATA_URL": f"http://127.0.0.1:{free_port()}/trip-data"}
    result = cli("data", "--months", "2021-06", "--backoff", "0.01", env=env)
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1
    assert "month 2021-06: cannot fetch" in errors[0]
    assert "Connection refused" in errors[0]
    assert _files(Path(lab_env["DATA_DIR"])) == []
