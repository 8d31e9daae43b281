"""`make bench`: the lab against the course's reference, on two generated 1.1 M-row months.

Each pipeline runs in its own process (so peak RSS is its own); figures are printed, never
asserted. Also measures `make train` end to end against the running lab server, and
`make data`'s download throughput from a loopback HTTP server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fhvlab.months import parse_month
from fhvlab.synthetic import write_synthetic_month

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
ROWS = int(os.environ.get("BENCH_ROWS", "1100000"))
MONTHS = ("2021-06", "2021-07")
PY = sys.executable


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


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run `cmd`; return (wall seconds, peak RSS of the process tree's largest in MB, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{text}")
    return wall, usage.ru_maxrss / 1024, text


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    """A loopback HTTP server for `folder` (static files)."""
    handler = partial(_QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def main() -> None:
    train, val = months()
    size_mb = sum(p.stat().st_size for p in (train, val)) / 1e6
    print(
        f"bench: {ROWS:,} rows a month, {size_mb:.1f} MB for both; machine: {os.cpu_count()} cores"
    )

    ref_wall, ref_rss, ref_out = measure([PY, "tests/reference.py", str(train), str(val)])
    lab_wall, lab_rss, lab_out = measure([PY, "-m", "fhvlab", "pipeline", str(train), str(val)])
    ref, lab = json.loads(ref_out), json.loads(lab_out)

    artifacts = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    env = {**os.environ, "DATA_DIR": str(train.parent), "ARTIFACTS_DIR": str(artifacts)}
    make_wall, _, _ = measure(["make", "--no-print-directory", "train", "DATE=2021-08-15"], env)
    metrics = json.loads((artifacts / "metrics-2021-08-15.json").read_text())
    shutil.rmtree(artifacts)

    httpd, url = serve(train.parent)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-data-"))
    denv = {**os.environ, "DATA_DIR": str(data_dir), "DATA_URL": url}
    fetch = [PY, "-m", "fhvlab", "data", "--months", *MONTHS]
    dl_wall, dl_rss, _ = measure(fetch, denv)
    again_wall, _, _ = measure(fetch, denv)
    httpd.shutdown()
    shutil.rmtree(data_dir)

    rows = [
        ("reference script (process)", ref_wall, ref["seconds"], ref_rss, ref["val_rmse"]),
        ("lab pipeline (process)", lab_wall, lab["seconds"], lab_rss, lab["val_rmse"]),
        (
            "make train (server up)",
            make_wall,
            metrics["elapsed_seconds"],
            None,
            metrics["val_rmse"],
        ),
    ]
    print(f"\n{'':30} {'wall s':>8} {'compute s':>10} {'peak RSS MB':>12} {'val RMSE':>12}")
    for name, wall, inner, rss, rmse in rows:
        rss_text = f"{rss:12.0f}" if rss is not None else f"{'-':>12}"
        print(f"{name:30} {wall:8.2f} {inner:10.2f} {rss_text} {rmse:12.6f}")
    print("\nratios (reference / lab):")
    print(
        f"  speed, compute only (no interpreter start-up): {ref['seconds'] / lab['seconds']:.1f}x"
    )
    print(f"  speed, whole process:                          {ref_wall / lab_wall:.1f}x")
    print(f"  peak memory: lab uses {lab_rss / ref_rss:.2f} of the reference's")
    print(f"  make train end to end / reference process wall: {make_wall / ref_wall:.2f}")
    print(f"  |val RMSE difference|: {abs(ref['val_rmse'] - lab['val_rmse']):.2e}")
    print(
        f"\nmake data, two months from 127.0.0.1: {dl_wall:.2f} s "
        f"({size_mb / dl_wall:.0f} MB/s incl. start-up), peak RSS {dl_rss:.0f} MB; "
        f"again with both present: {again_wall:.2f} s"
    )


if __name__ == "__main__":
    main()
