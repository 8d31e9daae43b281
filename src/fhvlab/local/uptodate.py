"""Has each set-up step of a target nothing to do? The checks behind the record's fast path.

`python -m fhvlab TARGET` for a set-up target (`server start`, `config`, `storage`,
`work-queue`, `deploy`, `up`) asks `main` first: when every step of the target checks out
against the lab's record (fhvlab.local.record), it prints why and exits before Prefect is
imported; otherwise the command runs for real. Standard library only, like the record.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fhvlab import files
from fhvlab.local import database, processes
from fhvlab.local.record import (
    LOCK,
    PROFILE,
    TARGETS,
    Api,
    api_url,
    automation_digest,
    block_digest,
    deployment_digest,
    digest,
    is_lab_server,
    knob,
    load,
    path,
    prefect_home,
    profile_entries,
    server_process,
    step_inputs,
    worker_online,
)


# ---- what each step's "nothing to do" means ---------------------------------------------------
@dataclass
class Verdict:
    """Whether a step has nothing to do, and the line that says so (or why not)."""

    done: bool
    line: str
    extra: dict[str, Any] = field(default_factory=dict)


def check_server(env: Mapping[str, str], home: Path, entry: Mapping[str, Any]) -> Verdict:
    """Up and healthy; the lab's own server started on the database DATABASE_URL names."""
    url = api_url(env)
    api = Api(url)
    if not is_lab_server(url, env):
        if api.healthy():
            return Verdict(True, f"API_URL={url} is another server and it answers")
        return Verdict(False, "API_URL does not answer")
    pid = processes.running_pid(server_process(home, knob("PREFECT_PORT", env)))
    if pid is None:
        return Verdict(False, "not running")
    if entry.get("pid") != pid or entry.get("database") != digest(database.configured_url(env)):
        return Verdict(False, "started before this record, or on another database")
    if not api.healthy():
        return Verdict(False, "not healthy")
    shown = database.started_on(home)
    return Verdict(
        True,
        f"already running (pid {pid}); API {url}; log {home / 'server.log'}\n"
        f"server: database {shown}",
    )


def check_config(env: Mapping[str, str], home: Path, entry: Mapping[str, Any]) -> Verdict:
    """The lab profile is active and holds the API URLs recorded (profiles.toml)."""
    wanted = entry.get("profile") or {}
    if entry.get("inputs") != step_inputs("config", env) or not wanted:
        return Verdict(False, "inputs changed")
    if profile_entries(home, wanted) != wanted:
        return Verdict(False, "profile changed")
    return Verdict(True, f"profile {PROFILE!r} already points at {api_url(env)}; nothing to change")


def check_storage(env: Mapping[str, str], home: Path, entry: Mapping[str, Any]) -> Verdict:
    """The block document is there as saved, the profile names it, the folder exists."""
    wanted = entry.get("profile") or {}
    block = entry.get("block") or {}
    if entry.get("inputs") != step_inputs("storage", env) or not wanted or not block.get("id"):
        return Verdict(False, "inputs changed")
    if profile_entries(home, wanted) != wanted:
        return Verdict(False, "profile changed")
    local = entry.get("folder")
    if local and not Path(local).is_dir():
        return Verdict(False, "storage folder missing")
    found = Api(api_url(env)).call(f"/block_documents/{quote(block['id'])}")
    if not isinstance(found, dict) or block_digest(found) != block.get("digest"):
        return Verdict(False, "block changed or missing")
    default = Api(api_url(env)).call("/admin/storage")  # prefect result-storage inspect
    default_id = default.get("default_result_storage_block_id") if isinstance(default, dict) else 0
    if default_id != block["id"]:
        return Verdict(False, "the server's default result storage is another block")
    return Verdict(
        True,
        f"block {entry.get('slug')} -> {entry.get('where')} already saved and the server's "
        "default; result persistence already on with that block (make doctor probes it)",
    )


def check_work_queue(env: Mapping[str, str], home: Path, entry: Mapping[str, Any]) -> Verdict:
    """The pool and the queue answer by name with the ids recorded."""
    if entry.get("inputs") != step_inputs("work-queue", env):
        return Verdict(False, "inputs changed")
    pool, queue = knob("WORK_POOL", env), knob("WORK_QUEUE", env)
    api = Api(api_url(env))
    found_pool = api.call(f"/work_pools/{quote(pool, safe='')}")
    if not isinstance(found_pool, dict) or found_pool.get("id") != entry.get("pool_id"):
        return Verdict(False, "pool changed or missing")
    found = api.call(f"/work_pools/{quote(pool, safe='')}/queues/{quote(queue, safe='')}")
    if not isinstance(found, dict) or found.get("id") != entry.get("queue_id"):
        return Verdict(False, "queue changed or missing")
    return Verdict(
        True,
        f"work pool {pool!r} ({found_pool.get('type')}) already exists\n"
        f"work-queue: work queue {queue!r} in pool {pool!r} already exists",
    )


