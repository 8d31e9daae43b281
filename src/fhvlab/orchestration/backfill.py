"""Backfills: which dates a range covers, and the range's summary.

Plain functions (no server calls). Which dates to run is the one question of
`fhvlab.orchestration.trained`; `fhvlab.orchestration.backfill_runs` submits the parent run and
`flows/backfill.py` runs the dates; both hand their data to the functions here.
"""

from __future__ import annotations

import asyncio
import csv
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from fhvlab.data.months import months_for, parse_date
from fhvlab.errors import BadInput
from fhvlab.files import atomic_path
from fhvlab.orchestration import trained

MAX_DATES = 120
TAG = "backfill"
PARENT_FLOW = "fhv-backfill"
PARENT_DEPLOYMENT = "fhv-backfill"
CSV_COLUMNS = (
    "date",
    "state",
    "train_month",
    "val_month",
    "val_rmse",
    "train_rmse",
    "seconds",
    "flow_run",
    "message",
)


def parse_range(start: str, end: str) -> tuple[date, date]:
    """FROM and TO as dates, FROM not after TO; BadInput naming the knob otherwise."""
    if not start.strip() or not end.strip():
        raise BadInput(
            "FROM and TO are both required, e.g. make backfill FROM=2021-03-15 TO=2021-12-15"
        )
    parsed = []
    for knob, text in (("FROM", start), ("TO", end)):
        try:
            parsed.append(parse_date(text))
        except BadInput as exc:
            raise BadInput(f"{knob}: {exc}") from None
    first, last = parsed
    if first > last:
        raise BadInput(f"FROM={first} is after TO={last}; swap them")
    return first, last


def parse_concurrency(text: str) -> int:
    """CONCURRENCY as a whole number 1..64; BadInput otherwise."""
    value = str(text).strip()
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise BadInput(f"CONCURRENCY={text!r} is not a whole number from 1 to 64 (e.g. 2)")
    return int(value)


def cron_dates(
    cron: str, timezone: str, first: date, last: date, limit: int = MAX_DATES
) -> list[date]:
    """Days in [first, last] on which `cron` fires in `timezone` (at most limit + 1 returned).

    Uses the schedule class Prefect's own scheduler uses, so a backfilled date is exactly
    a date the deployment's schedule would have run on.
    """
    from prefect.server.schemas.schedules import CronSchedule

    try:
        schedule = CronSchedule(cron=cron, timezone=timezone)
    except Exception as exc:  # pydantic's ValidationError: bad cron or time zone
        reason = str(exc).splitlines()[-1].strip() if str(exc) else type(exc).__name__
        raise BadInput(
            f"CRON={cron!r} TIMEZONE={timezone!r} is not a valid schedule: {reason}"
        ) from None
    start = datetime(first.year, first.month, first.day)
    end = datetime(last.year, last.month, last.day) + timedelta(days=1) - timedelta(seconds=1)
    found: list[date] = []
    while start <= end and len(found) <= limit:
        batch = asyncio.run(schedule.get_dates(n=1000, start=start, end=end))
        for when in batch:
            day = when.date()
            if not found or found[-1] != day:
                found.append(day)
        if len(batch) < 1000:
            break
        start = batch[-1].replace(tzinfo=None) + timedelta(seconds=1)
    return found[: limit + 1]


def plan_dates(
    start: str, end: str, cron: str, timezone: str, limit: int = MAX_DATES
) -> list[date]:
    """The dates a backfill of [FROM, TO] runs; BadInput for any range it must refuse."""
    first, last = parse_range(start, end)
    dates = cron_dates(cron, timezone, first, last, limit)
    if not dates:
        raise BadInput(
            f"no date in {first}..{last} on which CRON={cron!r} ({timezone}) fires; widen the range"
        )
    if len(dates) > limit:
        raise BadInput(
            f"{first}..{last} has more than {limit} dates for CRON={cron!r}; the limit is "
            f"{limit} per call: split the range"
        )
    return dates


def not_completed(days: Sequence[str], outcomes: Sequence[Any]) -> list[str]:
    """'DATE STATE' of each date whose outcome is not COMPLETED (an exception: NOT RUN)."""
    found = []
    for day, outcome in zip(days, outcomes, strict=True):
        state = outcome.get("state") if isinstance(outcome, Mapping) else "NOT RUN"
        if state != "COMPLETED":
            found.append(f"{day} {state}")
    return found


def summary_rows(
    dates: Sequence[date],
    runs: trained.Answer,
    metrics: Mapping[date, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per date (its COMPLETED run, else the one in flight, else the latest, from
    any origin): state, months, RMSEs (of a COMPLETED run), seconds, run, message."""
    rows = []
    for d in dates:
        run = runs.shown(d)
        train_month, val_month = months_for(d)
        state = run.state if run else "NOT RUN"
        found = metrics.get(d, {}) if state == "COMPLETED" else {}
        rows.append(
            {
                "date": d.isoformat(),
                "state": state,
                "train_month": str(train_month),
                "val_month": str(val_month),
                "val_rmse": found.get("val_rmse"),
                "train_rmse": found.get("train_rmse"),
                "seconds": round(run.seconds, 2) if run and run.seconds is not None else None,
                "flow_run": run.id if run else "",
                "message": _one_line(run.message) if run and state != "COMPLETED" else "",
            }
        )
    return rows


def _one_line(text: str | None, width: int = 300) -> str:
    """A message squeezed onto one line of at most `width` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def format_row(row: Mapping[str, Any]) -> str:
    """One human line per date: date, state, months, validation RMSE, seconds."""
    rmse = f"val RMSE {row['val_rmse']:.4f}" if row["val_rmse"] is not None else "val RMSE -"
    secs = f"{row['seconds']:.1f} s" if row["seconds"] is not None else "- s"
    line = (
        f"{row['date']}  {row['state']:<9}  train {row['train_month']}  "
        f"validate {row['val_month']}  {rmse}  {secs}"
    )
    return f"{line}  {row['message']}" if row["message"] else line


def report_paths(folder: Path, first: date, last: date) -> tuple[Path, Path]:
    """artifacts/backfill-FROM_TO.csv and its .png chart."""
    stem = f"backfill-{first.isoformat()}_{last.isoformat()}"
    return folder / f"{stem}.csv", folder / f"{stem}.png"


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write the summary rows as CSV, atomically."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})
    return path


def write_chart(rows: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Validation RMSE per date as a PNG (matplotlib, Agg); dates without one marked in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = [f"{r['date']}\n(val {r['val_month']})" for r in rows]
    values = [r["val_rmse"] if r["val_rmse"] is not None else math.nan for r in rows]
    known = [v for v in values if not math.isnan(v)]
    fig = Figure(figsize=(max(6.0, 0.7 * len(rows) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    xs = range(len(rows))
    ax.plot(xs, values, marker="o", color="tab:blue", label="validation RMSE (min)")
    floor = min(known) if known else 0.0
    missing = [i for i, v in enumerate(values) if math.isnan(v)]
    if missing:
        ax.scatter(missing, [floor] * len(missing), marker="x", color="tab:red", s=60)
        for i in missing:
            ax.annotate(
                rows[i]["state"],
                (i, floor),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                color="tab:red",
                fontsize=8,
            )
    ax.set_xticks(list(xs), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("validation RMSE (minutes)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def table_markdown_title(first: date, last: date, rows: Sequence[Mapping[str, Any]]) -> str:
    """One-line description of a range's outcome, e.g. '10 dates: 9 COMPLETED, 1 FAILED'."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return f"backfill {first}..{last}: {len(rows)} dates: {parts}"
