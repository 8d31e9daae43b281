"""`make watch WATCH=1` against Prefect's floor: one new month served before each watch run.

A throw-away lab (its own Prefect home, a free port in 4500-4599, generated months served
from 127.0.0.1), `make up`, the floor (scripts/noop.py, median of 3), then `make watch
WATCH=1` once per new month (2021-08, 2021-09, 2021-10: the trigger trains 2021-09-15,
2021-10-15, 2021-11-15). `--root DIR` runs another checkout's Makefile (e.g. an older
commit, to compare). Figures are printed with the load average, never asserted.

    .venv/bin/python scripts/bench_watch.py [--root DIR] [--rows N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchlib import ROOT, clean_env, floor, free_port, load, make, serve
from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import write_synthetic_month

NEW = ("2021-08", "2021-09", "2021-10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose Makefile runs")
    parser.add_argument("--rows", type=int, default=3000, help="rows of each generated month")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fhvlab-bench-watch-"))
    published, data = base / "published", base / "data"
    published.mkdir()
    data.mkdir()
    for i, month in enumerate(("2021-06", "2021-07", *NEW)):
        name = f"fhv_tripdata_{month}.parquet"
        write_synthetic_month(base / name, parse_month(month), args.rows, i + 1)
        if month in ("2021-06", "2021-07"):
            shutil.copy(base / name, published / name)
            shutil.copy(base / name, data / name)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    with serve(published) as url:
        env = clean_env(
            {
                "PREFECT_HOME": str(base / "prefect"),
                "PREFECT_PORT": str(port),
                "DATA_URL": url,
                "DATA_DIR": str(data),
                "ARTIFACTS_DIR": str(base / "artifacts"),
            }
        )
        try:
            up, _ = make(env, "up", root=args.root)
            print(f"bench-watch: {args.root}: make up {up:.1f} s, load {load()}", flush=True)
            base_floor = floor(env, api, args.root)
            print(f"bench-watch: floor (scripts/noop.py, median of 3) {base_floor:.2f} s")
            for month in NEW:
                name = f"fhv_tripdata_{month}.parquet"
                shutil.copy(base / name, published / name)
                took, _ = make(env, "watch", "WATCH=1", "WATCH_TIMEOUT=300", root=args.root)
                print(
                    f"bench-watch: {month} published: make watch WATCH=1 {took:.1f} s "
                    f"({took / base_floor:.1f} floors), load {load()}",
                    flush=True,
                )
        finally:
            make(env, "down", root=args.root)
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
