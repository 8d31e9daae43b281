"""The training flow: Prefect tasks and one flow over fhvlab's plain functions.

Run it:  make train DATE=2021-08-15   (or: .venv/bin/python flows/train.py --date 2021-08-15)
Deployed by `make deploy` (prefect.yaml), where `date` defaults to the run's scheduled date.

What it shows of Prefect: retries only for transient errors, caching (a month's statistics
keyed on its file's content, the fit keyed on those statistics: a second run over the same
months, here or on a machine sharing the result storage, reads no month and fits nothing, its
tasks are `Cached`), a progress artifact while a month downloads, and a markdown artifact of
the metrics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.runtime import deployment, flow_run
from prefect.states import Cancelled, Completed, State

from fhvlab import settings
from fhvlab.data.download import download_month
from fhvlab.data.months import parse_month
from fhvlab.data.progress import ArtifactProgress
from fhvlab.errors import LabError
from fhvlab.model import duration as model
from fhvlab.model import training
from fhvlab.orchestration import storage as results
from fhvlab.orchestration import trained
from fhvlab.orchestration.locks import ProcessLockManager


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unexpected errors only; a LabError (bad input, HTTP 404, ...) is final."""
    try:
        state.result()
    except LabError:
        return False
    except Exception:
        return True
    return False


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=is_transient)
def ensure_month(month: str, data_dir: str, data_url: str) -> str:
    """The month's file in DATA_DIR, downloaded (with a progress artifact) if missing."""
    logger = get_run_logger()
    fetched = download_month(
        parse_month(month), Path(data_dir), data_url, progress=ArtifactProgress(logger)
    )
    how = "downloaded" if fetched.downloaded else "present"
    logger.info("%s: %s, %s rows, %.1f MB", month, how, f"{fetched.rows:,}", fetched.size / 1e6)
    return str(fetched.path)


def month_file_key(context: Any, parameters: dict[str, Any]) -> str:
    """Cache key of `prepare_month`: the month file's content (its sha256) and the code."""
    return training.month_cache_key(parameters["path"])


# The statistics of a month are kept in the lab's result storage under the file's key, so
# any later run over the same content reads them instead of the file, on any machine that
# shares the result storage (the key holds no path: DATA_DIR may differ). Runs that
# want the same month at the same time compute it once: the first takes the key's lock,
# the others wait and then read its result.
MONTH_CACHE = CacheKeyFnPolicy(cache_key_fn=month_file_key).configure(
    isolation_level="SERIALIZABLE",
    lock_manager=ProcessLockManager(settings.prefect_home() / "locks"),
)


@task(cache_policy=MONTH_CACHE, persist_result=True)
def prepare_month(path: str) -> tuple[model.MonthStats, dict[str, Any]]:
    """One month reduced to per-(PU, DO) counts and duration sums, and its description."""
    stats = model.month_stats(Path(path))
    get_run_logger().info(
        "%s: %s of %s rows kept, %s (PU, DO) pairs",
        Path(path).name,
        f"{stats.rows:,}",
        f"{stats.rows_read:,}",
        f"{len(stats.pairs):,}",
    )
    return stats, training.describe_month(Path(path), stats)


def fit_key(context: Any, parameters: dict[str, Any]) -> str:
    """Cache key of `fit_and_score`: both months' statistics and the model's code."""
    return training.fit_cache_key(parameters["train"], parameters["val"])


@task(cache_key_fn=fit_key, persist_result=True)
def fit_and_score(train: model.MonthStats, val: model.MonthStats) -> tuple[bytes, bytes, dict]:
    """Fit the DictVectorizer and LinearRegression on `train`, score both months.

    The fitted objects travel as their pickles (the bytes the artifact files hold), so a
    cache hit needs no scikit-learn at all.
    """
    dv, lr, scores = training.fit_and_score(train, val)
    get_run_logger().info(
        "train RMSE %.4f, validation RMSE %.4f, %d features",
        scores["train_rmse"],
        scores["val_rmse"],
        scores["n_features"],
    )
    return dv, lr, scores


