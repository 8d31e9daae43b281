"""The course's ride-duration model, in memory that does not grow with the month's rows.

Same numbers as the course script (duration in [1, 60] minutes; PUlocationID and
DOlocationID -> fillna(-1) -> int -> str; DictVectorizer + LinearRegression), but a month
is never held in memory. The model sees a row only through its (PU, DO) pair, so a month
is reduced, one parquet batch at a time and reading only the four columns it needs, to
per-pair statistics: count, sum and sum of squares of the durations (at most ~70,000
pairs for the real zones, whatever the number of rows).

- The least-squares fit on the pairs, weighted by their counts, with each pair's mean
  duration as target, has the same normal equations as the fit on every row, hence the
  same coefficients.
- The squared error of any prediction on a month is exact from the same statistics:
  sum over pairs of count * (mean - prediction)^2 + within-pair sum of squares.
- The vectorizer is fitted on the distinct location values, which gives the same
  `feature_names_` as fitting it on every record.

The saved objects are real, fitted `DictVectorizer` and `LinearRegression` instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fhvlab.errors import DataError

if TYPE_CHECKING:  # scikit-learn and scipy are imported when first used (see `fit`)
    from scipy import sparse
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression

FEATURES = ("PUlocationID", "DOlocationID")
TIME_COLUMNS = ("pickup_datetime", "dropOff_datetime")
MIN_MINUTES, MAX_MINUTES = 1.0, 60.0
BATCH_ROWS = 1 << 17  # rows decoded at a time: bounds memory, whatever the month's size
DENSE_LIMIT = 4096  # codes in [-1, DENSE_LIMIT - 1] are counted in flat tables (zones: 1..265)
MERGE_EVERY = 16  # partial results from unusual codes are merged after this many batches


@dataclass(frozen=True)
class MonthStats:
    """One month reduced for the model: per distinct (PU, DO) pair, count and duration sums."""

    pairs: np.ndarray  # k x 2 int64 location codes (-1: missing), sorted
    count: np.ndarray  # k, int64: rows kept with this pair
    total: np.ndarray  # k, float64: sum of durations (minutes)
    total_sq: np.ndarray  # k, float64: sum of squared durations
    rows_read: int

    @property
    def rows(self) -> int:
        """Rows kept by the duration filter."""
        return int(self.count.sum())

    @property
    def mean_duration(self) -> float:
        """Mean duration of the kept rows, in minutes."""
        return float(self.total.sum() / self.rows)

    @property
    def mean(self) -> np.ndarray:
        """Each pair's mean duration."""
        return self.total / self.count

    @property
    def within_sq(self) -> np.ndarray:
        """Each pair's sum of squared deviations from its own mean."""
        return np.maximum(self.total_sq - self.total * self.mean, 0.0)


