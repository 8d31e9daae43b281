"""The set-up chain behind `make server/config/storage/work-queue/deploy/up`, in one process.

A target is a list of steps (fhvlab.local.record.TARGETS). Under the set-up lock, each step
first asks the record whether it has anything to do (plain HTTP, no Prefect); a step with
nothing to do prints why and is skipped, the others do their work and record it. Prefect is
imported only by the first step that needs it, and `make up`'s worker process is launched
before the deploy step so that it comes online meanwhile. `python -m fhvlab TARGET` with
nothing to do at all never gets here: fhvlab.__main__ answers it from the record alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fhvlab import settings
from fhvlab.cli import common
from fhvlab.local import database, processes, record, server, uptodate


def _say(step: str):
    def say(line: str) -> None:
        print(f"{step}: {line}", flush=True)

    return say


def _print_verdict(step: str, verdict: uptodate.Verdict) -> None:
    print(f"{step}: {verdict.line}", flush=True)


def server_step(args: argparse.Namespace, verdict: uptodate.Verdict) -> None:
    """Start the lab's server unless it (or the API_URL server) is up; restart it when
    DATABASE_URL names another database than the one it runs on."""
    spec = common.spec(args)
    api_url = common.api_url(args)
    home = spec.home
    now_db = record.digest(database.configured_url())
    if not spec.serves(api_url):
        server.require_api(api_url)
        print(f"server: API_URL={api_url} is another server and it answers; nothing to start")
        record.save(home, "server", {"pid": None, "database": now_db})
        return
    auth = settings.current().prefect_server_api_auth_string.get_secret_value()
    if spec.host not in server.LOOPBACK and not auth:
        print(
            f"server: WARNING: listening on {spec.host} with no PREFECT_SERVER_API_AUTH_STRING: "
            "anyone who can reach this machine can use the API",
            file=sys.stderr,
        )
    pid = server.running_pid(spec)
    if pid is not None:
        entry = record.load(home).get("server") or {}
        if entry.get("pid") == pid:
            moved = entry.get("database") != now_db
        else:
            moved = database.started_on(home) != database.describe(home)
        if moved:
            database.preflight_configured()
            print(
                f"server: DATABASE_URL changed since it started ({database.started_on(home)}): "
                f"restarting it on {database.describe(home)}"
            )
            server.stop(spec)
            pid = None
    if pid is None:
        database.preflight_configured()  # one line and nothing started if it cannot work
    print(
        f"server: $ prefect server start --host {spec.host} --port {spec.port}"
        "  (detached; log in PREFECT_HOME)"
        if pid is None
        else "server: checking the running server"
    )
    pid, started = server.start(spec, args.ui_api_url, timeout=args.timeout)
    if started:
        database.note_started_on(spec.home)
    state = "started" if started else "already running"
    print(
        f"server: {state} (pid {pid}); API {spec.api_url}; UI http://{spec.client_host}:"
        f"{spec.port}; log {spec.log_file}"
    )
    print(f"server: database {database.started_on(spec.home)}")
    record.save(home, "server", {"pid": pid, "database": now_db})


class WorkerStep:
    """The worker step: the process is launched before the deploy step (the pool and queue
    exist by then) and comes online while the deployments are applied; `finish` waits for
    it, prints and records it."""

    def __init__(self, args: argparse.Namespace, verdict: uptodate.Verdict) -> None:
        from fhvlab.local import lab

        self.lab = lab
        self.knobs = k = settings.current()
        self.api = common.api_url(args)
        self.timeout = args.worker_timeout
        if verdict.extra.get("pid"):
            print(f"worker: restarting the worker ({verdict.line})")
            lab.stop_worker(k.prefect_home)
        print(
            f"worker: $ prefect worker start --pool {k.work_pool} --work-queue "
            f"{k.work_queue} --install-policy never  (detached)",
            flush=True,
        )
        self.launched = lab.launch_worker(
            k.prefect_home, self.api, k.work_pool, k.work_queue, settings.ROOT
        )

    def finish(self) -> None:
        """Wait until the worker is online (or failed); print and record it."""
        k = self.knobs
        self.lab.wait_online(k.prefect_home, self.api, k.work_pool, self.launched, self.timeout)
        state = "started" if self.launched.started else "already running"
        print(
            f"worker: {state} (pid {self.launched.pid}), online in pool {k.work_pool!r}; "
            f"log {k.prefect_home / 'worker.log'}"
        )
        record.save(
            k.prefect_home,
            "worker",
            {"pid": self.launched.pid, "pool": k.work_pool, "queue": k.work_queue},
        )


def prefect_step(step: str, args: argparse.Namespace) -> None:
    """config, storage, work-queue or deploy, through Prefect's Python API (imported here)."""
    from fhvlab.orchestration import deployments

    knobs = settings.current()
    home = knobs.prefect_home
    api = common.api_url(args)
    say = _say(step)
    if step == "config":
        ui = server.parse_api_url(getattr(args, "ui_api_url", None) or knobs.ui_api_url or api)
        deployments.config(home, api, ui, say)
        if not server.is_healthy(api):
            say(f"note: nothing answers at {api} yet (make server)")
        return
    server.require_api(api)
    if step == "storage":
        deployments.storage(home, api, getattr(args, "url", None) or knobs.result_storage, say)
    elif step == "work-queue":
        deployments.work_queue(home, api, knobs.work_pool, knobs.work_queue, say)
    elif step == "deploy":
        deployments.deploy(home, settings.ROOT, api, args.flow, knobs.deployment, say)


def run_target(target: str, args: argparse.Namespace) -> int:
    """Every step of `target`: those with nothing to do say so, the others do their work."""
    home: Path = settings.prefect_home()
    steps = record.TARGETS[target]
    if "server" in steps:
        common.spec(args)  # a bad PREFECT_PORT is one line naming it, before anything is done
    common.api_url(args)  # ... and so is a malformed API_URL
    force = bool(getattr(args, "force", False))
    worker: WorkerStep | None = None
    with processes.locked(home / record.LOCK):
        for step in steps:
            if step == "deploy" and "worker" in steps:  # the worker starts meanwhile
                verdict = uptodate.Verdict(False, "forced") if force else uptodate.check("worker")
                if not verdict.done:
                    worker = WorkerStep(args, verdict)
            if step == "worker" and worker is not None:
                worker.finish()
                continue
            verdict = uptodate.Verdict(False, "forced") if force else uptodate.check(step)
            if verdict.done:
                _print_verdict(step, verdict)
                continue
            if step == "server":
                server_step(args, verdict)
            elif step == "worker":
                WorkerStep(args, verdict).finish()
            else:
                prefect_step(step, args)
    return 0


def add_chain_args(parser: argparse.ArgumentParser, knobs: settings.Settings) -> None:
    """What every chain target takes: the server's host/port/API URL, timeouts, --force."""
    common.add_server_args(parser, knobs)
    common.add_api_arg(parser)
    if not any(a.dest == "ui_api_url" for a in parser._actions):
        parser.add_argument("--ui-api-url", default=knobs.ui_api_url or None)
    parser.add_argument("--timeout", type=float, default=150.0, help="server health wait, s")
    parser.add_argument("--worker-timeout", type=float, default=90.0, help="worker online wait, s")
    parser.add_argument("--flow", default="fhv-duration-training")
    parser.add_argument("--force", action="store_true", help="do every step again")
