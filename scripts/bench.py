"""`make bench`: the lab against the course's reference, on two generated 1.1 M-row months.

Each pipeline runs in its own process (so peak RSS is its own); figures are printed, never
asserted. Also measures `make train` end to end against the running lab server, and
`make data`'s download throughput from a loopback HTTP server.

`make bench BIG=1` (`--big`) adds two generated 23 M-row months (the size of 2019-01; made
once, cached in .bench/, about 0.9 GB of disk): the lab's pipeline and `make train` on them, and the
course script run under a cap on its address space (BENCH_CAP_GB, default 8: a laptop),
reporting what happened to it. The machine may be shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchlib import ROOT, serve
from fhvlab.data.months import parse_month
from fhvlab.data.synthetic import synthetic_month, write_synthetic_month
from fhvlab.files import atomic_path

BENCH = ROOT / ".bench"
ROWS = int(os.environ.get("BENCH_ROWS", "1100000"))
MONTHS = ("2021-06", "2021-07")
PY = sys.executable
BIG_ROWS = int(os.environ.get("BENCH_BIG_ROWS", "23159064"))  # fhv_tripdata_2019-01
CHUNK = 1 << 20  # rows generated and written at a time (one row group each)
CAP_GB = float(os.environ.get("BENCH_CAP_GB", "8"))
REPEAT = 5  # runs of the floor and of each kind of make train (medians reported)


def months() -> list[Path]:
    """The two synthetic months, generated once and cached in .bench/."""
    folder = BENCH / f"rows-{ROWS}"
    paths = []
    for month in MONTHS:
        path = folder / f"fhv_tripdata_{month}.parquet"
        if not path.exists():
            print(f"bench: generating {path.relative_to(ROOT)} ({ROWS:,} rows)", flush=True)
            write_synthetic_month(path, parse_month(month), ROWS, seed=42)
        paths.append(path)
    return paths


def big_months() -> list[Path]:
    """Two BIG_ROWS-row months, generated CHUNK rows at a time, cached in .bench/."""
    folder = BENCH / f"rows-{BIG_ROWS}"
    paths = []
    for month in MONTHS:
        path = folder / f"fhv_tripdata_{month}.parquet"
        if not path.exists():
            print(f"bench: generating {path.relative_to(ROOT)} ({BIG_ROWS:,} rows)", flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                writer = None
                for i, first in enumerate(range(0, BIG_ROWS, CHUNK)):
                    frame = synthetic_month(
                        parse_month(month), min(CHUNK, BIG_ROWS - first), seed=1000 + i
                    )
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                if writer is not None:
                    writer.close()
        paths.append(path)
    return paths


# Linux starts a process's peak RSS (`ru_maxrss`) at its parent's peak when it is forked and
# exec'd, so a command started straight from this script (which grows to hundreds of MB while it
# generates months) would report at least this script's peak. A tiny launcher process forks the
# command instead and reports the command's own wall time, peak RSS and exit code.
LAUNCHER = """
import os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{time.perf_counter() - start} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measure(
    cmd: list[str], env: dict[str, str] | None = None, cap_gb: float | None = None
) -> tuple[float, float, str, int, str]:
    """Run `cmd` (optionally with its address space capped); return (wall seconds, peak RSS of
    the process tree's largest in MB, stdout, exit code, last line of stderr)."""

    def cap() -> None:
        limit = int(cap_gb * 2**30)  # type: ignore[operator]
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp) / "report"
        subprocess.run(
            [PY, "-I", "-S", "-c", LAUNCHER, str(report), *cmd],
            stdout=out,
            stderr=err,
            env=env,
            cwd=ROOT,
            preexec_fn=cap if cap_gb else None,
            check=True,
        )
        wall_s, maxrss_kb, code_s = report.read_text().split()
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read().strip().splitlines()
    wall, code = float(wall_s), int(code_s)
    if code != 0 and cap_gb is None:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{text}\n" + "\n".join(errors[-20:]))
    return wall, int(maxrss_kb) / 1024, text, code, errors[-1] if errors else ""


