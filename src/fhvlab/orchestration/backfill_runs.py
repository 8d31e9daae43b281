"""Backfills against the Prefect API: read the per-date runs, create the parent run, wait
for it, and write the range's summary.

Import only after the environment is set (Prefect reads its settings at import).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

from fhvlab.errors import LabError
from fhvlab.orchestration import api
from fhvlab.orchestration import backfill as bf

ACTIVE = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
]


def remove_old_limit(http: SyncPrefectClient, name: str = bf.LIMIT_NAME) -> str | None:
    """Delete the global concurrency limit earlier versions of the lab used; say so if any.

    Backfills are capped by the `fhv-backfill` deployment's own concurrency limit now.
    """
    try:
        http.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return None
    http.delete_global_concurrency_limit_by_name(name)
    return f"deleted the old global concurrency limit {name!r} (the deployment's limit caps now)"


def _seconds(run: FlowRun) -> float | None:
    if run.start_time and run.end_time:
        return (run.end_time - run.start_time).total_seconds()
    if run.total_run_time:
        return run.total_run_time.total_seconds()
    return None


def to_date_run(run: FlowRun) -> bf.DateRun | None:
    """The plain view of a per-date run, or None if its name is not backfill-DATE."""
    run_date = bf.date_of_run_name(run.name)
    if run_date is None or run.state_type is None:
        return None
    return bf.DateRun(
        run_date=run_date,
        state=run.state_type.value,
        created=run.created or datetime.min,
        id=str(run.id),
        start=run.start_time,
        end=run.end_time,
        seconds=_seconds(run),
        message=(run.state.message if run.state and run.state.message else ""),
    )


def read_date_runs(http: SyncPrefectClient, dates: Sequence[date]) -> list[bf.DateRun]:
    """Every per-date backfill run (flow fhv-duration-training, tag backfill) of `dates`."""
    found: list[bf.DateRun] = []
    names = [bf.run_name(d) for d in dates]
    for i in range(0, len(names), 50):
        runs = http.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[bf.TRAIN_FLOW])),
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=names[i : i + 50]),
                tags=FlowRunFilterTags(all_=[bf.TAG]),
            ),
            limit=200,
        )
        found += [r for r in map(to_date_run, runs) if r is not None]
    return found


def read_claims(http: SyncPrefectClient) -> list[bf.Claim]:
    """Parent backfill runs that are not final, with the dates they were asked to run."""
    runs = http.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[bf.PARENT_FLOW])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ACTIVE))
        ),
        limit=200,
    )
    claims = []
    for run in runs:
        dates = frozenset(date.fromisoformat(d) for d in run.parameters.get("dates", []))
        claims.append(bf.Claim(dates, run.created or datetime.min, str(run.id)))
    return claims


def dates_still_to_run(days: Sequence[str]) -> tuple[list[str], dict[date, str]]:
    """Of `days` (YYYY-MM-DD), those whose latest run is neither COMPLETED nor active.

    Also returns the dates left alone, with their latest run's state. Called by a backfill
    run when it starts: a run enqueued behind another one skips what that one did.
    """
    wanted = [date.fromisoformat(d) for d in days]
    with api.client() as http:
        todo, skipped = bf.still_to_run(wanted, read_date_runs(http, wanted))
    return [d.isoformat() for d in todo], skipped


def create_parent(
    http: SyncPrefectClient,
    dates: Sequence[date],
    first: date,
    last: date,
    range_dates: Sequence[date],
    concurrency: int,
    key: str,
) -> FlowRun:
    """One run of the backfill deployment for `dates` (the same `key` returns the same run)."""
    name = f"{bf.PARENT_FLOW}/{bf.PARENT_DEPLOYMENT}"
    try:
        deployment = http.read_deployment_by_name(name)
    except ObjectNotFound:
        raise LabError(f"no deployment {name}: run `make deploy` first") from None
    return http.create_flow_run_from_deployment(
        deployment.id,
        parameters={
            "dates": [d.isoformat() for d in dates],
            "range_from": first.isoformat(),
            "range_to": last.isoformat(),
            "range_dates": [d.isoformat() for d in range_dates],
            "concurrency": concurrency,
        },
        name=f"backfill-{first}_{last}-{len(dates)}-dates",
        tags=[bf.TAG],
        idempotency_key=key,
    )


def read_metrics(folder: Path, dates: Sequence[date]) -> dict[date, dict[str, Any]]:
    """metrics-DATE.json of each date that has one."""
    found = {}
    for d in dates:
        path = folder / f"metrics-{d.isoformat()}.json"
        if path.is_file():
            found[d] = json.loads(path.read_text())
    return found


def report_rows(
    http: SyncPrefectClient, dates: Sequence[date], folder: Path
) -> list[dict[str, Any]]:
    """The range's summary rows (one per date), from the runs in the API and metrics files."""
    latest = bf.latest_by_date(read_date_runs(http, dates))
    return bf.summary_rows(dates, latest, read_metrics(folder, dates))


