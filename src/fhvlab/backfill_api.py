"""Backfills against the Prefect API: read the per-date runs, set the concurrency limit,
create the parent run, watch it, and write the range's summary.

Import only after the environment is set (Prefect reads its settings at import).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import (
    ArtifactCreate,
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
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

from fhvlab import backfill as bf
from fhvlab.errors import LabError

ACTIVE = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
]


def client() -> SyncPrefectClient:
    """A synchronous client of the API in PREFECT_API_URL."""
    return get_client(sync_client=True)


def ensure_limit(http: SyncPrefectClient, limit: int, name: str = bf.LIMIT_NAME) -> str:
    """Create or update the global concurrency limit `name`; say what changed."""
    try:
        current = http.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        http.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
        return f"created global concurrency limit {name!r} = {limit}"
    if current.limit == limit and current.active:
        return f"global concurrency limit {name!r} = {limit} (unchanged)"
    http.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(limit=limit, active=True)
    )
    return f"global concurrency limit {name!r}: {current.limit} -> {limit}"


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


def workers_online(http: SyncPrefectClient, pool: str) -> int:
    """How many workers of `pool` the server counts as online."""
    try:
        workers = http.read_workers_for_work_pool(pool)
    except ObjectNotFound:
        return 0
    return sum(1 for w in workers if str(getattr(w.status, "value", w.status)) == "ONLINE")


def wait_until_final(
    http: SyncPrefectClient,
    dates: Sequence[date],
    timeout: float,
    say: Callable[[str], None],
    poll: float = 1.0,
) -> bool:
    """Poll until every date's latest run is final; False if `timeout` ran out first."""
    deadline = time.monotonic() + timeout
    last_count = -1
    while True:
        runs = read_date_runs(http, dates)
        claims = read_claims(http)
        latest = bf.latest_by_date(runs)
        final = sum(1 for d in dates if d in latest and latest[d].state in bf.FINAL_STATES)
        if bf.all_final(dates, runs, claims):
            return True
        if final != last_count:
            say(f"{final} of {len(dates)} dates final")
            last_count = final
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


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


def wait_for_run(
    http: SyncPrefectClient, run_id: UUID, timeout: float, poll: float = 0.5
) -> FlowRun:
    """The flow run once final, or as it is when `timeout` runs out."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        run = http.read_flow_run(run_id)
        if (run.state and run.state.is_final()) or time.monotonic() >= deadline:
            return run
        time.sleep(poll)


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
    flow_run_id: str | None = None,
) -> tuple[list[dict[str, Any]], Path, Path]:
    """Write the range's CSV and PNG (and a table artifact); return the rows and paths."""
    rows = report_rows(http, dates, folder)
    csv_path, png_path = bf.report_paths(folder, first, last)
    folder.mkdir(parents=True, exist_ok=True)
    bf.write_csv(rows, csv_path)
    title = bf.table_markdown_title(first, last, rows)
    bf.write_chart(rows, png_path, title)
    http.create_artifact(
        ArtifactCreate(
            key=f"backfill-{first.isoformat()}-{last.isoformat()}",
            type="table",
            description=title,
            data=json.dumps(rows),
            flow_run_id=UUID(flow_run_id) if flow_run_id else None,
        )
    )
    return rows, csv_path, png_path
