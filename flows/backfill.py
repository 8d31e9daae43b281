"""The backfill flow: the training flow once per date, as subflow runs, a few at a time.

Started by `make backfill FROM=... TO=...` (a run of the `fhv-backfill` deployment, picked
up by a worker). It asks the server which dates are trained or in flight (by any path) and
trains the others, each as the flow run `train-YYYY-MM-DD` (tag `backfill`, parameter
`date`): a subflow run of this one, with its own state, logs and artifacts.
At most `concurrency` dates run at once (a thread pool of that size), and the deployment's
concurrency limit (1, in prefect.yaml) lets one backfill run at a time: never more than
CONCURRENCY dates, whatever number of `make backfill` calls or workers.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from fhvlab import settings
from fhvlab.orchestration import api, backfill_runs, trained
from fhvlab.orchestration import backfill as bf
from train import train  # flows/train.py: Prefect puts this file's folder on sys.path


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def dates_to_run(dates: list[str], rerun: str) -> list[str]:
    """The one question: the dates not in flight, and (rerun 'failed') not trained.

    Asked when the run starts: one enqueued behind another skips what that one trained,
    and dates trained meanwhile by any other path.
    """
    wanted = [date.fromisoformat(d) for d in dates]
    with api.client() as http:
        found = trained.answer(trained.ask(http, wanted))
    todo = [d.isoformat() for d in found.to_run(wanted, rerun)]
    for day in sorted(set(dates) - set(todo)):
        run = found.shown(date.fromisoformat(day))
        get_run_logger().info("%s: skipped, run %r is %s", day, run.name, run.state)
    return todo


@task(cache_policy=NO_CACHE, task_run_name="train-{day}", retries=3, retry_delay_seconds=10)
def train_date(day: str) -> dict[str, Any]:
    """Run the training flow for `day` as the subflow run train-DAY; its final state.

    A date whose run fails is not retried here (the next `make backfill` runs it again);
    the task is retried only when the run could not even be created (API unreachable).
    """
    with tags(bf.TAG):  # its origin; the run names itself train-DAY
        state = train(date=day, return_state=True)
    return {"date": day, "state": state.type.value, "message": state.message or ""}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def write_summary(range_dates: list[str], range_from: str, range_to: str) -> str:
    """The range's CSV, PNG and table artifact, from the runs in the API."""
    first, last = date.fromisoformat(range_from), date.fromisoformat(range_to)
    days = [date.fromisoformat(d) for d in range_dates]
    with api.client() as http:
        rows, csv_path, png_path = backfill_runs.build_report(
            http, days, first, last, settings.artifacts_dir()
        )
    title = bf.table_markdown_title(range_from, range_to, rows)
    get_run_logger().info("%s -> %s, %s", title, csv_path, png_path)
    return title


@flow(name=bf.PARENT_FLOW)
def backfill(
    dates: list[str],
    range_from: str,
    range_to: str,
    concurrency: int = 2,
    rerun: str = "failed",
) -> State:
    """Train each of `dates` that needs it (at most `concurrency` at a time), then summarise.

    `rerun` "failed" trains the dates with no COMPLETED run, "all" every date; a date in
    flight is never started twice. The summary covers every date, whoever trained it.
    """
    todo = dates_to_run(dates, rerun)
    get_run_logger().info("%d of %d dates to run, %d at a time", len(todo), len(dates), concurrency)
    with ThreadPoolTaskRunner(max_workers=max(1, concurrency)) as runner:
        futures = [runner.submit(train_date, {"day": day}) for day in todo]
        # each date's outcome, or the error of a date that could not be started
        outcomes = [future.result(raise_on_failure=False) for future in futures]
    summary = write_summary(dates, range_from, range_to)
    failed = bf.not_completed(todo, outcomes)
    if failed:
        names = ", ".join(failed)
        return Failed(message=f"{len(failed)} of {len(todo)} dates did not complete: {names}")
    return Completed(message=summary)
