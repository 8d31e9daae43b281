"""Shared fixtures: the repo root, a sandboxed environment for `make`, helpers to run it."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Variables that would let a test reach outside its sandbox (the user's Prefect server,
# data, ...): every knob of the Makefile (`make test` exports them to pytest), make's own,
# and every PREFECT_ setting.
_KNOBS = set(re.findall(r"^([A-Z_]+)\s*\?=", (ROOT / "lab.mk").read_text(), re.MULTILINE))
_LEAKY = _KNOBS | {"LAB_ROOT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "UV_PROJECT_ENVIRONMENT"}


# The test process itself is sandboxed too: nothing in it may reach the student's lab.
for _name in [k for k in os.environ if k in _LEAKY or k.startswith("PREFECT_")]:
    del os.environ[_name]
# Prefect, once a test imports it, makes and reads its home: one of this process's own, never
# ~/.prefect. (clean_env drops it again for the processes a test starts.)
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fhvlab-tests-prefect-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], True)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return os.environ without the lab's knobs, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY and not k.startswith("PREFECT_")}
    env.update(extra or {})
    return env


def run_make(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `make -C ROOT args` (or in `cwd`) and capture its output as text."""
    cmd = ["make", "--no-print-directory"]
    if cwd is None:
        cmd += ["-C", str(ROOT)]
    return subprocess.run(
        [*cmd, *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class Ran:
    """What an in-process `python -m fhvlab ...` returned and printed (like CompletedProcess)."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`cli(*args, env={...})`: `python -m fhvlab args` run in this process with the knobs
    `env`, for parsers and bad inputs (no `make`, no interpreter start). The knobs are
    restored at teardown, and so is the SIGTERM handler the command line installs."""
    import signal

    from fhvlab.cli import main

    def run(*argv: str, env: Mapping[str, str] | None = None) -> Ran:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        handler = signal.getsignal(signal.SIGTERM)
        try:
            code = main(list(argv))
        finally:
            signal.signal(signal.SIGTERM, handler)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def one_error(result: Ran | subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line of a failed command (no traceback), asserted."""
    assert result.returncode != 0, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def copy_project(dest: Path) -> Path:
    """A copy of the lab's source (no .venv, data or Prefect home): a fresh clone, offline."""
    dest.mkdir()
    for name in ("Makefile", "lab.mk", "pyproject.toml", "uv.lock", "README.md", "prefect.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    for folder in ("src", "scripts", "flows"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def linked_copy(dest: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the lab's source whose .venv is this checkout's, and the knob that makes
    its Python import the copy's own code (PYTHONPATH: the copy's src/): another checkout,
    without a second `make setup` (a fresh clone's `make setup` is what CI itself runs)."""
    copy = copy_project(dest)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy, {"PYTHONPATH": str(copy / "src")}


def make_ok(result: subprocess.CompletedProcess[str]) -> str:
    """Assert a `run_make` succeeded (showing its output if not); log it with the time.

    A WEBHOOK_URL=... argument is shown as *** (it is a secret).
    """
    shown = ["WEBHOOK_URL=***" if a.startswith("WEBHOOK_URL=") else a for a in result.args[4:]]
    print(f"[{time.strftime('%T')}] make {' '.join(shown)}", flush=True)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def wait_for(predicate, timeout: float, what: str):
    """Poll `predicate` every second until it returns something truthy (returned); fail the
    test after `timeout` seconds, naming `what` it waited for. (Each poll is an API call the
    server answers: on 2 cores shared by the whole suite, twice a second costs CPU.)"""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(1.0)
    return value


def stop_group(proc: subprocess.Popen | None) -> None:
    """Stop a process started with `start_new_session=True`, and its children: SIGTERM to
    its process group, SIGKILL after 20 s."""
    import signal

    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def lab_api(env: Mapping[str, str]) -> str:
    """The API URL of the lab server the knobs `env` start."""
    return f"http://127.0.0.1:{env['PREFECT_PORT']}/api"


def api_post(env: Mapping[str, str], path: str, body: dict | None = None):
    """POST `body` to the lab server's API `path`; the decoded JSON answer."""
    import requests

    response = requests.post(f"{lab_api(env)}{path}", json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def lab_env(tmp_path: Path) -> dict[str, str]:
    """Knobs pointing every lab location into a temporary folder."""
    return {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "DATA_DIR": str(tmp_path / "data"),
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }


@pytest.fixture(scope="session")
def fhv_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small generated FHV months (real schema) keyed by 'YYYY-MM'."""
    from fhvlab.data.months import parse_month
    from fhvlab.data.synthetic import write_synthetic_month

    folder = tmp_path_factory.mktemp("fhv-source")
    files = {}
    for month in ("2021-01", "2021-02", "2021-06", "2021-07"):
        path = folder / f"fhv_tripdata_{month}.parquet"
        files[month] = write_synthetic_month(path, parse_month(month), rows=3000, seed=1)
    return files


@pytest.fixture
def fhv_server(fhv_files: dict[str, Path]):
    """A real HTTP server on 127.0.0.1 serving the generated months under /trip-data/."""
    from tests.fhvhttp import running_server

    with running_server() as server:
        for path in fhv_files.values():
            server.serve_file(path.name, path)
        yield server


def free_port() -> int:
    """A TCP port nothing listens on right now (127.0.0.1)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_lab_server(env: Mapping[str, str]) -> None:
    """`make server-stop`, then kill the PID file's process if it is somehow still there."""
    import signal

    run_make("server-stop", env=env, timeout=60)
    pid_file = Path(env["PREFECT_HOME"]) / "server.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture
def prefect_lab(tmp_path: Path, lab_env: dict[str, str], fhv_server):
    """Knobs for a lab with its own Prefect home, a free port and data from 127.0.0.1.

    Whatever server a test starts with them is stopped at teardown, pass or fail.
    """
    env = {
        **lab_env,
        "PREFECT_PORT": str(free_port()),
        "DATA_URL": fhv_server.url,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    try:
        yield env
    finally:
        stop_lab_server(env)


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness, once per test process: flows run in this process against a
    temporary server and database (where the `make` path is not the point). Its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # A fresh database's migrations beside the suite's other processes on 2 cores: 30 s
    # (Prefect's default) is not always enough.
    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()


def flow_script(name: str):
    """flows/NAME.py imported as a module (the flow scripts are not a package)."""
    import importlib.util
    import sys

    module_name = f"lab_flows_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, ROOT / "flows" / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


@pytest.fixture(scope="session")
def postgres_cluster():
    """A PostgreSQL cluster made by `make postgres` in a temporary folder on a free port.

    Skips when PostgreSQL's programs are missing, unless FHVLAB_REQUIRE_POSTGRES=1 (CI):
    then it fails. Stopped and removed at the end of the session.
    """
    import tempfile

    from fhvlab.errors import LabError
    from fhvlab.local.postgres import find_binaries

    try:
        find_binaries()
    except LabError as exc:
        if os.environ.get("FHVLAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FHVLAB_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))
    # Not under pytest's 0700 temp root: as root, the lab runs PostgreSQL as another user.
    folder = Path(tempfile.mkdtemp(prefix="fhvlab-pg-"))
    folder.chmod(0o755)
    env = {"PG_DIR": str(folder / "pg"), "PG_PORT": str(free_port())}
    try:
        made = run_make("postgres", env=env, timeout=120)
        assert made.returncode == 0, made.stderr
        [line] = [x for x in made.stdout.splitlines() if x.startswith("export DATABASE_URL=")]
        yield {**env, "DATABASE_URL": line.split("=", 1)[1].strip("'")}
    finally:
        run_make("postgres-stop", env=env, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_database_url(postgres_cluster, request) -> str:
    """A DATABASE_URL of a fresh, empty database of the test's own in that cluster."""
    import asyncio

    import asyncpg

    url = postgres_cluster["DATABASE_URL"]
    name = f"t_{abs(hash(request.node.nodeid)) % 10**8}_{os.getpid()}"
    socket_dir = str(Path(postgres_cluster["PG_DIR"]) / "run")

    async def admin(sql: str) -> None:  # as the superuser, over the cluster's own socket
        conn = await asyncpg.connect(
            host=socket_dir, port=int(postgres_cluster["PG_PORT"]), user="postgres"
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name} OWNER prefect"))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


# The slowest tests first (measured with --durations), so that `make test` (pytest -n N)
# starts each on a process of its own at once and the run does not end on one long test
# running alone: most of their time is spent waiting on servers, workers and heartbeats.
# pytest-xdist hands each process its next test while the current one runs (two at the start),
# so each slow test is followed by a quick unit test: two slow tests in a row would go to one
# process and run one after the other.
_SLOW_FIRST = (  # longest first (seconds in a CI run of 2026-11-30, FHVLAB_TEST_TIMELINE)
    "test_backfill_faults.py::test_killed_worker",  # 163 s
    "test_noop_targets.py::test_nothing_to_do",  # 150 s
    "test_crash.py::",  # 138 s
    "test_orchestration.py::test_module_end_to_end",  # 127 s
    "test_backfill.py::test_backfill_runs_each_date",  # ~110 s alone (issue 26)
    "test_up_down.py::test_up_run_alerts_logs_down_reset",  # 102 s
    "test_backfill_faults.py::",  # 101 s
    "test_watch.py::test_watch_announces",  # ~90 s alone (issue 26)
    "test_onboarding.py::test_tour_then",  # 72 s
    "test_storage.py::test_s3_shared_by_two_checkouts",  # 69 s (measured alone)
    "test_storage.py::test_gcs_then_azure",  # 61 s (measured alone)
    "test_train_flow.py::test_the_flow_in_process",  # 54 s
    "test_train.py::test_flow_script",  # 43 s
    "test_train.py::",  # 45 s alone (2026-12-03: and a second machine)
    "test_cohort.py::",  # 30-36 s alone (2026-12-03)
    "test_python_choice.py::",
    "test_orchestration.py::test_with_an_auth_string",
    "test_up_down.py::",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order tests: those named in _SLOW_FIRST in that order, each followed by a unit test,
    then everything else."""

    def rank(item: pytest.Item) -> int:
        return next(
            (i for i, key in enumerate(_SLOW_FIRST) if key in item.nodeid), len(_SLOW_FIRST)
        )

    slow = sorted((i for i in items if rank(i) < len(_SLOW_FIRST)), key=rank)
    rest = [i for i in items if rank(i) == len(_SLOW_FIRST)]
    quick = [i for i in rest if "/unit/" in i.nodeid]
    ordered: list[pytest.Item] = []
    for item in slow:
        ordered.append(item)
        if quick:
            ordered.append(quick.pop(0))
    taken = {id(i) for i in ordered}
    items[:] = ordered + [i for i in rest if id(i) not in taken]


# FHVLAB_TEST_TIMELINE=FILE: one line per test (process, start and end on the wall clock, CPU
# seconds, nodeid), to see what ran beside what in a `make test` (the order above is tuned with
# it). With FHVLAB_TEST_CGROUP=/sys/fs/cgroup/cpuacct/NAME (Linux cgroup v1, as root) each
# test process moves into a cgroup of its own there, so the CPU column counts everything the
# test started, servers and workers included.
_TIMELINE = os.environ.get("FHVLAB_TEST_TIMELINE")
_STARTED: dict[str, tuple[float, float]] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Only the processes that run tests write the timeline (not xdist's controller)."""
    global _TIMELINE
    if config.getoption("dist", "no") != "no":
        _TIMELINE = None


def _cgroup_usage() -> float:
    """CPU seconds of this test process's cgroup (FHVLAB_TEST_CGROUP), else of itself."""
    group = os.environ.get("FHVLAB_TEST_CGROUP")
    if group:
        own = Path(group) / os.environ.get("PYTEST_XDIST_WORKER", "main")
        if not own.exists():
            own.mkdir(parents=True)
            (own / "cgroup.procs").write_text(str(os.getpid()))
        return int((own / "cpuacct.usage").read_text()) / 1e9
    return time.process_time()


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    """Note when a test starts (FHVLAB_TEST_TIMELINE only)."""
    if _TIMELINE:
        _STARTED[nodeid] = (time.time(), _cgroup_usage())


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    """Append the test's line to FHVLAB_TEST_TIMELINE."""
    if _TIMELINE and nodeid in _STARTED:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        start, cpu = _STARTED.pop(nodeid)
        used = _cgroup_usage() - cpu
        with open(_TIMELINE, "a") as out:
            out.write(f"{worker} {start:.1f} {time.time():.1f} {used:.1f} {nodeid}\n")


def task_states(api: str, flow_run_id: str, count: int) -> dict[str, list[str]]:
    """Task name -> state names of the run's task runs, once the server holds `count` final."""
    import requests

    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    deadline = time.monotonic() + 30  # the server records task-run states in 1 s batches
    while True:
        runs = requests.post(f"{api}/task_runs/filter", json=body, timeout=10).json()
        final = [r for r in runs if r["state"] and r["state"]["type"] == "COMPLETED"]
        if len(final) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    states: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda r: r["name"]):
        states.setdefault(run["name"].rsplit("-", 1)[0], []).append(run["state"]["name"])
    return states


def max_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, end) intervals that hold at one instant (the runs of a
    backfill running at once)."""
    events = []
    for start, end in intervals:
        events += [(start, 1), (end, -1)]
    current = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
        current += step
        peak = max(peak, current)
    return peak
