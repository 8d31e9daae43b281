"""flows/train.py run in this process against Prefect's test harness (started once, by one
test), with months served from 127.0.0.1: bad dates, failures, edge cases and the cache.

The `make train` path (server start, the script in its own process, two runs at once) is
tests/integration/test_train.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import synthetic_month
from fhvlab.model import duration as model
from fhvlab.model import training
from tests.conftest import Ran, flow_script, one_error, task_states

pytestmark = pytest.mark.integration

DATE = "2021-08-15"  # trains on 2021-06, validates on 2021-07


@pytest.fixture
def flows(fhv_server, tmp_path, monkeypatch):
    """flows/train.py with this test's DATA_DIR / ARTIFACTS_DIR, months from 127.0.0.1."""
    knobs = {
        "DATA_DIR": str(tmp_path / "data"),
        "ARTIFACTS_DIR": str(tmp_path / "art"),
        "DATA_URL": fhv_server.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name, value in knobs.items():
        monkeypatch.setenv(name, value)
    return flow_script("train")


@pytest.fixture
def train_main(flows, capsys):
    """`python flows/train.py --date D` in this process: (exit code, stdout, stderr)."""

    def run(date: str):
        capsys.readouterr()
        code = flows.main(["--date", date])
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "data", tmp_path / "art"


def _a_run_without_a_date_is_named_after_its_scheduled_day(flows, api_url: str) -> None:
    """As a run of the schedule: no `date`, so its scheduled day (here today, whose months
    are not served: it fails) names it."""
    from datetime import UTC, datetime

    state = flows.train(return_state=True)
    assert state.is_failed()
    run = requests.get(f"{api_url}/flow_runs/{state.state_details.flow_run_id}", timeout=10)
    assert run.json()["name"] == f"train-{datetime.now(UTC).date().isoformat()}"


@pytest.mark.parametrize("bad", ["2021-8-15", "2021-02-30", "tomorrow"])
def test_malformed_date_fails_in_one_line_before_any_flow_run(train_main, tmp_path, bad):
    line = one_error(train_main(bad))
    assert line.startswith(f"error: date {bad!r} is not")
    data, art = _dirs(tmp_path)
    assert not art.exists()
    assert not data.exists()


def _month_that_cannot_be_downloaded_is_named(train_main, folder: Path) -> None:
    line = one_error(train_main("2031-03-15"))
    assert "month 2031-01 is not available (HTTP 404" in line
    assert not _dirs(folder)[1].exists()


def _month_with_no_usable_rows_is_named_and_no_artifacts_written(
    train_main, fhv_files, folder: Path
) -> None:
    data, art = _dirs(folder)
    data.mkdir(parents=True)
    shutil.copy(fhv_files["2021-06"], data / "fhv_tripdata_2021-06.parquet")
    frame = synthetic_month(parse_month("2021-07"), 500)
    frame["dropOff_datetime"] = frame["pickup_datetime"] + pd.Timedelta(hours=3)
    frame.to_parquet(data / "fhv_tripdata_2021-07.parquet")
    line = one_error(train_main(DATE))
    assert "fhv_tripdata_2021-07.parquet: no rows left after keeping durations in [1, 60]" in line
    assert not art.exists()


def _training_month_with_every_location_id_missing_trains(
    train_main, fhv_files, folder: Path
) -> None:
    """Every PU/DO ID missing in the training month: one feature value (-1) each; the model
    predicts the mean, and the metrics equal the pair statistics' exact figures."""
    data, art = _dirs(folder)
    data.mkdir(parents=True)
    table = pq.read_table(fhv_files["2021-06"])
    for name in ("PUlocationID", "DOlocationID"):
        table = table.set_column(table.schema.get_field_index(name), name, pa.nulls(len(table)))
    pq.write_table(table, data / "fhv_tripdata_2021-06.parquet")
    shutil.copy(fhv_files["2021-07"], data / "fhv_tripdata_2021-07.parquet")
    done = train_main(DATE)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((art / f"metrics-{DATE}.json").read_text())
    train, val = (
        model.month_stats(data / f"fhv_tripdata_{m}.parquet") for m in ("2021-06", "2021-07")
    )
    dv, lr = model.fit(train)
    assert metrics["n_features"] == 2
    assert abs(metrics["train_rmse"] - model.rmse(dv, lr, train)) < 1e-9
    assert abs(metrics["val_rmse"] - model.rmse(dv, lr, val)) < 1e-9
    assert metrics["train"]["rows_kept"] == train.rows
    saved_dv, saved_lr = training.load_artifacts(art, DATE)
    assert saved_dv.feature_names_ == ["DOlocationID=-1", "PUlocationID=-1"]
    pred = saved_lr.predict(saved_dv.transform([{"PUlocationID": "-1", "DOlocationID": "-1"}]))
    assert pred[0] == pytest.approx(train.mean_duration, abs=1e-9)
    assert f"validation RMSE {metrics['val_rmse']:.4f} (2021-07)" in done.stdout


def _artifacts(api: str, flow_run_id: str, kind: str) -> list[dict]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "type": {"any_": [kind]}}}
    return requests.post(f"{api}/artifacts/filter", json=body, timeout=10).json()


