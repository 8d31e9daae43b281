"""`make tour`'s closing summary: the figures the course homework asks for."""

from __future__ import annotations

import argparse

from fhvlab import settings
from fhvlab.cli import common
from fhvlab.data.months import parse_date
from fhvlab.local import server
from fhvlab.orchestration import storage


def cmd_summary(args: argparse.Namespace) -> int:
    """`make tour`'s closing summary: the figures the course homework asks for."""
    import json

    url = common.api_url(args)
    server.require_api(url)
    run_date = parse_date(args.date).isoformat()
    folder = settings.artifacts_dir()
    metrics = json.loads((folder / f"metrics-{run_date}.json").read_text())
    dv_bytes = (folder / f"dv-{run_date}.pkl").stat().st_size
    name = f"{args.flow}/{args.deployment}"
    from fhvlab.orchestration import api

    with api.client() as http:
        deployment = http.read_deployment_by_name(name)
        scheduled = api.scheduled_runs(http, deployment.id)
        queues = http.read_work_queues(work_pool_name=deployment.work_pool_name)
    crons = ", ".join(getattr(s.schedule, "cron", "?") for s in deployment.schedules) or "none"
    ui = args.ui_url or url.removesuffix("/api")
    print(
        f"summary: validation RMSE for {run_date}: {metrics['val_rmse']:.4f} "
        f"(train {metrics['train_rmse']:.4f}, {metrics['train_month']} -> {metrics['val_month']})"
    )
    print(f"summary: dv-{run_date}.pkl: {dv_bytes} bytes")
    print(f"summary: deployment {name}: cron {crons}, {len(scheduled)} scheduled runs")
    print(f"summary: work pool {deployment.work_pool_name}, queue {deployment.work_queue_name}")
    print(f"summary: UI {ui}/deployments/deployment/{deployment.id}")
    print(f"summary: $ prefect work-queue ls --pool {deployment.work_pool_name}")
    for queue in queues:
        status = getattr(queue.status, "value", queue.status)
        print(f"summary:   {queue.name} (priority {queue.priority}, {status})")
    return 0


def add_parsers(sub: argparse._SubParsersAction, knobs: settings.Settings) -> None:
    """summary (the tour's last step)."""
    summary = sub.add_parser("summary", help="the tour's closing figures")
    common.add_api_arg(summary)
    summary.add_argument("--date", default=knobs.date)
    summary.add_argument("--flow", default="fhv-duration-training")
    summary.add_argument("--deployment", default=knobs.deployment)
    summary.add_argument("--ui-url", default=None)
    summary.set_defaults(func=cmd_summary)
    add_knobs_parser(sub)


def cmd_knobs(args: argparse.Namespace) -> int:
    """`make knobs`: every knob as the lab's Python reads it (secrets masked)."""
    knobs = settings.current()
    for name, value in knobs.model_dump().items():
        shown = (
            "*****" if hasattr(value, "get_secret_value") and value.get_secret_value() else value
        )
        shown = storage.shown(shown) if name == "storage_url" else shown
        print(f"{name.upper()}={'' if hasattr(shown, 'get_secret_value') else shown}")
    print(
        f"# derived: API {knobs.lab_api_url}, result storage {storage.shown(knobs.result_storage)}"
    )
    for line in storage.settings_shown():  # what the storage's SDK reads (secrets masked)
        print(f"# storage environment: {line}")
    return 0


def add_knobs_parser(sub: argparse._SubParsersAction) -> None:
    """knobs."""
    knobs = sub.add_parser("knobs", help="every knob as the lab's Python reads it")
    knobs.set_defaults(func=cmd_knobs)
