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

from fhvlab.orchestration import api, deployments, trained
from fhvlab.orchestration import backfill as bf


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
    """Ask which dates need a run; one backfill run for the range if any does (the run
    asks again when it starts, and decides what to run)."""
    found = trained.answer(trained.ask(http, dates))
    to_run = found.to_run(dates, rerun)
    parameters = {
        "dates": [d.isoformat() for d in dates],
        "range_from": first.isoformat(),
        "range_to": last.isoformat(),
        "concurrency": concurrency,
        "rerun": rerun,
    }
    name = f"{bf.PARENT_FLOW}/{bf.PARENT_DEPLOYMENT}"
    options = {"flow_run_name": f"backfill-{first}_{last}", "tags": [bf.TAG]}
    parent = deployments.run_now(name, parameters, **options) if to_run else None
    return Submitted(list(dates), found, to_run, parent)


def await_range(
    http: SyncPrefectClient,
    submitted: Submitted,
    first: date,
    last: date,
    folder: Path,
    timeout: float,
) -> tuple[bool, list[dict[str, Any]], Path, Path]:
    """Wait for the range's runs (False: the wait timed out), then its summary rows and
    files (the parent's own, if it ended normally)."""
    finished = api.wait_for_runs(submitted.waiting_for(), timeout)
    parent = submitted.parent
    ended = http.read_flow_run(parent.id) if parent and finished else None
    if ended is not None and ended.state_type in (StateType.COMPLETED, StateType.FAILED):
        csv_path, png_path = bf.report_paths(folder, first, last)
        rows = report_rows(http, submitted.dates, folder)  # its summary: no second copy
    else:
        rows, csv_path, png_path = build_report(http, submitted.dates, first, last, folder)
    return finished, rows, csv_path, png_path
