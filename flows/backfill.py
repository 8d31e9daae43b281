"""The backfill flow: one parent run whose per-date runs are subflow runs of the training flow.

Started by `make backfill FROM=... TO=...` (a run of the `fhv-backfill` deployment, picked
up by a worker). All dates run in this one process, so Prefect, pandas and scikit-learn are
imported once; each date is still its own flow run `backfill-YYYY-MM-DD` (tag `backfill`,
parameter `date`) with its own state and logs. The global concurrency limit `fhv-backfill`
(set by `make backfill` to CONCURRENCY) holds a slot around each date's run, so no more
than CONCURRENCY dates run at once, whatever number of parents or workers.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from datetime import date as Date
from functools import cache
from pathlib import Path
from typing import Any

from prefect import Flow, flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency as concurrency_slot
from prefect.flows import load_flow_from_entrypoint
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from fhvlab import backfill as bf
from fhvlab import paths


@cache
def training_flow() -> Flow:
    """The `train` flow of flows/train.py, loaded once per process."""
    return load_flow_from_entrypoint(f"{Path(__file__).with_name('train.py')}:train")


@task(cache_policy=NO_CACHE, persist_result=False)
def run_date(day: str, limit: str) -> dict[str, Any]:
    """Run the training flow for `day` as subflow backfill-DAY while holding a limit slot."""
    name = bf.run_name(Date.fromisoformat(day))
    asked = time.monotonic()
    try:
        with concurrency_slot(limit, occupy=1, strict=True, lease_duration=120):
            get_run_logger().info(
                "%s: slot of %r after %.1f s", name, limit, time.monotonic() - asked
            )
            state = training_flow().with_options(flow_run_name=name)(date=day, return_state=True)
    except Exception as exc:  # no slot (limit missing), or the subflow could not start
        get_run_logger().error("%s: not run: %s", name, exc)
        return {"date": day, "state": "FAILED", "message": str(exc)}
    return {"date": day, "state": state.type.value, "message": state.message or ""}


@task(cache_policy=NO_CACHE)
def write_summary(dates: list[str], range_from: str, range_to: str) -> str:
    """The range's CSV, PNG and table artifact, from the runs in the API."""
    from fhvlab import backfill_api

    first, last = Date.fromisoformat(range_from), Date.fromisoformat(range_to)
    days = [Date.fromisoformat(d) for d in dates]
    with backfill_api.client() as http:
        rows, csv_path, png_path = backfill_api.build_report(
            http, days, first, last, paths.artifacts_dir(), flow_run.get_id()
        )
    title = bf.table_markdown_title(first, last, rows)
    get_run_logger().info("%s -> %s, %s", title, csv_path, png_path)
    return title


@flow(name=bf.PARENT_FLOW, log_prints=True)
def backfill(
    dates: list[str],
    range_from: str,
    range_to: str,
    range_dates: list[str] | None = None,
    concurrency: int = 2,
    limit: str = bf.LIMIT_NAME,
) -> State:
    """Train each of `dates` (at most `concurrency` at a time), then summarise the range.

    The range's summary covers `range_dates`, every cron date of [range_from, range_to]
    (this run's dates and those an earlier call already ran), from the runs in the API.
    """
    logger = get_run_logger()
    logger.info("%d dates, %d at a time (limit %r)", len(dates), concurrency, limit)
    training_flow()  # import the training code once, before any thread needs it
    # matplotlib's import for the summary overlaps the training instead of following it
    threading.Thread(target=bf.warm_up_chart, name="warm-up-chart", daemon=True).start()
    outcomes: list[dict[str, Any]] = []
    pending, running = list(dates), []
    with tags(bf.TAG):
        while pending or running:
            while pending and len(running) < max(1, concurrency):
                running.append(run_date.submit(pending.pop(0), limit))
            # The thread pool's own futures: wake up as soon as any date is done.
            futures.wait([f.wrapped_future for f in running], return_when=futures.FIRST_COMPLETED)
            done = [f for f in running if f.wrapped_future.done()]
            outcomes += [f.result() for f in done]
            running = [f for f in running if f not in done]
    summary = write_summary(sorted(set(range_dates or []) | set(dates)), range_from, range_to)
    failed = [o for o in outcomes if o["state"] != "COMPLETED"]
    if failed:
        names = ", ".join(f"{o['date']} {o['state']}" for o in failed)
        return Failed(message=f"{len(failed)} of {len(dates)} dates did not complete: {names}")
    return Completed(message=summary)
