"""Runs started by events, on a real Prefect server with a real worker; data from 127.0.0.1.

One server for every step (it is the slow part), small generated months:
1. 2021-06 and 2021-07 fetched (`make data`) and served, 2021-08 answers 200 with an HTML
   page: a watch run announces nothing (one warning line) and creates no run.
2. 2021-08 served: announced once; the deployment trigger creates one training run for
   2021-09-15 within 60 s, which COMPLETES with the plain pipeline's validation RMSE. The
   seconds watch start -> COMPLETED and event -> run created are printed.
3. Worker down, a run of 2021-10-15 by hand (`make run`, SCHEDULED); 2021-09 published, two
   watch runs at once: one event (its id is the month's), marked trained (the date is in
   flight), so the trigger starts nothing. The same announcement posted again unmarked, twice
   with one new id: one run of the trigger, which waits SCHEDULED and, once a worker is back,
   does not train (the date is trained). An announcement marked trained starts no run.
   (A month not out yet, HTTP 404: 2021-10, in `make events`.)
4. DATA_URL unreachable: the watch run FAILS, `make watch` says so in one line naming it,
   and `make alerts` posts it once.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import write_synthetic_month
from fhvlab.model import duration as model
from fhvlab.model import training
from tests.conftest import (
    ROOT,
    api_post,
    clean_env,
    lab_api,
    make_ok,
    run_make,
    stop_group,
    wait_for,
)
from tests.fhvhttp import Route
from tests.integration.test_up_down import Receiver

pytestmark = pytest.mark.integration

LAST_MODIFIED = "Tue, 21 Sep 2021 10:00:00 GMT"
CREATED_WITHIN = 60  # the issue: a training run within 60 s of the watch run


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _events(env, name: str = "fhv.month.published") -> list[dict]:
    """The events named `name`, oldest first, without the test's hand-made ones."""
    body = {"filter": {"event": {"prefix": [name]}, "order": "ASC"}, "limit": 50}
    found = api_post(env, "/events/filter", body)["events"]
    return [e for e in found if not e["payload"].get("by_hand")]


def _events_if(env, count: int) -> list[dict]:
    """The announcements (as `_events`) once at least `count` are stored, else []."""
    found = _events(env)
    return found if len(found) >= count else []


def _post_announcement(env, month: str, day: str, trained: bool, event_id: str = "") -> None:
    """A hand-made fhv.month.published for `month` (training date `day`), with a new id."""
    event = {
        "id": event_id or str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "fhv.month.published",
        "resource": {
            "prefect.resource.id": f"fhv.month.{month}",
            "fhv.training-date": day,
            "fhv.trained": "true" if trained else "false",
        },
        "payload": {"month": month, "training_date": day, "by_hand": True},
    }
    response = requests.post(f"{lab_api(env)}/events", json=[event], timeout=10)
    assert response.status_code == 204, response.text


def _training_runs(env, day: str) -> list[dict]:
    body = {
        "flows": {"name": {"any_": ["fhv-duration-training"]}},
        "sort": "EXPECTED_START_TIME_ASC",
    }
    return [
        r for r in api_post(env, "/flow_runs/filter", body) if r["parameters"].get("date") == day
    ]


