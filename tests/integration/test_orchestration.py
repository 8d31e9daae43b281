"""The module end to end on a real Prefect server on PostgreSQL: server, config, storage, work
queue, deploy, run, worker, a worker in another checkout, restart, stop (its SQLite walk:
`make tour`, test_onboarding.py). Each test has its own Prefect home and port."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from fhvlab.local.cohort import WORKER_LIMIT
from tests.conftest import ROOT, free_port, linked_copy, run_make, wait_for

pytestmark = pytest.mark.integration

FLOW = "fhv-duration-training"


def _ok(result) -> str:
    print(f"[{time.strftime('%T')}] {result.args[-1]}", flush=True)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _api(env) -> str:
    return f"http://127.0.0.1:{env['PREFECT_PORT']}/api"


def _post(env, path: str, body: dict | None = None) -> list | dict:
    response = requests.post(f"{_api(env)}{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


def _deployments(env) -> list[dict]:
    # The training flow's deployments (prefect.yaml also declares fhv-backfill).
    return _post(env, "/deployments/filter", {"flows": {"name": {"any_": [FLOW]}}})


def _scheduled_runs(env, deployment_id: str) -> list[dict]:
    return _post(
        env,
        "/flow_runs/filter",
        {
            "deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        },
    )


def _named_blocks(env) -> list[str]:
    body = {"block_documents": {"is_anonymous": {"eq_": False}}}
    return [b["name"] for b in _post(env, "/block_documents/filter", body)]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def database_env(postgres_cluster, pg_database_url) -> dict[str, str]:
    """The module end to end runs on PostgreSQL (a database of its own in the session's
    cluster). Its SQLite walk is `make tour` (tests/integration/test_onboarding.py)."""
    return {
        "DATABASE_URL": pg_database_url,
        "PG_DIR": postgres_cluster["PG_DIR"],
        "PG_PORT": postgres_cluster["PG_PORT"],
    }


def _a_worker_in_another_checkout_runs_it(env, deployment_id: str) -> None:
    """A copy of the lab with folders of its own, which knows only API_URL, runs the
    deployment made from this checkout: its worker's flow run enters that copy (the pull
    step) and runs the copy's code."""
    [deployment] = [d for d in _deployments(env) if d["id"] == deployment_id]
    assert deployment["pull_steps"] == [{"fhvlab.orchestration.checkout.enter_checkout": {}}]
    assert str(ROOT) not in json.dumps(deployment)  # nothing points at the deploying checkout
    where = Path(env["PREFECT_HOME"]).parent / "another-checkout"
    where.mkdir()
    second, own_code = linked_copy(where / "lab")
    other = {
        **own_code,
        "API_URL": _api(env),  # the only thing the second checkout knows about the server
        "DATA_URL": env["DATA_URL"],
        "NO_PROXY": env["NO_PROXY"],
        "DATA_DIR": str(where / "data"),
        "ARTIFACTS_DIR": str(where / "artifacts"),
        "PREFECT_PORT": str(free_port()),  # nothing there: API_URL alone must be used
    }
    with (second / "flows" / "train.py").open("a") as flow_code:  # says where it runs from
        flow_code.write("\nimport fhvlab\nprint('flow code:', __file__, fhvlab.__file__)\n")
    _ok(run_make("run", "DATE=2021-03-15", env=other, cwd=second))
    done = _ok(run_make("worker", "ONCE=1", env=other, cwd=second, timeout=300))
    assert f"flow code: {second}/flows/train.py {second}/src/fhvlab/__init__.py" in done
    body = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}}
    [flow_run] = [
        r
        for r in _post(env, "/flow_runs/filter", body)
        if r["parameters"] == {"date": "2021-03-15"}
    ]
    assert flow_run["state_type"] == "COMPLETED", flow_run["state"]
    metrics = json.loads((where / "artifacts" / "metrics-2021-03-15.json").read_text())
    assert metrics["val_month"] == "2021-02"
    assert sorted(p.name for p in (where / "data").iterdir()) == [
        "fhv_tripdata_2021-01.parquet",
        "fhv_tripdata_2021-01.sha256.json",
        "fhv_tripdata_2021-02.parquet",
        "fhv_tripdata_2021-02.sha256.json",
    ]
    assert not (Path(env["ARTIFACTS_DIR"]) / "metrics-2021-03-15.json").exists()  # ours: untouched
    assert not (second / "env" / "prefect" / "prefect.db").exists()  # no server of its own


def _pg_password(env) -> str:
    return env["DATABASE_URL"].split("@")[0].rsplit(":", 1)[1]


