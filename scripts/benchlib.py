"""What the benchmark scripts share: a free port, a static HTTP server, `make` with the
bench's knobs (and none of the caller's lab knobs), the floor. Standard library only."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fhvlab.knobs import lab_defaults  # noqa: E402  (standard library only)


def free_port(first: int = 4500, last: int = 4599) -> int:
    """A free port on 127.0.0.1 in [first, last] (the lab's benchmarks stay in 4500-4599)."""
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"bench: no free port in {first}-{last}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving `folder`; its base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any knob lab.mk defines (an exported DATABASE_URL would leak
    into the bench's sandbox), without PREFECT_* and make's own variables; plus `extra`."""
    knobs = set(lab_defaults())
    drop = {"LAB_ROOT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "UV_PROJECT_ENVIRONMENT"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in knobs and k not in drop and not k.startswith("PREFECT_")
    }
    return {**env, "NO_PROXY": "127.0.0.1,localhost", **extra}


def make(
    env: Mapping[str, str], *args: str, root: Path = ROOT, timeout: float = 3600
) -> tuple[float, str]:
    """Run `make -C root args` with `env`: its wall time in seconds and its output. Exits
    on failure, with the output."""
    start = time.perf_counter()
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(root), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: make {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return took, done.stdout


def floor(env: Mapping[str, str], api_url: str, root: Path = ROOT, n: int = 3) -> float:
    """`python scripts/noop.py` (Prefect's import and an empty flow run) against `api_url`:
    the median of `n` seconds."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(
            [str(root / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "noop.py")],
            env={**env, "PREFECT_API_URL": api_url, "DO_NOT_TRACK": "1"},
            cwd=root,
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load() -> str:
    """The 1-minute load average, for the figures' context."""
    return f"{os.getloadavg()[0]:.2f}"
