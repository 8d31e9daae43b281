"""`make bench-storage`: `make train` with S3 results (moto's server on 127.0.0.1) beside
local results and Prefect's floor (an empty flow), uncached and cached; median of RUNS.

Everything lives in a temporary folder: its own Prefect home and server on a free port, a
moto server, two generated months served from the data folder. Prints one line per figure.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"
RUNS = int(os.environ.get("RUNS", "3"))


def free_port() -> int:
    """A TCP port nothing listens on now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds `cmd` took; it must succeed."""
    start = time.perf_counter()
    subprocess.run(
        cmd, env=env, cwd=ROOT, check=True, capture_output=True, stdin=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> int:
    """Measure and print."""
    sys.path.insert(0, str(ROOT / "src"))
    from fhvlab.data.months import parse_month
    from fhvlab.data.synthetic import write_synthetic_month

    work = Path(tempfile.mkdtemp(prefix="fhvlab-bench-storage-"))
    port = free_port()
    moto = subprocess.Popen(
        [str(VENV / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    from fhvlab.knobs import lab_defaults

    leaky = {*lab_defaults(), "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "LAB_ROOT"}  # make's own
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k not in leaky},
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_PORT": str(free_port()),
        "DATA_DIR": str(work / "data"),
        "ARTIFACTS_DIR": str(work / "artifacts"),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    make = ["make", "--no-print-directory"]
    try:
        (work / "data").mkdir(parents=True)
        for month in ("2021-06", "2021-07"):
            path = work / "data" / f"fhv_tripdata_{month}.parquet"
            write_synthetic_month(path, parse_month(month), rows=3000, seed=1)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.2)
        import boto3

        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="b", aws_secret_access_key="b")  # fmt: skip
        s3.create_bucket(Bucket="bench")
        subprocess.run([*make, "server"], env=env, cwd=ROOT, check=True, capture_output=True)
        api = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{env['PREFECT_PORT']}/api"}
        floor = [timed([str(VENV / "python"), "scripts/noop.py"], api) for _ in range(RUNS)]
        print(f"floor: empty flow (scripts/noop.py)   median {statistics.median(floor):.2f} s")
        for kind, base in (("local", str(work / "results")), ("s3", "s3://bench/results")):
            cold, warm = [], []
            for i in range(RUNS):
                url = f"{base}-{i}"  # a new, empty storage: the first run computes everything
                subprocess.run([*make, "storage", f"STORAGE_URL={url}"], env=env, cwd=ROOT,
                               check=True, capture_output=True)  # fmt: skip
                cold.append(timed([*make, "train", "DATE=2021-08-15"], env))
                warm.append(timed([*make, "train", "DATE=2021-08-15"], env))
            print(
                f"make train, {kind:5} results: uncached median {statistics.median(cold):.2f} s "
                f"({', '.join(f'{t:.2f}' for t in cold)}), cached median "
                f"{statistics.median(warm):.2f} s ({', '.join(f'{t:.2f}' for t in warm)})"
            )
    finally:
        subprocess.run([*make, "server-stop"], env=env, cwd=ROOT, capture_output=True)
        moto.terminate()
        moto.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
