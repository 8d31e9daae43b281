"""Look at the Prefect UI the way a student does: headless Chromium, kept off the internet."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from fhvlab.errors import LabError

# Flags that keep Chromium from calling home, updating itself or syncing; a fresh profile
# directory is passed on every call.
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary (`CHROMIUM` overrides), or None."""
    wanted = os.environ.get("CHROMIUM")
    if wanted:
        return shutil.which(wanted)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(url: str, extra: list[str], wait_ms: int, timeout: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    if chromium is None:
        raise LabError("Chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="fhvlab-chromium-") as profile:
        cmd = [
            chromium,
            *OFFLINE_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={wait_ms}",
            *extra,
            url,
        ]
        return subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )


def page_text(url: str, wait_ms: int = 15000, timeout: float = 90) -> str:
    """The page's DOM after its scripts ran (virtual time lets the single-page app load)."""
    done = _run(url, ["--dump-dom"], wait_ms, timeout)
    if done.returncode != 0 or not done.stdout:
        raise LabError(f"Chromium could not load {url} (exit {done.returncode})")
    return done.stdout


def screenshot(url: str, path: Path, size: str = "1400,900", wait_ms: int = 15000) -> Path:
    """Save a PNG of the page at `url` to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _run(url, [f"--window-size={size}", f"--screenshot={path}"], wait_ms, 90)
    if done.returncode != 0 or not path.exists():
        raise LabError(f"Chromium could not take a screenshot of {url} (exit {done.returncode})")
    return path
