"""The set-up chain's Prefect steps, in one process: profile, storage block, pool and queue,
the deployments of prefect.yaml, automations.

Each step prints the Prefect command a student would type for it (`$ prefect ...`), does the
same through Prefect's Python API in this process, and writes what it made into the lab's
record (fhvlab.local.record), so that the next `make` with nothing changed can tell without
importing Prefect. `prefect deploy --all` itself is run by Prefect's own command line, in
this process (`prefect.cli.app`, the `prefect` program's entry point): the deployments and
their triggers are exactly what the command makes from prefect.yaml, with no second reading
of prefect.yaml to keep in step with Prefect's.

Import after the environment is set (Prefect reads its settings at import).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fhvlab.errors import LabError
from fhvlab.local import record
from fhvlab.orchestration import automations
from fhvlab.orchestration import profile as orchestration

Say = Callable[[str], None]
API_SETTINGS = ("PREFECT_API_URL", "PREFECT_UI_API_URL", "PREFECT_SERVER_UI_API_URL")
STORAGE_SETTINGS = ("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK")
BACKFILL = ("fhv-backfill", "backfill")  # the backfill deployment and its tag (prefect.yaml)


def _stored(home: Path, names: tuple[str, ...]) -> dict[str, str]:
    return record.profile_entries(home, names) or {}


def config(home: Path, api_url: str, ui_api_url: str, say: Say) -> None:
    """`prefect profile create/use fhvlab` + `prefect config set PREFECT_API_URL=...`."""
    p = orchestration.PROFILE
    say(
        f"$ prefect profile create {p}; prefect profile use {p}; prefect config set "
        f"PREFECT_API_URL={shlex.quote(api_url)} PREFECT_UI_API_URL={shlex.quote(ui_api_url)}"
    )
    values: dict[str, str | None] = {"PREFECT_API_URL": api_url, "PREFECT_UI_API_URL": ui_api_url}
    for line in orchestration.update_profile(values) or ["nothing to change"]:
        say(line)
    say(f"profile {p!r} in {home / 'profiles.toml'}")
    entry = {"inputs": record.step_inputs("config"), "profile": _stored(home, API_SETTINGS)}
    record.save(home, "config", entry)


def storage(home: Path, api_url: str, url: str, say: Say) -> None:
    """Check the storage answers, then the result-storage block (saved with overwrite), the
    server's default result storage (every worker of the cohort), persistence on."""
    from fhvlab.orchestration import storage as results

    remote = results.is_remote(url)
    kind = "RemoteFileSystem" if remote else "LocalFileSystem"
    shown = results.shown(url)
    env = ", ".join(results.settings_shown()) or "no storage variables set"
    how = f" (package {results.package_of(url)}; {env})" if remote else ""
    say(f"checking {shown}: write, read and delete one object{how}")
    say(
        f"$ python -c 'from prefect.filesystems import {kind}; "
        f'{kind}(basepath="{shown}").save("{orchestration.STORAGE_BLOCK}", overwrite=True)\''
    )
    slug, where = orchestration.save_storage(url)
    say(f"block {slug} -> {results.shown(where)} (answers; saved with overwrite: same block)")
    say(f"$ prefect result-storage set {slug}  (the server's default: workers of every checkout)")
    say(
        "$ prefect config set PREFECT_RESULTS_PERSIST_BY_DEFAULT=true "
        f"PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK={slug}"
    )
    changes = orchestration.update_profile(dict(zip(STORAGE_SETTINGS, ("true", slug), strict=True)))
    for line in changes or ["result persistence already on with that block"]:
        say(line)
    api = record.Api(api_url)
    block_type, name = slug.split("/", 1)
    query = {"block_documents": {"name": {"any_": [name]}}}
    found = api.call("/block_documents/filter", query) or []
    block = next((b for b in found if (b.get("block_type") or {}).get("slug") == block_type), None)
    entry: dict[str, Any] = {
        "inputs": record.step_inputs("storage"),
        "profile": _stored(home, STORAGE_SETTINGS),
        "slug": slug,
        "where": results.shown(where),
        "folder": None if remote else where,
    }
    if block:
        entry["block"] = {"id": block["id"], "digest": record.block_digest(block)}
    record.save(home, "storage", entry)


def work_queue(home: Path, api_url: str, pool: str, queue: str, say: Say) -> None:
    """`prefect work-pool create POOL --type process` + `prefect work-queue create Q --pool P`."""
    say(f"$ prefect work-pool create {shlex.quote(pool)} --type process")
    say(f"$ prefect work-queue create {shlex.quote(queue)} --pool {shlex.quote(pool)}")
    for line in orchestration.ensure_pool_and_queue(pool, queue):
        say(line)
    api = record.Api(api_url)
    found_pool = api.call(f"/work_pools/{quote(pool, safe='')}") or {}
    found = api.call(f"/work_pools/{quote(pool, safe='')}/queues/{quote(queue, safe='')}") or {}
    entry = {
        "inputs": record.step_inputs("work-queue"),
        "pool_id": found_pool.get("id"),
        "queue_id": found.get("id"),
    }
    record.save(home, "work-queue", entry)


