"""`make bench-load`: many runs of the deployment at once, on SQLite and on PostgreSQL.

For each database: a fresh lab (its own Prefect home, data and artifacts folders in a temporary
folder, a free port; for PostgreSQL a fresh cluster made by `make postgres`), `make deploy`,
a concurrency limit of CONCURRENCY on the work pool (Prefect enforces it), RUNS flow runs of
the deployment created at once through the REST API (one per date, like a backfill), and
2 workers (`make worker`) that run them. Months of ROWS generated rows are served from a
loopback HTTP server. It prints wall time, runs per minute, scheduled -> start delays, server
errors found in the logs and runs not COMPLETED. It asserts nothing: figures vary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import requests

from benchlib import ROOT, clean_env, free_port, make, serve
from fhvlab.data.months import Month
from fhvlab.data.synthetic import write_synthetic_month

BENCH = ROOT / ".bench"
FLOW, DEPLOYMENT, POOL = "fhv-duration-training", "fhv-monthly", "fhv-pool"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# One line per event: a traceback also repeats it in SQLAlchemy's wrapper line.
LOCKED = re.compile(r"(?m)^(?!sqlalchemy\.exc).*database is locked")
HTTP_5XX = re.compile(
    r"\b5\d\d (Internal Server Error|Service Unavailable|Bad Gateway|Gateway Timeout)"
)


def run_dates(count: int) -> list[date]:
    """`count` run dates, the 15th of consecutive months from March 2019."""
    first = Month(2019, 3)
    return [date(m.year, m.month, 15) for m in (first.shift(i) for i in range(count))]


def generate(dates: list[date], rows: int) -> Path:
    """The months those dates need (two before each), generated once into .bench/."""
    folder = BENCH / f"load-rows-{rows}"
    needed = sorted({Month(d.year, d.month).shift(k) for d in dates for k in (-2, -1)})
    for month in needed:
        path = folder / f"fhv_tripdata_{month}.parquet"
        if not path.exists():
            write_synthetic_month(path, month, rows, seed=month.month)
    print(f"bench-load: {len(needed)} generated months of {rows:,} rows in {folder}", flush=True)
    return folder


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def max_running(runs: list[dict]) -> int:
    """The most runs RUNNING at the same moment (from their start and end times)."""
    events = []
    for r in runs:
        start, end = _ts(r["start_time"]), _ts(r["end_time"])
        if start is not None and end is not None:
            events += [(start, 1), (end, -1)]
    now = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        now += step
        most = max(most, now)
    return most


def leg(name: str, base: dict[str, str], dates: list[date], concurrency: int, workers: int):
    """One database: deploy, limit, create the runs, run them with `workers` workers."""
    api = f"http://127.0.0.1:{base['PREFECT_PORT']}/api"
    home = Path(base["PREFECT_HOME"])
    print(f"bench-load: {name}: make deploy", flush=True)
    make(base, "deploy")
    http = requests.Session()
    dep = http.get(f"{api}/deployments/name/{FLOW}/{DEPLOYMENT}", timeout=30).json()
    http.patch(f"{api}/work_pools/{POOL}", json={"concurrency_limit": concurrency}, timeout=30)
    logs = [home / f"worker-{i}.log" for i in range(workers)]
    procs = []
    try:
        for log in logs:
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        ["make", "--no-print-directory", "-C", str(ROOT), "worker"],
                        env=base,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 120
        while True:  # the runs' clocks start once both workers are polling
            found = http.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=30)
            online = [w for w in found.json() if w.get("status") == "ONLINE"]
            if len(online) >= workers:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench-load: {name}: workers not online after 120 s: {logs}")
            time.sleep(0.5)
        print(f"bench-load: {name}: {len(dates)} runs, {workers} workers", flush=True)
        started = time.time()
        ids = []
        client_5xx = 0
        for d in dates:
            for attempt in range(6):  # like Prefect's own client: retry a 503 with backoff
                created = http.post(
                    f"{api}/deployments/{dep['id']}/create_flow_run",
                    json={"parameters": {"date": d.isoformat()}, "name": f"load-{d}"},
                    timeout=60,
                )
                if created.status_code < 500 or attempt == 5:
                    break
                client_5xx += 1
                time.sleep(0.5 * 2**attempt)
            created.raise_for_status()
            ids.append(created.json()["id"])
        deadline = time.monotonic() + 1800
        while True:
            runs = http.post(
                f"{api}/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}, timeout=60
            ).json()
            if sum(r["state_type"] in FINAL for r in runs) == len(ids):
                break
            if time.monotonic() > deadline:
                print(f"bench-load: {name}: not all runs final after 1800 s", flush=True)
                break
            time.sleep(2)
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        make(base, "server-stop")
    ends = [_ts(r["end_time"]) for r in runs if r["end_time"]]
    delays = [_ts(r["start_time"]) - _ts(r["expected_start_time"]) for r in runs if r["start_time"]]
    wall = (max(ends) if ends else time.time()) - started
    texts = [p.read_text(errors="replace") for p in [home / "server.log", *logs] if p.exists()]
    server_log = texts[0] if texts else ""
    return {
        "database": name,
        "wall": wall,
        "per_min": sum(r["state_type"] == "COMPLETED" for r in runs) / wall * 60,
        "median": statistics.median(delays) if delays else float("nan"),
        "worst": max(delays) if delays else float("nan"),
        "locked": len(LOCKED.findall(server_log)),
        "http5xx": sum(len(HTTP_5XX.findall(t)) for t in texts) + client_5xx,
        "not_completed": sum(r["state_type"] != "COMPLETED" for r in runs),
        "max_running": max_running(runs),
        "runs": len(runs),
    }


def database_leg(name: str, url: str, dates: list[date], args: argparse.Namespace) -> dict:
    """One database's leg in a fresh lab (for PostgreSQL, a fresh `make postgres` cluster)."""
    # Not under a 0700 temp root: as root, the lab runs PostgreSQL as another user.
    tmp = Path(tempfile.mkdtemp(prefix=f"fhvlab-load-{name}-"))
    tmp.chmod(0o755)
    base = clean_env(
        {
            "PREFECT_HOME": str(tmp / "prefect"),
            "DATA_DIR": str(tmp / "data"),
            "ARTIFACTS_DIR": str(tmp / "artifacts"),
            "PREFECT_PORT": str(free_port()),
            "DATA_URL": url,
            "PG_DIR": str(tmp / "pg"),
            # Prefect hides retryable errors (SQLite's "database is locked") unless asked.
            "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
        }
    )
    try:
        if name == "postgresql":
            _, out = make({**base, "PG_PORT": str(free_port())}, "postgres")
            line = next(x for x in out.splitlines() if x.startswith("export DATABASE_URL="))
            base["DATABASE_URL"] = line.split("=", 1)[1].strip("'")
        return leg(name, base, dates, args.concurrency, args.workers)
    finally:
        if name == "postgresql":
            make(base, "postgres-stop")
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    dates = run_dates(args.runs)
    with serve(generate(dates, args.rows)) as url:
        results = [database_leg(name, url, dates, args) for name in args.databases]
    print(
        f"\n{args.runs} runs, {args.workers} workers, work-pool concurrency limit "
        f"{args.concurrency}, months of {args.rows:,} rows\n"
    )
    head = (
        f"{'database':<11}{'wall s':>8}{'runs/min':>10}{'sched->start':>14}{'worst':>8}"
        f"{'locked':>8}{'5xx':>5}{'not done':>10}{'max running':>13}"
    )
    print(head)
    for r in results:
        print(
            f"{r['database']:<11}{r['wall']:>8.1f}{r['per_min']:>10.1f}"
            f"{r['median']:>12.1f} s{r['worst']:>6.1f} s{r['locked']:>8}{r['http5xx']:>5}"
            f"{r['not_completed']:>10}{r['max_running']:>13}"
        )
    print(
        "\nsched->start: median time from a run's scheduled time to its start; locked: "
        "'database is locked' in the server log; 5xx: HTTP 5xx in server and worker logs\n"
        "and answers to this script's own requests (retried like Prefect's client does)"
    )


if __name__ == "__main__":
    sys.exit(main())
