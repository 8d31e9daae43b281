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
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import write_synthetic_month
from tests.conftest import api_post, clean_env, lab_api, make_ok, run_make, wait_for

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


def _kill_server(env) -> int:
    pid = int((Path(env["PREFECT_HOME"]) / "server.pid").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _answers(env), 30, "the killed server to stop answering")
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
    held = threading.Event()  # the slow month's download ends when the test sets it
    for m, path in months.items():
        fhv_server.serve_file(path.name, path, **({"hold": held} if m == SLOW else {}))
    artifacts = Path(env["ARTIFACTS_DIR"])
    try:
        make_ok(run_make("up", env=env, timeout=400))
        make_ok(run_make("backfill", *RANGE, env=env, timeout=120))
        wait_for(
            lambda: _states(env)["COMPLETED"] >= 2 and _states(env)["RUNNING"] >= 1,
            180,
            "2 dates COMPLETED and 1 RUNNING (waiting on the slow month)",
        )
        before = _states(env)
        killed = _kill_server(env)
        print(f"killed server {killed} with date runs {dict(before)}", flush=True)
        time.sleep(3)  # the dead server's clients notice: nothing answers
        make_ok(run_make("up", env=env, timeout=400))
        # The backfill run (still downloading the slow month) holds the deployment's slot by
        # a lease; the restarted server still knows that lease (kept on disk), so the run can
        # renew it and its end frees the slot. Kept in memory, it would be gone (410).
        [parent] = api_post(
            env, "/flow_runs/filter", {"flows": {"name": {"any_": ["fhv-backfill"]}}}
        )
        assert parent["state_type"] == "RUNNING", (parent["state_name"], parent["state"]["message"])
        lease = parent["state"]["state_details"]["deployment_concurrency_lease_id"]
        renewed = requests.post(
            f"{lab_api(env)}/v2/concurrency_limits/leases/{lease}/renew",
            json={"lease_duration": 300},
            timeout=10,
        )
        assert renewed.status_code == 204, renewed.text
        held.set()  # the slow month arrives now

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
        assert "0 to run (0 new, 0 again), 8 already trained, 0 running" in again
        # A backfill run for dates already COMPLETED (two calls racing would make one) asks
        # the server when it starts, and runs none of them.
        deployment = requests.get(
            f"{lab_api(env)}/deployments/name/fhv-backfill/fhv-backfill", timeout=10
        ).json()
        extra = api_post(
            env,
            f"/deployments/{deployment['id']}/create_flow_run",
            {"parameters": {"dates": DATES, "range_from": DATES[0], "range_to": DATES[-1]}},
        )
        wait_for(
            lambda: (
                requests.get(f"{lab_api(env)}/flow_runs/{extra['id']}", timeout=10).json()[
                    "state_type"
                ]
                == "COMPLETED"
            ),
            120,
            "a second backfill run over COMPLETED dates to complete",
        )

        runs = _date_runs(env)
        completed = Counter(r["parameters"]["date"] for r in runs if r["state_type"] == "COMPLETED")
        assert completed == Counter(DATES), completed  # each date exactly one COMPLETED run
        assert not [r for r in runs if r["state_type"] in ("RUNNING", "PENDING", "SCHEDULED")]
        assert all(r["name"] == f"train-{r['parameters']['date']}" for r in runs)
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

        # `make doctor` names a limit whose slots nothing holds (here the backfill
        # deployment's own, made to leak), and the command that frees it.
        name = f"deployment:{deployment['id']}"
        leaked = requests.patch(
            f"{lab_api(env)}/v2/concurrency_limits/{name}", json={"active_slots": 1}, timeout=10
        )
        assert leaked.status_code == 204, leaked.text
        doctor = run_make("doctor", env=env, timeout=120).stdout
        [line] = [x for x in doctor.splitlines() if "concurrency" in x]
        assert f"{name} (1 of 1 slots taken)" in line, doctor
        fix = line.split("->  ", 1)[1]
        assert fix.endswith(f"gcl update {name} --active-slots 0"), line
        subprocess.run(
            fix, shell=True, check=True, capture_output=True, timeout=60, env=clean_env()
        )
        assert [n for n, active in _slots(env) if active] == []
        doctor = run_make("doctor", env=env, timeout=120).stdout
        assert "no slot held by a dead run" in doctor, doctor
    finally:
        held.set()
        run_make("down", env=env, timeout=120)


def test_killed_worker_and_backfill_run_leak_no_slot(prefect_lab, fhv_server, months):
    from tests.integration.test_crash import _kill_worker_and_its_runs

    env = {**prefect_lab, "CONCURRENCY": "2", "WORKER_POLL": "2"}
    for m, path in months.items():
        fhv_server.serve_file(path.name, path, **({"bytes_per_second": 300} if m == SLOW else {}))
    home = Path(env["PREFECT_HOME"])
    few = ("FROM=2021-05-01", "TO=2021-08-31")  # 4 dates; 2021-06-15, 2021-07-15 need SLOW
    try:
        make_ok(run_make("up", env=env, timeout=400))
        make_ok(run_make("backfill", *few, env=env, timeout=120))
        wait_for(lambda: _states(env)["RUNNING"] >= 2, 120, "2 dates RUNNING")
        victims = _kill_worker_and_its_runs(home)
        killed = time.monotonic()
        print(f"killed the worker and its flow-run processes {victims}", flush=True)
        assert [active for name, active in _slots(env) if name.startswith("deployment:")] == [1]

        # The lab's automation marks the silent runs CRASHED; that frees the slot.
        wait_for(
            lambda: not [n for n, active in _slots(env) if active] and not _states(env)["RUNNING"],
            180,
            "the dead backfill run's slot to be freed and no date left RUNNING",
        )
        print(f"slot free {time.monotonic() - killed:.0f} s after the kill", flush=True)
        assert _states(env)["CRASHED"] >= 2

        fhv_server.serve_file(months[SLOW].name, months[SLOW])
        make_ok(run_make("up", env=env, timeout=400))  # a new worker
        done = make_ok(run_make("backfill", *few, "WATCH=1", "WATCH_TIMEOUT=240", env=env,
                                timeout=360))  # fmt: skip
        assert re.search(r"\(\d+ new, [1-9]\d* again\)", done), done  # the CRASHED dates
        runs = _date_runs(env)
        completed = Counter(r["parameters"]["date"] for r in runs if r["state_type"] == "COMPLETED")
        assert completed == Counter(DATES[2:6]), completed
        assert [n for n, active in _slots(env) if active] == []
    finally:
        run_make("down", env=env, timeout=120)
