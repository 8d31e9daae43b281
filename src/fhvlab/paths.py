"""Where the lab keeps things: one root anchor, each folder overridable by environment."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_URL = "https://d37ci6vzurychx.cloudfront.net/trip-data"


def _from_env(name: str, default: Path) -> Path:
    """Return the folder named by environment variable `name`, else `default`."""
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Folder of downloaded FHV months (`DATA_DIR`, default `<root>/data`)."""
    return _from_env("DATA_DIR", ROOT / "data")


def artifacts_dir() -> Path:
    """Folder of trained artifacts (`ARTIFACTS_DIR`, default `<root>/artifacts`)."""
    return _from_env("ARTIFACTS_DIR", ROOT / "artifacts")


def prefect_home() -> Path:
    """The lab's Prefect home (`PREFECT_HOME`, default `<root>/env/prefect`)."""
    return _from_env("PREFECT_HOME", ROOT / "env" / "prefect")


def data_url() -> str:
    """Base URL of the monthly files (`DATA_URL`, default the TLC's)."""
    return os.environ.get("DATA_URL", "").strip() or DEFAULT_DATA_URL
