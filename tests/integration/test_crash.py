"""A worker and its flow-run process killed mid-download: the run becomes CRASHED (no more
heartbeats), Prefect's automation schedules it again once, and a new worker completes it.

Inherently slow (~2-3 min): heartbeats come every 30 s and the run is declared dead 75 s
after the last one. Every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from fhvlab.local import processes
from tests.conftest import api_post, lab_api, make_ok, run_make

pytestmark = pytest.mark.integration

# The promise is CRASHED within 2 minutes of the kill: by design at most
# 30 s (heartbeat) + 75 s (window) + 15 s (server's bucket buffer) - the time since the last
# heartbeat, plus the server's 5 s evaluation tick. The wait allows 30 s more for a loaded
# machine; the measured figure is printed.
KILL_TO_CRASHED_LIMIT = 120


def _run(env, run_id: str) -> dict:
    response = requests.get(f"{lab_api(env)}/flow_runs/{run_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def _states(env, run_id: str) -> list[str]:
    response = requests.get(
        f"{lab_api(env)}/flow_run_states/", params={"flow_run_id": run_id}, timeout=10
    )
    response.raise_for_status()
    return [s["name"] for s in sorted(response.json(), key=lambda s: s["timestamp"])]


def _state_times(env, run_id: str) -> dict[str, float]:
    """Epoch seconds of the last state of each name in the run's history."""
    response = requests.get(
        f"{lab_api(env)}/flow_run_states/", params={"flow_run_id": run_id}, timeout=10
    )
    response.raise_for_status()
    return {
        s["name"]: datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00")).timestamp()
        for s in sorted(response.json(), key=lambda s: s["timestamp"])
    }


def _runs_of_date(env, date: str) -> list[str]:
    """Ids of the flow runs with parameter date=`date` (the cron's upcoming runs have none)."""
    runs = api_post(env, "/flow_runs/filter", {"sort": "ID_DESC"})
    return [r["id"] for r in runs if r["parameters"] == {"date": date}]


def _final_files_whole(data: Path, sources: dict[str, Path]) -> None:
    """No final month file is ever a partial one: each equals its source byte for byte."""
    for path in data.glob("fhv_tripdata_*.parquet"):
        month = path.name.removeprefix("fhv_tripdata_").removesuffix(".parquet")
        with contextlib.suppress(FileNotFoundError):
            assert path.read_bytes() == sources[month].read_bytes(), f"{path} is half-written"


def _wait(predicate, timeout: float, what: str, env, run_id: str, check=None):
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            run = _run(env, run_id)
            log = Path(env["PREFECT_HOME"]) / "worker.log"
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; run is "
                f"{run['state_type']} ({run['state_name']}: {run['state']['message']!r}), "
                f"history {_states(env, run_id)}; worker log tail:\n"
                + "\n".join(processes.tail(log, 15))
            )
        time.sleep(1)


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _kill_worker_and_its_runs(home: Path) -> list[int]:
    """SIGKILL the background worker's process group and every process below it."""
    pid = int((home / "worker.pid").read_text())
    done = processes._descendants_of(pid)
    victims = [pid, *done]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for child in done:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    return victims


def test_killed_run_is_crashed_rerun_once_and_completes(prefect_lab, fhv_server, fhv_files):
    env = {**prefect_lab, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    home, data = Path(env["PREFECT_HOME"]), Path(env["DATA_DIR"])
    slow = fhv_files["2021-06"]  # the month DATE=2021-08-15 trains on
    fhv_server.serve_file(slow.name, slow, bytes_per_second=500)  # ~140 s for 69 KB
    whole = lambda: _final_files_whole(data, fhv_files)  # noqa: E731
    try:
        make_ok(run_make("up", env=env, timeout=400))
        make_ok(run_make("run", "DATE=2021-08-15", env=env))
        [run_id] = _runs_of_date(env, "2021-08-15")

        _wait(
            lambda: _run(env, run_id)["state_type"] == "RUNNING" and list(data.glob(".*.part")),
            150,
            "the run to be RUNNING and downloading (a .part file in DATA_DIR)",
            env,
            run_id,
            whole,
        )
        beating = [
            pid
            for pid in processes._descendants_of(int((home / "worker.pid").read_text()))
            if b"PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30\0" in _environ(pid)
        ]
        assert beating, "no flow-run process got the deployment's heartbeat setting"
        victims = _kill_worker_and_its_runs(home)
        killed_at, killed_epoch = time.monotonic(), time.time()
        print(f"killed worker and flow-run processes {victims}", flush=True)
        assert not (data / slow.name).exists(), "the slow month cannot be complete yet"
        assert _run(env, run_id)["state_type"] == "RUNNING"

        _wait(
            lambda: "Crashed" in _states(env, run_id),
            KILL_TO_CRASHED_LIMIT + 30,
            "the automation to mark the silent run CRASHED",
            env,
            run_id,
            whole,
        )
        to_crashed = time.monotonic() - killed_at
        crashed = [s for s in _states(env, run_id) if s == "Crashed"]
        assert len(crashed) == 1
        _wait(
            lambda: _run(env, run_id)["state_type"] == "SCHEDULED",
            60,
            "the re-run automation to schedule the crashed run again",
            env,
            run_id,
            whole,
        )
        assert _run(env, run_id)["state_name"] == "Re-run after crash"

        fhv_server.serve_file(slow.name, slow)  # the network is fine again
        up_started = time.monotonic()
        make_ok(run_make("up", env=env, timeout=400))  # a new worker (the server is still up)
        up_seconds = time.monotonic() - up_started
        _wait(
            lambda: _run(env, run_id)["state_type"] in ("COMPLETED", "FAILED", "CRASHED"),
            240,
            "the re-run to finish",
            env,
            run_id,
            whole,
        )
        final = _run(env, run_id)
        assert final["state_type"] == "COMPLETED", final["state"]
        assert final["run_count"] == 2
        history = _states(env, run_id)
        assert history.count("Crashed") == 1
        assert history.count("Re-run after crash") == 1
        # The re-run was the same flow run: no second run of that date was created.
        assert _runs_of_date(env, "2021-08-15") == [run_id]
        whole()
        assert (Path(env["ARTIFACTS_DIR"]) / "metrics-2021-08-15.json").exists()
        stamps = _state_times(env, run_id)
        print(
            f"kill -> CRASHED {stamps['Crashed'] - killed_epoch:.0f} s (seen by the test after "
            f"{to_crashed:.0f} s); CRASHED -> re-run COMPLETED "
            f"{stamps['Completed'] - stamps['Crashed']:.0f} s, of which `make up` for a new "
            f"worker {up_seconds:.0f} s",
            flush=True,
        )
        # Needs issue 9 (a killed download's temp file removed by the next download of
        # that month, under a per-month lock); fails on the issue-10 branch alone.
        leftovers = sorted(p.name for p in data.glob(".*.part"))
        assert leftovers == [], f"temporary files of the killed download are left: {leftovers}"
    finally:
        run_make("down", env=env, timeout=120)
