"""`make up / down / logs / reset`, race-free starts, and alerts to a webhook on 127.0.0.1.

Real processes throughout: servers and workers are found by their PID files and checked
in the process table; the webhook receiver is a real HTTP server on a free loopback port.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fhvlab.local import processes
from tests.conftest import ROOT, api_post, clean_env, make_ok, run_make, wait_for

pytestmark = pytest.mark.integration


def _lab_processes(kind: str, env) -> list[int]:
    """PIDs in the process table running `prefect <kind> start` for this test's lab."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = processes.command_line(int(entry.name)) or []
        if not processes.matches(argv, ("prefect", kind, "start")):
            continue
        if kind == "server" and env["PREFECT_PORT"] not in argv:
            continue
        if kind == "worker":
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"PREFECT_HOME={env['PREFECT_HOME']}\0".encode() not in environ:
                continue
        if processes.pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _worked(out: str) -> set[str]:
    """The set-up steps that did work: those that printed the Prefect command they ran."""
    return {line.split(":", 1)[0] for line in out.splitlines() if ": $ " in line}


def _set_up(env) -> dict:
    """What the set-up made, with the times the server last changed each object."""
    return {
        "deployments": {d["name"]: d["updated"] for d in api_post(env, "/deployments/filter")},
        "automations": {a["id"]: a["updated"] for a in api_post(env, "/automations/filter")},
        "pools": {p["name"]: p["id"] for p in api_post(env, "/work_pools/filter")},
    }


def _port_free(port: str) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", int(port))) != 0


def _at_once(n: int, *args: str, env) -> list[subprocess.CompletedProcess[str]]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: run_make(*args, env=env, timeout=600), range(n)))


