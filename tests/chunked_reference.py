"""An exact reference for months too big for the course script, written independently.

It follows the course's steps (duration in [1, 60] minutes, fillna(-1) -> int -> str,
records -> DictVectorizer), but a chunk of rows at a time with pandas, and instead of
LinearRegression on all rows it accumulates the normal equations (X'X, X'y, sums) over the
chunks and solves them exactly with a pseudo-inverse (the minimum-norm least-squares
solution, which LSQR converges to). A second pass computes each RMSE from row-by-row
predictions. Memory: one chunk plus a features x features matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.feature_extraction import DictVectorizer

CATEGORICAL = ["PUlocationID", "DOlocationID"]
COLUMNS = ["pickup_datetime", "dropOff_datetime", *CATEGORICAL]


def chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The course's read_data, `rows` rows of the file at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=COLUMNS):
        df = batch.to_pandas()
        df["duration"] = (df.dropOff_datetime - df.pickup_datetime).dt.total_seconds() / 60
        df = df[(df.duration >= 1) & (df.duration <= 60)].copy()
        df[CATEGORICAL] = df[CATEGORICAL].fillna(-1).astype("int").astype("str")
        yield df


@dataclass
class Exact:
    """Vectorizer, coefficients and intercept of the exact least-squares fit."""

    dv: DictVectorizer
    coef: np.ndarray
    intercept: float
    rows: int

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predictions for a prepared chunk (course-style records)."""
        x = self.dv.transform(df[CATEGORICAL].to_dict(orient="records"))
        return x @ self.coef + self.intercept


def fit(path: Path, rows: int) -> Exact:
    """Two passes: the vocabulary, then the normal equations; solved with a pseudo-inverse."""
    distinct: set[tuple[str, str]] = set()
    for df in chunks(path, rows):
        distinct.update(zip(df.PUlocationID, df.DOlocationID, strict=True))
    dv = DictVectorizer().fit(
        [{"PUlocationID": pu, "DOlocationID": do} for pu, do in sorted(distinct)]
    )
    k = len(dv.feature_names_)
    xtx, xty, xsum = np.zeros((k, k)), np.zeros(k), np.zeros(k)
    n, ysum = 0, 0.0
    for df in chunks(path, rows):
        x = dv.transform(df[CATEGORICAL].to_dict(orient="records"))
        y = df.duration.to_numpy()
        xtx += (x.T @ x).toarray()
        xty += x.T @ y
        xsum += np.asarray(x.sum(axis=0)).ravel()
        n, ysum = n + len(y), ysum + y.sum()
    xbar, ybar = xsum / n, ysum / n
    centred = xtx - n * np.outer(xbar, xbar)
    coef = np.linalg.pinv(centred, rcond=1e-10, hermitian=True) @ (xty - n * xbar * ybar)
    return Exact(dv, coef, float(ybar - xbar @ coef), n)


def rmse(exact: Exact, path: Path, rows: int) -> tuple[float, int]:
    """(RMSE of the exact fit on a month, rows kept), from row-by-row predictions."""
    sse, n = 0.0, 0
    for df in chunks(path, rows):
        sse += float(np.sum((df.duration.to_numpy() - exact.predict(df)) ** 2))
        n += len(df)
    return float(np.sqrt(sse / n)), n