@task
def save(dv: bytes, lr: bytes, metrics: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Write model-, dv-, metrics-{date} atomically; publish the metrics as an artifact."""
    plan = training.plan(metrics["date"])
    saved, record = training.save_artifacts(Path(out_dir), plan.run_date, dv, lr, metrics)
    create_markdown_artifact(
        markdown=training.markdown_report(record),
        key=f"duration-model-{metrics['date']}",
        description=f"ride-duration model metrics for {metrics['date']}",
    )
    get_run_logger().info("artifacts: %s, %s, %s", saved.model, saved.dv, saved.metrics)
    return record


def run_date() -> str:
    """The run's date: its `date` parameter, else its scheduled day."""
    day = flow_run.parameters.get("date")
    return day or flow_run.scheduled_start_time.date().isoformat()


def run_name() -> str:
    """Each training run is named after its date (train-2021-08-15), whatever started it."""
    return trained.run_name(run_date())


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def one_question(date: str) -> trained.Skip | None:
    """Tag the run with its origin; a schedule or event run asks whether its date is
    trained, or an earlier run is training it (then it does not train)."""
    origin, skip = trained.check_run(flow_run.id, date)
    get_run_logger().info("date %s, origin %s%s", date, origin, f": {skip.message}" if skip else "")
    return skip


@flow(name="fhv-duration-training", flow_run_name=run_name)
def train(
    date: str | None = None,
    data_dir: str | None = None,
    artifacts_dir: str | None = None,
    data_url: str | None = None,
) -> dict[str, Any] | State:
    """Train on DATE-2 months, validate on DATE-1, save artifacts; returns the metrics.

    `date` defaults to the run's scheduled date (so a monthly schedule trains on the
    right months); the locations default to DATA_DIR, ARTIFACTS_DIR and DATA_URL.
    """
    logger = get_run_logger()
    if date is None:
        date = run_date()
        logger.info("no date given: using the run's scheduled date %s", date)
    if trained.asks(deployment.id, flow_run.tags) and (skip := one_question(date)):
        return Completed(message=skip.message) if skip.trained else Cancelled(message=skip.message)
    plan = training.plan(date)
    logger.info("date %s: train on %s, validate on %s", date, plan.train_month, plan.val_month)
    data_dir = data_dir or str(settings.data_dir())
    data_url = data_url or settings.data_url()

    # Both months are fetched and prepared side by side (the default thread-pool task runner).
    files = [
        ensure_month.submit(str(m), data_dir, data_url) for m in (plan.train_month, plan.val_month)
    ]
    prepared = [prepare_month.submit(f) for f in files]
    for f in files:
        f.result()  # a failed download raises its own error, not "upstream task failed"
    (train_stats, train_info), (val_stats, val_info) = (p.result() for p in prepared)

    dv, lr, scores = fit_and_score(train_stats, val_stats)
    metrics = {
        "date": date,
        "train_month": str(plan.train_month),
        "val_month": str(plan.val_month),
        "train": train_info,
        "val": val_info,
        **scores,
        "versions": training.library_versions(),
    }
    return save(dv, lr, metrics, artifacts_dir or str(settings.artifacts_dir()))


def main(argv: list[str] | None = None) -> int:
    """`python flows/train.py --date YYYY-MM-DD`: one line per outcome, exit 1 on error."""
    parser = argparse.ArgumentParser(description="Train the ride-duration model for a date.")
    parser.add_argument("--date", required=True, help="run date YYYY-MM-DD, e.g. 2021-08-15")
    args = parser.parse_args(argv)
    try:
        training.plan(args.date)  # a bad date fails here, before any flow run exists
        where = results.check_default()  # ... and so does a result storage that does not answer
        with results.watch_unpersisted() as lost, tags("manual"):
            record = train(date=args.date)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if lost.count:  # the storage went away during the run: Prefect warns and goes on
        print(f"train: WARNING: {lost.count} results were not persisted to {where} "
              "(it stopped answering): the next run recomputes them", file=sys.stderr)  # fmt: skip
    print(
        f"train: {record['date']}: train RMSE {record['train_rmse']:.4f} "
        f"({record['train_month']}), validation RMSE {record['val_rmse']:.4f} "
        f"({record['val_month']})"
    )
    print(
        f"train: artifacts in {settings.artifacts_dir()}: {record['artifacts']['model']['file']}, "
        f"{record['artifacts']['dv']['file']} ({record['artifacts']['dv']['bytes']} bytes), "
        f"metrics-{record['date']}.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