def prefect_yaml_deployments(root: Path) -> list[dict[str, Any]]:
    """prefect.yaml's deployments, with its `{{ $VAR }}` values taken from the environment."""
    import yaml
    from prefect.utilities.templating import apply_values

    text = (root / "prefect.yaml").read_text()
    found = (yaml.safe_load(text) or {}).get("deployments") or []
    return [apply_values(d, os.environ, remove_notset=False) for d in found]


def deploy_all(root: Path) -> str:
    """`prefect --no-prompt deploy --all --prefect-file prefect.yaml`, by Prefect's own command
    line in this process; returns what it printed. LabError (with its last lines) on failure."""
    from prefect.cli import app

    argv = ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"]
    out = io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    code: Any = 0
    try:
        os.chdir(root)
        sys.argv = argv
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                app()
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    if code not in (0, None):
        tail = "\n".join(out.getvalue().strip().splitlines()[-15:])
        raise LabError(f"`prefect deploy --all` failed (exit {code}):\n{tail}")
    return out.getvalue()


def deploy(home: Path, root: Path, api_url: str, flow: str, deployment: str, say: Say) -> None:
    """The deployments of prefect.yaml, then the lab's crash automations; recorded."""
    say("$ prefect --no-prompt deploy --all --prefect-file prefect.yaml")
    deploy_all(root)
    wanted = prefect_yaml_deployments(root)
    api = record.Api(api_url)
    names = [str(d.get("name")) for d in wanted]
    found = api.call("/deployments/filter", {"deployments": {"name": {"any_": names}}}) or []
    entry_by_name = {str(d.get("name")): d.get("entrypoint") for d in wanted}
    mine = [d for d in found if entry_by_name.get(d.get("name")) == d.get("entrypoint")]
    for d in mine:
        crons = ", ".join(
            f"cron {s['schedule'].get('cron')!r} ({s['schedule'].get('timezone')})"
            for s in d.get("schedules") or []
            if "cron" in (s.get("schedule") or {})
        )
        say(
            f"deployment {d['name']!r} ({d['entrypoint']}) on {d['work_pool_name']}/"
            f"{d['work_queue_name']}{', ' + crons if crons else ''}"
        )
    say("$ python: automations (crash detection, re-run once): fhvlab/orchestration/automations.py")
    from fhvlab.local import processes

    with processes.locked(home / ".automations.lock"):
        lines = automations.ensure_crash_automations(flow, deployment)
        lines += automations.ensure_backfill_automation(*BACKFILL)
    for line in lines:
        say(line)
    record.save(home, "deploy", deploy_entry(api, mine))


def deploy_entry(api: record.Api, deployments: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The record of a deploy: each deployment and each automation of the lab, with digests."""
    ids = [str(d["id"]) for d in deployments]
    listed = api.call("/automations/filter", {}) or []
    backfill_zombie = automations._names(BACKFILL[0])["zombie"]
    kept = []
    for found in listed:
        text = str(found)
        alert = any(a.get("type") == "send-notification" for a in found.get("actions") or [])
        if (any(i in text for i in ids) and not alert) or found.get("name") == backfill_zombie:
            kept.append({"id": found["id"], "digest": record.automation_digest(found)})
    return {
        "inputs": record.step_inputs("deploy"),
        "deployments": [
            {"id": d["id"], "name": d["name"], "digest": record.deployment_digest(d)}
            for d in deployments
        ],
        "automations": kept,
    }


def run_now(name: str, parameters: Mapping[str, Any], **options: Any) -> Any:
    """A flow run of deployment FLOW/NAME now (`prefect deployment run`); returned at once.

    `options` go to Prefect's `run_deployment` (e.g. `flow_run_name`, `tags`)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        return run_deployment(name, parameters=dict(parameters), timeout=0, **options)
    except ObjectNotFound:
        raise LabError(f"no deployment {name}: run `make deploy` first") from None


def wait(flow_run_id: Any, timeout: float) -> str:
    """Wait for the flow run's end (Prefect's wait_for_flow_run); its final state's name."""
    from fhvlab.orchestration import api

    done = api.final_run(flow_run_id, timeout)
    if done is None:
        raise LabError(f"flow run {flow_run_id} did not end within {timeout:.0f} s")
    return done.state.name if done.state else "unknown"
