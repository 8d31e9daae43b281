"""A cohort on one SQLite server is told so: `make doctor` and `make worker` count the
workers ONLINE in the server's pools and warn, in one line, past a few (fhvlab.local.cohort).

The workers are registered by their heartbeats (`POST /work_pools/{pool}/workers/heartbeat`,
what each worker sends), not by starting a process each: the machine has 2 cores. The
PostgreSQL leg is the unit test of the decision (tests/unit/test_cohort.py).
"""

from __future__ import annotations

import pytest
import requests

from fhvlab.local.cohort import WORKER_LIMIT
from tests.conftest import lab_api, make_ok, run_make

pytestmark = pytest.mark.integration

POOL = "fhv-pool"  # lab.mk's WORK_POOL


def _heartbeats(env: dict[str, str], names: range) -> None:
    """Each named worker says it is alive, as a worker process does every poll."""
    for i in names:
        response = requests.post(
            f"{lab_api(env)}/work_pools/{POOL}/workers/heartbeat",
            json={"name": f"student-{i}", "heartbeat_interval_seconds": 60},
            timeout=10,
        )
        response.raise_for_status()


def _warnings(text: str) -> list[str]:
    """The lines that point a student to PostgreSQL."""
    return [line for line in text.splitlines() if "make postgres" in line]


def test_a_sqlite_server_with_a_class_of_workers_is_told_so(prefect_lab):
    env = prefect_lab
    make_ok(run_make("work-queue", env=env))  # the server (on SQLite), the pool and its queue

    _heartbeats(env, range(1))
    doctor = run_make("doctor", env=env, timeout=120).stdout
    [line] = [x for x in doctor.splitlines() if x[7:].startswith("workers")]
    assert line == "[ok]   workers       1 online in the server's work pools", doctor
    assert _warnings(doctor) == []

    _heartbeats(env, range(1, WORKER_LIMIT + 2))  # one past the limit
    doctor = run_make("doctor", env=env, timeout=120).stdout
    online = WORKER_LIMIT + 2
    assert _warnings(doctor) == [
        f"[!]    workers       {online} workers poll this server and it runs on SQLite, which "
        "refuses new runs under many workers (HTTP 503: 14 of 20 with 20 workers); for a class "
        "put it on PostgreSQL: make postgres (docs/cohort.md)"
    ], doctor

    worker = run_make("worker", "ONCE=1", env=env, timeout=120)
    assert worker.returncode == 0, worker.stderr
    warned = _warnings(worker.stdout + worker.stderr)
    assert warned == [warned[0]]
    assert warned[0].startswith(f"warning: {online + 1} workers poll this server")  # with itself
