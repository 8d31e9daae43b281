"""The module, step by step: `make data`, `server`, `config`, `storage`, `work-queue`, `ui`.

Each command prints what it did; heavy modules (pyarrow, scikit-learn, prefect) are
imported inside the commands that need them, so a command with nothing to do starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from fhvlab import settings
from fhvlab.cli import chain, cohort, common
from fhvlab.data.months import months_for, parse_date, parse_month
from fhvlab.errors import LabError
from fhvlab.local import database, server

log = logging.getLogger("fhvlab")
FLOW = "fhv-duration-training"  # the training flow's name (flows/train.py)


def cmd_data(args: argparse.Namespace) -> int:
    """`make data`: the months DATE needs, or exactly MONTHS."""
    from fhvlab.data.download import describe, download_months
    from fhvlab.data.progress import LogProgress, RichBar

    if args.months:
        months = [parse_month(m) for m in args.months]
    else:
        months = list(months_for(parse_date(args.date)))
    base_url = args.base_url or settings.data_url()
    dest = settings.data_dir()
    print(f"data: months {' '.join(map(str, months))} from {base_url} into {dest}")
    bar = RichBar() if sys.stderr.isatty() else contextlib.nullcontext(LogProgress(log))
    with bar as progress:
        fetched = download_months(
            months,
            dest,
            base_url,
            force=args.force,
            workers=args.workers,
            backoff=args.backoff,
            progress=progress,
        )
    for line in describe(fetched):
        print(f"data: {line}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """The lab's training computation alone (no Prefect), as JSON: for `make bench`."""
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from fhvlab.model import duration as model
    from fhvlab.model import training

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # like the flow: both months read side by side
        train, val = pool.map(model.month_stats, (Path(args.train), Path(args.val)))
    read = time.perf_counter()
    model.warm_up()  # imports, kept out of the compute time as the course script's are
    imported = time.perf_counter()
    dv, lr = model.fit(train)
    scores = training.evaluate(dv, lr, train, val)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                **scores,
                "train_rows": [train.rows_read, train.rows],
                "val_rows": [val.rows_read, val.rows],
                "pairs": [len(train.pairs), len(val.pairs)],
                "seconds": (read - start) + (done - imported),
                "read_seconds": read - start,
                "import_seconds": imported - read,
            }
        )
    )
    return 0


def cmd_server_start(args: argparse.Namespace) -> int:
    """`make server`: start the lab's server unless it (or the API_URL server) is up."""
    from fhvlab.cli import chain

    return chain.run_target("server", args)


def cmd_server_stop(args: argparse.Namespace) -> int:
    """`make server-stop`: stop only the server the lab started."""
    spec = common.spec(args)
    pid = server.stop(spec)
    print(f"server: stopped (pid {pid})" if pid else "server: not running; nothing to stop")
    return 0


def cmd_server_status(args: argparse.Namespace) -> int:
    """`make server-status`: PID, URL and health; exit 1 when the API does not answer."""
    spec = common.spec(args)
    pid = server.running_pid(spec)
    healthy = server.is_healthy(spec.api_url)
    if pid and healthy:
        print(
            f"server: running (pid {pid}), healthy at {spec.api_url}; UI http://"
            f"{spec.client_host}:{spec.port}"
        )
        print(f"server: database {database.started_on(spec.home)}")
        return 0
    if healthy:
        print(f"server: a Prefect server answers at {spec.api_url}, but the lab did not start it")
        return 0
    if pid:
        print(
            f"server: process {pid} is up but {spec.api_url}/health does not answer; "
            f"see {spec.log_file}"
        )
        return 1
    print(f"server: not running (start it with `make server`); expected at {spec.api_url}")
    return 1


def cmd_api_check(args: argparse.Namespace) -> int:
    """Exit 1 with the fix when the API is down (used before targets that need it);
    --joining N: warn when N more workers would crowd a SQLite server (`make worker`)."""
    url = common.api_url(args)
    server.require_api(url)
    if args.joining is not None:
        cohort.warn_if_crowded(url, joining=args.joining)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """`make config` / `make config-reset`: the lab profile's API settings."""
    if not args.reset:
        from fhvlab.cli import chain

        return chain.run_target("config", args)
    from fhvlab.local import record
    from fhvlab.orchestration import profile as orchestration

    names = [
        "PREFECT_API_URL",
        "PREFECT_UI_API_URL",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT",
        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK",
    ]
    changes = orchestration.update_profile(dict.fromkeys(names))
    home = settings.prefect_home()
    record.forget(home, ("config", "storage"))
    for line in changes or ["nothing to change"]:
        print(f"config: {line}")
    print(f"config: profile {orchestration.PROFILE!r} in {home / 'profiles.toml'}")
    return 0


