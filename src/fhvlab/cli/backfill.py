"""`make backfill` and `make report`: many runs over a range of dates."""

from __future__ import annotations

import argparse
import os
from typing import Any

from fhvlab import settings
from fhvlab.cli import common
from fhvlab.errors import LabError
from fhvlab.local import server


def _backfill_plan(args: argparse.Namespace) -> tuple[list, int, str]:
    """The range's dates, CONCURRENCY and RERUN, or BadInput for what must be refused
    (nothing created)."""
    from fhvlab.orchestration import backfill, trained

    concurrency = backfill.parse_concurrency(args.concurrency)
    rerun = trained.parse_rerun(args.rerun)
    return backfill.plan_dates(args.start, args.end, args.cron, args.timezone), concurrency, rerun


def summary_counts(done: Any, rerun: str) -> str:
    """'2 to run (1 new, 1 again), 1 already trained, 0 running (RERUN=failed)'."""
    to_run = set(done.to_run)
    new = [d for d in to_run if d not in done.found.latest]
    trained_left = [d for d in done.found.completed if d not in to_run]
    return (
        f"{len(to_run)} to run ({len(new)} new, {len(to_run) - len(new)} again), "
        f"{len(trained_left)} already trained, {len(done.found.in_flight)} running "
        f"(RERUN={rerun})"
    )


def cmd_backfill(args: argparse.Namespace) -> int:
    """`make backfill`: one parent run if a date of the range needs training; WATCH waits."""
    from fhvlab.orchestration import backfill as bf

    if args.check:  # before anything exists: Prefect would create its home when imported
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fhvlab-check-") as scratch:
            os.environ["PREFECT_HOME"] = scratch
            _backfill_plan(args)
        return 0
    dates, concurrency, rerun = _backfill_plan(args)
    server.require_api(common.api_url(args))
    from fhvlab.orchestration import api, backfill_runs

    first, last = bf.parse_range(args.start, args.end)
    with api.client() as http:
        done = backfill_runs.submit(http, dates, first, last, concurrency, rerun)
        print(
            f"backfill: {len(dates)} dates in {first}..{last} (cron {args.cron!r}, "
            f"{args.timezone}): {summary_counts(done, rerun)}"
        )
        if done.parent is not None:
            print(
                f"backfill: flow run {done.parent.name!r} runs {len(done.to_run)} dates, "
                f"{concurrency} at a time; UI {common.ui_base(args)}/runs/flow-run/{done.parent.id}"
            )
        if not args.watch:
            if done.to_run:
                print("backfill: a worker runs it (make worker); WATCH=1 waits for the results")
            return 0
        if api.workers_online(http, pool := settings.current().work_pool) == 0:
            print(
                f"backfill: no worker is polling pool {pool!r}: start one in another "
                "terminal with `make worker`; waiting",
                flush=True,
            )
        print(
            f"backfill: waiting for {len(done.waiting_for())} run(s) "
            f"(at most WATCH_TIMEOUT={args.watch_timeout:.0f} s)",
            flush=True,
        )
        finished, rows, csv_path, png_path = backfill_runs.await_range(
            http, done, first, last, settings.artifacts_dir(), args.watch_timeout
        )
    for row in rows:
        print(f"backfill: {bf.format_row(row)}")
    print(f"backfill: summary {csv_path} and {png_path}")
    if not finished:
        raise LabError(
            f"backfill: not every date was final after WATCH_TIMEOUT={args.watch_timeout:.0f} s"
        )
    if bad := [r["date"] for r in rows if r["state"] != "COMPLETED"]:
        raise LabError(f"{len(bad)} of {len(rows)} dates did not complete: {', '.join(bad)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`make report`: rebuild a range's CSV, PNG and table artifact from the API."""
    from fhvlab.orchestration import backfill as bf

    dates = bf.plan_dates(args.start, args.end, args.cron, args.timezone)
    first, last = bf.parse_range(args.start, args.end)
    server.require_api(common.api_url(args))
    from fhvlab.orchestration import api, backfill_runs

    with api.client() as http:
        rows, csv_path, png_path = backfill_runs.build_report(
            http, dates, first, last, settings.artifacts_dir()
        )
    for row in rows:
        print(f"report: {bf.format_row(row)}")
    print(f"report: {bf.table_markdown_title(first, last, rows)}")
    print(f"report: {csv_path} and {png_path}")
    return 0


def _add_range_args(parser: argparse.ArgumentParser, knobs: settings.Settings) -> None:
    parser.add_argument("--from", dest="start", default="", help="first date YYYY-MM-DD")
    parser.add_argument("--to", dest="end", default="", help="last date YYYY-MM-DD (included)")
    parser.add_argument("--cron", default=knobs.cron)
    parser.add_argument("--timezone", default=knobs.timezone)


def add_parsers(sub: argparse._SubParsersAction, knobs: settings.Settings) -> None:
    """backfill, report."""
    fill = sub.add_parser("backfill", help="train every cron date of a range (make backfill)")
    common.add_api_arg(fill)
    _add_range_args(fill, knobs)
    fill.add_argument("--concurrency", default=knobs.concurrency, help="dates running at once")
    fill.add_argument("--rerun", default=knobs.rerun, help="failed (default) or all")
    fill.add_argument("--watch", action="store_true", help="wait until every date is final")
    fill.add_argument("--watch-timeout", type=float, default=knobs.watch_timeout, help="seconds")
    fill.add_argument("--check", action="store_true", help="only validate the range")
    fill.set_defaults(func=cmd_backfill)

    report = sub.add_parser("report", help="rebuild a backfill range's summary (make report)")
    common.add_api_arg(report)
    _add_range_args(report, knobs)
    report.set_defaults(func=cmd_report)
