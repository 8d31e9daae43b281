"""`make bench-backfill` (and the end of `make bench`): backfills of 6 and 24 dates at
CONCURRENCY=4 against the same number of sequential warm `make train`, for two designs, and
(BENCH_120=1) 120 dates of the kept design; generated months of real size (1.1 M rows each).

- design (b), the lab's `make backfill` (kept): one run of the `fhv-backfill` deployment
  runs every date as a subflow run in one process (flows/backfill.py);
- design (a), a PROTOTYPE kept here only to measure it: Prefect's server backfill, one run of
  the training deployment per cron date (created by the client with its scheduled time), each
  in its own worker-launched process, capped by that deployment's `concurrency_limit`
  (ENQUEUE), then `make report` for the summary.

Runs in a throw-away lab (its own Prefect home, a free port, a temporary artifacts folder;
SQLite, or the PostgreSQL database DATABASE_URL names) so the student's server keeps no
bench runs. Every measurement uses months of its
own (other years), generated once into .bench/ before anything is timed: Prefect's cache of
prepared months never carries work from one measurement to the next. Figures are printed
with the load average, never asserted.
"""

from __future__ import annotations

import contextlib
import os
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

from benchlib import ROOT, free_port
from fhvlab.data.months import months_for
from fhvlab.data.synthetic import write_synthetic_month
from fhvlab.orchestration.trained import run_name

ROWS = int(os.environ.get("BENCH_ROWS", "1100000"))
CONCURRENCY = os.environ.get("BENCH_CONCURRENCY", "4")
LAB_KNOBS = ("FROM", "TO", "CONCURRENCY", "WATCH", "WATCH_TIMEOUT", "DATE", "MONTHS", "API_URL")
WARM_UP = "2000-03-15"
# Disjoint years: no measurement reuses another's months (nor their cached statistics).
RANGES = {
    "sequential": (2001, 24),
    "b6": (2004, 6),
    "b24": (2005, 24),
    "a6": (2008, 6),
    "a24": (2009, 24),
    "b120": (2012, 120),
}


def dates_from(year: int, count: int) -> list[str]:
    """`count` course-cron dates (the 15th of each month) from January of `year`."""
    return [f"{year + i // 12}-{i % 12 + 1:02d}-15" for i in range(count)]


def generate(folder: Path, dates: list[str]) -> None:
    """Every month the dates need, generated once (same seed as scripts/bench.py)."""
    needed = sorted({m for d in dates for m in months_for(date.fromisoformat(d))}, key=str)
    missing = [m for m in needed if not (folder / f"fhv_tripdata_{m}.parquet").exists()]
    if missing:
        print(f"bench-backfill: generating {len(missing)} months of {ROWS:,} rows", flush=True)
    for month in missing:
        write_synthetic_month(folder / f"fhv_tripdata_{month}.parquet", month, ROWS, seed=42)


def load() -> str:
    """The 1-minute load average, as `uptime` shows it."""
    return f"{os.getloadavg()[0]:.2f}"


def make(env: dict[str, str], *args: str, timeout: float = 3600) -> float:
    """Run `make args` in the bench lab; return its wall time (exit on failure)."""
    start = time.perf_counter()
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"bench-backfill: make {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return time.perf_counter() - start


def retryable(log: Path) -> int:
    """Requests the server answered 503 so far (SQLite busy; retried by the client)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Encountered retryable exception in request")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def date_runs(api: str, dates: list[str]) -> list[dict]:
    """The per-date runs (train-DATE) of `dates`."""
    names = [run_name(d) for d in dates]
    found: list[dict] = []
    for i in range(0, len(names), 50):
        found += requests.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": names[i : i + 50]}}, "limit": 200},
            timeout=30,
        ).json()
    return found


def design_a(dates: list[str], concurrency: int) -> None:
    """PROTOTYPE of design (a), run in its own process (`bench_backfill.py design-a ...`).

    One run of the training deployment per date, scheduled at the date's cron time (as
    Prefect's server backfill would), named train-DATE, tagged backfill; the deployment's
    concurrency limit caps them (ENQUEUE); waits for each with Prefect's wait_for_flow_run.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.flow_runs import wait_for_flow_run
    from prefect.states import Scheduled

    with get_client(sync_client=True) as http:
        deployment = http.read_deployment_by_name("fhv-duration-training/fhv-monthly")
        http.update_deployment(
            deployment.id,
            DeploymentUpdate(
                concurrency_limit=concurrency,
                concurrency_options=ConcurrencyOptions(
                    collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
                ),
            ),
        )
        runs = [
            http.create_flow_run_from_deployment(
                deployment.id,
                parameters={"date": d},
                name=run_name(d),
                tags=["backfill"],
                idempotency_key=f"bench-design-a-{d}",
                state=Scheduled(scheduled_time=datetime.fromisoformat(f"{d}T09:00:00+00:00")),
            )
            for d in dates
        ]

    async def wait_all() -> list:
        return await asyncio.gather(*(wait_for_flow_run(r.id, timeout=3600) for r in runs))

    ended = asyncio.run(wait_all())
    bad = [r.name for r in ended if r.state_type is None or r.state_type.value != "COMPLETED"]
    if bad:
        raise SystemExit(f"design (a): not COMPLETED: {bad}")


def measure(label: str, api: str, dates: list[str], wall: float, began: float) -> dict:
    """Figures of one backfill from its per-date runs in the API."""
    runs = date_runs(api, dates)
    states = sorted({r["state_type"] for r in runs})
    own = [(when(r["start_time"]) - when(r["created"])).total_seconds() for r in runs]
    first_start = min(when(r["start_time"]).timestamp() for r in runs) - began
    return {
        "label": label,
        "dates": len(dates),
        "runs": len(runs),
        "states": states,
        "wall": wall,
        "per_minute": len(dates) / wall * 60,
        "created_to_started_median": statistics.median(own),
        "created_to_started_worst": max(own),
        "command_to_first_start": first_start,
        "seconds_per_date_median": statistics.median(r["total_run_time"] for r in runs),
    }


