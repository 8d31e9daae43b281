"""`make bench-backfill` (and the end of `make bench`): a 12-date backfill against 12
sequential `make train` runs, on generated months of real size (1.1 M rows each).

Runs in a throw-away lab (its own Prefect home, a free port, a temporary artifacts folder)
so the student's server keeps no bench runs; the months are generated once into .bench/
and are present before anything is timed. Figures are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fhvlab.months import Month, months_for, parse_date  # noqa: E402
from fhvlab.synthetic import write_synthetic_month  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", "1100000"))
FIRST, LAST = "2021-03-15", "2022-02-15"
CONCURRENCY = os.environ.get("BENCH_CONCURRENCY", "2")
LAB_KNOBS = ("FROM", "TO", "CONCURRENCY", "WATCH", "WATCH_TIMEOUT", "DATE", "MONTHS", "API_URL")


def bench_dates() -> list[str]:
    """The 15th of each month from FIRST to LAST (the course cron's dates)."""
    start, end = parse_date(FIRST), parse_date(LAST)
    month, dates = Month(start.year, start.month), []
    while (month.year, month.month) <= (end.year, end.month):
        dates.append(f"{month}-15")
        month = month.shift(1)
    return dates


def generate(folder: Path, dates: list[str]) -> None:
    """Every month the dates need, generated once (same seed as scripts/bench.py)."""
    needed = sorted({m for d in dates for m in months_for(parse_date(d))})
    for month in needed:
        path = folder / f"fhv_tripdata_{month}.parquet"
        if not path.exists():
            print(
                f"bench-backfill: generating {path.relative_to(ROOT)} ({ROWS:,} rows)", flush=True
            )
            write_synthetic_month(path, month, ROWS, seed=42)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make(env: dict[str, str], *args: str, timeout: float = 1800) -> float:
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


def locked_lines(log: Path) -> int:
    return log.read_text(errors="replace").count("database is locked") if log.exists() else 0


def retryable_lines(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("Encountered retryable exception in request")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> None:
    dates = bench_dates()
    data = ROOT / ".bench" / f"rows-{ROWS}"
    generate(data, dates)
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
        # SQLite "database is locked" / SQLITE_BUSY answers are 503s the client retries after
        # 2 s; the server logs them only with this on (counted below).
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",
    )
    api = f"http://127.0.0.1:{port}/api"
    worker = None
    try:
        make(env, "deploy")
        print(f"bench-backfill: {len(dates)} dates {FIRST}..{LAST}, {ROWS:,} rows a month, "
              f"server on SQLite, {os.cpu_count()} cores", flush=True)  # fmt: skip

        # BENCH_SEQUENTIAL=0 skips the 12 sequential runs (to iterate on the backfill alone)
        seq_total = float("nan")
        if os.environ.get("BENCH_SEQUENTIAL", "1") != "0":
            seq_total = sum(make(env, "train", f"DATE={d}") for d in dates)
            print(f"bench-backfill: 12 sequential `make train`: {seq_total:.1f} s", flush=True)

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
        server_log = lab / "prefect" / "server.log"
        locked_before = locked_lines(server_log)
        busy_before = retryable_lines(server_log)
        began = time.time()
        wall = make(
            env,
            "backfill",
            f"FROM={FIRST}",
            f"TO={LAST}",
            f"CONCURRENCY={CONCURRENCY}",
            "WATCH=1",
        )
        locked = locked_lines(server_log) - locked_before
        busy = retryable_lines(server_log) - busy_before

        runs = requests.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"tags": {"all_": ["backfill"]}}},
            timeout=30,
        ).json()
        parent = next(r for r in runs if r["name"].startswith("backfill-2021-03-15_"))
        per_date = [r for r in runs if r["id"] != parent["id"]]
        states = sorted({r["state_type"] for r in per_date})
        created = when(parent["created"])
        pickup = (when(parent["start_time"]) - created).total_seconds()
        before = created.timestamp() - began
        parent_run = (when(parent["end_time"]) - when(parent["start_time"])).total_seconds()
        after = began + wall - when(parent["end_time"]).timestamp()
        starts = sorted((when(r["start_time"]) - created).total_seconds() for r in per_date)
        own = [(when(r["start_time"]) - when(r["created"])).total_seconds() for r in per_date]
        durations = [r["total_run_time"] for r in per_date]
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
    print(f"{'':44} {'wall s':>8}")
    print(f"{'12 x make train, one after the other':44} {seq_total:8.1f}")
    print(f"{'make backfill WATCH=1, CONCURRENCY=' + CONCURRENCY:44} {wall:8.1f}")
    print(f"ratio backfill / sequential: {wall / seq_total:.2f} (target <= 0.5)")
    print(f"runs per minute: backfill {len(per_date) / wall * 60:.1f}, "
          f"sequential {len(dates) / seq_total * 60:.1f}")  # fmt: skip
    print(f"per-date runs: {len(per_date)}, states {states}; "
          f"seconds per date median {statistics.median(durations):.1f}")  # fmt: skip
    print(f"make backfill started -> backfill run created: {before:.1f} s")
    print(f"backfill run created -> picked up and started: {pickup:.1f} s")
    print(f"backfill run started -> ended: {parent_run:.1f} s")
    print(f"backfill run ended -> make backfill returned: {after:.1f} s")
    print(f"backfill run created -> each date's start: median {statistics.median(starts):.1f} s, "
          f"worst {max(starts):.1f} s")  # fmt: skip
    print(f"each date's own flow run created -> started: median {statistics.median(own):.2f} s, "
          f"worst {max(own):.2f} s")  # fmt: skip
    print(f"`database is locked` lines in the server log during the backfill: {locked}")
    print(f"requests answered 503 (SQLite busy; the client retries after 2 s): {busy}")


if __name__ == "__main__":
    main()
