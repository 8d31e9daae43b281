"""`make up`, `down`, `logs`, `reset`, `shell`, `alerts`: running the lab day to day."""

from __future__ import annotations

import argparse
import os

from fhvlab import settings
from fhvlab.cli import cohort, common
from fhvlab.errors import LabError
from fhvlab.local import server

# What `make` tells doctor about the calling shell; meaningless inside the lab's own shell.
LAB_SHELL_VARS = ("LAB_SHELL_PREFECT_API_URL", "LAB_SHELL_PREFECT_PROFILE")


def cmd_up(args: argparse.Namespace) -> int:
    """`make up`: the deploy chain, then one background worker, online."""
    from fhvlab.cli import chain

    code = chain.run_target("up", args)
    if code == 0:
        cohort.warn_if_crowded(common.api_url(args))
    knobs = settings.current()
    print(
        f"up: UI http://{knobs.client_host}:{knobs.prefect_port}; "
        "make run DATE=... WATCH=1, make logs, make down"
    )
    return code


def cmd_down(args: argparse.Namespace) -> int:
    """`make down`: stop the lab's worker, then its server; everything on disk stays."""
    from fhvlab.local import lab

    home = settings.prefect_home()
    stopped = lab.stop_worker(home, grace=args.grace)
    print(
        f"down: worker {stopped[1]} (pid {stopped[0]})"
        if stopped
        else "down: no lab worker running"
    )
    pid = server.stop(common.spec(args), timeout=args.grace)
    print(f"down: server stopped (pid {pid})" if pid else "down: no lab server running")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """`make logs`: the last lines of the server's and the worker's log; --follow follows."""
    from fhvlab.local import lab

    lab.show_logs(settings.prefect_home(), args.lines, args.follow, args.seconds)
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """`make reset`: list what would go; with --yes stop everything and delete it."""
    from fhvlab.local import lab, processes

    knobs = settings.current()
    if knobs.database_url.get_secret_value().strip():
        raise LabError(
            "DATABASE_URL is set: the server's database is not a file in the lab's home; "
            "make reset only wipes the SQLite database (drop the PostgreSQL database yourself)"
        )
    home = settings.prefect_home()
    storage = knobs.storage_url.strip()
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
    pid = server.stop(common.spec(args))
    if pid:
        print(f"reset: server stopped (pid {pid})")
    with processes.locked(processes.server_process(home).lock_file):
        processes.remove(processes.reset_targets(home, storage))
    from fhvlab.local import record

    record.forget(home)  # its objects were in the deleted database
    from fhvlab.orchestration import profile as orchestration

    # The storage block was a row of the deleted database: a profile still naming it would
    # fail every run that persists a result (make storage, run by make up, saves it again).
    for line in orchestration.update_profile({"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": None}):
        print(f"reset: {line} (its block was in the deleted database; make storage saves it)")
    print(f"reset: done; `make up` starts from an empty database ({keep})")
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    """`make shell`: a subshell where `prefect` is the lab's; --print: export lines instead."""
    from fhvlab.local import lab

    home = settings.prefect_home()
    values = lab.shell_env(home, common.api_url(args), settings.ROOT / ".venv")
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


def cmd_alerts(args: argparse.Namespace) -> int:
    """`make alerts` / `make alerts-off`: a webhook message per FAILED or CRASHED run."""
    server.require_api(common.api_url(args))
    from fhvlab.local import processes
    from fhvlab.orchestration import automations

    url = settings.current().webhook_url.get_secret_value().strip()
    if not args.off and not url:
        raise LabError(
            "no WEBHOOK_URL given: make alerts WEBHOOK_URL=https://hooks.slack.com/services/..."
        )
    with processes.locked(settings.prefect_home() / ".automations.lock"):
        if args.off:
            lines = automations.remove_watch_alerts()  # issue 20
            lines += automations.remove_alerts(args.deployment)
        else:
            lines = automations.ensure_alerts(args.flow, args.deployment, url)
            lines += automations.ensure_watch_alerts()  # issue 20
    for line in lines:
        print(f"alerts: {line}")
    return 0


def add_parsers(sub: argparse._SubParsersAction, knobs: settings.Settings) -> None:
    """with-lock, up, worker-start, down, logs, reset, shell, alerts."""

    from fhvlab.cli import chain

    up = sub.add_parser("up", help="server, deployments and one background worker")
    chain.add_chain_args(up, knobs)
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the lab's worker and server")
    common.add_server_args(down, knobs)
    down.add_argument("--grace", type=float, default=20.0, help="SIGTERM -> SIGKILL, seconds")
    down.set_defaults(func=cmd_down)

    logs = sub.add_parser("logs", help="last lines of the server and worker logs")
    logs.add_argument("--lines", type=int, default=40)
    logs.add_argument("--follow", action="store_true")
    logs.add_argument("--seconds", type=float, default=None, help="stop following after")
    logs.set_defaults(func=cmd_logs)

    reset = sub.add_parser("reset", help="wipe the lab's Prefect database and result storage")
    common.add_server_args(reset, knobs)
    reset.add_argument("--yes", action="store_true")
    reset.set_defaults(func=cmd_reset)

    shell = sub.add_parser("shell", help="a subshell with the lab's Prefect")
    common.add_api_arg(shell)
    shell.add_argument("--print", action="store_true", help="print export lines instead")
    shell.set_defaults(func=cmd_shell)

    alerts = sub.add_parser("alerts", help="webhook alerts for FAILED/CRASHED runs ($WEBHOOK_URL)")
    common.add_api_arg(alerts)
    alerts.add_argument("--flow", default="fhv-duration-training")
    alerts.add_argument("--deployment", default=knobs.deployment)
    alerts.add_argument("--off", action="store_true", help="remove the alerts")
    alerts.set_defaults(func=cmd_alerts)
