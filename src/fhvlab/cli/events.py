"""`make watch` and `make events`: the command-line edge of runs started by events.

`python -m fhvlab watch [--watch]`: a run of the fhv-watch deployment now; with --watch,
wait for it, print the months it announced and the training runs their events started.
`python -m fhvlab events`: the lab's recent `fhv.*` events, one line each, and the UI link.
Heavy imports (Prefect) happen inside the commands.
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from typing import Any
from uuid import UUID

from fhvlab import settings
from fhvlab.cli import common
from fhvlab.data.months import parse_month
from fhvlab.errors import LabError
from fhvlab.local import server


def _published_by(run_id: Any, name: str = "fhv.month.published") -> list[dict[str, Any]]:
    """The events named `name` a flow run emitted, oldest first."""
    from fhvlab.orchestration import api

    mine = api.read_events(name, related_id=f"prefect.flow-run.{run_id}")
    return sorted(mine, key=lambda e: e["occurred"])


def _line(event: dict[str, Any]) -> str:
    payload = event.get("payload") or {}
    trained = event["resource"].get("fhv.trained") == "true"
    return (
        f"{payload.get('month')}: {payload.get('size'):,} bytes, Last-Modified "
        f"{payload.get('last_modified') or '?'}; training date {payload.get('training_date')}"
        + (" (already trained, or in flight: not trained again)" if trained else "")
    )


def cmd_watch(args: argparse.Namespace) -> int:
    """A run of fhv-watch now; with --watch, its outcome and the training runs it caused."""
    from fhvlab.orchestration import watch as w

    ahead = w.parse_ahead(args.ahead)  # bad knobs: one line, nothing contacted
    if args.watch_from:
        parse_month(args.watch_from)
    if args.check:
        return 0
    server.require_api(common.api_url(args))
    from fhvlab.orchestration import api, deployments

    parameters: dict[str, Any] = {"ahead": ahead, "watch_from": args.watch_from or None}
    run = deployments.run_now(w.DEPLOYMENT, parameters)
    ui = common.ui_base(args)
    print(
        f"watch: flow run {run.name!r} of {w.DEPLOYMENT}; UI {ui}/runs/flow-run/{run.id}",
        flush=True,
    )
    if not args.watch:
        print("watch: a worker runs it (make worker, make up); WATCH=1 waits for what it announces")
        return 0
    with api.client() as http:
        if not api.workers_online(http, settings.current().work_pool):
            print("watch: no worker polls the pool yet: start one with `make worker`; waiting")
    done = api.final_run(run.id, args.watch_timeout)
    if done is None:
        raise LabError(f"watch run {run.name!r} not final after {args.watch_timeout:.0f} s")
    if done.state_type.value != "COMPLETED":
        message = (done.state.message if done.state else "") or ""
        raise LabError(f"watch run {run.name!r} {done.state_type.value}: {message}")
    # The run's last event is fhv.watch.checked: once the server has stored it (in batches,
    # within seconds), it has the run's announcements too.
    checked = _published_by(run.id, w.CHECKED_EVENT)
    stored_by = time.monotonic() + 60  # at most; a second or two on a quiet machine
    while not checked and time.monotonic() < stored_by:
        time.sleep(1.0)
        checked = _published_by(run.id, w.CHECKED_EVENT)
    events = _published_by(run.id)
    if checked:
        print(f"watch: {w.checked_line(checked[-1].get('payload') or {})}")
    if not events:
        print("watch: nothing new announced")
        return 0
    for event in events:
        print(f"watch: announced {_line(event)}")
    _follow_training(events, args.watch_timeout, ui)
    return 0


CREATED_WITHIN = 60.0  # seconds an announced month's training run may take to appear


def _follow_training(events: list[dict[str, Any]], timeout: float, ui: str) -> None:
    """Print the training run each announcement not marked trained started, in date order,
    and its outcome (or "not final yet" after `timeout` seconds). No run within
    CREATED_WITHIN seconds of its event: a WatchError."""
    from fhvlab.orchestration import api, trained
    from fhvlab.orchestration import watch as w

    wanted = {
        e["payload"]["training_date"]: e
        for e in events
        if e["resource"].get("fhv.trained") != "true"
    }
    deadline = time.monotonic() + timeout
    created_deadline = time.monotonic() + CREATED_WITHIN
    bad = []
    for day, event in sorted(wanted.items()):
        while True:  # the one question for the date: its run created after the event
            with api.client() as http:
                runs = trained.ask(http, [date.fromisoformat(day)])
            if run := trained.first_after(runs, day, event):
                break
            if time.monotonic() > created_deadline:
                raise w.WatchError(
                    f"no training run for {day} within {CREATED_WITHIN:.0f} s of its event: "
                    "is the trigger there? (make deploy; UI: Automations)"
                )
            time.sleep(1.0)
        print(f"watch: training run {run.name!r} for {day} created by the automation; waiting")
        done = api.final_run(UUID(run.id), max(1.0, deadline - time.monotonic()))
        state = done.state_type.value if done is not None else "not final yet"
        name = done.name if done is not None else run.name  # named train-DATE once started
        print(f"watch: training run {name!r} for {day}: {state}; UI {ui}/runs/flow-run/{run.id}")
        if state != "COMPLETED":
            bad.append(day)
    if bad:
        raise LabError(f"training for {', '.join(bad)} did not complete")


def cmd_events(args: argparse.Namespace) -> int:
    """The lab's recent fhv.* events, one line each (newest last), and where to see them."""
    server.require_api(common.api_url(args))
    from fhvlab.orchestration import api, trained
    from fhvlab.orchestration import watch as w

    events = sorted(api.read_events("fhv.", args.limit), key=lambda e: e["occurred"])
    days = {(e.get("payload") or {}).get("training_date") for e in events} - {None}
    with api.client() as http:  # the one question: each training date's runs, by name
        runs = trained.ask(http, sorted(date.fromisoformat(d) for d in days))
    for event in events:
        payload = event.get("payload") or {}
        if event["event"] == w.CHECKED_EVENT:
            details = w.checked_line(payload)
        else:
            details = " ".join(
                f"{k}={payload[k]}"
                for k in ("size", "last_modified", "training_date")
                if k in payload
            )
            if mark := event["resource"].get("fhv.trained"):
                details += f" trained={mark}"
            if run := trained.first_after(runs, payload.get("training_date"), event):
                details += f" -> run {run.name!r} {run.state}"
        print(
            f"events: {event['occurred'][:19]}Z {event['event']} "
            f"{event['resource']['prefect.resource.id']} {details}"
        )
    if not events:
        print("events: no fhv.* event yet (make watch announces newly published months)")
    ui = common.ui_base(args)
    print(f"events: UI {ui}/events (event feed), {ui}/automations (the trigger), {ui}/runs")
    return 0


def add_parsers(sub: argparse._SubParsersAction, knobs: settings.Settings) -> None:
    """Add the `watch` and `events` commands to `python -m fhvlab`."""
    watch = sub.add_parser("watch", help="a run of the fhv-watch deployment now (make watch)")
    common.add_api_arg(watch)
    watch.add_argument("--ahead", default=knobs.watch_ahead)
    watch.add_argument("--from", dest="watch_from", default=knobs.watch_from)
    watch.add_argument("--watch", action="store_true", help="wait and print what it caused")
    watch.add_argument("--watch-timeout", type=float, default=knobs.watch_timeout, help="seconds")
    watch.add_argument("--check", action="store_true", help="only validate the knobs")
    watch.set_defaults(func=cmd_watch)

    events = sub.add_parser("events", help="the lab's recent fhv.* events (make events)")
    common.add_api_arg(events)
    events.add_argument("--limit", type=int, default=50)
    events.set_defaults(func=cmd_events)
