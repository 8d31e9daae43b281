"""The lab's Prefect server ("Orion" in the course notes): start, stop, status, health.

`prefect server start --background` dies on a machine without internet, so the lab starts
the server itself: detached, stdin from /dev/null, output to a log file in the Prefect
home, its PID in a file there. Only that PID is ever stopped. No Prefect import here.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fhvlab import knobs
from fhvlab.errors import BadInput, LabError
from fhvlab.local import database, dbseed, processes, record

log = logging.getLogger(__name__)

OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class ServerSpec:
    """Where the lab's server listens and where it keeps its PID and log."""

    host: str
    port: int
    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def client_host(self) -> str:
        """Host a client on this machine uses (0.0.0.0 and :: are not addresses to call)."""
        return knobs.client_host(self.host)

    @property
    def api_url(self) -> str:
        return knobs.lab_api_url(self.host, self.port)

    def serves(self, api_url: str) -> bool:
        """Whether `api_url` is this server's API (localhost and 127.0.0.1 alike)."""
        parts = urlsplit(api_url)
        hosts = (
            LOOPBACK | {self.client_host} if self.client_host in LOOPBACK else {self.client_host}
        )
        return parts.hostname in hosts and (parts.port or 80) == self.port


def parse_port(text: str) -> int:
    """A TCP port number 1-65535; BadInput otherwise."""
    value = str(text).strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise BadInput(f"PREFECT_PORT={text!r} is not a port number (expected 1-65535, e.g. 4200)")
    return int(value)


def parse_api_url(text: str) -> str:
    """An http(s) URL ending in /api, e.g. http://127.0.0.1:4200/api; BadInput otherwise."""
    value = text.strip().rstrip("/")
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or 1 <= parts.port <= 65535
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise BadInput(
            f"API_URL={text!r} is not a URL of a Prefect API (expected e.g. http://127.0.0.1:4200/api)"
        )
    if not parts.path.endswith("/api"):
        raise BadInput(f"API_URL={text!r} must end in /api (e.g. http://127.0.0.1:4200/api)")
    return value


