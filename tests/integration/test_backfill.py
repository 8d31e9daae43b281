"""`make backfill` on a real Prefect server with a real worker; data from 127.0.0.1.

One server for all checks (it is the slow part): bad inputs first (they must create
nothing), then a range with one date trained already by `make train` and an unpublished
month, then the same range once it is published (the failed date runs again), then once
more (nothing created), then RERUN=all over two dates (both trained again).
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import write_synthetic_month
from fhvlab.model import duration as model
from fhvlab.model import training
from tests.conftest import ROOT, clean_env, make_ok, max_overlap, run_make, stop_group

pytestmark = pytest.mark.integration

DATES = ["2021-03-15", "2021-04-15", "2021-05-15", "2021-06-15"]
RANGE = ("FROM=2021-03-10", "TO=2021-06-20")


def _api(env) -> str:
    return f"http://127.0.0.1:{env['PREFECT_PORT']}/api"


def _post(env, path: str, body: dict | None = None):
    response = requests.post(f"{_api(env)}{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


def _date_runs(env) -> list[dict]:
    body = {
        "flows": {"name": {"any_": ["fhv-duration-training"]}},
        "flow_runs": {"tags": {"all_": ["backfill"]}},
    }
    return _post(env, "/flow_runs/filter", body)


def _all_date_runs(env) -> list[dict]:
    return _post(env, "/flow_runs/filter", {"flows": {"name": {"any_": ["fhv-duration-training"]}}})


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _plain_val_rmse(source: dict[str, Path], run_date: str) -> float:
    """The lab's computation without Prefect, on the same files."""
    plan = training.plan(run_date)
    train = model.month_stats(source[str(plan.train_month)])
    val = model.month_stats(source[str(plan.val_month)])
    dv, lr = model.fit(train)
    return training.evaluate(dv, lr, train, val)["val_rmse"]


