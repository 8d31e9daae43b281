"""The lab's record of what its set-up targets did, and the check that they have nothing to do.

`make server`, `config`, `storage`, `work-queue`, `deploy` and `up` each run a chain of
steps (server, config, storage, work-queue, deploy, worker). After a step did its work, the
lab writes what it was given and what it made into one JSON file, PREFECT_HOME/lab-record.json:
a digest of the step's inputs (knobs, prefect.yaml, the flows and the lab's code, Prefect's
version) and the ids of the server objects it made, with a digest of each as the API returned
it. The next time, a step has nothing to do when its inputs digest is the same AND every
recorded object still answers, by id, with the same digest (plain HTTP, this module).

Standard library only: the check runs before Prefect (or pydantic, or requests) is imported,
so a target with nothing to do returns in a fraction of a second. When in doubt, the check
says "work": a missing, corrupt or other-version record, a field it does not know, an object
that answers 404, a server that does not answer, a lock another command holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fhvlab import __version__, files, knobs
from fhvlab.local import processes

SCHEMA = 1  # bump when the record's layout changes: an older record then means "do the work"
FILE = "lab-record.json"
LOCK = ".setup.lock"  # held by the chain while it works; the check never waits for it
PROFILE = "fhvlab"  # the lab's Prefect profile (fhvlab.orchestration.profile.PROFILE)
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# The steps of each target, in order (what `make TARGET` sets up).
STEPS = ("server", "config", "storage", "work-queue", "deploy", "worker")
TARGETS: dict[str, tuple[str, ...]] = {
    "server": ("server",),
    "config": ("config",),
    "storage": ("server", "config", "storage"),
    "work-queue": ("server", "work-queue"),
    "deploy": ("server", "config", "storage", "work-queue", "deploy"),
    "up": ("server", "config", "storage", "work-queue", "deploy", "worker"),
}

# Environment variables each step's inputs digest covers (besides every PREFECT_* one).
STEP_ENV: dict[str, tuple[str, ...]] = {
    "config": ("API_URL", "UI_API_URL", "PREFECT_HOST", "PREFECT_PORT", "PREFECT_HOME"),
    "storage": ("API_URL", "STORAGE_URL", "PREFECT_HOME", "DATABASE_URL", *knobs.STORAGE_ENV),
    "work-queue": ("API_URL", "WORK_POOL", "WORK_QUEUE", "DATABASE_URL"),
    "deploy": ("API_URL", "WORK_POOL", "WORK_QUEUE", "DEPLOYMENT", "DATABASE_URL"),
}
_TEMPLATE_VAR = re.compile(rb"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# The fields of a deployment that `prefect deploy` sets (plus `updated`, which the server
# changes on every edit and never on a worker's poll): their digest is what is compared.
DEPLOYMENT_FIELDS = (
    "id", "name", "flow_id", "updated", "paused", "schedules", "work_pool_name",
    "work_queue_name", "entrypoint", "pull_steps", "tags", "parameters", "job_variables",
    "concurrency_limit", "concurrency_options", "enforce_parameter_schema",
)  # fmt: skip


# ---- knobs, as the Makefile exports them (lab.mk's defaults otherwise) ------------------------
def knob(name: str, env: Mapping[str, str] | None = None) -> str:
    """A knob's value: the environment's if not empty, else lab.mk's default."""
    env = os.environ if env is None else env
    value = env.get(name, "").strip()
    return value or knobs.lab_defaults().get(name, "")


def prefect_home(env: Mapping[str, str] | None = None) -> Path:
    """PREFECT_HOME, absolute (as fhvlab.settings makes it)."""
    return Path(knob("PREFECT_HOME", env)).expanduser().resolve()


def api_url(env: Mapping[str, str] | None = None) -> str:
    """API_URL, else the lab server's own URL; no validation (a bad one fails the check)."""
    explicit = knob("API_URL", env).rstrip("/")
    if explicit:
        return explicit
    return knobs.lab_api_url(knob("PREFECT_HOST", env), knob("PREFECT_PORT", env))


