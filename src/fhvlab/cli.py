"""Command-line edge of the lab: parse arguments, run, turn expected errors into one line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from fhvlab import database, paths, server
from fhvlab.errors import LabError
from fhvlab.months import months_for, parse_date, parse_month

# Heavy modules (pyarrow, pandas, scikit-learn, prefect) are imported inside the commands
# that need them, so `make server`, `make run` and friends start in a fraction of a second.

log = logging.getLogger("fhvlab")


def _cmd_data(args: argparse.Namespace) -> int:
    """`make data`: the months DATE needs, or exactly MONTHS."""
    from fhvlab.download import describe, download_months
    from fhvlab.progress import LogProgress, RichBar

    if args.months:
        months = [parse_month(m) for m in args.months]
    else:
        months = list(months_for(parse_date(args.date)))
    base_url = args.base_url or paths.data_url()
    dest = paths.data_dir()
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


def _cmd_pipeline(args: argparse.Namespace) -> int:
    """The lab's training computation alone (no Prefect), as JSON: for `make bench`."""
    import json
    import time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from fhvlab import model, training

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


def _spec(args: argparse.Namespace) -> server.ServerSpec:
    return server.ServerSpec(args.host, server.parse_port(args.port), paths.prefect_home())


def _api_url(args: argparse.Namespace) -> str:
    """--api-url, else API_URL, else the lab server's own URL (PREFECT_HOST, PREFECT_PORT)."""
    explicit = args.api_url or os.environ.get("API_URL", "").strip()
    if explicit:
        return server.parse_api_url(explicit)
    host = os.environ.get("PREFECT_HOST", "127.0.0.1")
    port = server.parse_port(os.environ.get("PREFECT_PORT", "4200"))
    return server.ServerSpec(host, port, paths.prefect_home()).api_url


def _cmd_server_start(args: argparse.Namespace) -> int:
    """`make server`: start the lab's server unless it (or the API_URL server) is up."""
    spec = _spec(args)
    api_url = _api_url(args)
    if not spec.serves(api_url):
        server.require_api(api_url)
        print(f"server: API_URL={api_url} is another server and it answers; nothing to start")
        return 0
    if spec.host not in server.LOOPBACK and not os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        print(
            f"server: WARNING: listening on {spec.host} with no PREFECT_SERVER_API_AUTH_STRING: "
            "anyone who can reach this machine can use the API",
            file=sys.stderr,
        )
    if server.running_pid(spec) is None:
        database.preflight_configured()  # one line and nothing started if it cannot work
    pid, started = server.start(spec, args.ui_api_url, timeout=args.timeout)
    state = "started" if started else "already running"
    if started:
        database.record(spec.home)
    print(
        f"server: {state} (pid {pid}); API {spec.api_url}; UI http://{spec.client_host}:"
        f"{spec.port}; log {spec.log_file}"
    )
    print(f"server: database {database.recorded(spec.home)}")
    return 0


def _cmd_server_stop(args: argparse.Namespace) -> int:
    """`make server-stop`: stop only the server the lab started."""
    spec = _spec(args)
    pid = server.stop(spec)
    print(f"server: stopped (pid {pid})" if pid else "server: not running; nothing to stop")
    return 0


def _cmd_server_status(args: argparse.Namespace) -> int:
    """`make server-status`: PID, URL and health; exit 1 when the API does not answer."""
    spec = _spec(args)
    pid = server.running_pid(spec)
    healthy = server.is_healthy(spec.api_url)
    if pid and healthy:
        print(
            f"server: running (pid {pid}), healthy at {spec.api_url}; UI http://"
            f"{spec.client_host}:{spec.port}"
        )
        print(f"server: database {database.recorded(spec.home)}")
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


