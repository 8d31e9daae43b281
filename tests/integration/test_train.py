"""`make train` on a real Prefect server, with months served from 127.0.0.1: the make path
(server, the flow script in its own process, two runs at once). The flow's failures, edge
cases and cache run in-process: tests/integration/test_train_flow.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import write_synthetic_month
from fhvlab.model import training
from tests import reference
from tests.conftest import ROOT, clean_env, free_port, run_make, task_states

pytestmark = pytest.mark.integration


@pytest.fixture
def env(prefect_lab):
    """A lab of the test's own (folders, a free port, months from 127.0.0.1); whatever
    server `make train` starts is stopped at teardown."""
    return prefect_lab


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_train_matches_the_reference_then_two_runs_at_once_then_a_second_machine(
    env, fhv_files, tmp_path
):
    """`make train` downloads, trains; its numbers are the course's. Then (one server for
    all: it is the slow part) two runs at once on fresh folders, and a second machine that
    shares the result storage: its months and fit are Cached."""
    env = {**env, "STORAGE_URL": str(tmp_path / "shared-results")}
    stored = run_make("storage", env=env)  # server, profile, result storage block
    assert stored.returncode == 0, stored.stderr
    assert "server: started" in stored.stdout
    result = run_make("train", "DATE=2021-08-15", env=env)
    assert result.returncode == 0, result.stderr
    art = Path(env["ARTIFACTS_DIR"])
    metrics = json.loads((art / "metrics-2021-08-15.json").read_text())
    ref = reference.main(fhv_files["2021-06"], fhv_files["2021-07"])
    assert abs(metrics["train_rmse"] - ref["train_rmse"]) < 1e-6
    # 3,000-row months: the course's LSQR stops at its 1e-6 tolerance on a poorly
    # determined fit, so its validation RMSE is only that good (1e-6 holds from ~40k rows,
    # tests/unit/test_model.py).
    assert abs(metrics["val_rmse"] - ref["val_rmse"]) < 1e-5
    assert metrics["n_features"] == ref["features"]
    assert metrics["train"]["sha256"] == training.sha256(fhv_files["2021-06"])
    assert metrics["train"]["rows_read"] == 3000
    kept = len(reference.read_data(fhv_files["2021-06"]))
    assert metrics["train"]["rows_kept"] == kept
    assert f"{kept:,} of 3,000 rows kept" in result.stderr + result.stdout
    assert set(metrics["versions"]) >= {"python", "pandas", "pyarrow", "scikit-learn", "prefect"}
    assert f"validation RMSE {metrics['val_rmse']:.4f} (2021-07)" in result.stdout
    assert "dv-2021-08-15.pkl" in result.stdout
    dv, lr = training.load_artifacts(art, "2021-08-15")
    assert lr.predict(dv.transform([{"PUlocationID": "10", "DOlocationID": "50"}])).shape == (1,)

    two = {
        **env,
        "DATA_DIR": env["DATA_DIR"] + "-two",
        "ARTIFACTS_DIR": env["ARTIFACTS_DIR"] + "-two",
    }
    _two_runs_at_once_prepare_each_month_once(two)
    _a_second_machine_hits_the_first_ones_cache(env, fhv_files, metrics, tmp_path / "machine-b")


def test_malformed_date_fails_in_one_line_and_writes_nothing(lab_env):
    env = lab_env  # the check comes before any server
    # The Makefile's own check of DATE, once; more bad dates: test_train_flow.py, test_months.
    bad = "2021-02-30"
    result = run_make("train", f"DATE={bad}", env=env)
    assert result.returncode != 0
    assert _errors(result.stderr) == [
        f"error: DATE='{bad}' is not a date YYYY-MM-DD (e.g. 2021-08-15)"
    ]
    assert not Path(env["ARTIFACTS_DIR"]).exists()
    assert not Path(env["DATA_DIR"]).exists()


def _processes_with(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds `marker` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours to read
                continue
    return found


def test_flow_script_without_an_api_url_leaves_no_process_behind(fhv_server, tmp_path):
    """`python flows/train.py` with no server: Prefect runs a temporary one, which must stop.

    The home holds a migrated database, as after a `make server` that was stopped since:
    Prefect's temporary server runs on it (its new-database migrations are
    tests/integration/test_dbseed.py's and the test harness's).
    """
    from fhvlab.local import dbseed

    http = fhv_server
    home = tmp_path / "own-prefect-home"  # unique: marks this run's processes
    assert dbseed.seed(home, {})
    env = clean_env(
        {
            "PREFECT_HOME": str(home),
            "DATA_DIR": str(tmp_path / "data"),
            "ARTIFACTS_DIR": str(tmp_path / "art"),
            "DATA_URL": http.url,
            "NO_PROXY": "127.0.0.1,localhost",
            # Prefect gives its temporary server 20 s to start (migrations on a new
            # database): not enough beside the suite's other workers on 2 cores.
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        }
    )
    env.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "flows/train.py", "--date", "2021-08-15"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,  # a leftover server holding the output pipes would block to here
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "art" / "metrics-2021-08-15.json").is_file()
    deadline = time.monotonic() + 20
    while (left := _processes_with(f"PREFECT_HOME={home}\0")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"processes left running by the flow script: {left}"


def _flow_run_id(output: str) -> str:
    """The flow run's id from Prefect's 'View at .../runs/flow-run/<id>' log line."""
    import re

    [found] = set(re.findall(r"/runs/flow-run/([0-9a-f-]{36})", output))
    return found


def _two_runs_at_once_prepare_each_month_once(env) -> None:
    """Two `make train` for one date started together: each month is reduced by one run;
    the other waits for the month's cache lock and reads the result (Cached). The months'
    content is new (the cache is keyed on content: the first run's months would be Cached)."""
    data = Path(env["DATA_DIR"])
    data.mkdir(parents=True)
    for month in ("2021-06", "2021-07"):
        name = f"fhv_tripdata_{month}.parquet"
        write_synthetic_month(data / name, parse_month(month), rows=3000, seed=5)
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), "train", "DATE=2021-08-15"]
    runs = [
        subprocess.Popen(
            cmd, env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=240)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    states = [
        task_states(f"http://127.0.0.1:{env['PREFECT_PORT']}/api", _flow_run_id(out), 6)[
            "prepare_month"
        ]
        for out in outputs
    ]
    computed = sum(s.count("Completed") for s in states)
    cached = sum(s.count("Cached") for s in states)
    assert (computed, cached) == (2, 2), states


def _a_second_machine_hits_the_first_ones_cache(
    first: dict[str, str], fhv_files, metrics: dict, folder: Path
) -> None:
    """Another checkout's knobs: its own Prefect home, DATA_DIR and ARTIFACTS_DIR, the first
    machine's server (API_URL) and the same result storage folder (STORAGE_URL). Its months
    are copied in by hand (no sidecar: each is hashed once). Both prepare_month runs and the
    fit are Cached: no month's statistics computed, no model fitted; the numbers are equal."""
    data = folder / "data"
    data.mkdir(parents=True)
    for month in ("2021-06", "2021-07"):
        shutil.copy(fhv_files[month], data / fhv_files[month].name)
    api = f"http://127.0.0.1:{first['PREFECT_PORT']}/api"
    second = {
        **first,
        "PREFECT_HOME": str(folder / "prefect"),
        "DATA_DIR": str(data),
        "ARTIFACTS_DIR": str(folder / "artifacts"),
        "API_URL": api,  # the first machine's server: `make server` only checks it answers
        "PREFECT_PORT": str(free_port()),
    }
    stored = run_make("storage", env=second)
    assert stored.returncode == 0, stored.stderr
    assert "server: started" not in stored.stdout
    result = run_make("train", "DATE=2021-08-15", env=second)
    assert result.returncode == 0, result.stderr
    states = task_states(api, _flow_run_id(result.stdout + result.stderr), 6)
    assert states["prepare_month"] == ["Cached", "Cached"], states
    assert states["fit_and_score"] == ["Cached"], states
    again = json.loads((folder / "artifacts" / "metrics-2021-08-15.json").read_text())
    for key in ("train_rmse", "val_rmse", "n_features", "train", "val"):
        assert again[key] == metrics[key], key
    assert sorted(p.name for p in data.iterdir()) == [  # each hashed once, beside it
        "fhv_tripdata_2021-06.parquet",
        "fhv_tripdata_2021-06.sha256.json",
        "fhv_tripdata_2021-07.parquet",
        "fhv_tripdata_2021-07.sha256.json",
    ]
