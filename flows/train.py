"""The training flow: thin Prefect wiring around fhvlab's plain functions.

Run it:  make train DATE=2021-08-15   (or: .venv/bin/python flows/train.py --date 2021-08-15)
Deployed by `make deploy` (prefect.yaml), where `date` defaults to the run's scheduled date.
"""

from __future__ import annotations

if __name__ == "__main__":
    # A child imports scikit-learn and will fit and score, on the other core, while this
    # process imports Prefect and reads the months (fhvlab.fitproc).
    from fhvlab import fitproc

    fitproc.start()

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from fhvlab import fitproc, model, paths, training
from fhvlab.download import download_month
from fhvlab.errors import LabError
from fhvlab.monthcache import FileCache
from fhvlab.months import parse_month
from fhvlab.progress import LogProgress


def _transient(task_, task_run, state) -> bool:
    """Retry a task only for unexpected errors; a LabError is final (bad input, 404...)."""
    try:
        state.result()
    except LabError:
        return False
    except Exception:
        return True
    return False


@task
def resolve_plan(run_date: str) -> training.Plan:
    """Which months this run trains and validates on."""
    plan = training.plan(run_date)
    get_run_logger().info(
        "date %s: train on %s, validate on %s", plan.run_date, plan.train_month, plan.val_month
    )
    return plan


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=_transient)
def ensure_month(month: str, data_dir: str, data_url: str) -> str:
    """The month's file in DATA_DIR, downloaded (and validated) if missing."""
    logger = get_run_logger()
    fetched = download_month(
        parse_month(month), Path(data_dir), data_url, progress=LogProgress(logger)
    )
    how = "downloaded" if fetched.downloaded else "present"
    logger.info("%s: %s, %s rows, %.1f MB", month, how, f"{fetched.rows:,}", fetched.size / 1e6)
    return str(fetched.path)


# A month travels between tasks as per-pair statistics (a few MB at most), kept in memory:
# no result persistence, no input hashing for the cache key. A process that trains many
# dates (a backfill's parent run) reads each month once: date D's validation month is
# date D+1's training month. A single `make train` never hits this cache.
PREPARED: FileCache[tuple[model.MonthStats, dict[str, Any]]] = FileCache(size=4)


def _prepare(path: Path) -> tuple[model.MonthStats, dict[str, Any]]:
    """The month's statistics and description (with its checksum)."""
    stats = model.month_stats(path)
    return stats, training.describe_month(path, stats)


@task(persist_result=False, cache_policy=NO_CACHE)
def prepare_month(path: str) -> tuple[model.MonthStats, dict[str, Any]]:
    """One month reduced to per-(PU, DO) counts and duration sums, and its description."""
    (stats, info), reused = PREPARED.get(Path(path), _prepare)  # checksum here: in parallel
    get_run_logger().info(
        "%s: %s of %s rows kept, %s (PU, DO) pairs%s",
        Path(path).name,
        f"{stats.rows:,}",
        f"{stats.rows_read:,}",
        f"{len(stats.pairs):,}",
        " (prepared earlier in this process)" if reused else "",
    )
    return stats, dict(info)


@task(persist_result=False, cache_policy=NO_CACHE)
def fit_model(stats: model.MonthStats) -> fitproc.Remote | tuple[Any, Any]:
    """Fitted DictVectorizer and LinearRegression (in `make train`'s fitting process)."""
    return fitproc.fit(stats)


@task(persist_result=False, cache_policy=NO_CACHE)
def evaluate(
    fitted: fitproc.Remote | tuple[Any, Any], train: model.MonthStats, val: model.MonthStats
) -> dict[str, Any]:
    """Training and validation RMSE."""
    scores = fitproc.evaluate(fitted, train, val)
    get_run_logger().info(
        "train RMSE %.4f, validation RMSE %.4f, %d features",
        scores["train_rmse"],
        scores["val_rmse"],
        scores["n_features"],
    )
    return scores


