"""The watch flow's and `make watch` / `make events`' conversations with the Prefect API.

Import only after the environment is set (Prefect reads its settings at import). Uses
Prefect's client (`fhvlab.orchestration.api`), events, and the one question of
`fhvlab.orchestration.trained`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
)
from prefect.client.schemas.objects import FlowRun

from fhvlab.orchestration import api, trained
from fhvlab.orchestration import watch as w

WATCH_FLOW = "fhv-watch"
WATCH_DEPLOYMENT = "fhv-watch"
EVENT_LOOKBACK = timedelta(days=180)  # the server keeps events 7 days by default


def read_events(
    prefix: str = "fhv.", limit: int = 50, related_id: str | None = None
) -> list[dict[str, Any]]:
    """Recent events whose name starts with `prefix` (and related to `related_id`), newest
    first; at most 50 (the API's page size)."""
    return api.read_events(datetime.now(UTC) - EVENT_LOOKBACK, prefix, limit, related_id)


def announced_by_events() -> list[str]:
    """Months with a fhv.month.published event still on the server (kept ~7 days)."""
    events = read_events(prefix=w.EVENT, limit=50)
    months = {w.month_of_resource(e["resource"]["prefect.resource.id"]) for e in events}
    return sorted(str(m) for m in months if m is not None)


def busy(day: date) -> trained.DateRun | None:
    """The one question for one date: its COMPLETED run, else its run in flight, else None."""
    with api.client() as http:
        found = trained.answer(trained.ask(http, [day]))
    return found.completed.get(day) or found.in_flight.get(day)


def runs_since(since: datetime) -> list[FlowRun]:
    """Training runs expected to start after `since` (a trigger's run starts at creation,
    and has its date's name only once it starts), oldest first."""
    with api.client() as http:
        runs = http.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[trained.TRAIN_FLOW])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=since)
            ),
            limit=200,
        )
    return sorted(runs, key=lambda r: r.created or since)


CREATED_WITHIN = 60.0  # seconds an announced month's training run may take to appear


def follow_training(
    events: list[dict[str, Any]], timeout: float
) -> Iterator[tuple[str, FlowRun, str | None]]:
    """The training runs that announcements started, for `make watch WATCH=1`.

    For each event not marked trained, in date order: (date, run, None) once the trigger's
    run for its date exists, then (date, run, final state type, or "not final yet" when
    `timeout` seconds are over). No run within CREATED_WITHIN seconds: a WatchError.
    """
    wanted = {
        e["payload"]["training_date"]: datetime.fromisoformat(e["occurred"])
        for e in events
        if e["resource"].get("fhv.trained") != "true"
    }
    deadline = time.monotonic() + timeout
    created_deadline = time.monotonic() + CREATED_WITHIN
    for day, occurred in sorted(wanted.items()):
        while not (runs := [r for r in runs_since(occurred) if r.parameters.get("date") == day]):
            if time.monotonic() > created_deadline:
                raise w.WatchError(
                    f"no training run for {day} within {CREATED_WITHIN:.0f} s of its event: "
                    "is the trigger there? (make deploy; UI: Automations)"
                )
            time.sleep(1.0)
        run = runs[0]
        yield day, run, None
        done = api.final_run(run.id, max(1.0, deadline - time.monotonic()))
        yield day, done or run, done.state_type.value if done is not None else "not final yet"