def summary_written_by(run: FlowRun, csv_path: Path, png_path: Path) -> bool:
    """Whether the parent `run` ended normally and wrote the range's CSV and PNG itself."""
    if run.state_type not in (StateType.COMPLETED, StateType.FAILED) or run.start_time is None:
        return False
    started = run.start_time.timestamp()
    return all(p.is_file() and p.stat().st_mtime >= started for p in (csv_path, png_path))


def build_report(
    http: SyncPrefectClient,
    dates: Sequence[date],
    first: date,
    last: date,
    folder: Path,
) -> tuple[list[dict[str, Any]], Path, Path]:
    """Write the range's CSV and PNG and a table artifact; return the rows and paths.

    Inside a flow run the table artifact belongs to that run (Prefect reads its context).
    """
    rows = report_rows(http, dates, folder)
    csv_path, png_path = bf.report_paths(folder, first, last)
    folder.mkdir(parents=True, exist_ok=True)
    bf.write_csv(rows, csv_path)
    title = bf.table_markdown_title(first, last, rows)
    bf.write_chart(rows, png_path, title)
    create_table_artifact(
        table=rows, key=f"backfill-{first.isoformat()}-{last.isoformat()}", description=title
    )
    return rows, csv_path, png_path


@dataclass(frozen=True)
class Submitted:
    """What `submit` decided and created for a range (`make backfill`)."""

    dates: list[date]
    decision: bf.Decision
    claims: list[bf.Claim]
    parent: FlowRun | None
    retired: str | None

    def waiting_for(self) -> list[UUID]:
        """The backfill runs that run this range's dates: this call's, or earlier ones'."""
        ids = [UUID(c.id) for c in self.claims if set(self.dates) & c.dates]
        if self.parent is not None and self.parent.id not in ids:
            ids.append(self.parent.id)
        return ids


def submit(
    http: SyncPrefectClient, dates: list[date], first: date, last: date, concurrency: int
) -> Submitted:
    """One backfill run for the range's dates not yet run (or failed); none if all are done.

    Idempotent: the run's idempotency key is made of the dates it runs and their runs, so
    a repeated call (or one racing it) gets the same run, not a second one.
    """
    retired = remove_old_limit(http)
    runs = read_date_runs(http, dates)
    claims = read_claims(http)
    decision = bf.decide(dates, runs, claims)
    parent = None
    if decision.to_run:
        key = bf.idempotency_key(decision.to_run, runs)
        parent = create_parent(http, decision.to_run, first, last, dates, concurrency, key)
    return Submitted(list(dates), decision, claims, parent, retired)


@dataclass(frozen=True)
class Outcome:
    """A watched range once its runs are final (or the wait timed out)."""

    finished: bool
    rows: list[dict[str, Any]]
    csv_path: Path
    png_path: Path

    def not_completed(self) -> list[str]:
        """The dates whose latest run is not COMPLETED."""
        return [r["date"] for r in self.rows if r["state"] != "COMPLETED"]


def await_range(
    http: SyncPrefectClient,
    submitted: Submitted,
    first: date,
    last: date,
    folder: Path,
    timeout: float,
) -> Outcome:
    """Wait for the range's backfill runs, then its summary (the parent's own, if it wrote one)."""
    finished = api.wait_for_runs(submitted.waiting_for(), timeout)
    csv_path, png_path = bf.report_paths(folder, first, last)
    parent = submitted.parent
    ended = http.read_flow_run(parent.id) if parent and finished else None
    if ended is not None and summary_written_by(ended, csv_path, png_path):
        rows = report_rows(http, submitted.dates, folder)  # its summary: no second copy
    else:
        rows, csv_path, png_path = build_report(http, submitted.dates, first, last, folder)
    return Outcome(finished, rows, csv_path, png_path)