class Receiver:
    """A webhook receiver on 127.0.0.1 that records every POST body."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "json": json.loads(body or b"null")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/T000/B000/s3cr3t-t0ken"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_simultaneous_make_server_give_one_server(prefect_lab):
    env = prefect_lab
    results = _at_once(3, "server", env=env)
    for result in results:
        make_ok(result)
    outs = " ".join(r.stdout for r in results)
    assert outs.count("server: started") == 1, outs
    assert outs.count("server: already running") == 2, outs
    [pid] = _lab_processes("server", env)
    assert int((Path(env["PREFECT_HOME"]) / "server.pid").read_text()) == pid
    assert f"server: stopped (pid {pid})" in make_ok(run_make("server-stop", env=env))
    assert _port_free(env["PREFECT_PORT"])
    assert _lab_processes("server", env) == []


def test_up_run_alerts_logs_down_reset(prefect_lab, fhv_files):
    env = {**prefect_lab, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    home = Path(env["PREFECT_HOME"])
    try:
        with Receiver() as hook:
            _check_up_run_alerts(env, home, hook)
        _check_logs(env)
        _check_down_reset(env, home)
    finally:
        run_make("down", env=env, timeout=120)


def _check_up_run_alerts(env, home: Path, hook: Receiver) -> None:
    # Two at once are the race; each `make up` runs a whole `make deploy` (the second one
    # after the first, under the lock), so a third would only add another deploy.
    results = _at_once(2, "up", env=env)
    for result in results:
        make_ok(result)
    outs = " ".join(r.stdout for r in results)
    assert outs.count("worker: started") == 1, outs
    [server_pid] = _lab_processes("server", env)
    [worker_pid] = _lab_processes("worker", env)
    assert int((home / "server.pid").read_text()) == server_pid
    assert int((home / "worker.pid").read_text()) == worker_pid
    # A third `make up`, alone: nothing to do, nothing on the server changes (issue 19).
    before = _set_up(env)
    again = make_ok(run_make("up", env=env, timeout=400))
    assert _worked(again) == set(), again
    assert "worker: already running" in again
    assert _lab_processes("worker", env) == [worker_pid]
    assert _set_up(env) == before
    automations = api_post(env, "/automations/filter")
    assert sorted(a["name"] for a in automations) == [
        "fhv-backfill: crash runs without heartbeat",
        "fhv-monthly: crash runs without heartbeat",
        "fhv-monthly: re-run a crashed run once",
        "fhv-monthly: train when a month is published",  # prefect.yaml's trigger (issue 20)
    ]

    # Alerts: the URL never shows, a second call updates in place.
    for _ in range(2):
        result = run_make("alerts", f"WEBHOOK_URL={hook.url}", env=env)
        make_ok(result)
        assert "s3cr3t" not in result.stdout + result.stderr
    names = [a["name"] for a in api_post(env, "/automations/filter")]
    assert names.count("fhv-monthly: alert on failed or crashed runs") == 1
    [block] = api_post(
        env, "/block_documents/filter", {"block_documents": {"name": {"any_": ["fhvlab-alerts"]}}}
    )
    assert "s3cr3t" not in json.dumps(block)

    # With no other terminal: `make up` alone runs what `make run` asks for.
    make_ok(run_make("run", "DATE=2021-08-15", "WATCH=1", env=env, timeout=300))
    failed = run_make("run", "DATE=2021-05-15", "WATCH=1", env=env, timeout=300)  # 404 month
    assert failed.returncode != 0
    [post] = wait_for(lambda: list(hook.posts), 60, "the alert of the failed run")
    [run] = api_post(
        env, "/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}}
    )
    text = post["json"]["text"]
    assert post["path"].endswith("/s3cr3t-t0ken")
    for expected in (
        "fhv-duration-training",
        f"run: {run['name']}",
        "date: 2021-05-15",
        "state: Failed",
        "404",
        f"link: http://127.0.0.1:{env['PREFECT_PORT']}/runs/flow-run/{run['id']}",
    ):
        assert expected in text, f"{expected!r} missing from the alert:\n{text}"
    assert post["json"]["content"] == text  # Discord-style receivers read `content`

    out = make_ok(run_make("alerts-off", env=env))
    assert "deleted automation" in out
    # No automation left to fire (a deleted automation cannot post), and no other post came.
    assert "alert" not in " ".join(a["name"] for a in api_post(env, "/automations/filter"))
    assert len(hook.posts) == 1, hook.posts
    for log in ("server.log", "worker.log"):
        assert "s3cr3t" not in (home / log).read_text(errors="replace")


def _check_logs(env) -> None:
    out = make_ok(run_make("logs", "LINES=5", env=env))
    sources = {line.split(" | ", 1)[0].strip() for line in out.splitlines()}
    assert sources == {"server", "worker"}, out
    follow = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(ROOT), "logs", "FOLLOW=1", "LINES=1"],
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")))
        reader.daemon = True
        reader.start()
        # Its first lines (the tails) mean it has noted where each log ends.
        wait_for(lambda: any(x.startswith("worker |") for x in lines), 60, "make logs FOLLOW=1")
        with (Path(env["PREFECT_HOME"]) / "worker.log").open("a") as log:
            log.write("probe line for make logs FOLLOW=1\n")
        wait_for(
            lambda: any("worker | probe line for make logs FOLLOW=1" in x for x in lines),
            20,
            "make logs FOLLOW=1 to show a new worker line",
        )
    finally:
        os.killpg(follow.pid, 15)
        follow.wait(timeout=10)


def _check_down_reset(env, home: Path) -> None:
    [server_pid] = _lab_processes("server", env)
    [worker_pid] = _lab_processes("worker", env)
    family = processes._descendants_of(worker_pid)
    out = make_ok(run_make("down", env=env))
    assert f"pid {worker_pid}" in out
    assert f"pid {server_pid}" in out
    for pid in (server_pid, worker_pid, *family):
        assert not processes.pid_alive(pid), f"process {pid} survived make down"
    assert _port_free(env["PREFECT_PORT"])
    assert (home / "prefect.db").exists()

    listed = make_ok(run_make("reset", env=env))
    assert f"would delete {home / 'prefect.db'}" in listed
    assert "nothing deleted" in listed
    assert (home / "prefect.db").exists()
    assert any((home / "results").iterdir())

    make_ok(run_make("reset", "YES=1", env=env))
    assert not (home / "prefect.db").exists()
    assert not (home / "results").exists()
    assert (home / "profiles.toml").exists()
    # the storage block went with the database: the profile no longer names it
    assert "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK" not in (home / "profiles.toml").read_text()
    assert (Path(env["ARTIFACTS_DIR"]) / "metrics-2021-08-15.json").exists()

    # After a reset, `make up` does every step again.
    out = make_ok(run_make("up", env=env, timeout=400))
    assert _worked(out) == {"server", "config", "storage", "work-queue", "deploy", "worker"}, out
    runs = api_post(env, "/flow_runs/filter")
    assert [r for r in runs if r["parameters"]] == []  # only the cron's upcoming runs
    assert len(api_post(env, "/automations/filter")) == 4

    # Another WORK_POOL: the pool and the deployments move, the worker is restarted there.
    [worker_pid] = _lab_processes("worker", env)
    moved = {**env, "WORK_POOL": "up-pool"}
    out = make_ok(run_make("up", env=moved, timeout=400))
    assert _worked(out) == {"work-queue", "deploy", "worker"}, out
    assert int((home / "worker.pid").read_text()) != worker_pid
    assert not processes.pid_alive(worker_pid)
    workers = api_post(env, "/work_pools/up-pool/workers/filter")
    assert [w["status"] for w in workers] == ["ONLINE"]
    assert {d["work_pool_name"] for d in api_post(env, "/deployments/filter")} == {"up-pool"}


def test_doctor_warns_when_the_shell_prefect_is_not_the_labs(lab_env):
    port = "4399"
    env = {**lab_env, "PREFECT_PORT": port}
    elsewhere = run_make("doctor", env={**env, "PREFECT_API_URL": "http://10.9.9.9:4200/api"})
    [line] = [x for x in elsewhere.stdout.splitlines() if " shell " in x]
    assert line.startswith("[!]"), line
    assert "PREFECT_API_URL=http://10.9.9.9:4200/api is not the lab's API" in line
    assert "make shell" in line

    exports = make_ok(run_make("-s", "shell-env", env=env))
    values = dict(
        x.removeprefix("export ").split("=", 1) for x in exports.splitlines() if x[:1] != "#"
    )
    assert values["PREFECT_API_URL"] == f"http://127.0.0.1:{port}/api"
    assert values["PREFECT_HOME"] == env["PREFECT_HOME"]
    inside = run_make("doctor", env={**env, "PREFECT_API_URL": values["PREFECT_API_URL"]})
    [line] = [x for x in inside.stdout.splitlines() if " shell " in x]
    assert line.startswith("[ok]"), line
