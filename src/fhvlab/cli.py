"""Command-line edge of the lab: parse arguments, run, turn expected errors into one line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from fhvlab import paths, server
from fhvlab.errors import LabError
from fhvlab.months import months_for, parse_date, parse_month

# Heavy modules (pyarrow, pandas, scikit-learn, prefect) are imported inside the commands
# that need them, so `make server`, `make run` and friends start in a fraction of a second.

log = logging.getLogger("fhvlab")


def _cmd_data(args: argparse.Namespace) -> int:
    """`make data`: the months DATE needs, or exactly MONTHS."""
    from fhvlab.download import describe, download_months
    from fhvlab.progress import LogProgress, TerminalBar

    if args.months:
        months = [parse_month(m) for m in args.months]
    else:
        months = list(months_for(parse_date(args.date)))
    base_url = args.base_url or paths.data_url()
    dest = paths.data_dir()
    print(f"data: months {' '.join(map(str, months))} from {base_url} into {dest}")
    progress = TerminalBar() if sys.stderr.isatty() else LogProgress(log)
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
    pid, started = server.start(spec, args.ui_api_url, timeout=args.timeout)
    state = "started" if started else "already running"
    print(
        f"server: {state} (pid {pid}); API {spec.api_url}; UI http://{spec.client_host}:"
        f"{spec.port}; log {spec.log_file}"
    )
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
    start.add_argument("--timeout", type=float, default=60.0, help="health wait, seconds")
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

    queue = sub.add_parser("work-queue", help="process work pool and queue")
    _add_api_arg(queue)
    queue.add_argument("--pool", required=True)
    queue.add_argument("--queue", required=True)
    queue.set_defaults(func=_cmd_work_queue)
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