def main() -> None:
    if sys.argv[1:2] == ["design-a"]:
        design_a(sys.argv[4:], int(sys.argv[2]))
        return
    only = os.environ.get("BENCH_ONLY", "b6,b24,a6,a24").split(",")
    if os.environ.get("BENCH_120", "0") == "1":
        only.append("b120")
    data = ROOT / ".bench" / f"rows-{ROWS}"
    plan = {k: dates_from(*v) for k, v in RANGES.items() if k in only}
    longest = max((len(v) for v in plan.values() if len(v) <= 24), default=0)
    plan["sequential"] = dates_from(RANGES["sequential"][0], longest)
    generate(data, [WARM_UP] + [d for ds in plan.values() for d in ds])
    lab = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in LAB_KNOBS and not k.startswith("PREFECT_")
    }
    env.update(
        PREFECT_HOME=str(lab / "prefect"),
        PREFECT_PORT=str(port),
        DATA_DIR=str(data),
        ARTIFACTS_DIR=str(lab / "artifacts"),
        DATA_URL="http://127.0.0.1:9/unused",  # data is present: nothing may be fetched
        NO_PROXY="127.0.0.1,localhost",
        # SQLite "database is locked" answers are 503s the client retries after 2 s; the
        # server logs them only with this on (counted per measurement).
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",
    )
    api = f"http://127.0.0.1:{port}/api"
    server_log = lab / "prefect" / "server.log"
    worker = None
    results: list[dict] = []
    seq: list[float] = []
    try:
        make(env, "deploy")
        db = "PostgreSQL" if env.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
        print(f"bench-backfill: {ROWS:,} rows a month, {db}, {os.cpu_count()} cores, "
              f"CONCURRENCY={CONCURRENCY}", flush=True)  # fmt: skip
        make(env, "train", f"DATE={WARM_UP}")  # not timed: first run, caches cold
        seq_load = load()
        for d in plan["sequential"]:
            seq.append(make(env, "train", f"DATE={d}"))
        print(f"bench-backfill: {len(seq)} sequential `make train`: {sum(seq):.1f} s "
              f"(first 6: {sum(seq[:6]):.1f} s), load {seq_load}", flush=True)  # fmt: skip

        worker_log = lab / "worker.log"
        with worker_log.open("w") as out:
            worker = subprocess.Popen(
                ["make", "--no-print-directory", "-C", str(ROOT), "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while "started!" not in worker_log.read_text():
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"bench-backfill: worker did not start:\n{worker_log.read_text()}")
            time.sleep(0.2)

        for key in ("b6", "b24", "a6", "a24", "b120"):
            if key not in plan:
                continue
            dates, began, before = plan[key], time.time(), load()
            busy_before = retryable(server_log)
            first, last = dates[0], dates[-1]
            if key.startswith("b"):
                label = f"(b) make backfill WATCH=1, {len(dates)} dates"
                knobs = [f"FROM={first}", f"TO={last}", f"CONCURRENCY={CONCURRENCY}"]
                wall = make(env, "backfill", *knobs, "WATCH=1", "WATCH_TIMEOUT=3600")
            else:
                label = f"(a) server-side runs + report, {len(dates)} dates"
                start = time.perf_counter()
                prototype = subprocess.run(
                    [sys.executable, __file__, "design-a", CONCURRENCY, "--", *dates],
                    env={**env, "PREFECT_API_URL": api},
                    capture_output=True,
                    text=True,
                    timeout=3600,
                    check=False,
                )
                if prototype.returncode != 0:
                    raise SystemExit(f"design (a) failed:\n{prototype.stdout}\n{prototype.stderr}")
                make(env, "report", f"FROM={first}", f"TO={last}")
                wall = time.perf_counter() - start
            result = measure(label, api, dates, wall, began)
            result["load"] = f"{before} -> {load()}"
            result["503"] = retryable(server_log) - busy_before
            results.append(result)
            print(f"bench-backfill: {label}: {wall:.1f} s, load {result['load']}", flush=True)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        with contextlib.suppress(SystemExit):
            make(env, "server-stop", timeout=120)
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"bench-backfill: kept {lab} (BENCH_KEEP=1)")
        else:
            shutil.rmtree(lab, ignore_errors=True)

    print()
    print(f"sequential warm `make train`: median {statistics.median(seq):.2f} s a date "
          f"(load {seq_load})")  # fmt: skip
    header = f"{'':44} {'wall s':>7} {'ratio':>6} {'runs/min':>8} {'created->started':>17}  load"
    print(header)
    for r in results:
        baseline = sum(seq[: r["dates"]]) if r["dates"] <= len(seq) else None
        ratio = f"{r['wall'] / baseline:6.2f}" if baseline else f"{'-':>6}"
        print(
            f"{r['label']:44} {r['wall']:7.1f} {ratio} {r['per_minute']:8.1f} "
            f"{r['created_to_started_median']:7.2f} / {r['created_to_started_worst']:6.2f}  "
            f"{r['load']}"
        )
    print("ratio: backfill wall / the same number of sequential `make train` (target <= 0.5)")
    print("created->started: each date's flow run, median / worst, seconds")
    for r in results:
        print(f"{r['label']}: {r['runs']} runs {r['states']}, command -> first date started "
              f"{r['command_to_first_start']:.1f} s, seconds per date median "
              f"{r['seconds_per_date_median']:.1f}, 503s {r['503']}")  # fmt: skip


if __name__ == "__main__":
    main()
