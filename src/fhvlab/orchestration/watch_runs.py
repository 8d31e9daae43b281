"""The watch flow's and `make watch` / `make events`' conversations with the Prefect API.

Import only after the environment is set (Prefect reads its settings at import). Uses
Prefect's client (`fhvlab.orchestration.api`), Variables and events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.variables import Variable

from fhvlab.orchestration import api
from fhvlab.orchestration import watch as w

TRAINING_FLOW = "fhv-duration-training"
WATCH_FLOW = "fhv-watch"
WATCH_DEPLOYMENT = "fhv-watch"
EVENT_LOOKBACK = timedelta(days=180)  # the server keeps events 7 days by default


def ensure_limit(name: str = w.LIMIT) -> str:
    """The global concurrency limit `name` with 1 slot, created if missing (race-safe)."""
    with api.client() as http:
        try:
            found = http.read_global_concurrency_limit_by_name(name)
            return f"global concurrency limit {name!r} = {found.limit}"
        except ObjectNotFound:
            pass
        try:
            http.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except (ObjectAlreadyExists, httpx.HTTPStatusError) as exc:
            # another watch run created it between our read and our create
            if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code != 409:
                raise
            return f"global concurrency limit {name!r} created by another run"
    return f"created global concurrency limit {name!r} = 1"


def read_record() -> dict[str, Any]:
    """The announced-months record kept in the Prefect Variable (empty if none)."""
    value = Variable.get(w.VARIABLE, default=None)
    return dict(value) if isinstance(value, dict) else {}


def save_record(record: dict[str, Any]) -> None:
    """Store the announced-months record in the Prefect Variable."""
    Variable.set(w.VARIABLE, record, tags=["fhv-lab"], overwrite=True)


def read_events(
    prefix: str = "fhv.",
    ids: Iterable[str] = (),
    limit: int = 50,
    since: datetime | None = None,
    related_id: str | None = None,
) -> list[dict[str, Any]]:
    """Recent events whose name starts with `prefix` (and with these ids, or related to
    `related_id`), newest first; at most 50 (the API's page size)."""
    since = since or datetime.now(UTC) - EVENT_LOOKBACK
    return api.read_events(since, prefix, ids, limit, related_id)


def announced_by_events() -> list[str]:
    """Months with a fhv.month.published event still on the server (kept ~7 days)."""
    events = read_events(prefix=w.EVENT, limit=50)
    months = {w.month_of_resource(e["resource"]["prefect.resource.id"]) for e in events}
    return sorted(str(m) for m in months if m is not None)


def wait_until_stored(event_id: str, timeout: float = 30.0) -> float:
    """Wait (bounded) until the server has stored the event; the seconds it took.

    emit_event hands the event to a background sender; reading it back before recording
    the month as announced means a run that dies in between announces it again next time
    (at least once) rather than never (and a date trained already is not re-run).
    """
    start = time.monotonic()
    while not read_events(prefix=w.EVENT, ids=[event_id], limit=1):
        if time.monotonic() - start > timeout:
            raise w.WatchError(
                f"event {event_id} did not reach the Prefect server within {timeout:.0f} s; "
                "the month is not recorded as announced and the next watch run tries again"
            )
        time.sleep(0.5)
    return time.monotonic() - start


def run_date(run: FlowRun) -> str | None:
    """The date a training run trains for: its `date` parameter, else its scheduled day."""
    value = (run.parameters or {}).get("date")
    if value:
        return str(value)
    when = run.expected_start_time
    return when.date().isoformat() if when else None


PAGE = 200  # flow runs per API call (the API's maximum)
MAX_PAGES = 25  # 5,000 runs of the training flow at most


def _training_flow_runs(completed_only: bool = False) -> list[FlowRun]:
    """Runs of the training flow (all, or COMPLETED only), page by page, newest first."""
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
    found: list[FlowRun] = []
    with api.client() as http:
        for page in range(MAX_PAGES):
            runs = http.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[TRAINING_FLOW])),
                flow_run_filter=FlowRunFilter(state=state) if completed_only else None,
                sort=FlowRunSort.ID_DESC,
                limit=PAGE,
                offset=page * PAGE,
            )
            found += runs
            if len(runs) < PAGE:
                break
    return found


def completed_dates(dates: Iterable[date]) -> set[str]:
    """Which of `dates` already have a COMPLETED run of the training flow (any way started)."""
    wanted = {d.isoformat() for d in dates}
    if not wanted:
        return set()
    return {d for r in _training_flow_runs(completed_only=True) if (d := run_date(r)) in wanted}


def dates_with_runs(dates: Iterable[str]) -> set[str]:
    """Which of `dates` have a run of the training flow in any state."""
    wanted = set(dates)
    if not wanted:
        return set()
    return {d for r in _training_flow_runs() if (d := run_date(r)) in wanted}


def training_runs(dates: Iterable[str], created_after: datetime) -> list[FlowRun]:
    """Runs of the training flow for `dates` created after `created_after`, oldest first."""
    wanted = set(dates)
    found = [
        r
        for r in _training_flow_runs()
        if run_date(r) in wanted and r.created is not None and r.created >= created_after
    ]
    return sorted(found, key=lambda r: r.created or created_after)


def training_runs_by_automation() -> list[FlowRun]:
    """Runs of the training flow that an automation (a trigger) created."""
    return [
        r
        for r in _training_flow_runs()
        if r.created_by is not None and str(r.created_by.type).upper().endswith("AUTOMATION")
    ]


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
        while not (runs := training_runs([day], occurred)):
            if time.monotonic() > created_deadline:
                raise w.WatchError(
                    f"no training run for {day} within {CREATED_WITHIN:.0f} s of its event: "
                    "is the trigger there? (make deploy; UI: Automations)"
                )
            time.sleep(1.0)
        run = runs[0]
        yield day, run, None
        done = api.final_run(run.id, max(1.0, deadline - time.monotonic()))
        yield day, run, done.state_type.value if done is not None else "not final yet"
