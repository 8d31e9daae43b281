"""Issue 19: a set-up target with nothing to do does nothing; a change is detected and applied.

Each case checks both what the server holds afterwards and what was (not) redone: the
`updated` time of deployments, automations and the storage block, the ids of the pool and
the queue, and which steps printed a Prefect command (`$ prefect ...`: the step did work).
Real server, real HTTP; no timing is asserted.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import requests

from tests.conftest import api_post, lab_api, linked_copy, make_ok, run_make

pytestmark = pytest.mark.integration
FLOW = "fhv-duration-training"


def _get(env, path: str):
    response = requests.get(f"{lab_api(env)}{path}", timeout=10)
    return response.json() if response.status_code == 200 else None


def _deployments(env) -> dict[str, dict]:
    return {d["name"]: d for d in api_post(env, "/deployments/filter")}


def _automations(env) -> dict[str, dict]:
    return {a["name"]: a for a in api_post(env, "/automations/filter")}


def _block(env) -> dict:
    query = {"block_documents": {"name": {"any_": ["fhvlab-results"]}}}
    [block] = api_post(env, "/block_documents/filter", query)
    return block


def _state(env) -> dict:
    """What the set-up made, with the times the server last changed each object."""
    pool = _get(env, f"/work_pools/{env.get('WORK_POOL', 'fhv-pool')}")
    return {
        "deployments": {n: d["updated"] for n, d in _deployments(env).items()},
        "automations": {n: (a["id"], a["updated"]) for n, a in _automations(env).items()},
        "block": _block(env)["updated"],
        "pool": pool and pool["id"],
    }


def _worked(out: str) -> set[str]:
    """The steps that did work: those that printed the Prefect command they ran."""
    return {line.split(":", 1)[0] for line in out.splitlines() if ": $ " in line}


def _deploy(env, *knobs: str, cwd: Path | None = None) -> str:
    return make_ok(run_make("deploy", *knobs, env=env, cwd=cwd, timeout=400))


def test_nothing_to_do_then_each_change_is_applied(prefect_lab, pg_database_url, tmp_path):
    """One lab through every change, in a copy of the lab (its prefect.yaml and flow code
    are edited too): knobs, objects changed on the server, bad records, the code, a
    server replaced on a new database, and last DATABASE_URL."""
    copy, own_code = linked_copy(tmp_path / "copy")
    env = {**prefect_lab, **own_code}
    home = Path(env["PREFECT_HOME"])

    def deploy(env, *knobs: str) -> str:
        return _deploy(env, *knobs, cwd=copy)

    first = deploy(env)
    assert _worked(first) == {"server", "config", "storage", "work-queue", "deploy"}
    before = _state(env)
    assert set(before["deployments"]) == {"fhv-monthly", "fhv-backfill", "fhv-watch"}
    assert len(before["automations"]) == 4

    # Nothing changed: every target answers from the record; nothing on the server moves.
    for target in ("server", "config", "storage", "work-queue", "deploy"):
        out = make_ok(run_make(target, env=env, cwd=copy))
        assert _worked(out) == set(), out
    again = deploy(env)
    assert "server: already running" in again
    assert "work queue 'fhv-queue' in pool 'fhv-pool' already exists" in again
    assert "deploy: nothing to do" in again
    assert _state(env) == before
    traced = run_make("deploy", env={**env, "PYTHONPROFILEIMPORTTIME": "1"}, cwd=copy)
    imported = [line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines()]
    assert "fhvlab.local.uptodate" in imported
    assert not [m for m in imported if m.split(".")[0] in ("prefect", "pydantic", "requests")]

    # CRON: the deployments are applied again, the steps before them are not.
    out = deploy(env, "CRON=0 10 15 * *")
    assert _worked(out) == {"deploy"}, out
    [schedule] = _deployments(env)["fhv-monthly"]["schedules"]
    assert schedule["schedule"]["cron"] == "0 10 15 * *"
    now = _state(env)
    assert now["block"] == before["block"]
    assert now["pool"] == before["pool"]
    assert now["deployments"]["fhv-monthly"] != before["deployments"]["fhv-monthly"]
    assert _worked(deploy(env, "CRON=0 10 15 * *")) == set()

    # TIMEZONE (both schedules use it).
    out = deploy(env, "CRON=0 10 15 * *", "TIMEZONE=Europe/Paris")
    assert _worked(out) == {"deploy"}, out
    deployments = _deployments(env)
    for name in ("fhv-monthly", "fhv-watch"):
        [schedule] = deployments[name]["schedules"]
        assert schedule["schedule"]["timezone"] == "Europe/Paris"

    # STORAGE_URL: a new block folder; the deployments are not touched.
    settled = _state(env)
    folder = Path(env["PREFECT_HOME"]).parent / "elsewhere"
    knobs = ("CRON=0 10 15 * *", "TIMEZONE=Europe/Paris", f"STORAGE_URL={folder}")
    out = deploy(env, *knobs)
    assert _worked(out) == {"storage"}, out
    assert _block(env)["data"]["basepath"] == str(folder)
    assert folder.is_dir()
    assert _state(env)["deployments"] == settled["deployments"]

    # WORK_POOL and WORK_QUEUE: a new pool and queue, the deployments moved to them.
    moved = {**env, "WORK_POOL": "other-pool", "WORK_QUEUE": "other-queue"}
    out = deploy(moved, *knobs)
    assert _worked(out) == {"work-queue", "deploy"}, out
    for deployment in _deployments(env).values():
        assert (deployment["work_pool_name"], deployment["work_queue_name"]) == (
            "other-pool",
            "other-queue",
        )
    assert _worked(deploy(moved, *knobs)) == set()

    # An automation deleted in the UI: deploy again, and it is back.
    name = "fhv-monthly: crash runs without heartbeat"
    gone = _automations(env)[name]["id"]
    assert requests.delete(f"{lab_api(env)}/automations/{gone}", timeout=10).status_code == 204
    out = deploy(moved, *knobs)
    assert _worked(out) == {"deploy"}, out
    assert name in _automations(env)
    assert _worked(deploy(moved, *knobs)) == set()

    # A deployment edited behind the lab's back (here: paused) is applied again.
    monthly = _deployments(env)["fhv-monthly"]
    paused = requests.patch(
        f"{lab_api(env)}/deployments/{monthly['id']}", json={"paused": True}, timeout=10
    )
    assert paused.status_code == 204
    assert _worked(deploy(moved, *knobs)) == {"deploy"}
    assert _deployments(env)["fhv-monthly"]["updated"] != monthly["updated"]
    assert _worked(deploy(moved, *knobs)) == set()

    # A corrupt record, or one from another version of the lab: do the work.
    record = home / "lab-record.json"
    record.write_text("{not json")
    out = deploy(moved, *knobs)
    assert _worked(out) == {"config", "storage", "work-queue", "deploy"}, out
    data = json.loads(record.read_text())
    data["lab"] = "0.0.0-other"
    record.write_text(json.dumps(data))
    assert "deploy" in _worked(deploy(moved, *knobs))
    assert json.loads(record.read_text())["lab"] != "0.0.0-other"
    assert not list(home.glob(".lab-record.json.*"))  # no half-written record left

    # prefect.yaml changed: the deployments are applied again, nothing before them.
    settled = _state(env)
    text = (copy / "prefect.yaml").read_text()
    (copy / "prefect.yaml").write_text(text.replace("tags: [fhv-lab, watch]", "tags: [fhv-lab, w]"))
    out = deploy(moved, *knobs)
    assert _worked(out) == {"deploy"}, out
    assert _deployments(env)["fhv-watch"]["tags"] == ["fhv-lab", "w"]
    assert _state(env)["block"] == settled["block"]
    assert _worked(deploy(moved, *knobs)) == set()

    # A flow's code changed: deployed again.
    flow = copy / "flows" / "watch.py"
    flow.write_text(flow.read_text() + "\n# a change of the flow's code\n")
    settled = _state(env)
    out = deploy(moved, *knobs)
    assert _worked(out) == {"deploy"}, out
    assert _state(env)["deployments"] != settled["deployments"]
    assert _worked(deploy(moved, *knobs)) == set()

    # The server is gone and a new one runs on an empty database: all set up again there
    # (the profile is kept).
    old = _deployments(env)["fhv-monthly"]["id"]
    pid = int((home / "server.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    (home / "prefect.db").unlink()
    out = deploy(moved, *knobs)
    assert _worked(out) == {"server", "storage", "work-queue", "deploy"}, out
    assert "server: started" in out
    fresh = _deployments(env)
    assert set(fresh) == {"fhv-monthly", "fhv-backfill", "fhv-watch"}
    assert fresh["fhv-monthly"]["id"] != old
    assert len(_automations(env)) == 4
    assert _worked(deploy(moved, *knobs)) == set()
    # (`make reset YES=1`, then `make up` does it all again: test_up_down.py)

    # DATABASE_URL: from SQLite to PostgreSQL, the server moves and all is set up there.
    on_sqlite = _deployments(env)["fhv-monthly"]["id"]
    pg = {**moved, "DATABASE_URL": pg_database_url}
    out = deploy(pg, *knobs)
    assert "DATABASE_URL changed" in out
    assert "postgresql+asyncpg://prefect:***@" in out
    assert pg_database_url.split("@")[0].rsplit(":", 1)[1] not in out  # password masked
    assert _worked(out) == {"server", "storage", "work-queue", "deploy"}, out
    assert _deployments(env)["fhv-monthly"]["id"] != on_sqlite
    assert _worked(deploy(pg, *knobs)) == set()