def open_month(path: Path) -> pq.ParquetFile:
    """The month's parquet file; raise DataError if unreadable or missing a needed column."""
    try:
        # pre_buffer (pyarrow's default) caches every row group read until the file is
        # closed: memory would grow with the month. Without it, one row group at a time.
        parquet = pq.ParquetFile(path, pre_buffer=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # pyarrow raises several types for garbage input
        raise DataError(f"{path.name}: not a readable parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    missing = [c for c in (*TIME_COLUMNS, *FEATURES) if c not in names]
    if missing:
        parquet.close()
        raise DataError(f"{path.name}: missing column(s) {', '.join(missing)}")
    return parquet


def iter_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The four needed columns of a month, `batch_rows` rows at a time."""
    parquet = open_month(path)
    try:
        yield from parquet.iter_batches(batch_size=batch_rows, columns=[*TIME_COLUMNS, *FEATURES])
    except (OSError, pa.ArrowException) as exc:  # a corrupt or truncated file
        raise DataError(f"{path.name}: not a readable parquet file ({exc})") from None
    finally:
        parquet.close()


def column_values(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, validity or None) of a fixed-width Arrow array, zero-copy.

    Read straight from the Arrow buffers: pyarrow's own `to_numpy` imports pandas the first
    time, which reading a month does not need.
    """
    if pa.types.is_timestamp(column.type):
        dtype = np.dtype(np.int64)
    else:
        dtype = np.dtype(column.type.to_pandas_dtype())
    validity, data = column.buffers()[:2]
    n, offset = len(column), column.offset
    values = np.frombuffer(data, dtype=dtype, count=n, offset=offset * dtype.itemsize)
    if not column.null_count:
        return values, None
    bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
    return values, bits[offset : offset + n].astype(bool)


def minutes_between(pickup: pa.Array, dropoff: pa.Array) -> np.ndarray:
    """Durations in minutes as pandas computes them (float64; NaN where a time is missing)."""
    if not (pa.types.is_timestamp(pickup.type) and pa.types.is_timestamp(dropoff.type)):
        raise DataError(f"pickup/drop-off times are {pickup.type}/{dropoff.type}, not timestamps")
    if dropoff.type.unit != pickup.type.unit:
        dropoff = dropoff.cast(pa.timestamp(pickup.type.unit))
    per_second = np.timedelta64(1, "s") // np.timedelta64(1, pickup.type.unit)
    (start, start_ok), (end, end_ok) = column_values(pickup), column_values(dropoff)
    minutes = (end - start) / per_second / 60  # what pandas' total_seconds() / 60 gives
    for ok in (start_ok, end_ok):
        if ok is not None:
            minutes[~ok] = np.nan
    return minutes


def location_codes(column: pa.Array) -> np.ndarray:
    """Location IDs as the course makes them: missing -> -1, then truncated to int64."""
    if pa.types.is_null(column.type):  # a month where every ID is missing
        return np.full(len(column), -1, dtype=np.int64)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        column = column.cast(pa.float64())
    values, ok = column_values(column)
    missing = ~ok if ok is not None else None
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        missing = nan if missing is None else missing | nan
        values = np.where(missing, -1.0, values)
    codes = values.astype(np.int64)  # a copy: never write into Arrow's buffers
    if missing is not None:
        codes[missing] = -1
    return codes


def reduce_batch(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(PU codes, DO codes, minutes) of the rows whose duration is in [1, 60] minutes."""
    minutes = minutes_between(batch.column(TIME_COLUMNS[0]), batch.column(TIME_COLUMNS[1]))
    keep = (minutes >= MIN_MINUTES) & (minutes <= MAX_MINUTES)
    pu, do = (location_codes(batch.column(name)) for name in FEATURES)
    return pu[keep], do[keep], minutes[keep]


def _group(
    pairs: np.ndarray, count: np.ndarray, total: np.ndarray, total_sq: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum count/total/total_sq over equal rows of `pairs` (result sorted by pair)."""
    if len(pairs) == 0:
        return pairs.reshape(0, 2), count, total, total_sq
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    k = len(unique)
    return (
        unique,
        np.bincount(inverse, weights=count, minlength=k).astype(np.int64),
        np.bincount(inverse, weights=total, minlength=k),
        np.bincount(inverse, weights=total_sq, minlength=k),
    )


class PairAccumulator:
    """Per-pair count, sum and sum of squares, fed batch by batch; memory set by pairs only.

    Codes in [-1, span - 1] are counted in flat tables indexed by (PU + 1) * (span + 1) +
    (DO + 1), grown (to at most DENSE_LIMIT) when a larger code shows up; rarer, larger
    codes are grouped by sorting and merged every MERGE_EVERY batches.
    """

    def __init__(self) -> None:
        """An empty accumulator."""
        self._span = 0
        self._tables = (np.zeros(1, np.int64), np.zeros(1), np.zeros(1))
        self._partials: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _grow(self, span: int) -> None:
        """Re-index the flat tables for codes up to span - 1."""
        old = self._dense()
        self._span = span
        size = (span + 1) ** 2
        self._tables = (np.zeros(size, np.int64), np.zeros(size), np.zeros(size))
        key = (old[0][:, 0] + 1) * (span + 1) + (old[0][:, 1] + 1)
        for table, values in zip(self._tables, old[1:], strict=True):
            table[key] = values

    def add(self, pu: np.ndarray, do: np.ndarray, minutes: np.ndarray) -> None:
        """Count one batch of kept rows."""
        if len(minutes) == 0:
            return
        low, high = min(pu.min(), do.min()), max(pu.max(), do.max())
        if low >= -1 and high < DENSE_LIMIT:
            if high >= self._span:
                self._grow(max(256, 1 << int(high).bit_length()))
            key = (pu + 1) * (self._span + 1) + (do + 1)
            size = len(self._tables[0])
            self._tables[0][:] += np.bincount(key, minlength=size)
            self._tables[1][:] += np.bincount(key, weights=minutes, minlength=size)
            self._tables[2][:] += np.bincount(key, weights=minutes * minutes, minlength=size)
            return
        ones = np.ones(len(minutes), dtype=np.int64)
        self._partials.append(_group(np.column_stack([pu, do]), ones, minutes, minutes * minutes))
        if len(self._partials) >= MERGE_EVERY:
            self._partials = [self._merged_partials()]

    def _dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The flat tables' non-empty cells as (pairs, count, total, total_sq)."""
        (index,) = np.nonzero(self._tables[0])
        width = self._span + 1
        pairs = np.column_stack([index // width - 1, index % width - 1]).astype(np.int64)
        return (pairs, *(table[index] for table in self._tables))  # type: ignore[return-value]

    def _merged_partials(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        parts = self._partials
        return _group(*(np.concatenate([p[i] for p in parts]) for i in range(4)))

    def result(self, rows_read: int) -> MonthStats:
        """The accumulated pairs, sorted, as MonthStats."""
        grouped = self._dense()
        if self._partials:
            self._partials.append(grouped)
            grouped = self._merged_partials()
        return MonthStats(*grouped, rows_read=rows_read)


def month_stats(path: Path, batch_rows: int = BATCH_ROWS) -> MonthStats:
    """Read one month batch by batch and reduce it to per-pair statistics."""
    accumulator = PairAccumulator()
    rows_read = 0
    for batch in iter_batches(path, batch_rows):
        rows_read += batch.num_rows
        accumulator.add(*reduce_batch(batch))
    stats = accumulator.result(rows_read)
    pa.default_memory_pool().release_unused()  # hand the batches' buffers back to the system
    if stats.rows == 0:
        raise DataError(
            f"{path.name}: no rows left after keeping durations in "
            f"[{MIN_MINUTES:g}, {MAX_MINUTES:g}] minutes ({rows_read} rows read)"
        )
    return stats


def warm_up() -> None:
    """Import what fitting needs (scikit-learn, scipy.sparse), once (cost: docs/benchmarks.md)."""
    import scipy.sparse  # noqa: F401
    import sklearn.feature_extraction
    import sklearn.linear_model  # noqa: F401


def _lookup(column: np.ndarray, key: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values of `column`, `key[value]` for every row, -1 where absent)."""
    values, inverse = np.unique(column, return_inverse=True)
    mapped = np.array([key.get(int(v), -1) for v in values], dtype=np.int64)
    return values, mapped[inverse.reshape(-1)]


def fit_vectorizer(pairs: np.ndarray) -> DictVectorizer:
    """A DictVectorizer fitted on the distinct values of each feature column.

    Its vocabulary is exactly what fitting on every record as
    {"PUlocationID": str(pu), "DOlocationID": str(do)} would give.
    """
    from sklearn.feature_extraction import DictVectorizer

    records = [
        {feature: str(value)}
        for j, feature in enumerate(FEATURES)
        for value in np.unique(pairs[:, j])
    ]
    return DictVectorizer().fit(records)


def design_matrix(dv: DictVectorizer, codes: np.ndarray) -> sparse.csr_matrix:
    """The matrix `dv.transform(records)` gives, built from codes; unseen values are dropped."""
    from scipy import sparse

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
    indptr = np.concatenate([[0], np.cumsum(seen.sum(axis=1))])
    indices = cols[seen]  # row-major: each row's PU column, then its DO column
    data = np.ones(len(indices), dtype=np.float64)
    return sparse.csr_matrix((data, indices, indptr), shape=(n, len(dv.feature_names_)))


def fit(stats: MonthStats) -> tuple[DictVectorizer, LinearRegression]:
    """Fit the vectorizer and the linear model on the pairs, weighted by their counts.

    Two balancing samples are added: both sit at the weighted mean of the features (so,
    once centred, they add nothing to the normal equations: the solution is unchanged),
    with targets the mean duration +- s and weight 1/2 each, where s^2 is the within-pair
    sum of squares. They give the centred target the norm it has on every row, the one
    thing sklearn's solver (LSQR, tolerance 1e-6) sees beyond the normal equations: its
    stopping rule. So the fit stops where the course's per-row fit stops (in exact
    arithmetic at the same iteration), not merely somewhere within LSQR's tolerance:
    RMSEs agree within 1e-6 on ordinary months (1.5e-7 on the bench's 1.1 M-row months)
    and predictions to ~1e-5. How rounding goes differs by CPU: where a small month leaves
    LSQR little to go on, an RMSE can differ by ~5e-6.

    A one-hot column that is 1 on every row (a feature with a single value in the month,
    e.g. every ID missing) repeats the intercept: centred, it is zero, so its exact
    least-squares coefficient is 0. Centred in floating point, it is a ~1e-16 residue that
    depends on the CPU's summation order, and LSQR divides by it (the course's coefficients
    of +-3e17). Such columns are zeroed before the fit, which gives the exact 0.

    scikit-learn is imported here, not at the top: reading a month does not need it, so
    its memory is not resident while batches are.
    """
    from scipy import sparse
    from sklearn.linear_model import LinearRegression

    dv = fit_vectorizer(stats.pairs)
    x = design_matrix(dv, stats.pairs)
    weight = stats.count.astype(np.float64)
    column_rows = np.asarray(x.T @ weight).ravel()  # exact: sums of integer counts
    constant = column_rows == weight.sum()
    if constant.any():
        x = (x @ sparse.diags((~constant).astype(np.float64))).tocsr()
        x.eliminate_zeros()
        column_rows[constant] = 0.0
    x_mean = column_rows / weight.sum()
    y_mean = stats.total.sum() / weight.sum()
    spread = float(np.sqrt(stats.within_sq.sum()))
    model = LinearRegression().fit(
        sparse.vstack([x, sparse.csr_matrix(np.vstack([x_mean, x_mean]))], format="csr"),
        np.concatenate([stats.mean, [y_mean + spread, y_mean - spread]]),
        sample_weight=np.concatenate([weight, [0.5, 0.5]]),
    )
    return dv, model


def predict(dv: DictVectorizer, model: LinearRegression, pairs: np.ndarray) -> np.ndarray:
    """Predicted durations in minutes for each (PU, DO) code pair."""
    return model.predict(design_matrix(dv, pairs))


def squared_error(dv: DictVectorizer, model: LinearRegression, stats: MonthStats) -> float:
    """Sum over the month's rows of (duration - prediction)^2, exact from the pair sums."""
    between = stats.count * (stats.mean - predict(dv, model, stats.pairs)) ** 2
    return float(between.sum() + stats.within_sq.sum())


def rmse(dv: DictVectorizer, model: LinearRegression, stats: MonthStats) -> float:
    """Root mean squared error of the model on one month, in minutes."""
    return float(np.sqrt(squared_error(dv, model, stats) / stats.rows))