def cmd_storage(args: argparse.Namespace) -> int:
    """`make storage`: result-storage block, made the default, persistence on."""
    from fhvlab.cli import chain

    return chain.run_target("storage", args)


def cmd_storage_check(args: argparse.Namespace) -> int:
    """`make doctor`'s storage line: the result storage a run would use answers (one probe)."""
    from fhvlab.orchestration import storage

    print(f"storage-check: {storage.check_default()} answers (an object written, read, deleted)")
    return 0


def cmd_work_queue(args: argparse.Namespace) -> int:
    """`make work-queue`: a process work pool and a queue in it."""
    from fhvlab.cli import chain

    return chain.run_target("work-queue", args)


def cmd_deploy(args: argparse.Namespace) -> int:
    """`make deploy`: server, profile, storage, pool and queue, prefect.yaml, automations."""
    from fhvlab.cli import chain

    return chain.run_target("deploy", args)


def cmd_run(args: argparse.Namespace) -> int:
    """`make run`: a run of the deployment now for DATE; --watch waits for its end."""
    api_url = common.api_url(args)
    server.require_api(api_url)
    try:
        parse_date(args.date)
    except LabError:
        raise LabError(f"DATE={args.date!r} is not a date YYYY-MM-DD (e.g. 2021-08-15)") from None
    name = f"{args.flow}/{args.deployment}"
    watch = f" --watch --watch-timeout {args.watch_timeout:.0f}" if args.watch else ""
    print(f"run: $ prefect deployment run {name!r} --param date={args.date}{watch}", flush=True)
    from fhvlab.orchestration import api, trained
    from fhvlab.orchestration import deployments as runs

    day = parse_date(args.date)
    with api.client() as http:
        done = trained.answer(trained.ask(http, [day])).completed.get(day)
    if done is not None:
        print(f"run: {day} already has a COMPLETED run {done.name!r} ({done.id}); running it again")
    options = {"flow_run_name": trained.run_name(day), "tags": ["manual"]}
    flow_run = runs.run_now(name, {"date": args.date}, **options)
    ui = f"{api_url.removesuffix('/api')}/runs/flow-run/{flow_run.id}"
    print(f"run: created flow run {flow_run.name!r} for {name}; UI {ui}", flush=True)
    if not args.watch:
        print("run: a worker runs it (make worker, or make up's); WATCH=1 waits for it here")
        return 0
    state = runs.wait(flow_run.id, args.watch_timeout)
    print(f"run: flow run {flow_run.name!r} ended {state}")
    return 0 if state == "Completed" else 1


def cmd_deployed(args: argparse.Namespace) -> int:
    """Exit 0 if the API answers and FLOW/DEPLOYMENT exists on POOL/QUEUE, else 1 (quietly).

    `make backfill` asks this first and runs `make deploy` only when the answer is no.
    """
    from fhvlab.local import record

    deployment = record.Api(common.api_url(args), timeout=10.0).call(
        f"/deployments/name/{args.name}"
    )
    if not isinstance(deployment, dict):  # no server, no such deployment, or no answer
        return 1
    same = (deployment.get("work_pool_name"), deployment.get("work_queue_name"))
    if args.limit is not None:  # a deployment made before prefect.yaml gave it its limit
        same += ((deployment.get("global_concurrency_limit") or {}).get("limit"),)
        return 0 if same == (args.pool, args.queue, args.limit) else 1
    return 0 if same == (args.pool, args.queue) else 1