def is_lab_server(url: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether `url` is the lab's own server (PREFECT_HOST, PREFECT_PORT), not another one."""
    parts = urlsplit(url)
    host = knobs.client_host(knob("PREFECT_HOST", env))
    hosts = set(LOOPBACK) | {host} if host in LOOPBACK else {host}
    try:
        return parts.hostname in hosts and (parts.port or 80) == int(knob("PREFECT_PORT", env))
    except ValueError:
        return False


def server_process(home: Path, port: str) -> processes.Managed:
    """The lab's server process (as fhvlab.local.server starts it on `port`)."""
    proc = processes.server_process(home)
    return processes.Managed(proc.name, proc.home, (*proc.markers, str(port)))


# ---- digests ----------------------------------------------------------------------------------
def digest(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys); bytes are hashed as they are."""
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def _code_files(root: Path) -> list[Path]:
    """What shapes the deployments: prefect.yaml, lab.mk, the flows and the lab's package."""
    found = [root / "prefect.yaml", root / "lab.mk"]
    for folder in (root / "flows", root / "src" / "fhvlab"):
        found += sorted(folder.rglob("*.py"))
    return found


def prefect_version_tag() -> str:
    """Which Prefect is installed (its dist-info folder's name), without importing it."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    return ",".join(sorted(p.name for p in site.glob("prefect-*.dist-info")))


def step_inputs(step: str, env: Mapping[str, str] | None = None, root: Path = knobs.ROOT) -> str:
    """The digest of everything step `step` depends on; a change of it means: do the step."""
    env = os.environ if env is None else env
    names = set(STEP_ENV.get(step, ()))
    parts: dict[str, Any] = {"step": step, "lab": __version__, "schema": SCHEMA}
    if step == "deploy":
        sources = {}
        for path in _code_files(root):
            try:
                data = path.read_bytes()
            except OSError:
                data = b"<missing>"
            sources[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
            if path.name == "prefect.yaml":  # every {{ $VAR }} it names is an input
                names |= {m.decode() for m in _TEMPLATE_VAR.findall(data)}
        parts["files"] = sources
        parts["prefect"] = prefect_version_tag()
    parts["env"] = {n: knob(n, env) for n in sorted(names)}
    parts["prefect_env"] = {k: v for k, v in sorted(env.items()) if k.startswith("PREFECT_")}
    return digest(parts)


def deployment_digest(found: Mapping[str, Any]) -> str:
    """Digest of a deployment as the API returns it: the fields `prefect deploy` sets."""
    kept = {k: found.get(k) for k in DEPLOYMENT_FIELDS}
    kept["limit"] = (found.get("global_concurrency_limit") or {}).get("limit")
    return digest(kept)


def block_digest(found: Mapping[str, Any]) -> str:
    """Digest of a block document: id, name, data and when it was last saved."""
    return digest({k: found.get(k) for k in ("id", "name", "data", "updated")})


def automation_digest(found: Mapping[str, Any]) -> str:
    """Digest of an automation (it holds nothing that changes by itself)."""
    return digest(dict(found))


# ---- plain HTTP to the API --------------------------------------------------------------------
class Api:
    """A few GETs and POSTs to the Prefect REST API (urllib; basic auth from the environment)."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        auth = os.environ.get("PREFECT_API_AUTH_STRING", "")
        if ":" in auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()

    def call(self, path: str, body: Any = None) -> Any:
        """The decoded JSON answer, or None for 404/any failure (so: do the work)."""
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if data is None else "POST"
        request = urllib.request.Request(
            self.url + path, data=data, headers=self.headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except (TimeoutError, OSError, ValueError, urllib.error.URLError):
            return None

    def healthy(self) -> bool:
        """Whether /health answers true."""
        return self.call("/health") is True


def worker_online(api: Api, pool: str, name: str, since: float = 0.0) -> bool:
    """Whether worker `name` is ONLINE in `pool`, with a heartbeat at or after `since` (epoch)."""
    found = api.call(
        f"/work_pools/{quote(pool, safe='')}/workers/filter",
        {"workers": {"status": {"any_": ["ONLINE"]}}},  # the API has no name filter
    )
    for worker in found if isinstance(found, list) else []:
        beat = worker.get("last_heartbeat_time")
        if worker.get("name") != name or worker.get("status") != "ONLINE" or not beat:
            continue
        when = datetime.fromisoformat(beat.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when.timestamp() >= since - 2:  # clock granularity
            return True
    return False


# ---- the record file --------------------------------------------------------------------------
def path(home: Path) -> Path:
    """Where the record lives."""
    return home / FILE


def load(home: Path) -> dict[str, Any]:
    """The record's steps; {} when missing, corrupt, or written by another schema or lab."""
    try:
        data = json.loads(path(home).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("lab") != __version__:
        return {}
    steps = data.get("steps")
    return steps if isinstance(steps, dict) else {}


def save(home: Path, step: str, entry: Mapping[str, Any] | None) -> None:
    """Write (or, with None, forget) one step's entry; atomic, the rest kept."""
    steps = load(home)
    if entry is None:
        steps.pop(step, None)
    else:
        steps[step] = dict(entry)
    body = {"schema": SCHEMA, "lab": __version__, "steps": steps}
    home.mkdir(parents=True, exist_ok=True)
    with files.atomic_path(path(home)) as tmp:
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")


def forget(home: Path, steps: Iterable[str] = STEPS) -> None:
    """Forget steps (the next target redoes them)."""
    for step in steps:
        save(home, step, None)


def profile_entries(home: Path, names: Iterable[str]) -> dict[str, str] | None:
    """The lab profile's values of `names` (those present), or None if it is not active."""
    import tomllib

    where = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        data = tomllib.loads(where.read_text())
    except (OSError, ValueError):
        return None
    if data.get("active") != PROFILE:
        return None
    table = (data.get("profiles") or {}).get(PROFILE) or {}
    return {n: str(table[n]) for n in names if n in table}