def _watch_runs(env) -> list[dict]:
    body = {"flows": {"name": {"any_": ["fhv-watch"]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return api_post(env, "/flow_runs/filter", body)


def _watch_runs_of(env, event: dict) -> list[dict]:
    """The watch run(s) that emitted `event` (its related flow-run resource)."""
    ids = {
        r["prefect.resource.id"].removeprefix("prefect.flow-run.")
        for r in event["related"]
        if r["prefect.resource.id"].startswith("prefect.flow-run.")
    }
    return [r for r in _watch_runs(env) if r["id"] in ids]


def _run(env, run_id: str) -> dict:
    response = requests.get(f"{lab_api(env)}/flow_runs/{run_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(ROOT), "worker"],
            env=clean_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _plain_val_rmse(train: Path, val: Path) -> float:
    """The lab's computation without Prefect, on the same files."""
    train_stats, val_stats = model.month_stats(train), model.month_stats(val)
    dv, lr = model.fit(train_stats)
    return training.evaluate(dv, lr, train_stats, val_stats)["val_rmse"]


def _metrics(env, day: str) -> dict:
    import json

    return json.loads((Path(env["ARTIFACTS_DIR"]) / f"metrics-{day}.json").read_text())


def test_watch_announces_each_month_once_and_the_trigger_trains(
    prefect_lab, fhv_server, fhv_files, tmp_path
):
    env = {**prefect_lab, "WORKER_POLL": "1", "WATCH_TIMEOUT": "180"}
    fhv_server.allow_head = True  # like the TLC's CloudFront (the ranged GET: test_watch_http)
    source = tmp_path / "source"
    months = {
        m: write_synthetic_month(source / f"fhv_tripdata_{m}.parquet", parse_month(m), 3000, 1)
        for m in ("2021-08", "2021-09")
    }
    worker_log = tmp_path / "worker.log"
    worker = None
    try:
        make_ok(run_make("data", "MONTHS=2021-06 2021-07", "deploy", env=env, timeout=300))
        worker = _start_worker(env, worker_log)

        # 1. Nothing after 2021-07 is out: 2021-08 answers 200 with an HTML page. Nothing
        # announced, no run, one warning line.
        fhv_server.routes["/trip-data/fhv_tripdata_2021-08.parquet"] = Route(
            body=b"<html><body>Please wait</body></html>" * 100, content_type="text/html"
        )
        first = make_ok(run_make("watch", "WATCH=1", env=env, timeout=180))
        assert "watch: 2021-08: not announced (answers 200 with an HTML page (text/html))" in first
        assert "watch: nothing new announced" in first
        assert _events(env) == []
        warnings = [x for x in worker_log.read_text().splitlines() if "2021-08 not announced" in x]
        assert len(warnings) == 1, warnings
        assert "WARNING" in warnings[0]

        # 2. 2021-08 is published: announced once; the trigger trains 2021-09-15.
        size = months["2021-08"].stat().st_size
        fhv_server.serve_file(
            months["2021-08"].name, months["2021-08"], last_modified=LAST_MODIFIED
        )
        second = make_ok(run_make("watch", "WATCH=1", env=env, timeout=240))
        assert (
            f"watch: announced 2021-08: {size:,} bytes, Last-Modified {LAST_MODIFIED}; "
            "training date 2021-09-15" in second
        )
        assert "for 2021-09-15: COMPLETED" in second
        [event] = _events(env)
        assert event["resource"]["prefect.resource.id"] == "fhv.month.2021-08"
        assert event["resource"]["fhv.trained"] == "false"
        assert event["payload"]["month"] == "2021-08"
        assert event["payload"]["size"] == size
        assert event["payload"]["last_modified"] == LAST_MODIFIED
        assert event["payload"]["training_date"] == "2021-09-15"
        [announcer] = _watch_runs_of(env, event)
        [trained] = _training_runs(env, "2021-09-15")
        assert trained["state_type"] == "COMPLETED"
        assert trained["created_by"]["type"] == "AUTOMATION"
        assert trained["created_by"]["display_value"] == (
            "fhv-monthly: train when a month is published"
        )
        start = _when(announcer["start_time"])
        created_after = (_when(trained["created"]) - start).total_seconds()
        assert created_after < CREATED_WITHIN
        expected = _plain_val_rmse(fhv_files["2021-07"], months["2021-08"])
        assert _metrics(env, "2021-09-15")["val_rmse"] == pytest.approx(expected, abs=1e-6)
        to_completed = (_when(trained["end_time"]) - start).total_seconds()
        event_to_created = (_when(trained["created"]) - _when(event["occurred"])).total_seconds()
        print(
            f"figures: watch run start -> training run COMPLETED {to_completed:.1f} s; "
            f"event -> training run created {event_to_created:.2f} s; "
            f"watch run start -> training run created {created_after:.1f} s",
            flush=True,
        )

        # 3. Worker down; 2021-10-15 has a run by hand, waiting (SCHEDULED). 2021-09 is
        # published and two watch runs start at once.
        stop_group(worker)
        worker = None
        by_hand = make_ok(run_make("run", "DATE=2021-10-15", env=env, timeout=60))
        assert "created flow run 'train-2021-10-15'" in by_hand
        fhv_server.serve_file(months["2021-09"].name, months["2021-09"])
        # Before it, an announcement whose date is trained already: the trigger ignores it.
        _post_announcement(env, "2021-07", "2021-08-15", trained=True)
        make_ok(run_make("watch", env=env, timeout=60))
        make_ok(run_make("watch", env=env, timeout=60))
        pair = [r for r in _watch_runs(env) if r["parameters"]][-2:]
        once = subprocess.Popen(  # one worker poll: runs both watch runs, then exits
            ["make", "--no-print-directory", "-C", str(ROOT), "worker", "ONCE=1"],
            env=clean_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert once.wait(timeout=180) == 0
        finally:
            stop_group(once)
        assert all(_run(env, r["id"])["state_type"] == "COMPLETED" for r in pair)
        # The server stores events a moment after the runs that emitted them end: wait for it.
        events = wait_for(lambda: _events_if(env, 2), 60, "2021-09's announcement to be stored")
        assert [e["payload"]["month"] for e in events] == ["2021-08", "2021-09"]  # one id
        assert events[1]["resource"]["fhv.trained"] == "true"  # 2021-10-15 is in flight
        [mine] = _training_runs(env, "2021-10-15")  # no second run
        # The same month announced again, unmarked (as if the run had not been seen), and
        # that event sent twice: one run of the trigger (the server acts on an id once); it
        # waits while no worker polls, then does not train the date twice.
        again = str(uuid.uuid4())
        for _ in range(2):
            _post_announcement(env, "2021-09", "2021-10-15", trained=False, event_id=again)
        waiting = wait_for(
            lambda: [r for r in _training_runs(env, "2021-10-15") if r["id"] != mine["id"]],
            CREATED_WITHIN,
            "the trigger's run for 2021-10-15",
        )[0]
        assert _run(env, waiting["id"])["state_type"] == "SCHEDULED"  # no worker: it waits
        worker = _start_worker(env, worker_log)
        skipped = wait_for(
            lambda: (run := _run(env, waiting["id"]))["end_time"] and run,
            180,
            "the trigger's run of 2021-10-15 to end",
        )
        assert skipped["state_type"] == "COMPLETED"
        assert "already trained by run 'train-2021-10-15'" in skipped["state"]["message"]
        assert skipped["name"] == "train-2021-10-15"
        assert "event" in skipped["tags"]
        assert _run(env, mine["id"])["state_type"] == "COMPLETED"
        assert "manual" in _run(env, mine["id"])["tags"]
        assert len(_training_runs(env, "2021-10-15")) == 2  # by hand, and one of the trigger

        # 4. DATA_URL unreachable: the watch run fails; one line names the URL; `make alerts`
        # posts it once.
        fhv_server.httpd.shutdown()
        fhv_server.httpd.server_close()
        with Receiver() as hook:
            alerts = make_ok(run_make("alerts", f"WEBHOOK_URL={hook.url}", env=env, timeout=60))
            assert "automation 'fhv-watch: alert on failed or crashed runs'" in alerts
            failed = run_make("watch", "WATCH=1", env=env, timeout=180)
            [post] = wait_for(lambda: list(hook.posts), 60, "the alert of the failed watch run")
        assert "fhv-watch" in post["json"]["text"]
        assert f"cannot reach DATA_URL: {fhv_server.url}/" in post["json"]["text"]
        assert failed.returncode != 0
        errors = [x for x in failed.stderr.splitlines() if x.startswith("error:")]
        assert len(errors) == 1, failed.stderr
        assert "FAILED" in errors[0]
        assert f"cannot reach DATA_URL: {fhv_server.url}/fhv_tripdata_2021-10.parquet" in errors[0]
        assert "Traceback" not in failed.stderr
        assert len(_events(env)) == 2
        events_out = make_ok(run_make("events", env=env, timeout=60))
        # The trained announcement (posted before 2021-09's, whose run came long ago) started
        # nothing.
        assert _training_runs(env, "2021-08-15") == []
        [line] = [x for x in events_out.splitlines() if "fhv.month.2021-08" in x]
        assert f"-> run {trained['name']!r} COMPLETED" in line
        assert "fhv.watch.checked fhv.watch 2021-10: not published yet (HTTP 404)" in events_out
        assert f"events: UI http://127.0.0.1:{env['PREFECT_PORT']}/events" in events_out
    finally:
        stop_group(worker)


def test_watch_and_events_without_a_server_or_with_a_bad_knob_say_so_in_one_line(prefect_lab):
    api = lab_api(prefect_lab)
    # (bad WATCH_AHEAD / WATCH_FROM values: in-process, tests/unit/test_bad_input.py)
    for args in (("watch",), ("events",), ("watch", "WATCH_AHEAD=zero")):
        result = run_make(*args, env=prefect_lab, timeout=60)
        assert result.returncode != 0
        errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert len(errors) == 1, result.stderr
        assert "Traceback" not in result.stderr
        if "WATCH_AHEAD=zero" in args:
            assert errors[0] == "error: WATCH_AHEAD='zero' is not a whole number >= 1 (e.g. 3)"
        else:
            assert (
                errors[0] == f"error: no Prefect server answers at {api}: run `make server` first"
            )
