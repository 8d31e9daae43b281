"""The course's ride-duration model, computed without a million Python dicts.

Same numbers as the course script (duration in [1, 60] minutes; PUlocationID and
DOlocationID -> fillna(-1) -> int -> str; DictVectorizer + LinearRegression), but the
sparse design matrix is built from integer codes directly: the vectorizer is fitted on
the distinct location values only (which gives the same `feature_names_` as fitting it on
every record) and each row's two one-hot columns are looked up per distinct value.
The saved objects are real, fitted `DictVectorizer` and `LinearRegression` instances.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import sparse
from sklearn.feature_extraction import DictVectorizer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import root_mean_squared_error

from fhvlab.errors import DataError

FEATURES = ("PUlocationID", "DOlocationID")
TIME_COLUMNS = ("pickup_datetime", "dropOff_datetime")
MIN_MINUTES, MAX_MINUTES = 1.0, 60.0


@dataclass(frozen=True)
class Trips:
    """One month ready for the model: location codes (n x 2, int64) and durations."""

    codes: np.ndarray
    duration: np.ndarray
    rows_read: int

    @property
    def rows(self) -> int:
        """Rows kept by the duration filter."""
        return len(self.duration)


def read_trips(path: Path) -> pd.DataFrame:
    """Read only the columns the model needs; raise DataError naming what is missing."""
    try:
        names = pq.read_schema(path).names
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:
        raise DataError(f"{path.name}: not a readable parquet file ({exc})") from None
    missing = [c for c in (*TIME_COLUMNS, *FEATURES) if c not in names]
    if missing:
        raise DataError(f"{path.name}: missing column(s) {', '.join(missing)}")
    return pd.read_parquet(path, columns=[*TIME_COLUMNS, *FEATURES])


def prepare(frame: pd.DataFrame, name: str) -> Trips:
    """Durations in minutes kept in [1, 60] and integer location codes (missing -> -1)."""
    minutes = (frame["dropOff_datetime"] - frame["pickup_datetime"]).dt.total_seconds() / 60
    keep = ((minutes >= MIN_MINUTES) & (minutes <= MAX_MINUTES)).to_numpy()
    if not keep.any():
        raise DataError(
            f"{name}: no rows left after keeping durations in [{MIN_MINUTES:g}, {MAX_MINUTES:g}] "
            f"minutes ({len(frame)} rows read)"
        )
    codes = np.column_stack(
        [frame[col].to_numpy(dtype="float64", na_value=np.nan)[keep] for col in FEATURES]
    )
    codes = np.where(np.isnan(codes), -1, codes).astype(np.int64)
    return Trips(codes, minutes.to_numpy()[keep].astype(np.float64), len(frame))


def load_trips(path: Path) -> Trips:
    """Read and prepare one month file."""
    return prepare(read_trips(path), path.name)


def _lookup(column: np.ndarray, key: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values of `column`, `key[value]` for every row, -1 where absent).

    Location IDs are small integers, so a table indexed by value does this in O(n); a wide
    range falls back to sorting (np.unique).
    """
    if len(column) == 0:
        return column, column.copy()
    lo, hi = int(column.min()), int(column.max())
    if hi - lo < 10_000_000:
        values = np.flatnonzero(np.bincount(column - lo)) + lo
        table = np.full(hi - lo + 1, -1, dtype=np.int64)
        table[values - lo] = [key.get(int(v), -1) for v in values]
        return values, table[column - lo]
    values, inverse = np.unique(column, return_inverse=True)
    mapped = np.array([key.get(int(v), -1) for v in values], dtype=np.int64)
    return values, mapped[inverse.reshape(-1)]


def fit_vectorizer(codes: np.ndarray) -> DictVectorizer:
    """A DictVectorizer fitted on the distinct values of each feature column.

    Its vocabulary is exactly what fitting on every record as
    {"PUlocationID": str(pu), "DOlocationID": str(do)} would give.
    """
    records = [
        {feature: str(value)}
        for j, feature in enumerate(FEATURES)
        for value in _lookup(codes[:, j], {})[0]
    ]
    return DictVectorizer().fit(records)


def design_matrix(dv: DictVectorizer, codes: np.ndarray) -> sparse.csr_matrix:
    """The matrix `dv.transform(records)` gives, built from codes; unseen values are dropped."""
    n = len(codes)
    columns = []
    for j, feature in enumerate(FEATURES):
        prefix = f"{feature}="
        key = {
            int(name[len(prefix) :]): index
            for name, index in dv.vocabulary_.items()
            if name.startswith(prefix)
        }
        columns.append(_lookup(codes[:, j], key)[1])
    cols = np.column_stack(columns)  # n x 2, -1 where the value was never seen in training
    seen = cols >= 0
    if seen.all():  # the training month: exactly two ones per row
        indptr = np.arange(0, 2 * n + 1, 2, dtype=np.int64)
        indices = cols.reshape(-1)
    else:
        indptr = np.concatenate([[0], np.cumsum(seen.sum(axis=1))])
        indices = cols[seen]  # row-major: each row's PU column, then its DO column
    data = np.ones(len(indices), dtype=np.float64)
    return sparse.csr_matrix((data, indices, indptr), shape=(n, len(dv.feature_names_)))


def fit(trips: Trips) -> tuple[DictVectorizer, LinearRegression]:
    """Fit the vectorizer and the linear model on one month."""
    dv = fit_vectorizer(trips.codes)
    model = LinearRegression().fit(design_matrix(dv, trips.codes), trips.duration)
    return dv, model


def predict(dv: DictVectorizer, model: LinearRegression, trips: Trips) -> np.ndarray:
    """Predicted durations in minutes."""
    return model.predict(design_matrix(dv, trips.codes))


def rmse(dv: DictVectorizer, model: LinearRegression, trips: Trips) -> float:
    """Root mean squared error of the model on one month, in minutes."""
    return float(root_mean_squared_error(trips.duration, predict(dv, model, trips)))