def _cmd_api_check(args: argparse.Namespace) -> int:
    """Exit 1 with the fix when the API is down (used before targets that need it)."""
    server.require_api(_api_url(args))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    """`make config` / `make config-reset`: the lab profile's API settings."""
    from fhvlab import orchestration

    if args.reset:
        names = [
            "PREFECT_API_URL",
            "PREFECT_UI_API_URL",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT",
            "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK",
        ]
        values: dict[str, str | None] = dict.fromkeys(names)
    else:
        api_url = _api_url(args)
        ui_url = server.parse_api_url(args.ui_api_url or api_url)
        values = {"PREFECT_API_URL": api_url, "PREFECT_UI_API_URL": ui_url}
    changes = orchestration.update_profile(values)
    home = paths.prefect_home()
    for line in changes or ["nothing to change"]:
        print(f"config: {line}")
    print(f"config: profile {orchestration.PROFILE!r} in {home / 'profiles.toml'}")
    if not args.reset and not server.is_healthy(values["PREFECT_API_URL"] or ""):
        print(f"config: note: nothing answers at {values['PREFECT_API_URL']} yet (make server)")
    return 0


def _cmd_storage(args: argparse.Namespace) -> int:
    """`make storage`: result-storage block, made the default, persistence on."""
    server.require_api(_api_url(args))
    from fhvlab import orchestration

    slug, where = orchestration.save_storage(args.url)
    print(f"storage: block {slug} -> {where} (saved with overwrite: same block every time)")
    changes = orchestration.update_profile(
        {
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": slug,
        }
    )
    for line in changes or ["result persistence already on with that block"]:
        print(f"storage: {line}")
    return 0