def is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at `api_url`."""
    return record.Api(api_url, timeout=timeout).healthy()


def require_api(api_url: str) -> None:
    """Raise LabError with the fix when no Prefect API answers at `api_url`."""
    url = parse_api_url(api_url)
    if is_healthy(url):
        return
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK:
        raise LabError(f"no Prefect server answers at {url}: run `make server` first")
    raise LabError(f"the Prefect API at {url} (API_URL) is unreachable: is that server up?")


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (checked by binding it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise LabError(f"cannot use {host}:{port}: {exc.strerror}") from None
    return False


def _process(spec: ServerSpec) -> processes.Managed:
    """The server as a managed process: its command line names `server start` and the port."""
    proc = processes.server_process(spec.home)
    return processes.Managed(proc.name, proc.home, (*proc.markers, str(spec.port)))


def running_pid(spec: ServerSpec) -> int | None:
    """PID of the server the lab started, or None; a stale PID file is removed."""
    return processes.running_pid(_process(spec))


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def server_env(spec: ServerSpec, ui_api_url: str | None) -> dict[str, str]:
    """Environment for the server: offline settings, host/port the UI reports."""
    env = {**os.environ, **OFFLINE_ENV, "PREFECT_HOME": str(spec.home)}
    env["PREFECT_SERVER_API_HOST"] = spec.host
    env["PREFECT_SERVER_API_PORT"] = str(spec.port)
    env["PREFECT_UI_API_URL"] = ui_api_url or spec.api_url
    # Links in alerts (`{{ flow_run|ui_url }}`) are rendered by the server: it needs the UI URL.
    env["PREFECT_UI_URL"] = env["PREFECT_UI_API_URL"].removesuffix("/api")
    env.pop("PREFECT_API_URL", None)  # the server must not think it is a client of another
    env.update(database.server_env(env))  # DATABASE_URL -> PREFECT_SERVER_DATABASE_CONNECTION_URL
    for secret in ("WEBHOOK_URL", "MAKEFLAGS", "MFLAGS"):  # make's command line may hold one
        env.pop(secret, None)
    # Crash detection: close a missed-heartbeat window 15 s after it ends (Prefect's default
    # buffer, 60 s, would push the CRASHED state past 2 minutes after a kill).
    env.setdefault("PREFECT_SERVER_EVENTS_EXPIRED_BUCKET_BUFFER", "PT15S")
    # Task-run states reach the database through the task run recorder, which by default
    # writes each event in its own transaction. On SQLite every such write can make a
    # concurrent request fail `database is locked` (503, retried by the client after 2 s):
    # write them in batches, at most 1 s late.
    env.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "100")
    env.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL", "1")
    # Concurrency slots are leases. Kept in the server's memory (Prefect's default), a
    # restart forgets the leases but not the slots they hold: the limit stays full for good.
    # On disk (PREFECT_HOME/concurrency_leases) they survive it, and expire or are released.
    env.setdefault(
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
        "prefect.server.concurrency.lease_storage.filesystem",
    )
    # A deployment run held back by its concurrency limit (the backfill deployment's, 1) is
    # offered again after this many seconds (Prefect's default 30).
    env.setdefault("PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", "5")
    return env


def start(
    spec: ServerSpec, ui_api_url: str | None = None, timeout: float = 60.0
) -> tuple[int, bool]:
    """Start the server unless the lab's is already up; return (pid, started_now).

    Runs under the server's lock: simultaneous starts wait for the first one and then
    find its server, so there is only ever one server and one PID file naming it.
    """
    proc = _process(spec)
    with processes.locked(proc.lock_file, timeout=timeout + processes.LOCK_TIMEOUT):
        pid = processes.running_pid(proc)
        if pid is not None:
            if not is_healthy(spec.api_url):
                wait_healthy(spec, pid, timeout)
            return pid, False
        if port_in_use(spec.host, spec.port):
            who = (
                "a Prefect server not started by this lab"
                if is_healthy(spec.api_url)
                else ("another program")
            )
            raise LabError(
                f"port {spec.port} on {spec.host} is taken by {who}; stop it, or pick another "
                f"port: make server PREFECT_PORT={spec.port + 1}"
            )
        env = server_env(spec, ui_api_url)
        dbseed.seed(spec.home, env)  # a new SQLite home: a copy of Prefect's migrated database
        prefect = Path(sys.executable).with_name("prefect")
        cmd = [str(prefect), "server", "start", "--host", spec.host, "--port", str(spec.port)]
        pid = processes.spawn(proc, cmd, env)
        try:
            wait_healthy(spec, pid, timeout)
        except BaseException:
            processes.terminate(pid, 10.0)
            spec.pid_file.unlink(missing_ok=True)
            raise
        return pid, True


def wait_healthy(spec: ServerSpec, pid: int, timeout: float) -> None:
    """Poll /api/health until it answers; LabError with the log tail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_healthy(spec.api_url, timeout=1.0):
            return
        if not processes.pid_alive(pid) or _zombie(pid):
            raise LabError(
                f"the Prefect server exited during start-up; last lines of {spec.log_file}:\n"
                + _log_tail(spec.log_file)
            )
        time.sleep(0.25)
    raise LabError(
        f"the Prefect server did not answer {spec.api_url}/health within {timeout:.0f} s; "
        f"last lines of {spec.log_file}:\n" + _log_tail(spec.log_file)
    )


def _zombie(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    return False


def stop(spec: ServerSpec, timeout: float = 20.0) -> int | None:
    """Stop the server the lab started (SIGTERM, SIGKILL after `timeout` s); its PID or None."""
    stopped = processes.stop(_process(spec), grace=timeout)
    if stopped is None:
        return None
    deadline = time.monotonic() + 10
    while port_in_use(spec.host, spec.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return stopped[0]