def cmd_ui(args: argparse.Namespace) -> int:
    """`make ui`: screenshot of the deployment's page in the Prefect UI."""
    from fhvlab.local import ui

    base = common.api_url(args)
    server.require_api(base)
    from prefect.exceptions import ObjectNotFound

    from fhvlab.orchestration import api

    with api.client() as http:
        try:
            found = http.read_deployment_by_name(f"{args.flow}/{args.deployment}")
        except ObjectNotFound:
            raise LabError(
                f"no deployment {args.flow}/{args.deployment}: run `make deploy` first"
            ) from None
    url = f"{base.removesuffix('/api')}/deployments/deployment/{found.id}"
    out = settings.artifacts_dir() / "ui" / "deployment.png"
    ui.screenshot(url, out)
    print(f"ui: {url} -> {out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction, knobs: settings.Settings) -> None:
    """data, pipeline, server, api-check, config, storage, work-queue, deploy, run, deployed,
    automations, ui."""
    data = sub.add_parser("data", help="download FHV months into DATA_DIR")
    which = data.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", help="run date YYYY-MM-DD: fetch the two months before it")
    which.add_argument("--months", nargs="+", metavar="YYYY-MM", help="fetch exactly these")
    data.add_argument("--force", action="store_true", help="download even if a valid file exists")
    data.add_argument("--base-url", help=f"default: DATA_URL ({knobs.data_url})")
    data.add_argument("--workers", type=int, default=3, help="concurrent downloads (default 3)")
    data.add_argument("--backoff", type=float, default=0.5, help="retry backoff factor, seconds")
    data.set_defaults(func=cmd_data)

    pipe = sub.add_parser("pipeline", help="train+evaluate two files without Prefect (bench)")
    pipe.add_argument("train")
    pipe.add_argument("val")
    pipe.set_defaults(func=cmd_pipeline)

    srv = sub.add_parser("server", help="the lab's Prefect server").add_subparsers(
        dest="action", required=True
    )
    begin = srv.add_parser("start", help="start it in the background, wait until healthy")
    chain.add_chain_args(begin, knobs)
    begin.set_defaults(func=cmd_server_start)
    for name, func in (("stop", cmd_server_stop), ("status", cmd_server_status)):
        cmd = srv.add_parser(name)
        common.add_server_args(cmd, knobs)
        cmd.set_defaults(func=func)

    check = sub.add_parser("api-check", help="fail with the fix if the Prefect API is down")
    common.add_api_arg(check)
    check.add_argument("--joining", type=int, default=None, help="workers about to start")
    check.set_defaults(func=cmd_api_check)

    config = sub.add_parser("config", help="set the lab profile's API URL")
    chain.add_chain_args(config, knobs)
    config.add_argument("--reset", action="store_true", help="unset what config/storage set")
    config.set_defaults(func=cmd_config)

    storage = sub.add_parser("storage", help="default result storage block")
    chain.add_chain_args(storage, knobs)
    storage.add_argument("--url", default=knobs.result_storage, help="folder or fsspec URL")
    storage.set_defaults(func=cmd_storage)
    check_storage = sub.add_parser("storage-check", help="does the runs' result storage answer?")
    check_storage.set_defaults(func=cmd_storage_check)

    queue = sub.add_parser("work-queue", help="process work pool and queue")
    chain.add_chain_args(queue, knobs)
    queue.set_defaults(func=cmd_work_queue)

    deploy = sub.add_parser("deploy", help="the whole set-up chain and prefect.yaml's deployments")
    chain.add_chain_args(deploy, knobs)
    deploy.set_defaults(func=cmd_deploy)

    run = sub.add_parser("run", help="a run of the deployment now (prefect deployment run)")
    common.add_api_arg(run)
    run.add_argument("--date", default=knobs.date)
    run.add_argument("--flow", default=FLOW)
    run.add_argument("--deployment", default=knobs.deployment)
    run.add_argument("--watch", action="store_true", help="wait for the run's end")
    run.add_argument("--watch-timeout", type=float, default=1800.0)
    run.set_defaults(func=cmd_run)

    deployed = sub.add_parser("deployed", help="exit 0 if a deployment exists on pool/queue")
    common.add_api_arg(deployed)
    deployed.add_argument("--name", required=True, help="FLOW/DEPLOYMENT")
    deployed.add_argument("--pool", default=knobs.work_pool)
    deployed.add_argument("--queue", default=knobs.work_queue)
    deployed.add_argument("--limit", type=int, default=None, help="its concurrency limit, too")
    deployed.set_defaults(func=cmd_deployed)

    shot = sub.add_parser("ui", help="screenshot of the deployment page")
    common.add_api_arg(shot)
    shot.add_argument("--flow", default=FLOW)
    shot.add_argument("--deployment", default=knobs.deployment)
    shot.set_defaults(func=cmd_ui)