def test_module_end_to_end(prefect_lab, fhv_files, database_env):
    env = {**prefect_lab, **database_env}
    home = Path(env["PREFECT_HOME"])

    out = _ok(run_make("server", "config", "storage", "work-queue", "deploy", env=env))
    assert "server: started" in out
    assert "server: database PostgreSQL postgresql+asyncpg://prefect:***@127.0.0.1:" in out
    assert "created work pool 'fhv-pool' (process)" in out
    profile = (home / "profiles.toml").read_text()
    assert f'PREFECT_API_URL = "{_api(env)}"' in profile
    assert 'PREFECT_RESULTS_PERSIST_BY_DEFAULT = "true"' in profile

    [deployment] = _deployments(env)
    assert deployment["name"] == "fhv-monthly"
    assert deployment["work_pool_name"] == "fhv-pool"
    assert deployment["work_queue_name"] == "fhv-queue"
    [schedule] = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "0 9 15 * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    runs = wait_for(
        lambda: (r := _scheduled_runs(env, deployment["id"])) and len(r) >= 3 and r,
        60,
        "the scheduler to create the upcoming runs",
    )
    assert len(runs) == 3
    assert all(r["expected_start_time"][8:13] == "15T09" for r in runs)

    # Idempotent: the same deployment, pool and queue, nothing duplicated.
    again = _ok(run_make("deploy", env=env))
    assert "server: already running" in again
    assert "work queue 'fhv-queue' in pool 'fhv-pool' already exists" in again
    assert [d["id"] for d in _deployments(env)] == [deployment["id"]]
    queues = _post(env, "/work_pools/fhv-pool/queues/filter")
    assert sorted(q["name"] for q in queues) == ["default", "fhv-queue"]
    assert len(_post(env, "/work_pools/filter")) == 1
    assert _named_blocks(env) == ["fhvlab-results"]
    listed = _ok(run_make("work-queue-ls", env=env))
    assert "fhv-queue" in listed
    wide = {**env, "COLUMNS": "200"}  # rich tables: no truncated names
    assert "local-file-system/fhvlab-results" in _ok(run_make("storage-ls", env=wide))
    view = _ok(run_make("config-view", env=env))
    assert f"PREFECT_API_URL='{_api(env)}'" in view

    # Run now, let one worker pick it up; data comes from the loopback HTTP server.
    _ok(run_make("run", "DATE=2021-08-15", env=env))
    _ok(run_make("worker", "ONCE=1", env=env, timeout=300))
    [flow_run] = _post(
        env,
        "/flow_runs/filter",
        {"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}},
    )
    assert flow_run["state_type"] == "COMPLETED", flow_run["state"]
    assert flow_run["parameters"] == {"date": "2021-08-15"}

    # Task runs and their states reach the database through the server's task run recorder,
    # in batches at most a second late (server.server_env): wait for them, bounded.
    tasks = {"ensure_month", "prepare_month", "fit_and_score", "save"}

    def completed_task_runs() -> list[dict] | None:
        body = {"flow_runs": {"id": {"any_": [flow_run["id"]]}}}
        found = _post(env, "/task_runs/filter", body)
        names = {t["task_key"].split("-")[0] for t in found}
        done = all(t["state_type"] == "COMPLETED" for t in found)
        return found if tasks <= names and done else None

    wait_for(completed_task_runs, 30, f"task runs {sorted(tasks)} all COMPLETED")
    artifacts = Path(env["ARTIFACTS_DIR"])
    assert sorted(p.name for p in artifacts.iterdir()) == [
        "dv-2021-08-15.pkl",
        "metrics-2021-08-15.json",
        "model-2021-08-15.pkl",
    ]
    data = Path(env["DATA_DIR"])
    assert sorted(p.name for p in data.iterdir()) == [  # each month with its sha256
        "fhv_tripdata_2021-06.parquet",
        "fhv_tripdata_2021-06.sha256.json",
        "fhv_tripdata_2021-07.parquet",
        "fhv_tripdata_2021-07.sha256.json",
    ]
    # Result persistence is on: the months' statistics (prepare_month's cache, one record
    # per month's content) and small task results; never a month's rows.
    stored = [p for p in (home / "results").rglob("*") if p.is_file()]
    assert {p.name.rsplit("-", 1)[0] for p in stored if p.name.startswith("fhv-month-")} == {
        "fhv-month-2021-06",
        "fhv-month-2021-07",
    }
    assert max(p.stat().st_size for p in stored) < 100_000
    metrics = json.loads((artifacts / "metrics-2021-08-15.json").read_text())
    assert metrics["val_month"] == "2021-07"
    md = _post(
        env, "/artifacts/filter", {"artifacts": {"key": {"any_": ["duration-model-2021-08-15"]}}}
    )
    assert "validation RMSE" in md[0]["data"]

    _a_worker_in_another_checkout_runs_it(env, deployment["id"])

    # The server dies hard; a restart finds everything where it was.
    pid = int((home / "server.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: _port_free(int(env["PREFECT_PORT"])), 20, "the killed server's port")
    restarted = _ok(run_make("server", env=env))
    assert "server: started" in restarted  # the stale PID file did not fool it
    assert [d["id"] for d in _deployments(env)] == [deployment["id"]]
    assert _post(env, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}})
    assert _named_blocks(env) == ["fhvlab-results"]

    _postgres_restart_is_survived(env, deployment["id"], flow_run["id"])
    password = _pg_password(env)
    for i in range(WORKER_LIMIT + 2):  # a class of workers: fine on PostgreSQL, nothing said
        beat = {"name": f"student-{i}", "heartbeat_interval_seconds": 60}
        requests.post(
            f"{_api(env)}/work_pools/fhv-pool/workers/heartbeat", json=beat, timeout=10
        ).raise_for_status()
    doctor = run_make("doctor", env=env).stdout
    assert "[ok]   database      PostgreSQL postgresql+asyncpg://prefect:***@" in doctor
    assert "answers" in doctor
    [workers] = [x for x in doctor.splitlines() if x[7:].startswith("workers")]
    assert workers.startswith("[ok]   workers"), doctor
    assert "make postgres" not in doctor
    status = _ok(run_make("server-status", env=env))
    assert "server: database PostgreSQL postgresql+asyncpg://prefect:***@" in status
    for text in (status, doctor, out, again, (home / "server.log").read_text()):
        assert password not in text
    assert not (home / "prefect.db").exists()  # no SQLite beside PostgreSQL

    stopped = _ok(run_make("server-stop", env=env))
    assert "server: stopped" in stopped
    assert _port_free(int(env["PREFECT_PORT"]))
    assert not (home / "server.pid").exists()
    assert "not running" in run_make("server-stop", env=env).stdout


def test_targets_that_need_the_server_say_so_in_one_line(prefect_lab):
    for target in ("work-queue-ls", "storage-ls", "worker", "run"):
        result = run_make(target, env=prefect_lab)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: no Prefect server answers at {_api(prefect_lab)}: run `make server` first"
        ], result.stderr
        assert "Traceback" not in result.stderr