def _months_are_cached_by_file_and_recomputed_when_a_file_changes(
    flows, api: str, fhv_files, folder: Path
) -> None:
    """First run, in a new DATA_DIR: both months downloaded, yet their statistics Cached (the
    steps above reduced the same bytes in other folders: the key is the content, not the
    folder); the fit is computed. Second run: the fit Cached too. A month file replaced
    under the same name: that month is computed again (its new numbers), the other Cached."""
    data, art = _dirs(folder)

    def run() -> str:
        state = flows.train(date=DATE, return_state=True)
        assert state.is_completed(), state
        return str(state.state_details.flow_run_id)

    run_id = run()
    states = task_states(api, run_id, 6)
    assert states["prepare_month"] == ["Cached", "Cached"]
    assert states["fit_and_score"] == ["Completed"]
    bars = _artifacts(api, run_id, "progress")  # both months were downloaded in this run
    assert sorted(a["description"] for a in bars) == [
        "download of FHV month 2021-06",
        "download of FHV month 2021-07",
    ]
    assert [a["data"] for a in bars] == [100.0, 100.0]
    [report] = _artifacts(api, run_id, "markdown")
    assert report["key"] == f"duration-model-{DATE}"
    assert "validation RMSE" in report["data"]

    run_id = run()
    states = task_states(api, run_id, 6)
    assert states["prepare_month"] == ["Cached", "Cached"]
    assert states["fit_and_score"] == ["Cached"]  # same statistics: no fit, no scikit-learn
    assert _artifacts(api, run_id, "progress") == []  # nothing downloaded
    before = json.loads((art / f"metrics-{DATE}.json").read_text())

    # Another month under July's name (FORCE-like replacement: a new file, renamed in place).
    july = data / "fhv_tripdata_2021-07.parquet"
    other = synthetic_month(parse_month("2021-07"), 2000, seed=7)
    other.to_parquet(july.with_name(".new.parquet"))
    july.with_name(".new.parquet").replace(july)
    run_id = run()
    states = task_states(api, run_id, 6)
    assert sorted(states["prepare_month"]) == ["Cached", "Completed"]
    assert states["fit_and_score"] == ["Completed"]  # July's statistics changed
    after = json.loads((art / f"metrics-{DATE}.json").read_text())
    assert after["train_rmse"] == before["train_rmse"]
    assert after["val"]["sha256"] == training.sha256(july) != before["val"]["sha256"]
    dv, lr = model.fit(model.month_stats(fhv_files["2021-06"]))
    assert after["val_rmse"] == pytest.approx(model.rmse(dv, lr, model.month_stats(july)), abs=1e-9)


def test_the_flow_in_process_fails_cleanly_trains_edge_cases_and_caches(
    prefect_harness, flows, train_main, fhv_files, tmp_path, monkeypatch
):
    """One test, so that the harness starts in one test process (xdist spreads tests one by
    one: four tests would start up to four harnesses). Each step has its own folders."""

    def fresh(name: str) -> Path:
        folder = tmp_path / name
        monkeypatch.setenv("DATA_DIR", str(folder / "data"))
        monkeypatch.setenv("ARTIFACTS_DIR", str(folder / "art"))
        return folder

    _month_that_cannot_be_downloaded_is_named(train_main, fresh("404"))
    _a_run_without_a_date_is_named_after_its_scheduled_day(flows, prefect_harness)
    _month_with_no_usable_rows_is_named_and_no_artifacts_written(
        train_main, fhv_files, fresh("no-rows")
    )
    _training_month_with_every_location_id_missing_trains(train_main, fhv_files, fresh("no-ids"))
    _months_are_cached_by_file_and_recomputed_when_a_file_changes(
        flows, prefect_harness, fhv_files, fresh("cache")
    )
