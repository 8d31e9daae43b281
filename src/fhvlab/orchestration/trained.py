"""One training run per date: its name, its origin, and the one question asked of the server.

Every training run is named after its date (`train-2021-08-15`), whatever started it; its
origin is a tag (schedule, event, backfill, manual). "Which of these dates have a COMPLETED
run, and which have one in flight?" is `ask()`: server-side filters by run name (a run is
named when it starts; `make run` names its run when it creates it) and, for runs no worker
started yet, by state. The
backfill, the watch (before it announces a month), the training flow started by the
schedule or the trigger, and `make run` all use it. Prefect is imported only by `ask()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

TRAIN_FLOW = "fhv-duration-training"
PREFIX = "train-"
ORIGINS = ("schedule", "event", "backfill", "manual")
IN_FLIGHT = frozenset({"SCHEDULED", "PENDING", "RUNNING"})
PAGE = 20  # names per API call (at most 200 runs each)


def run_name(day: date | str) -> str:
    """The flow-run name of a training run: train-YYYY-MM-DD."""
    return f"{PREFIX}{day if isinstance(day, str) else day.isoformat()}"


def date_of_run_name(name: str) -> date | None:
    """The date in a name written by `run_name`, else None."""
    if not name.startswith(PREFIX):
        return None
    try:
        return date.fromisoformat(name.removeprefix(PREFIX))
    except ValueError:
        return None


def origin(tags: Iterable[str], by_automation: bool, auto_scheduled: bool) -> str:
    """What started a run: its origin tag if it has one, else what the server says."""
    found = [t for t in tags if t in ORIGINS]
    if found:
        return found[0]
    if by_automation:
        return "event"
    return "schedule" if auto_scheduled else "manual"


def asks(deployment_id: Any, tags: Iterable[str]) -> bool:
    """Whether a training run asks the one question when it starts: a deployment's run
    that no one asked for by hand (the schedule's, the trigger's). Subflow runs of a
    backfill (their parent asked) and `make train` / `make run` (you asked) do not."""
    return deployment_id is not None and not set(tags) & {"manual", "backfill"}


@dataclass(frozen=True)
class DateRun:
    """One training run as the API shows it (state type upper-case, e.g. COMPLETED)."""

    run_date: date
    state: str
    created: datetime
    id: str = ""
    start: datetime | None = None
    end: datetime | None = None
    seconds: float | None = None
    message: str = ""
    name: str = ""


@dataclass
class Answer:
    """The answer for a set of dates: each date's COMPLETED run, or run in flight."""

    completed: dict[date, DateRun] = field(default_factory=dict)
    in_flight: dict[date, DateRun] = field(default_factory=dict)
    latest: dict[date, DateRun] = field(default_factory=dict)

    def to_run(self, days: Sequence[date], rerun: str = "failed") -> list[date]:
        """Dates to train: none in flight; with rerun 'failed', none COMPLETED either."""
        skip = set(self.in_flight) | (set(self.completed) if rerun != "all" else set())
        return [d for d in days if d not in skip]

    def shown(self, day: date) -> DateRun | None:
        """The run that stands for a date: its COMPLETED one, else the one in flight, else
        the latest."""
        return self.completed.get(day) or self.in_flight.get(day) or self.latest.get(day)


def answer(runs: Iterable[DateRun], exclude: str = "") -> Answer:
    """Sort runs into the latest COMPLETED, in-flight and latest run of each date."""
    found = Answer()
    for run in sorted(runs, key=lambda r: r.created):
        if run.id and run.id == exclude:
            continue
        found.latest[run.run_date] = run
        if run.state == "COMPLETED":
            found.completed[run.run_date] = run
        elif run.state in IN_FLIGHT:
            found.in_flight[run.run_date] = run
    return found


def first_after(
    runs: Iterable[DateRun], day: str | None, event: Mapping[str, Any]
) -> DateRun | None:
    """The first run of `day` created at or after `event` occurred (the run it started), or
    None."""
    occurred = datetime.fromisoformat(event["occurred"].replace("Z", "+00:00"))
    mine = [r for r in runs if r.run_date.isoformat() == day and r.created >= occurred]
    return min(mine, key=lambda r: r.created, default=None)