@task(cache_policy=NO_CACHE)
def save(
    fitted: fitproc.Remote | tuple[Any, Any], metrics: dict[str, Any], run_date: str, out_dir: str
) -> dict:
    """Write model-, dv-, metrics-{date} atomically; publish the metrics as an artifact."""
    dv, lr = fitproc.for_saving(fitted)
    plan = training.plan(run_date)
    saved, record = training.save_artifacts(Path(out_dir), plan.run_date, dv, lr, metrics)
    create_markdown_artifact(
        markdown=training.markdown_report(record),
        key=f"duration-model-{run_date}",
        description=f"ride-duration model metrics for {run_date}",
    )
    get_run_logger().info("artifacts: %s, %s, %s", saved.model, saved.dv, saved.metrics)
    return record


@flow(name="fhv-duration-training", log_prints=True)
def train(
    date: str | None = None,
    data_dir: str | None = None,
    artifacts_dir: str | None = None,
    data_url: str | None = None,
) -> dict[str, Any]:
    """Train on DATE-2 months, validate on DATE-1, save artifacts; returns the metrics.

    `date` defaults to the run's scheduled date (so a monthly schedule trains on the
    right months); the locations default to DATA_DIR, ARTIFACTS_DIR and DATA_URL.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    if fitproc.active() is None:
        model.warm_up_in_background()  # import scikit-learn while the months are read
    if date is None:
        date = flow_run.scheduled_start_time.date().isoformat()
        logger.info("no date given: using the run's scheduled date %s", date)
    data_dir = data_dir or str(paths.data_dir())
    artifacts_dir = artifacts_dir or str(paths.artifacts_dir())
    data_url = data_url or paths.data_url()

    plan = resolve_plan(date)
    # Both months are fetched and prepared side by side (Prefect's thread-pool task runner).
    paths_ = [
        ensure_month.submit(str(m), data_dir, data_url) for m in (plan.train_month, plan.val_month)
    ]
    prepared = [prepare_month.submit(p) for p in paths_]
    for fetched in paths_:
        fetched.result()  # a failed download raises its own error, not "upstream failed"
    (train_stats, train_info), (val_stats, val_info) = (p.result() for p in prepared)
    fitted = fit_model(train_stats)
    scores = evaluate(fitted, train_stats, val_stats)
    metrics = {
        "date": date,
        "train_month": str(plan.train_month),
        "val_month": str(plan.val_month),
        "train": train_info,
        "val": val_info,
        **scores,
        "versions": training.library_versions(),
        "elapsed_seconds": round(time.perf_counter() - started, 3),
    }
    return save(fitted, metrics, date, artifacts_dir)


def main(argv: list[str] | None = None) -> int:
    """`python flows/train.py --date YYYY-MM-DD`: one line per outcome, exit 1 on error."""
    parser = argparse.ArgumentParser(description="Train the ride-duration model for a date.")
    parser.add_argument("--date", required=True, help="run date YYYY-MM-DD, e.g. 2021-08-15")
    args = parser.parse_args(argv)
    try:
        training.plan(args.date)  # validate before any Prefect work
        if fitproc.active() is None:  # imported, not run as a script: no fitting process
            model.warm_up_in_background()  # overlaps the flow run's start-up on the server
        record = train(date=args.date)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    folder = paths.artifacts_dir()
    print(
        f"train: {record['date']}: train RMSE {record['train_rmse']:.4f} "
        f"({record['train_month']}), validation RMSE {record['val_rmse']:.4f} "
        f"({record['val_month']})"
    )
    print(
        f"train: artifacts in {folder}: {record['artifacts']['model']['file']}, "
        f"{record['artifacts']['dv']['file']} ({record['artifacts']['dv']['bytes']} bytes), "
        f"metrics-{record['date']}.json"
    )
    return 0


def exit_after_flush(code: int) -> None:
    """Send what Prefect still holds (logs, events), then exit without interpreter teardown.

    Tearing down the modules a training run imports (Prefect, pydantic, scikit-learn,
    scipy, pandas) takes ~1 s after the work is done; everything worth keeping is already
    on disk or on the server once the two workers are drained.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)
    if not PREFECT_API_URL.value():
        # No API URL: Prefect ran a temporary server of its own for this process, which
        # only the interpreter's exit handlers stop (os._exit would leave it running).
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_after_flush(main())
