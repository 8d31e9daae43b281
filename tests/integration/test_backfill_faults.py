"""Faults during a backfill: the Prefect server SIGKILLed in the middle and started again.

Real server on a free loopback port, real worker (`make up`), months served from 127.0.0.1;
one month is served slowly so that the kill finds dates done and dates still running.
Every wait is bounded and says what it waited for; `make down` runs at teardown.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from fhvlab.months import parse_month
from fhvlab.synthetic import write_synthetic_month
from tests.conftest import api_post, lab_api, make_ok, run_make

pytestmark = pytest.mark.integration

DATES = [f"2021-{m:02d}-15" for m in range(3, 11)]  # 8 dates, months 2021-01 .. 2021-09
RANGE = ("FROM=2021-03-01", "TO=2021-10-31")
SLOW = "2021-05"  # needed by 2021-06-15 (validation) and 2021-07-15 (training)


@pytest.fixture
def months(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("faults-source")
    return {
        m: write_synthetic_month(folder / f"fhv_tripdata_{m}.parquet", parse_month(m), 1500, 3)
        for m in (f"2021-{i:02d}" for i in range(1, 10))
    }


def _date_runs(env) -> list[dict]:
    body = {
        "flows": {"name": {"any_": ["fhv-duration-training"]}},
        "flow_runs": {"tags": {"all_": ["backfill"]}},
    }
    return api_post(env, "/flow_runs/filter", body)


def _states(env) -> Counter:
    return Counter(r["state_type"] for r in _date_runs(env))


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)
    return value


def _kill_server(env) -> int:
    pid = int((Path(env["PREFECT_HOME"]) / "server.pid").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: not _answers(env), 30, "the killed server to stop answering")
    return pid


def _answers(env) -> bool:
    try:
        return requests.get(f"{lab_api(env)}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _slots(env) -> list[tuple[str, int]]:
    limits = api_post(env, "/v2/concurrency_limits/filter")
    return [(x["name"], x["active_slots"]) for x in limits]


def test_server_killed_mid_backfill_loses_and_duplicates_nothing(prefect_lab, fhv_server, months):
    env = {**prefect_lab, "CONCURRENCY": "2", "WORKER_POLL": "2"}
    for m, path in months.items():
        fhv_server.serve_file(path.name, path, **({"bytes_per_second": 2000} if m == SLOW else {}))
    artifacts = Path(env["ARTIFACTS_DIR"])
    try:
        make_ok(run_make("up", env=env, timeout=400))
        make_ok(run_make("backfill", *RANGE, env=env, timeout=120))
        _wait(
            lambda: _states(env)["COMPLETED"] >= 2 and _states(env)["RUNNING"] >= 1,
            180,
            "2 dates COMPLETED and 1 RUNNING (waiting on the slow month)",
        )
        before = _states(env)
        killed = _kill_server(env)
        print(f"killed server {killed} with date runs {dict(before)}", flush=True)
        time.sleep(3)  # the dead server's clients notice: nothing answers
        fhv_server.serve_file(months[SLOW].name, months[SLOW])  # fast from now on
        make_ok(run_make("up", env=env, timeout=400))

        calls = []
        for _ in range(2):  # a second call only if the outage left dates not COMPLETED
            result = run_make(
                "backfill", *RANGE, "WATCH=1", "WATCH_TIMEOUT=300", env=env, timeout=420
            )
            calls.append(result)
            if result.returncode == 0:
                break
        print(
            f"after the restart: {len(calls)} `make backfill WATCH=1` call(s); first said:\n"
            + "\n".join(x for x in calls[0].stdout.splitlines() if x.startswith("backfill:")),
            flush=True,
        )
        assert calls[-1].returncode == 0, calls[-1].stdout + calls[-1].stderr
        again = make_ok(run_make("backfill", *RANGE, env=env, timeout=120))
        assert "0 new, 0 to run again, 8 already existed (8 COMPLETED)" in again

        runs = _date_runs(env)
        completed = Counter(r["parameters"]["date"] for r in runs if r["state_type"] == "COMPLETED")
        assert completed == Counter(DATES), completed  # each date exactly one COMPLETED run
        assert not [r for r in runs if r["state_type"] in ("RUNNING", "PENDING", "SCHEDULED")]
        assert all(r["name"] == f"backfill-{r['parameters']['date']}" for r in runs)
        # No slot is left taken: the deployment's limit is free again.
        assert [n for n, active in _slots(env) if active] == []

        # No half-written artifact: whole files only, no temporary files left beside them.
        rows = list(csv.DictReader((artifacts / "backfill-2021-03-01_2021-10-31.csv").open()))
        assert [(r["date"], r["state"]) for r in rows] == [(d, "COMPLETED") for d in DATES]
        png = (artifacts / "backfill-2021-03-01_2021-10-31.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert png.endswith(b"IEND\xaeB`\x82")
        for day in DATES:
            assert json.loads((artifacts / f"metrics-{day}.json").read_text())["date"] == day
        assert sorted(p.name for p in artifacts.iterdir() if p.name.startswith(".")) == []
    finally:
        run_make("down", env=env, timeout=120)