def check_deploy(env: Mapping[str, str], home: Path, entry: Mapping[str, Any]) -> Verdict:
    """Every recorded deployment and automation answers by id with its recorded digest."""
    deployments = entry.get("deployments") or []
    automations = entry.get("automations") or []
    if entry.get("inputs") != step_inputs("deploy", env) or not deployments:
        return Verdict(False, "inputs changed")
    api = Api(api_url(env))
    ids = [d["id"] for d in deployments]
    found = api.call("/deployments/filter", {"deployments": {"id": {"any_": ids}}})
    if not isinstance(found, list):
        return Verdict(False, "deployments unreadable")
    now = {d.get("id"): deployment_digest(d) for d in found}
    if any(now.get(d["id"]) != d.get("digest") for d in deployments):
        return Verdict(False, "a deployment changed or is missing")
    if automations:
        listed = api.call("/automations/filter", {})
        if not isinstance(listed, list):
            return Verdict(False, "automations unreadable")
        have = {a.get("id"): automation_digest(a) for a in listed}
        if any(have.get(a["id"]) != a.get("digest") for a in automations):
            return Verdict(False, "an automation changed or is missing")
    names = ", ".join(d.get("name", "?") for d in deployments)
    return Verdict(
        True,
        f"{len(deployments)} deployments ({names}) and {len(automations)} automations "
        "as last deployed (prefect.yaml, flows, knobs unchanged)",
    )


def check_worker(env: Mapping[str, str], home: Path, entry: Mapping[str, Any]) -> Verdict:
    """The lab's worker runs, on WORK_POOL/WORK_QUEUE, and the server counts it online."""
    pool, queue = knob("WORK_POOL", env), knob("WORK_QUEUE", env)
    pid = processes.running_pid(processes.worker_process(home))
    if pid is None:
        return Verdict(False, "not running")
    if (entry.get("pid"), entry.get("pool"), entry.get("queue")) != (pid, pool, queue):
        return Verdict(False, "not known to run for WORK_POOL/WORK_QUEUE", {"pid": pid})
    if not worker_online(Api(api_url(env)), pool, processes.worker_name(home)):
        return Verdict(False, "not online", {"pid": pid})
    return Verdict(
        True,
        f"already running (pid {pid}), online in pool {pool!r}; log {home / 'worker.log'}",
        {"pid": pid},
    )


CHECKS: dict[str, Callable[[Mapping[str, str], Path, Mapping[str, Any]], Verdict]] = {
    "server": check_server,
    "config": check_config,
    "storage": check_storage,
    "work-queue": check_work_queue,
    "deploy": check_deploy,
    "worker": check_worker,
}


def check(step: str, env: Mapping[str, str] | None = None) -> Verdict:
    """Whether `step` has nothing to do; any surprise means it has."""
    env = os.environ if env is None else env
    home = prefect_home(env)
    try:
        entry = load(home).get(step)
        # No entry: still checked (with nothing recorded it cannot pass), so that a running
        # server or worker the record does not know is seen, and restarted if need be.
        return CHECKS[step](env, home, entry if isinstance(entry, dict) else {})
    except Exception as exc:  # when in doubt, do the work
        return Verdict(False, f"check failed ({type(exc).__name__})")


def nothing_to_do(target: str, env: Mapping[str, str] | None = None) -> list[str] | None:
    """The lines to print when every step of `target` has nothing to do, else None.

    Holds the set-up lock while it reads; if another command holds it, that command is
    changing things: None (the caller does the work, after waiting for it).
    """
    env = os.environ if env is None else env
    home = prefect_home(env)
    if not path(home).is_file():
        return None
    fd = files.try_lock(home / LOCK)
    if fd is None:
        return None
    try:
        from concurrent.futures import ThreadPoolExecutor

        steps = TARGETS[target]
        with ThreadPoolExecutor(len(steps)) as pool:  # read-only checks: side by side
            verdicts = list(pool.map(lambda step: check(step, env), steps))
        if not all(v.done for v in verdicts):
            return None
        return [f"{step}: {v.line}" for step, v in zip(steps, verdicts, strict=True)]
    finally:
        os.close(fd)


# ---- `python -m fhvlab TARGET` with nothing to do: answered here, before Prefect ---------------
FAST_COMMANDS: dict[tuple[str, ...], str] = {
    ("server", "start"): "server",
    ("config",): "config",
    ("storage",): "storage",
    ("work-queue",): "work-queue",
    ("deploy",): "deploy",
    ("up",): "up",
}


def main(argv: Sequence[str]) -> int | None:
    """Exit code 0 when `argv` is a set-up command with nothing to do; None: run it for real."""
    target = FAST_COMMANDS.get(tuple(argv))
    if target is None:
        return None
    lines = nothing_to_do(target)
    if lines is None:
        return None
    for line in lines:
        print(line)
    if target in ("deploy", "up"):
        print(f"{target}: nothing to do (make {target} FORCE=1 does it all again)")
    sys.stdout.flush()
    return 0