@pytest.fixture
def months(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("backfill-source")
    return {
        m: write_synthetic_month(folder / f"fhv_tripdata_{m}.parquet", parse_month(m), 2000, 7)
        for m in ("2021-01", "2021-02", "2021-03", "2021-04", "2021-05")
    }


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    worker_env = clean_env({**env, "PREFECT_WORKER_QUERY_SECONDS": "2"})
    with log.open("w") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(ROOT), "worker"],
            env=worker_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def test_bad_input_is_one_line_and_creates_nothing(lab_env):
    # The make wiring, once: every bad range in-process in tests/unit/test_bad_input.py, the
    # parser's cases in tests/unit/test_backfill.py.
    args, message = ("FROM=2021-06-15", "TO=2021-03-15"), "error: FROM=2021-06-15 is after TO"
    env = {**lab_env, "PREFECT_PORT": "1"}  # nothing may even try to start a server
    result = run_make("backfill", *args, env=env, timeout=60)
    assert result.returncode != 0
    errors = _errors(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(message) or message in errors[0]
    assert "Traceback" not in result.stderr
    assert not any(Path(v).exists() for v in lab_env.values())


def test_backfill_runs_each_date_once_concurrently_and_reruns_failures(
    prefect_lab, fhv_server, months, tmp_path
):
    env = {**prefect_lab, "CONCURRENCY": "2", "WATCH": "1", "WATCH_TIMEOUT": "240"}
    # 2021-05 is not published yet: the date that validates on it fails.
    for m in ("2021-01", "2021-02", "2021-03", "2021-04"):
        fhv_server.serve_file(months[m].name, months[m])
    worker = None
    backfill = None
    try:
        # 2021-04-15 is trained already, by hand: the backfill leaves it alone.
        make_ok(run_make("train", "DATE=2021-04-15", env=env, timeout=180))
        backfill_log = tmp_path / "backfill-1.log"
        with backfill_log.open("w") as out:
            backfill = subprocess.Popen(
                ["make", "--no-print-directory", "-C", str(ROOT), "backfill", *RANGE],
                env=clean_env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        # Nobody polls the pool yet: it says so (within 15 s of creating the run).
        deadline = None
        while "no worker is polling pool 'fhv-pool'" not in backfill_log.read_text():
            text = backfill_log.read_text()
            if deadline is None and "runs 3 dates" in text:
                deadline = time.monotonic() + 15
            assert backfill.poll() is None, text
            assert deadline is None or time.monotonic() < deadline, text
            time.sleep(0.2)
        assert "make worker" in backfill_log.read_text()
        worker = _start_worker(env, tmp_path / "worker.log")
        assert backfill.wait(timeout=240) != 0  # one date failed
        first = backfill_log.read_text()
        assert "3 to run (3 new, 0 again), 1 already trained, 0 running (RERUN=failed)" in first
        assert "2021-06-15  FAILED" in first
        assert "month 2021-05 is not available (HTTP 404" in first
        for day in DATES[:3]:
            assert f"{day}  COMPLETED" in first

        artifacts = Path(env["ARTIFACTS_DIR"])
        csv_path = artifacts / "backfill-2021-03-10_2021-06-20.csv"
        assert (artifacts / "backfill-2021-03-10_2021-06-20.png").stat().st_size > 0
        rows = list(csv.DictReader(csv_path.open()))
        assert [r["date"] for r in rows] == DATES
        assert [r["state"] for r in rows] == ["COMPLETED"] * 3 + ["FAILED"]
        assert "HTTP 404" in rows[3]["message"]
        assert rows[3]["val_rmse"] == ""

        # Published now: a second call runs only the failed date again.
        fhv_server.serve_file(months["2021-05"].name, months["2021-05"])
        second = run_make("backfill", *RANGE, env=env, timeout=240)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "1 to run (0 new, 1 again), 3 already trained, 0 running" in second.stdout
        third = run_make("backfill", *RANGE, env=env, timeout=120)
        assert third.returncode == 0, third.stdout + third.stderr
        assert "0 to run (0 new, 0 again), 4 already trained, 0 running" in third.stdout
        assert "runs 1 dates" not in third.stdout
        # `make run` still runs a date (you asked), and says first which run trained it.
        again = make_ok(run_make("run", "DATE=2021-04-15", env={**env, "WATCH": "0"}))
        assert "run: 2021-04-15 already has a COMPLETED run 'train-2021-04-15'" in again
        assert "created flow run 'train-2021-04-15'" in again
        # RERUN=all trains every date of the range again.
        every = ("RERUN=all", "FROM=2021-03-10", "TO=2021-04-10")
        rerun = run_make("backfill", *every, env=env, timeout=240)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert "1 to run (0 new, 1 again), 0 already trained" in rerun.stdout
    finally:
        if backfill is not None:
            stop_group(backfill)
        if worker is not None:
            stop_group(worker)

    runs = _date_runs(env)
    assert len(runs) == 5  # 3 dates + the re-run + RERUN=all's; the third call created nothing
    latest: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: r["created"]):
        latest[run["parameters"]["date"]] = run
    assert sorted(latest) == [d for d in DATES if d != "2021-04-15"]
    assert all(r["state_type"] == "COMPLETED" for r in latest.values())
    assert all(r["name"] == f"train-{r['parameters']['date']}" for r in runs)
    by_hand = [r for r in _all_date_runs(env) if "manual" in r["tags"]]
    assert {r["name"] for r in by_hand} == {"train-2021-04-15"}  # make train and make run
    finished = [r for r in runs if r["start_time"] and r["end_time"]]
    intervals = [(_when(r["start_time"]), _when(r["end_time"])) for r in finished]
    assert len(intervals) == 5
    assert max_overlap(intervals) <= 2
    # The cap is the backfill deployment's own limit (1 run at a time, each CONCURRENCY
    # dates); no global limit, and no slot left taken once everything is final.
    deployment = requests.get(
        f"{_api(env)}/deployments/name/fhv-backfill/fhv-backfill", timeout=10
    ).json()
    assert deployment["global_concurrency_limit"]["limit"] == 1
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    limits = _post(env, "/v2/concurrency_limits/filter")
    assert [(x["name"], x["active_slots"]) for x in limits] == [
        (f"deployment:{deployment['id']}", 0)
    ]

    # Each month was requested once (2021-05: once unpublished, once published).
    hits = {p.rsplit("_", 1)[-1][:7]: n for p, n in fhv_server.hits.items()}
    assert hits == {"2021-01": 1, "2021-02": 1, "2021-03": 1, "2021-04": 1, "2021-05": 2}

    artifacts = Path(env["ARTIFACTS_DIR"])
    for day in DATES:
        metrics = json.loads((artifacts / f"metrics-{day}.json").read_text())
        assert metrics["val_rmse"] == pytest.approx(_plain_val_rmse(months, day), abs=1e-6)
    rows = list(csv.DictReader((artifacts / "backfill-2021-03-10_2021-06-20.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETED"] * 4
    png = (artifacts / "backfill-2021-03-10_2021-06-20.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(artifacts / "backfill-2021-03-10_2021-06-20.png") as image:
        assert image.size[0] > 0
        assert image.size[1] > 0
    tables = _post(env, "/artifacts/filter", {"artifacts": {"type": {"any_": ["table"]}}})
    assert any(t["key"] == "backfill-2021-03-10-2021-06-20" for t in tables)

    # `make report` rebuilds the summary from the API.
    (artifacts / "backfill-2021-03-10_2021-06-20.csv").unlink()
    report = run_make("report", *RANGE, env=env, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "4 dates: 4 COMPLETED" in report.stdout
    assert (artifacts / "backfill-2021-03-10_2021-06-20.csv").exists()
