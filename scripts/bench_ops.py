"""`make bench-ops`: what the set-up targets cost, cold and warm, against Prefect's floor.

Everything runs in one go, in a temporary folder (its own PREFECT_HOME, data and artifacts),
on a free port in 4500-4599, with months generated on this machine and served from 127.0.0.1:
- the floor: `python scripts/noop.py` (Prefect's import and one empty flow run) against a
  running server, the median of 3;
- `make server` on a fresh home (fresh database) and on an existing one, then with it up;
- `make config`, `storage`, `work-queue`, `deploy`: cold (a running server with an empty
  database, nothing set up) and warm (again, nothing changed);
- `make up`: cold (a fresh home, nothing running) and warm; `make run WATCH=1` (its flow
  run's own duration from the API, and the worker's poll interval, shown beside it);
- `make tour`: cold (a fresh home and no data: a fresh clone after `make setup`) and warm.
Each line: seconds, multiples of the floor, and the 1-minute load average when it ended
(a busy machine stretches every figure: compare the multiples). Nothing is asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from benchlib import ROOT, free_port, serve
from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import write_synthetic_month

DATE = "2021-03-15"  # trains on 2021-01, validates on 2021-02 (generated here)
WORKER_POLL = 3  # seconds, lab.mk's default (the Makefile exports it to the worker)


class Bench:
    """Runs commands with the bench's knobs and keeps one row per measurement."""

    def __init__(self, base: Path, data_url: str, port: int) -> None:
        self.base = base
        self.port = port
        self.rows: list[tuple[str, str, float, float]] = []
        keep = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DATABASE_URL", "API_URL", "UI_API_URL"):
            keep.pop(name, None)
        self.env = {
            **keep,
            "PREFECT_PORT": str(port),
            "DATA_URL": data_url,
            "DATA_DIR": str(base / "data"),
            "ARTIFACTS_DIR": str(base / "artifacts"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        self.home_n = 0

    def new_home(self) -> None:
        """Stop what runs in the current home; point the knobs at a new, empty one."""
        if "PREFECT_HOME" in self.env:
            self.make("down", quiet=True)
        self.home_n += 1
        self.env["PREFECT_HOME"] = str(self.base / f"prefect-{self.home_n}")

    def make(self, *args: str, quiet: bool = False) -> float:
        """Run `make args`; its wall time. Stops the bench on failure (showing the output)."""
        start = time.perf_counter()
        done = subprocess.run(
            ["make", "--no-print-directory", "-C", str(ROOT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        took = time.perf_counter() - start
        if done.returncode != 0 and not quiet:
            raise SystemExit(
                f"bench-ops: make {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
            )
        return took

    def timed(self, label: str, state: str, *args: str) -> float:
        took = self.make(*args)
        self.rows.append((label, state, took, os.getloadavg()[0]))
        print(f"bench-ops: {label:<22} {state:<34} {took:6.2f} s", flush=True)
        return took

    def floor(self) -> float:
        """`python scripts/noop.py` against the running server, median of 3."""
        env = {
            **self.env,
            "PREFECT_HOME": self.env["PREFECT_HOME"],
            "PREFECT_API_URL": f"http://127.0.0.1:{self.port}/api",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(
                [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "noop.py")],
                env=env,
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
            times.append(time.perf_counter() - start)
        took = statistics.median(times)
        self.rows.append(
            ("python scripts/noop.py", "the floor (median of 3)", took, os.getloadavg()[0])
        )
        print(f"bench-ops: floor {took:.2f} s ({', '.join(f'{t:.2f}' for t in times)})", flush=True)
        return took

    def call(self, path: str, body: object | None = None) -> object:
        """The lab server's answer to a GET (or, with a body, a POST) of `path`."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def last_run_seconds(self) -> tuple[float, float]:
        """The newest ended flow run: (from the worker's pickup (PENDING) to its end, from
        its RUNNING state to its end), as the server recorded them."""
        ended = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED"]}}}}
        [run] = self.call("/flow_runs/filter", {**ended, "sort": "START_TIME_DESC", "limit": 1})
        states = self.call(f"/flow_run_states/?flow_run_id={run['id']}")

        def at(text: str) -> datetime:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))

        end = at(run["end_time"])
        pending = min(at(s["timestamp"]) for s in states if s["type"] == "PENDING")
        return (end - pending).total_seconds(), (end - at(run["start_time"])).total_seconds()


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="fhvlab-bench-ops-"))
    months = base / "months"
    months.mkdir()
    for month in ("2021-01", "2021-02", "2021-06", "2021-07"):  # DATE's, the tour's
        path = months / f"fhv_tripdata_{month}.parquet"
        write_synthetic_month(path, parse_month(month), rows=20000, seed=1)
    print(f"bench-ops: {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, in {base}")
    bench: Bench | None = None
    try:
        with serve(months) as data_url:
            bench = Bench(base, data_url, free_port())
            bench.new_home()
            bench.timed("make server", "cold: fresh home, fresh database", "server")
            bench.timed("make server", "warm: up", "server")
            floor = bench.floor()
            bench.make("server-stop")
            bench.timed("make server", "existing database, not running", "server")
            for target in ("config", "storage", "work-queue", "deploy"):
                bench.new_home()
                bench.make("server")
                bench.timed(f"make {target}", "cold: server up, empty database", target)
                bench.timed(f"make {target}", "warm: nothing changed", target)
            bench.timed("make deploy", "CRON changed", "deploy", "CRON=0 10 15 * *")
            bench.new_home()
            bench.timed("make up", "cold: fresh home, nothing running", "up")
            bench.timed("make up", "warm: all up", "up")
            took = bench.timed(
                "make run WATCH=1", "worker up (make up)", "run", f"DATE={DATE}", "WATCH=1"
            )
            picked, running = bench.last_run_seconds()
            print(
                f"bench-ops: make run WATCH=1 {took:.2f} s = the run {picked:.2f} s (from the "
                f"worker's pickup to its end; RUNNING {running:.2f} s of it) + "
                f"{took - picked:.2f} s "
                f"(budget: the floor {floor:.2f} s + one worker poll {WORKER_POLL} s)"
            )
            bench.new_home()  # the tour as a new student runs it: no data, no Prefect home
            bench.env["DATA_DIR"] = str(base / "tour-data")
            bench.env["ARTIFACTS_DIR"] = str(base / "tour-artifacts")
            bench.timed("make tour", "cold: fresh home, no data", "tour")
            bench.timed("make tour", "warm: again", "tour")
    finally:
        if bench is not None:
            bench.make("down", quiet=True)
    print()
    print(f"{'command':<24} {'state':<36} {'seconds':>8} {'floors':>7} {'load':>5}")
    for label, state, took, load in bench.rows if bench else []:
        print(f"{label:<24} {state:<36} {took:8.2f} {took / floor:7.2f} {load:5.1f}")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
