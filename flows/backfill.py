"""The backfill flow: one parent run whose per-date runs are subflow runs of the training flow.

Started by `make backfill FROM=... TO=...` (a run of the `fhv-backfill` deployment, picked
up by a worker). All dates run in this one process, so Prefect, pandas and scikit-learn are
imported once; each date is still its own flow run `backfill-YYYY-MM-DD` (tag `backfill`,
parameter `date`) with its own state and logs. The dates run in CONCURRENCY lanes; each
lane holds a slot of the global concurrency limit `fhv-backfill` (set by `make backfill` to
CONCURRENCY) while it runs its dates one after the other, so no more than CONCURRENCY dates
run at once, whatever number of parents or workers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import queue
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
from prefect.context import TagsContext
from prefect.flows import load_flow_from_entrypoint
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from fhvlab import backfill as bf
from fhvlab import paths


@cache
def training_flow() -> Flow:
    """The `train` flow of flows/train.py, loaded once per process, its tasks untagged.

    The per-date runs are created inside `tags("backfill")`. Their task runs need not carry
    the tag, and must not: Prefect asks the server for tag concurrency slots around every
    tagged task run, a database write even when no tag limit exists, which SQLite often
    answers `database is locked` (503, retried by the client only after 2 s).
    """
    train = load_flow_from_entrypoint(f"{Path(__file__).with_name('train.py')}:train")
    body = train.fn

    @functools.wraps(body)
    def untagged(*args: Any, **kwargs: Any) -> Any:
        with TagsContext(current_tags=set()):
            return body(*args, **kwargs)

    flow_copy = train.with_options()  # same name, version and options
    flow_copy.fn = untagged
    return flow_copy


def run_date(day: str, finishing: list[threading.Thread]) -> dict[str, Any]:
    """Run the training flow for `day` as its subflow run backfill-DAY; its outcome once final.

    The run goes on in a thread of its own, added to `finishing`, and this returns as soon
    as the run's state is final (a state hook), not when that thread ends: after the final
    state, Prefect's engine still joins its heartbeat thread, which sleeps in 1 s steps
    (half a second a date on average, measured with py-spy).
    """
    name = bf.run_name(Date.fromisoformat(day))
    final = threading.Event()
    outcome: dict[str, Any] = {"date": day, "state": "FAILED", "message": "not run"}

    def on_final(_flow: Any, _run: Any, state: State) -> None:
        outcome.update(state=state.type.value, message=state.message or "")
        final.set()

    hooks = [on_final]

    def run() -> None:
        try:
            with tags(bf.TAG):
                flow_for_day = training_flow().with_options(
                    flow_run_name=name,
                    on_completion=hooks,
                    on_failure=hooks,
                    on_crashed=hooks,
                    on_cancellation=hooks,
                )
                state = flow_for_day(date=day, return_state=True)
            outcome.update(state=state.type.value, message=state.message or "")
        except Exception as exc:  # the subflow could not start
            get_run_logger().error("%s: not run: %s", name, exc)
            outcome.update(state="FAILED", message=str(exc))
        finally:
            final.set()

    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(run,), name=name, daemon=True
    )
    thread.start()
    finishing.append(thread)
    final.wait()
    return outcome


def run_lane(lane: int, todo: queue.SimpleQueue[str], limit: str) -> list[dict[str, Any]]:
    """Hold one slot of `limit` and run dates from `todo` until it is empty.

    A slot is held per lane, not per date: each acquisition is a write on the server, and on
    SQLite a write racing the runs' own writes is answered 503 and retried by the client
    only after 2 s. The cap is the same: a date runs only inside a held slot.
    """
    logger, outcomes, asked = get_run_logger(), [], time.monotonic()
    finishing: list[threading.Thread] = []
    try:
        with concurrency_slot(limit, occupy=1, strict=True, lease_duration=120):
            logger.info("lane %d: slot of %r after %.1f s", lane, limit, time.monotonic() - asked)
            while True:
                try:
                    day = todo.get_nowait()
                except queue.Empty:
                    break
                outcomes.append(run_date(day, finishing))
    except Exception as exc:  # no slot (limit missing or server unreachable)
        logger.error("lane %d: no slot of %r: %s", lane, limit, exc)
        left = []
        with contextlib.suppress(queue.Empty):
            while True:
                left.append(todo.get_nowait())
        outcomes += [{"date": d, "state": "FAILED", "message": str(exc)} for d in left]
    for thread in finishing:  # final already; each ends within about a second
        thread.join()
    return outcomes


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
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for day in dates:
        todo.put(day)
    lanes = min(max(1, concurrency), len(dates))
    with futures.ThreadPoolExecutor(lanes, thread_name_prefix="lane") as pool:
        # each lane thread runs in a copy of this flow run's context: its subflow runs are
        # children of this run
        jobs = [
            pool.submit(contextvars.copy_context().run, run_lane, lane, todo, limit)
            for lane in range(1, lanes + 1)
        ]
        outcomes = sorted((o for job in jobs for o in job.result()), key=lambda o: o["date"])
    summary = write_summary(sorted(set(range_dates or []) | set(dates)), range_from, range_to)
    failed = [o for o in outcomes if o["state"] != "COMPLETED"]
    if failed:
        names = ", ".join(f"{o['date']} {o['state']}" for o in failed)
        return Failed(message=f"{len(failed)} of {len(dates)} dates did not complete: {names}")
    return Completed(message=summary)
