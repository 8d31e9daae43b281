"""Backfills against the Prefect API: submit the parent run, wait for it, and write the
range's summary. Which dates need a run is the one question (`fhvlab.orchestration.trained`).

Import only after the environment is set (Prefect reads its settings at import).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

from fhvlab.errors import LabError
from fhvlab.orchestration import api, trained
from fhvlab.orchestration import backfill as bf


def dates_to_run(days: Sequence[str], rerun: str) -> tuple[list[str], trained.Answer]:
    """Of `days` (YYYY-MM-DD), those to train now (`trained.Answer.to_run`), and the answer.

    Asked by a backfill run when it starts: one enqueued behind another skips what that
    one trained, and dates trained meanwhile by any other path.
    """
    wanted = [date.fromisoformat(d) for d in days]
    with api.client() as http:
        found = trained.answer(trained.ask(http, wanted))
    return [d.isoformat() for d in found.to_run(wanted, rerun)], found


def create_parent(
    http: SyncPrefectClient,
    dates: Sequence[date],
    first: date,
    last: date,
    concurrency: int,
    rerun: str,
) -> FlowRun:
    """One run of the backfill deployment for the range's `dates`; it decides what to run."""
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
            "concurrency": concurrency,
            "rerun": rerun,
        },
        name=f"backfill-{first}_{last}",
        tags=[bf.TAG],
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
    """The range's summary rows (one per date, whoever trained it), from the API and files."""
    found = trained.answer(trained.ask(http, dates))
    return bf.summary_rows(dates, found, read_metrics(folder, dates))


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
    """What `make backfill` found for a range, and the parent run it created (if any)."""

    dates: list[date]
    found: trained.Answer
    to_run: list[date]
    parent: FlowRun | None

    def waiting_for(self) -> list[UUID]:
        """The runs the range waits for: the parent, and runs in flight of dates not trained."""
        flying = self.found.in_flight
        ids = [UUID(r.id) for d, r in flying.items() if d not in self.found.completed]
        return ids + ([self.parent.id] if self.parent is not None else [])


def submit(
    http: SyncPrefectClient,
    dates: list[date],
    first: date,
    last: date,
    concurrency: int,
    rerun: str,
) -> Submitted:
    """Ask which dates need a run; one backfill run for the range if any does."""
    found = trained.answer(trained.ask(http, dates))
    to_run = found.to_run(dates, rerun)
    parent = create_parent(http, dates, first, last, concurrency, rerun) if to_run else None
    return Submitted(list(dates), found, to_run, parent)


@dataclass(frozen=True)
class Outcome:
    """A watched range once its runs are final (or the wait timed out)."""

    finished: bool
    rows: list[dict[str, Any]]
    csv_path: Path
    png_path: Path

    def not_completed(self) -> list[str]:
        """The dates whose run is not COMPLETED."""
        return [r["date"] for r in self.rows if r["state"] != "COMPLETED"]


def await_range(
    http: SyncPrefectClient,
    submitted: Submitted,
    first: date,
    last: date,
    folder: Path,
    timeout: float,
) -> Outcome:
    """Wait for the range's runs, then its summary (the parent's own, if it ended normally)."""
    finished = api.wait_for_runs(submitted.waiting_for(), timeout)
    parent = submitted.parent
    ended = http.read_flow_run(parent.id) if parent and finished else None
    if ended is not None and ended.state_type in (StateType.COMPLETED, StateType.FAILED):
        csv_path, png_path = bf.report_paths(folder, first, last)
        rows = report_rows(http, submitted.dates, folder)  # its summary: no second copy
    else:
        rows, csv_path, png_path = build_report(http, submitted.dates, first, last, folder)
    return Outcome(finished, rows, csv_path, png_path)