def parse_rerun(text: str) -> str:
    """RERUN as 'failed' or 'all'; BadInput otherwise."""
    from fhvlab.errors import BadInput

    value = str(text).strip().lower()
    if value not in ("failed", "all"):
        raise BadInput(f"RERUN={text!r} is not 'failed' or 'all' (default: failed)")
    return value


def _date_run(run: Any, run_date: date | None = None) -> DateRun | None:
    """The plain view of a Prefect FlowRun of `run_date` (default: the date in its name)."""
    run_date = run_date or date_of_run_name(run.name)
    if run_date is None or run.state_type is None:
        return None
    seconds = None
    if run.start_time and run.end_time:
        seconds = (run.end_time - run.start_time).total_seconds()
    return DateRun(
        run_date=run_date,
        state=run.state_type.value,
        created=run.created or datetime.min,
        id=str(run.id),
        start=run.start_time,
        end=run.end_time,
        seconds=seconds,
        message=(run.state.message if run.state and run.state.message else ""),
        name=run.name,
    )


def waiting_date(run: Any) -> date | None:
    """The date of a run not started yet: its `date` parameter, else its scheduled day."""
    value = (run.parameters or {}).get("date")
    when = run.expected_start_time
    try:
        return date.fromisoformat(str(value)) if value else (when.date() if when else None)
    except ValueError:
        return None


def ask(http: Any, days: Sequence[date]) -> list[DateRun]:
    """The training runs of `days`, read from the server (Prefect's client `http`).

    By name (a run takes its date's name when it starts, or when `make run` creates it),
    and, for runs the schedule or the trigger created and no worker started yet, by state
    (SCHEDULED, PENDING) and their date parameter or scheduled day.
    """
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )

    flow = FlowFilter(name=FlowFilterName(any_=[TRAIN_FLOW]))
    names = [run_name(d) for d in days]
    found: dict[str, DateRun] = {}
    for i in range(0, len(names), PAGE):
        named = FlowRunFilter(name=FlowRunFilterName(any_=names[i : i + PAGE]))
        for run in http.read_flow_runs(flow_filter=flow, flow_run_filter=named, limit=200):
            if (plain := _date_run(run)) is not None:
                found[plain.id] = plain
    waiting = FlowRunFilterStateType(any_=["SCHEDULED", "PENDING"])
    not_started = FlowRunFilter(state=FlowRunFilterState(type=waiting))
    for run in http.read_flow_runs(flow_filter=flow, flow_run_filter=not_started, limit=200):
        if (day := waiting_date(run)) in days and (plain := _date_run(run, day)) is not None:
            found.setdefault(plain.id, plain)
    return list(found.values())


@dataclass(frozen=True)
class Skip:
    """Why a schedule or event run does not train: its date is trained, or in flight."""

    trained: bool
    message: str


def skip_for(found: Answer, day: date, run_id: str, started: datetime | None) -> Skip | None:
    """A run of `day` (started at `started`) skips when another run of the date COMPLETED,
    or started before it and is still running (ties broken by run id)."""
    if done := found.completed.get(day):
        return Skip(True, f"{day} is already trained by run {done.name!r} ({done.id})")
    other = found.in_flight.get(day)
    if other is None or other.start is None or started is None:
        return None
    if (other.start, other.id) < (started, run_id):
        return Skip(False, f"{day} is being trained by run {other.name!r} ({other.id})")
    return None


def check_run(run_id: Any, day: str) -> tuple[str, Skip | None]:
    """Tag the flow run with its origin; for a schedule or event run, whether to skip."""
    from fhvlab.orchestration import api

    with api.client() as http:
        run = http.read_flow_run(run_id)
        by_automation = "AUTOMATION" in str(getattr(run.created_by, "type", "")).upper()
        where = origin(run.tags, by_automation, bool(run.auto_scheduled))
        if where not in run.tags:
            http.update_flow_run(run_id, tags=[*run.tags, where])
        if where in ("manual", "backfill"):
            return where, None
        when = date.fromisoformat(day)
        found = answer(ask(http, [when]), exclude=str(run_id))
    return where, skip_for(found, when, str(run_id), run.start_time)
