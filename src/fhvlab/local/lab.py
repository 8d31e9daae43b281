"""`make up / down / logs / reset / shell`: the lab's server and one worker as a unit.

The worker runs detached like the server (`prefect worker start`, its own session, log
and PID file in the Prefect home) and is started and stopped under its own lock.
No Prefect import here: the REST API tells whether the worker is online.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fhvlab.errors import LabError
from fhvlab.local import processes, record, server
from fhvlab.local.processes import worker_name

# Never handed to a long-running process: `make alerts WEBHOOK_URL=...` travels in these.
SECRET_ENV = ("WEBHOOK_URL", "MAKEFLAGS", "MFLAGS")


@dataclass(frozen=True)
class Launched:
    """A background worker the lab launched (or found running), not yet known to be online."""

    pid: int
    started: bool  # False: it was running already
    since: float  # epoch seconds of the launch: its first heartbeat comes after it


def launch_worker(home: Path, api_url: str, pool: str, queue: str, cwd: Path) -> Launched:
    """Start the background worker unless it runs; return at once (see `wait_online`)."""
    proc = processes.worker_process(home)
    with processes.locked(proc.lock_file):
        pid = processes.running_pid(proc)
        if pid is not None:
            return Launched(pid, False, 0.0)
        prefect = Path(sys.executable).with_name("prefect")
        cmd = [
            str(prefect), "worker", "start", "--pool", pool, "--work-queue", queue,
            "--name", worker_name(home), "--install-policy", "never",
        ]  # fmt: skip
        env = {**os.environ, **server.OFFLINE_ENV, "PREFECT_HOME": str(home)}
        env["PREFECT_API_URL"] = api_url
        for secret in SECRET_ENV:
            env.pop(secret, None)
        since = time.time()
        return Launched(processes.spawn(proc, cmd, env, cwd=cwd), True, since)


def wait_online(home: Path, api_url: str, pool: str, launched: Launched, timeout: float) -> None:
    """Wait until a worker the lab just started is online; LabError with its log if not."""
    if not launched.started:
        return
    proc = processes.worker_process(home)
    name = worker_name(home)
    pid = launched.pid
    deadline = time.monotonic() + timeout
    api = record.Api(api_url, timeout=5.0)
    while not record.worker_online(api, pool, name, launched.since):
        if not processes.pid_alive(pid) or time.monotonic() > deadline:
            why = "exited" if not processes.pid_alive(pid) else f"was not online in {timeout:.0f} s"
            processes.terminate(pid, 5.0)
            proc.pid_file.unlink(missing_ok=True)
            raise LabError(
                f"the worker {why}; last lines of {proc.log_file}:\n"
                + "\n".join(processes.tail(proc.log_file, 15))
            )
        time.sleep(0.5)


def stop_worker(home: Path, grace: float = 20.0) -> tuple[int, str] | None:
    """Stop the lab's background worker (and its flow-run processes); (pid, how) or None."""
    return processes.stop(processes.worker_process(home), grace=grace)


def log_sources(home: Path) -> dict[str, Path]:
    """The logs `make logs` shows, by source."""
    return {
        "server": processes.server_process(home).log_file,
        "worker": processes.worker_process(home).log_file,
    }


def show_logs(home: Path, lines: int, follow: bool, duration: float | None = None) -> None:
    """Print the last `lines` lines of each log, prefixed; then follow them if asked."""
    start = processes.sizes(log_sources(home))  # nothing written meanwhile is missed
    for name, path in log_sources(home).items():
        rows = (
            [r for r in processes.tail(path, 2 * lines + 10) if r.strip()][-lines:] if lines else []
        )
        if not rows:
            print(f"{name:<6} | (no log yet at {path})")
        for line in processes.prefixed(name, rows):
            print(line)
    sys.stdout.flush()
    if follow:
        processes.follow(log_sources(home), duration=duration, start=start)


def shell_env(home: Path, api_url: str, venv: Path) -> dict[str, str]:
    """The variables that make `prefect` in a shell the lab's (home, profile, API URL, PATH)."""
    path = os.environ.get("PATH", "")
    bin_dir = str(venv / "bin")
    parts = [p for p in path.split(os.pathsep) if p and p != bin_dir]
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_PROFILE": "fhvlab",
        "PREFECT_API_URL": api_url,
        "VIRTUAL_ENV": str(venv),
        "PATH": os.pathsep.join([bin_dir, *parts]),
    }


def export_lines(values: dict[str, str]) -> list[str]:
    """`export NAME='value'` lines for `eval "$(make -s shell-env)"` (POSIX quoting)."""
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


def profile_exists(home: Path, profile: str = "fhvlab") -> bool:
    """Whether the lab's profile is in the home's profiles.toml (PREFECT_PROFILE needs it)."""
    try:
        text = (home / "profiles.toml").read_text()
    except FileNotFoundError:
        return False
    return f"[profiles.{profile}]" in text