def _cmd_work_queue(args: argparse.Namespace) -> int:
    """`make work-queue`: a process work pool and a queue in it."""
    server.require_api(_api_url(args))
    from fhvlab import orchestration

    for line in orchestration.ensure_pool_and_queue(args.pool, args.queue):
        print(f"work-queue: {line}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    """`make tour`'s closing summary: the figures the course homework asks for."""
    import json

    api = _api_url(args)
    server.require_api(api)
    http = server.api_session()
    run_date = parse_date(args.date).isoformat()
    folder = paths.artifacts_dir()
    metrics = json.loads((folder / f"metrics-{run_date}.json").read_text())
    dv_bytes = (folder / f"dv-{run_date}.pkl").stat().st_size
    name = f"{args.flow}/{args.deployment}"
    dep = http.get(f"{api}/deployments/name/{name}", timeout=10)
    dep.raise_for_status()
    deployment = dep.json()
    crons = ", ".join(s["schedule"].get("cron", "?") for s in deployment["schedules"]) or "none"
    body = {
        "deployments": {"id": {"any_": [deployment["id"]]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
    }
    scheduled = http.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
    ui = args.ui_url or api.removesuffix("/api")
    print(
        f"summary: validation RMSE for {run_date}: {metrics['val_rmse']:.4f} "
        f"(train {metrics['train_rmse']:.4f}, {metrics['train_month']} -> {metrics['val_month']})"
    )
    print(f"summary: dv-{run_date}.pkl: {dv_bytes} bytes")
    print(f"summary: deployment {name}: cron {crons}, {len(scheduled)} scheduled runs")
    print(
        f"summary: work pool {deployment['work_pool_name']}, queue {deployment['work_queue_name']}"
    )
    print(f"summary: UI {ui}/deployments/deployment/{deployment['id']}")
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    """`make ui`: screenshot of the deployment's page in the Prefect UI."""
    from fhvlab import ui

    api = _api_url(args)
    server.require_api(api)
    found = server.api_session().get(
        f"{api}/deployments/name/{args.flow}/{args.deployment}", timeout=10
    )
    if found.status_code == 404:
        raise LabError(f"no deployment {args.flow}/{args.deployment}: run `make deploy` first")
    found.raise_for_status()
    url = f"{api.removesuffix('/api')}/deployments/deployment/{found.json()['id']}"
    out = paths.artifacts_dir() / "ui" / "deployment.png"
    ui.screenshot(url, out)
    print(f"ui: {url} -> {out}")
    return 0


def _backfill_dates(args: argparse.Namespace) -> list:
    """The range's dates, or BadInput for a range that must be refused (nothing created)."""
    from fhvlab import backfill

    backfill.parse_concurrency(args.concurrency)
    return backfill.plan_dates(args.start, args.end, args.cron, args.timezone)


def _cmd_backfill(args: argparse.Namespace) -> int:
    """`make backfill`: one parent run for the dates not yet run (or failed); WATCH waits."""
    from fhvlab import backfill as bf

    if args.check:  # before anything exists: Prefect would create its home when imported
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fhvlab-check-") as scratch:
            os.environ["PREFECT_HOME"] = scratch
            _backfill_dates(args)
        return 0
    dates = _backfill_dates(args)
    server.require_api(_api_url(args))
    from uuid import UUID

    from fhvlab import backfill_api

    first, last = bf.parse_range(args.start, args.end)
    concurrency = bf.parse_concurrency(args.concurrency)
    with backfill_api.client() as http:
        retired = backfill_api.remove_old_limit(http)
        if retired:
            print(f"backfill: {retired}")
        runs = backfill_api.read_date_runs(http, dates)
        claims = backfill_api.read_claims(http)
        decision = bf.decide(dates, runs, claims)
        left = ", ".join(f"{len(v)} {k}" for k, v in sorted(decision.existing.items()))
        print(
            f"backfill: {len(dates)} dates in {first}..{last} (cron {args.cron!r}, "
            f"{args.timezone}): {len(decision.create)} new, {len(decision.rerun)} to run "
            f"again, {decision.existing_count} already existed" + (f" ({left})" if left else "")
        )
        parent = None
        if decision.to_run:
            key = bf.idempotency_key(decision.to_run, runs)
            parent = backfill_api.create_parent(
                http, decision.to_run, first, last, dates, concurrency, key
            )
            print(
                f"backfill: flow run {parent.name!r} runs {len(decision.to_run)} dates, "
                f"{concurrency} at a time; UI {_ui_base(args)}/runs/flow-run/{parent.id}"
            )
        if not args.watch:
            if decision.to_run:
                print("backfill: a worker runs it (make worker); WATCH=1 waits for the results")
            return 0
        if backfill_api.workers_online(http, args.pool) == 0:
            print(
                f"backfill: no worker is polling pool {args.pool!r}: start one in another "
                "terminal with `make worker`; waiting",
                flush=True,
            )
        # The backfill runs that will run this range's dates: this call's, or earlier ones'.
        waiting_for = [UUID(c.id) for c in claims if set(dates) & c.dates]
        waiting_for += [parent.id] if parent and parent.id not in waiting_for else []
        print(
            f"backfill: waiting for {len(waiting_for)} backfill run(s) "
            f"(at most WATCH_TIMEOUT={args.watch_timeout:.0f} s)",
            flush=True,
        )
        finished = backfill_api.wait_for_runs(waiting_for, args.watch_timeout)
        folder = paths.artifacts_dir()
        csv_path, png_path = bf.report_paths(folder, first, last)
        ended = http.read_flow_run(parent.id) if parent and finished else None
        if ended is not None and backfill_api.summary_written_by(ended, csv_path, png_path):
            rows = backfill_api.report_rows(http, dates, folder)  # its summary: no second copy
        else:
            rows, csv_path, png_path = backfill_api.build_report(http, dates, first, last, folder)
    for row in rows:
        print(f"backfill: {bf.format_row(row)}")
    print(f"backfill: summary {csv_path} and {png_path}")
    if not finished:
        raise LabError(
            f"backfill: not every date was final after WATCH_TIMEOUT={args.watch_timeout:.0f} s"
        )
    bad = [r["date"] for r in rows if r["state"] != "COMPLETED"]
    if bad:
        raise LabError(f"{len(bad)} of {len(rows)} dates did not complete: {', '.join(bad)}")
    return 0


def _cmd_deployed(args: argparse.Namespace) -> int:
    """Exit 0 if the API answers and FLOW/DEPLOYMENT exists on POOL/QUEUE, else 1 (quietly).

    `make backfill` asks this first and runs `make deploy` only when the answer is no.
    """
    api = _api_url(args)
    if not server.is_healthy(api):
        return 1
    found = server.api_session().get(f"{api}/deployments/name/{args.name}", timeout=10)
    if found.status_code != 200:
        return 1
    deployment = found.json()
    same = (deployment.get("work_pool_name"), deployment.get("work_queue_name"))
    if args.limit is not None:  # a deployment made before prefect.yaml gave it its limit
        same += ((deployment.get("global_concurrency_limit") or {}).get("limit"),)
        return 0 if same == (args.pool, args.queue, args.limit) else 1
    return 0 if same == (args.pool, args.queue) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    """`make report`: rebuild a range's CSV, PNG and table artifact from the API."""
    from fhvlab import backfill as bf

    dates = bf.plan_dates(args.start, args.end, args.cron, args.timezone)
    first, last = bf.parse_range(args.start, args.end)
    server.require_api(_api_url(args))
    from fhvlab import backfill_api

    with backfill_api.client() as http:
        rows, csv_path, png_path = backfill_api.build_report(
            http, dates, first, last, paths.artifacts_dir()
        )
    for row in rows:
        print(f"report: {bf.format_row(row)}")
    print(f"report: {bf.table_markdown_title(first, last, rows)}")
    print(f"report: {csv_path} and {png_path}")
    return 0


def _ui_base(args: argparse.Namespace) -> str:
    return _api_url(args).removesuffix("/api")


def _add_range_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", default="", help="first date YYYY-MM-DD")
    parser.add_argument("--to", dest="end", default="", help="last date YYYY-MM-DD (included)")
    parser.add_argument("--cron", default=os.environ.get("CRON", "0 9 15 * *"))
    parser.add_argument("--timezone", default=os.environ.get("TIMEZONE", "UTC"))


def _cmd_automations(args: argparse.Namespace) -> int:
    """`make deploy`'s last step: crashed runs detected (no heartbeat) and re-run once."""
    server.require_api(_api_url(args))
    from fhvlab import automations, processes
    from fhvlab import backfill as bf

    with processes.locked(paths.prefect_home() / ".automations.lock"):
        lines = automations.ensure_crash_automations(args.flow, args.deployment)
        lines += automations.ensure_backfill_automation(bf.PARENT_DEPLOYMENT, bf.TAG)
    for line in lines:
        print(f"deploy: {line}")
    return 0


def _cmd_with_lock(args: argparse.Namespace) -> int:
    """Run a command while holding one of the lab's locks (`make up` serialises its deploy)."""
    import subprocess

    from fhvlab import processes

    command = [c for c in args.command if c != "--"]
    if not command:
        raise LabError("with-lock: no command given")
    with processes.locked(paths.prefect_home() / f".{args.name}.lock"):
        return subprocess.call(command)


def _cmd_alerts(args: argparse.Namespace) -> int:
    """`make alerts` / `make alerts-off`: a webhook message per FAILED or CRASHED run."""
    server.require_api(_api_url(args))
    from fhvlab import automations, processes

    url = os.environ.get("WEBHOOK_URL", "").strip()
    if not args.off and not url:
        raise LabError(
            "no WEBHOOK_URL given: make alerts WEBHOOK_URL=https://hooks.slack.com/services/..."
        )
    with processes.locked(paths.prefect_home() / ".automations.lock"):
        if args.off:
            lines = automations.remove_watch_alerts()  # issue 20
            lines += automations.remove_alerts(args.deployment)
        else:
            lines = automations.ensure_alerts(args.flow, args.deployment, url)
            lines += automations.ensure_watch_alerts()  # issue 20
    for line in lines:
        print(f"alerts: {line}")
    return 0


def _cmd_worker_start(args: argparse.Namespace) -> int:
    """`make up`'s last step: one background worker, returned once it is online."""
    from fhvlab import lab

    api = _api_url(args)
    server.require_api(api)
    home = paths.prefect_home()
    pid, started = lab.start_worker(home, api, args.pool, args.queue, paths.ROOT, args.timeout)
    state = "started" if started else "already running"
    log_file = home / "worker.log"
    print(f"worker: {state} (pid {pid}), online in pool {args.pool!r}; log {log_file}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    """`make down`: stop the lab's worker, then its server; everything on disk stays."""
    from fhvlab import lab

    home = paths.prefect_home()
    stopped = lab.stop_worker(home, grace=args.grace)
    print(
        f"down: worker {stopped[1]} (pid {stopped[0]})"
        if stopped
        else "down: no lab worker running"
    )
    pid = server.stop(_spec(args), timeout=args.grace)
    print(f"down: server stopped (pid {pid})" if pid else "down: no lab server running")
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    """`make logs`: the last lines of the server's and the worker's log; --follow follows."""
    from fhvlab import lab

    lab.show_logs(paths.prefect_home(), args.lines, args.follow, args.seconds)
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    """`make reset`: list what would go; with --yes stop everything and delete it."""
    from fhvlab import lab, processes

    if os.environ.get("DATABASE_URL", "").strip():
        raise LabError(
            "DATABASE_URL is set: the server's database is not a file in the lab's home; "
            "make reset only wipes the SQLite database (drop the PostgreSQL database yourself)"
        )
    home = paths.prefect_home()
    storage = os.environ.get("STORAGE_URL", "").strip()
    targets = processes.reset_targets(home, storage)
    keep = "profile, logs, .venv, DATA_DIR and ARTIFACTS_DIR are kept"
    if not targets:
        print(f"reset: nothing to delete in {home} ({keep})")
        return 0
    for path in targets:
        print(f"reset: {'deleting' if args.yes else 'would delete'} {path}")
    if not args.yes:
        print(f"reset: nothing deleted; to delete these: make reset YES=1 ({keep})")
        return 0
    stopped = lab.stop_worker(home)
    if stopped:
        print(f"reset: worker stopped (pid {stopped[0]})")
    pid = server.stop(_spec(args))
    if pid:
        print(f"reset: server stopped (pid {pid})")
    with processes.locked(processes.server_process(home).lock_file):
        processes.remove(processes.reset_targets(home, storage))
    from fhvlab import orchestration

    # The storage block was a row of the deleted database: a profile still naming it would
    # fail every run that persists a result (make storage, run by make up, saves it again).
    for line in orchestration.update_profile({"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": None}):
        print(f"reset: {line} (its block was in the deleted database; make storage saves it)")
    print(f"reset: done; `make up` starts from an empty database ({keep})")
    return 0


# What `make` tells doctor about the calling shell; meaningless inside the lab's own shell.
LAB_SHELL_VARS = ("LAB_SHELL_PREFECT_API_URL", "LAB_SHELL_PREFECT_PROFILE")


def _cmd_shell(args: argparse.Namespace) -> int:
    """`make shell`: a subshell where `prefect` is the lab's; --print: export lines instead."""
    from fhvlab import lab

    home = paths.prefect_home()
    values = lab.shell_env(home, _api_url(args), paths.ROOT / ".venv")
    if not lab.profile_exists(home):
        values.pop("PREFECT_PROFILE")
    if args.print:
        print('# the lab\'s Prefect in this shell: eval "$(make -s shell-env)"')
        for line in lab.export_lines(values):
            print(line)
        return 0
    shell = os.environ.get("SHELL") or "/bin/sh"
    print(
        f"shell: {shell} with the lab's Prefect (PREFECT_HOME={home}, "
        f"PREFECT_API_URL={values['PREFECT_API_URL']}); `exit` comes back",
        flush=True,
    )
    env = {**os.environ, **values, "FHVLAB_SHELL": "1"}
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "WEBHOOK_URL", *LAB_SHELL_VARS):
        env.pop(name, None)
    os.execvpe(shell, [shell], env)
    return 0  # not reached


def _add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("PREFECT_HOST", "127.0.0.1"))
    parser.add_argument("--port", default=os.environ.get("PREFECT_PORT", "4200"))


def _add_api_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", default=None, help="default: API_URL, else the lab server's")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m fhvlab` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m fhvlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="download FHV months into DATA_DIR")
    which = data.add_mutually_exclusive_group(required=True)
    which.add_argument("--date", help="run date YYYY-MM-DD: fetch the two months before it")
    which.add_argument("--months", nargs="+", metavar="YYYY-MM", help="fetch exactly these")
    data.add_argument("--force", action="store_true", help="download even if a valid file exists")
    data.add_argument("--base-url", help=f"default: $DATA_URL or {paths.DEFAULT_DATA_URL}")
    data.add_argument("--workers", type=int, default=3, help="concurrent downloads (default 3)")
    data.add_argument("--backoff", type=float, default=0.5, help="retry backoff factor, seconds")
    data.set_defaults(func=_cmd_data)

    pipe = sub.add_parser("pipeline", help="train+evaluate two files without Prefect (bench)")
    pipe.add_argument("train")
    pipe.add_argument("val")
    pipe.set_defaults(func=_cmd_pipeline)

    srv = sub.add_parser("server", help="the lab's Prefect server").add_subparsers(
        dest="action", required=True
    )
    start = srv.add_parser("start", help="start it in the background, wait until healthy")
    _add_server_args(start)
    _add_api_arg(start)
    start.add_argument("--ui-api-url", default=os.environ.get("UI_API_URL") or None)
    start.add_argument("--timeout", type=float, default=150.0, help="health wait, seconds")
    start.set_defaults(func=_cmd_server_start)
    for name, func in (("stop", _cmd_server_stop), ("status", _cmd_server_status)):
        cmd = srv.add_parser(name)
        _add_server_args(cmd)
        cmd.set_defaults(func=func)

    check = sub.add_parser("api-check", help="fail with the fix if the Prefect API is down")
    _add_api_arg(check)
    check.set_defaults(func=_cmd_api_check)

    config = sub.add_parser("config", help="set the lab profile's API URL")
    _add_api_arg(config)
    config.add_argument("--ui-api-url", default=os.environ.get("UI_API_URL") or None)
    config.add_argument("--reset", action="store_true", help="unset what config/storage set")
    config.set_defaults(func=_cmd_config)

    storage = sub.add_parser("storage", help="default result storage block")
    _add_api_arg(storage)
    storage.add_argument("--url", required=True, help="folder or fsspec URL (s3://...)")
    storage.set_defaults(func=_cmd_storage)

    summary = sub.add_parser("summary", help="the tour's closing figures")
    _add_api_arg(summary)
    summary.add_argument("--date", required=True)
    summary.add_argument("--flow", default="fhv-duration-training")
    summary.add_argument("--deployment", default=os.environ.get("DEPLOYMENT", "fhv-monthly"))
    summary.add_argument("--ui-url", default=None)
    summary.set_defaults(func=_cmd_summary)

    shot = sub.add_parser("ui", help="screenshot of the deployment page")
    _add_api_arg(shot)
    shot.add_argument("--flow", default="fhv-duration-training")
    shot.add_argument("--deployment", default=os.environ.get("DEPLOYMENT", "fhv-monthly"))
    shot.set_defaults(func=_cmd_ui)

    fill = sub.add_parser("backfill", help="train every cron date of a range (make backfill)")
    _add_api_arg(fill)
    _add_range_args(fill)
    fill.add_argument("--concurrency", default="2", help="dates running at once (default 2)")
    fill.add_argument("--pool", default=os.environ.get("WORK_POOL", "fhv-pool"))
    fill.add_argument("--watch", action="store_true", help="wait until every date is final")
    fill.add_argument("--watch-timeout", type=float, default=1800.0, help="seconds")
    fill.add_argument("--check", action="store_true", help="only validate the range")
    fill.set_defaults(func=_cmd_backfill)

    deployed = sub.add_parser("deployed", help="exit 0 if a deployment exists on pool/queue")
    _add_api_arg(deployed)
    deployed.add_argument("--name", required=True, help="FLOW/DEPLOYMENT")
    deployed.add_argument("--pool", default=os.environ.get("WORK_POOL", "fhv-pool"))
    deployed.add_argument("--queue", default=os.environ.get("WORK_QUEUE", "fhv-queue"))
    deployed.add_argument("--limit", type=int, default=None, help="its concurrency limit, too")
    deployed.set_defaults(func=_cmd_deployed)

    report = sub.add_parser("report", help="rebuild a backfill range's summary (make report)")
    _add_api_arg(report)
    _add_range_args(report)
    report.set_defaults(func=_cmd_report)

    auto = sub.add_parser("automations", help="crash detection and re-run automations")
    _add_api_arg(auto)
    auto.add_argument("--flow", default="fhv-duration-training")
    auto.add_argument("--deployment", default=os.environ.get("DEPLOYMENT", "fhv-monthly"))
    auto.set_defaults(func=_cmd_automations)

    alerts = sub.add_parser("alerts", help="webhook alerts for FAILED/CRASHED runs ($WEBHOOK_URL)")
    _add_api_arg(alerts)
    alerts.add_argument("--flow", default="fhv-duration-training")
    alerts.add_argument("--deployment", default=os.environ.get("DEPLOYMENT", "fhv-monthly"))
    alerts.add_argument("--off", action="store_true", help="remove the alerts")
    alerts.set_defaults(func=_cmd_alerts)

    lock = sub.add_parser("with-lock", help="run a command under a lock in PREFECT_HOME")
    lock.add_argument("name", choices=["up"])
    lock.add_argument("command", nargs=argparse.REMAINDER)
    lock.set_defaults(func=_cmd_with_lock)

    wstart = sub.add_parser("worker-start", help="background worker, wait until online")
    _add_api_arg(wstart)
    wstart.add_argument("--pool", default=os.environ.get("WORK_POOL", "fhv-pool"))
    wstart.add_argument("--queue", default=os.environ.get("WORK_QUEUE", "fhv-queue"))
    wstart.add_argument("--timeout", type=float, default=90.0, help="online wait, seconds")
    wstart.set_defaults(func=_cmd_worker_start)

    down = sub.add_parser("down", help="stop the lab's worker and server")
    _add_server_args(down)
    down.add_argument("--grace", type=float, default=20.0, help="SIGTERM -> SIGKILL, seconds")
    down.set_defaults(func=_cmd_down)

    logs = sub.add_parser("logs", help="last lines of the server and worker logs")
    logs.add_argument("--lines", type=int, default=40)
    logs.add_argument("--follow", action="store_true")
    logs.add_argument("--seconds", type=float, default=None, help="stop following after")
    logs.set_defaults(func=_cmd_logs)

    reset = sub.add_parser("reset", help="wipe the lab's Prefect database and result storage")
    _add_server_args(reset)
    reset.add_argument("--yes", action="store_true")
    reset.set_defaults(func=_cmd_reset)

    shell = sub.add_parser("shell", help="a subshell with the lab's Prefect")
    _add_api_arg(shell)
    shell.add_argument("--print", action="store_true", help="print export lines instead")
    shell.set_defaults(func=_cmd_shell)

    queue = sub.add_parser("work-queue", help="process work pool and queue")
    _add_api_arg(queue)
    queue.add_argument("--pool", required=True)
    queue.add_argument("--queue", required=True)
    queue.set_defaults(func=_cmd_work_queue)

    # issue 20: `make watch` and `make events` (runs started by events; src/fhvlab/watch_cli.py)
    from fhvlab import watch_cli

    watch_cli.add_parsers(sub, _add_api_arg, _api_url)
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; expected failures become `error: ...` on stderr and exit 1."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return func(args)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was left half-written", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m fhvlab`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    return run(args.func, args)