def make_train(folder: Path, cached: bool = False) -> tuple[float, float, dict]:
    """`make train` on the months in `folder` (server up): wall, peak RSS MB, metrics.

    Not `cached`: Prefect's setting PREFECT_TASKS_REFRESH_CACHE=true makes every cached
    task compute again (both months read and reduced, the model fitted: a first run) and
    store its new result.
    """
    artifacts = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    env = {**os.environ, "DATA_DIR": str(folder), "ARTIFACTS_DIR": str(artifacts)}
    if not cached:
        env["PREFECT_TASKS_REFRESH_CACHE"] = "true"
    wall, rss, _, _, _ = measure(["make", "--no-print-directory", "train", "DATE=2021-08-15"], env)
    metrics = json.loads((artifacts / "metrics-2021-08-15.json").read_text())
    shutil.rmtree(artifacts)
    return wall, rss, metrics


def big(ref_rss_ordinary: float) -> None:
    """The 23 M-row months: the lab's pipeline, `make train`, the capped course script."""
    train, val = big_months()
    size_mb = sum(p.stat().st_size for p in (train, val)) / 1e6
    print(f"\nbig months: {BIG_ROWS:,} rows each, {size_mb:.0f} MB for both")
    lab_wall, lab_rss, lab_out, _, _ = measure(
        [PY, "-m", "fhvlab", "pipeline", str(train), str(val)]
    )
    lab = json.loads(lab_out)
    make_wall, make_rss, metrics = make_train(train.parent)
    hit_wall, hit_rss, _ = make_train(train.parent, cached=True)
    print(f"{'':30} {'wall s':>8} {'compute s':>10} {'peak RSS MB':>12} {'val RMSE':>12}")
    print(
        f"{'lab pipeline (process)':30} {lab_wall:8.2f} {lab['seconds']:10.2f} "
        f"{lab_rss:12.0f} {lab['val_rmse']:12.6f}"
    )
    print(
        f"{'make train (no cache)':30} {make_wall:8.2f} {'-':>10} "
        f"{make_rss:12.0f} {metrics['val_rmse']:12.6f}"
    )
    print(f"{'make train (cache hit)':30} {hit_wall:8.2f} {'-':>10} {hit_rss:12.0f}")
    print(
        f"  rows read/kept: train {lab['train_rows'][0]:,}/{lab['train_rows'][1]:,}, "
        f"val {lab['val_rows'][0]:,}/{lab['val_rows'][1]:,}; (PU, DO) pairs: "
        f"{lab['pairs'][0]:,} and {lab['pairs'][1]:,}"
    )
    print(f"  peak RSS vs the ordinary months' course script: {lab_rss / ref_rss_ordinary:.2f}")
    print(f"course script on them, address space capped at {CAP_GB:g} GB:", flush=True)
    wall, rss, out, code, last = measure(
        [PY, "tests/reference.py", str(train), str(val)], cap_gb=CAP_GB
    )
    if code == 0:
        print(f"  finished in {wall:.1f} s, peak RSS {rss:.0f} MB: {out.strip()}")
    else:
        print(f"  failed after {wall:.1f} s (exit {code}), peak RSS {rss:.0f} MB: {last[:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the two 23 M-row months")
    args = parser.parse_args()
    train, val = months()
    size_mb = sum(p.stat().st_size for p in (train, val)) / 1e6
    print(
        f"bench: {ROWS:,} rows a month, {size_mb:.1f} MB for both; machine: {os.cpu_count()} cores"
    )

    ref_wall, ref_rss, ref_out, _, _ = measure([PY, "tests/reference.py", str(train), str(val)])
    lab_cmd = [PY, "-m", "fhvlab", "pipeline", str(train), str(val)]
    lab_wall, lab_rss, lab_out, _, _ = measure(lab_cmd)
    ref, lab = json.loads(ref_out), json.loads(lab_out)

    make_train(train.parent)  # once to warm the OS's caches; the figures are the later runs'
    # Each of these three 5 times, interleaved; the medians are reported (a flow run's
    # end varies: Prefect's background threads stop on a 1 s tick).
    floors, changed, hits = [], [], []
    for _ in range(REPEAT):
        floors.append(measure([PY, "scripts/noop.py"])[0])
        changed.append(make_train(train.parent))
        hits.append(make_train(train.parent, cached=True))
    floor_wall = statistics.median(floors)
    make_wall, make_rss, metrics = sorted(changed, key=lambda r: r[0])[REPEAT // 2]
    hit_wall, hit_rss, hit = sorted(hits, key=lambda r: r[0])[REPEAT // 2]
    print(
        "bench: make train runs (s), floor / no cache / cache hit: "
        + "; ".join(
            f"{f:.2f} / {c[0]:.2f} / {h[0]:.2f}"
            for f, c, h in zip(floors, changed, hits, strict=True)
        )
    )

    data_dir = Path(tempfile.mkdtemp(prefix="bench-data-"))
    with serve(train.parent) as url:
        denv = {**os.environ, "DATA_DIR": str(data_dir), "DATA_URL": url}
        fetch = [PY, "-m", "fhvlab", "data", "--months", *MONTHS]
        dl_wall, dl_rss, _, _, _ = measure(fetch, denv)
        again_wall, _, _, _, _ = measure(fetch, denv)
    shutil.rmtree(data_dir)

    rows = [
        ("reference script (process)", ref_wall, ref["seconds"], ref_rss, ref["val_rmse"]),
        ("lab pipeline (process)", lab_wall, lab["seconds"], lab_rss, lab["val_rmse"]),
        ("make train (no cache)", make_wall, None, make_rss, metrics["val_rmse"]),
        ("make train (cache hit)", hit_wall, None, hit_rss, hit["val_rmse"]),
    ]
    print(f"\n{'':30} {'wall s':>8} {'compute s':>10} {'peak RSS MB':>12} {'val RMSE':>12}")
    for name, wall, inner, rss, rmse in rows:
        inner_text = f"{inner:10.2f}" if inner is not None else f"{'-':>10}"
        print(f"{name:30} {wall:8.2f} {inner_text} {rss:12.0f} {rmse:12.6f}")
    print(f"{'floor: empty flow (noop.py)':30} {floor_wall:8.2f}")
    print(f"(medians of {REPEAT} runs for the last three lines)")
    print("\nratios (reference / lab):")
    print(
        f"  speed, compute only (no interpreter start-up): {ref['seconds'] / lab['seconds']:.1f}x"
    )
    print(f"  speed, whole process:                          {ref_wall / lab_wall:.1f}x")
    print(f"  peak memory: lab uses {lab_rss / ref_rss:.2f} of the reference's")
    print(f"  make train end to end / reference process wall: {make_wall / ref_wall:.2f}")
    print(f"  |val RMSE difference|: {abs(ref['val_rmse'] - lab['val_rmse']):.2e}")
    print(
        f"  make train over Prefect's floor (python scripts/noop.py, {floor_wall:.2f} s): "
        f"no cache +{make_wall - floor_wall:.2f} s, cache hit +{hit_wall - floor_wall:.2f} s"
    )
    print(
        f"  (lab compute = reading {lab['read_seconds']:.2f} s + fitting and scoring; "
        f"importing scikit-learn, {lab['import_seconds']:.2f} s, is left out like the "
        "script's imports)"
    )
    print(
        f"\nmake data, two months from 127.0.0.1: {dl_wall:.2f} s "
        f"({size_mb / dl_wall:.0f} MB/s incl. start-up), peak RSS {dl_rss:.0f} MB; "
        f"again with both present: {again_wall:.2f} s"
    )
    if args.big:
        big(ref_rss)


if __name__ == "__main__":
    main()
