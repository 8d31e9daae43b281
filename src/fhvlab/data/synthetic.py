"""Synthetic FHV months with the real schema, for tests and benchmarks (no network needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fhvlab.data.months import Month
from fhvlab.files import atomic_path

N_ZONES = 265


def synthetic_month(
    month: Month, rows: int, seed: int = 0, pu_missing: float = 0.83
) -> pd.DataFrame:
    """A frame shaped like a real FHV month: same columns, dtypes and missing-value rates.

    Durations depend on the pickup and drop-off zones (so a model has something to learn)
    and about 5% fall outside [1, 60] minutes, like the real data.
    """
    rng = np.random.default_rng([seed, month.year, month.month])
    start = np.datetime64(f"{month}-01T00:00:00", "s")
    seconds_in_month = 28 * 24 * 3600
    pickup = start + rng.integers(0, seconds_in_month, rows).astype("timedelta64[s]")
    pu = rng.integers(1, N_ZONES + 1, rows).astype("float64")
    do = rng.integers(1, N_ZONES + 1, rows).astype("float64")
    zone_effect = np.random.default_rng(seed).normal(0, 4, N_ZONES + 2)
    pu_idx = np.where(np.isnan(pu), 0, pu).astype(int)
    minutes = 16 + zone_effect[pu_idx] + zone_effect[do.astype(int)] + rng.gamma(2.0, 4.0, rows)
    odd = rng.random(rows)
    minutes = np.where(odd < 0.02, rng.uniform(0, 1, rows), minutes)
    minutes = np.where((odd >= 0.02) & (odd < 0.05), rng.uniform(60, 600, rows), minutes)
    pu[rng.random(rows) < pu_missing] = np.nan
    do[rng.random(rows) < 0.12] = np.nan
    dropoff = pickup + (minutes * 60).astype("timedelta64[s]")
    bases = np.array([f"B{n:05d}" for n in rng.integers(1, 900, 64)], dtype=object)
    base = bases[rng.integers(0, len(bases), rows)]
    return pd.DataFrame(
        {
            "dispatching_base_num": base,
            "pickup_datetime": pd.to_datetime(pickup).astype("datetime64[us]"),
            "dropOff_datetime": pd.to_datetime(dropoff).astype("datetime64[us]"),
            "PUlocationID": pu,
            "DOlocationID": do,
            "SR_Flag": np.where(rng.random(rows) < 0.01, 1.0, np.nan),
            "Affiliated_base_number": base,
        }
    )


def write_synthetic_month(path: Path, month: Month, rows: int, seed: int = 0) -> Path:
    """Write a synthetic month to `path` atomically and return the path."""
    with atomic_path(path) as tmp:
        synthetic_month(month, rows, seed).to_parquet(tmp, index=False)
    return path