def test_unreachable_remote_api_url_is_named(prefect_lab):
    env = {**prefect_lab, "API_URL": f"http://127.0.0.2:{prefect_lab['PREFECT_PORT']}/api"}
    result = run_make("work-queue", env=env)
    assert result.returncode != 0
    assert "(API_URL) is unreachable" in result.stderr


def test_bad_port_and_bad_api_url_are_clear_errors(prefect_lab):
    # The make wiring, once each; every bad value in-process in tests/unit/test_bad_input.py.
    result = run_make("server", "PREFECT_PORT=abc", env=prefect_lab)
    assert result.returncode != 0
    assert "PREFECT_PORT='abc' is not a port number" in result.stderr
    url = "http://127.0.0.1:4200"
    result = run_make("config", f"API_URL={url}", env=prefect_lab)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert f"API_URL={url!r}" in errors[0]
    assert not (Path(prefect_lab["PREFECT_HOME"]) / "profiles.toml").exists()


def test_port_taken_by_another_program_and_open_host_warning(prefect_lab):
    port = int(prefect_lab["PREFECT_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", port))
        squatter.listen()
        result = run_make("server", "PREFECT_HOST=0.0.0.0", env=prefect_lab)
    assert result.returncode != 0
    assert "WARNING: listening on 0.0.0.0 with no PREFECT_SERVER_API_AUTH_STRING" in result.stderr
    assert f"port {port} on 0.0.0.0 is taken by another program" in result.stderr
    assert not (Path(prefect_lab["PREFECT_HOME"]) / "server.pid").exists()


def test_stale_pid_file_is_handled(prefect_lab):
    home = Path(prefect_lab["PREFECT_HOME"])
    home.mkdir(parents=True)
    (home / "server.pid").write_text("999999\n")
    status = run_make("server-status", env=prefect_lab)
    assert status.returncode != 0
    assert "server: not running" in status.stdout
    assert not (home / "server.pid").exists()
    (home / "server.pid").write_text("999999\n")
    assert "not running; nothing to stop" in _ok(run_make("server-stop", env=prefect_lab))


def test_with_an_auth_string_the_api_is_closed_and_the_lab_clients_use_it(prefect_lab):
    env = {**prefect_lab, "PREFECT_SERVER_API_AUTH_STRING": "student:s3cret"}
    out = _ok(run_make("server", "work-queue", env=env))
    assert "WARNING" not in out
    assert "created work queue 'fhv-queue'" in out
    anonymous = requests.post(f"{_api(env)}/work_pools/filter", json={}, timeout=10)
    assert anonymous.status_code == 401
    authed = requests.post(
        f"{_api(env)}/work_pools/filter", json={}, auth=("student", "s3cret"), timeout=10
    )
    assert [p["name"] for p in authed.json()] == ["fhv-pool"]


def _postgres_restart_is_survived(env, deployment_id: str, flow_run_id: str) -> None:
    """PostgreSQL stopped and started under the running server: it recovers, nothing lost."""
    pg = {k: v for k, v in env.items() if k in ("PG_DIR", "PG_PORT")}
    assert pg, "the PostgreSQL leg needs the cluster's PG_DIR and PG_PORT"
    _ok(run_make("postgres-stop", env=pg))
    ready = requests.get(f"{_api(env)}/ready", timeout=30)
    assert ready.status_code == 503  # the server is up and says its database is not
    _ok(run_make("postgres", env=pg))
    wait_for(
        lambda: requests.get(f"{_api(env)}/ready", timeout=30).status_code == 200,
        60,
        "the server to reach PostgreSQL again",
    )
    assert [d["id"] for d in _deployments(env)] == [deployment_id]
    [again] = _post(env, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    assert again["state_type"] == "COMPLETED"
