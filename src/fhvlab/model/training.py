"""One training run for a date: months, metrics, and a consistent set of artifacts."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
from dataclasses import dataclass
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhvlab.data import checksum
from fhvlab.data.months import Month, months_for, parse_date
from fhvlab.errors import DataError
from fhvlab.files import temp_beside
from fhvlab.model import duration as model

if TYPE_CHECKING:
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LinearRegression

LIBRARIES = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "prefect")


@dataclass(frozen=True)
class Plan:
    """What a run for `run_date` trains and validates on."""

    run_date: date
    train_month: Month
    val_month: Month


@dataclass(frozen=True)
class ArtifactPaths:
    """Where a run's model, vectorizer and metrics live."""

    model: Path
    dv: Path
    metrics: Path


def plan(run_date: str) -> Plan:
    """Parse YYYY-MM-DD and derive the training (D-2) and validation (D-1) months."""
    parsed = parse_date(run_date)
    train_month, val_month = months_for(parsed)
    return Plan(parsed, train_month, val_month)


def artifact_paths(folder: Path, run_date: date) -> ArtifactPaths:
    """model-, dv- and metrics-{date} paths in `folder`."""
    stamp = run_date.isoformat()
    return ArtifactPaths(
        folder / f"model-{stamp}.pkl", folder / f"dv-{stamp}.pkl", folder / f"metrics-{stamp}.json"
    )


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    return checksum.compute(path).sha256


def month_cache_key(path: str | Path) -> str:
    """Cache key of a month's statistics: the file's content and the code that reduces it.

    The content is named by its sha256, kept beside the file (fhvlab.data.checksum: hashed
    once, again only when the file's size, time or inode changed), so the same month has the
    same key on any machine, in any folder, and a changed file has another. The sources of
    fhvlab.model.duration and fhvlab.model.training are part of the key, so changed code
    recomputes. The month's name stays in the key (its description names the file). A cache
    hit reads the small sidecar, not the parquet file.
    """
    month_file = Path(path)
    digest = hashlib.sha256(f"{checksum.file_sha256(month_file)}\0".encode())
    _code_digest(digest)
    return f"fhv-month-{month_file.stem.removeprefix('fhv_tripdata_')}-{digest.hexdigest()[:32]}"


def _code_digest(digest: Any) -> None:
    """Feed the sources of the code that computes a result (fhvlab.model.duration, this module)."""
    for module in (model.__file__, __file__):
        digest.update(Path(module).read_bytes())


def fit_cache_key(train: model.MonthStats, val: model.MonthStats) -> str:
    """Cache key of a fit and its scores: both months' statistics and the code.

    The statistics are hashed, not their files: a month re-downloaded with the same content
    gives the same statistics, hence the same model.
    """
    digest = hashlib.sha256()
    for stats in (train, val):
        for array in (stats.pairs, stats.count, stats.total, stats.total_sq):
            digest.update(array.tobytes())
        digest.update(f"{stats.rows_read}\0".encode())
    _code_digest(digest)
    return f"fhv-fit-{digest.hexdigest()[:40]}"


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the numbers."""
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def describe_month(path: Path, stats: model.MonthStats) -> dict[str, Any]:
    """Row counts, mean duration and checksum of one input file."""
    return {
        "file": path.name,
        "sha256": checksum.file_sha256(path),
        "rows_read": stats.rows_read,
        "rows_kept": stats.rows,
        "mean_duration_minutes": stats.mean_duration,
    }


def evaluate(
    dv: DictVectorizer, lr: LinearRegression, train: model.MonthStats, val: model.MonthStats
) -> dict[str, Any]:
    """Training and validation RMSE (minutes) and the number of features."""
    return {
        "train_rmse": model.rmse(dv, lr, train),
        "val_rmse": model.rmse(dv, lr, val),
        "n_features": len(dv.feature_names_),
    }


def fit_and_score(
    train: model.MonthStats, val: model.MonthStats
) -> tuple[bytes, bytes, dict[str, Any]]:
    """Fit on `train`, score on both months; the vectorizer and model as the bytes of their
    pickles (what the artifact files hold), and the scores."""
    dv, lr = model.fit(train)
    return pickled(dv), pickled(lr), evaluate(dv, lr, train, val)


def markdown_report(metrics: dict[str, Any]) -> str:
    """The metrics as a markdown table (shown as a Prefect artifact)."""
    rows = [
        ("date", metrics["date"]),
        ("train month", f"{metrics['train_month']} ({metrics['train']['rows_kept']:,} rows)"),
        ("validation month", f"{metrics['val_month']} ({metrics['val']['rows_kept']:,} rows)"),
        ("train RMSE (min)", f"{metrics['train_rmse']:.4f}"),
        ("validation RMSE (min)", f"{metrics['val_rmse']:.4f}"),
        ("features", metrics["n_features"]),
        ("dv size (bytes)", metrics["artifacts"]["dv"]["bytes"]),
    ]
    lines = ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return f"# Ride duration model, {metrics['date']}\n\n" + "\n".join(lines) + "\n"


def save_artifacts(
    folder: Path,
    run_date: date,
    dv: DictVectorizer | bytes,
    lr: LinearRegression | bytes,
    metrics: dict,
) -> tuple[ArtifactPaths, dict[str, Any]]:
    """Write model, vectorizer and metrics so that no mix of two runs is ever on disk.

    `dv` and `lr` are the fitted objects, or the bytes of their pickles (`pickled`).

    All three are written to temporary files first (a failure there leaves the previous
    set untouched). Then the previous set is removed and the new files are renamed in
    place, metrics last: metrics-{date}.json records both pickles' sha256 and marks the
    set complete. A crash mid-way leaves at most new files without their metrics, never
    an old model beside a new vectorizer.
    """
    paths = artifact_paths(folder, run_date)
    tmp_model, tmp_dv, tmp_metrics = (
        temp_beside(p) for p in (paths.model, paths.dv, paths.metrics)
    )
    try:
        _pickle_to(lr, tmp_model)
        _pickle_to(dv, tmp_dv)
        record = {
            **metrics,
            "artifacts": {
                "model": {
                    "file": paths.model.name,
                    "sha256": sha256(tmp_model),
                    "bytes": tmp_model.stat().st_size,
                },
                "dv": {
                    "file": paths.dv.name,
                    "sha256": sha256(tmp_dv),
                    "bytes": tmp_dv.stat().st_size,
                },
            },
        }
        tmp_metrics.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        for old in (paths.metrics, paths.dv, paths.model):
            old.unlink(missing_ok=True)
        os.replace(tmp_model, paths.model)
        os.replace(tmp_dv, paths.dv)
        os.replace(tmp_metrics, paths.metrics)
    finally:
        for tmp in (tmp_model, tmp_dv, tmp_metrics):
            tmp.unlink(missing_ok=True)
    return paths, record


def pickled(obj: object) -> bytes:
    """The bytes an artifact of `obj` holds."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_to(obj: object, path: Path) -> None:
    """Write `obj` pickled (or, given bytes, those bytes: an object pickled elsewhere)."""
    with path.open("wb") as f:
        f.write(obj if isinstance(obj, bytes) else pickled(obj))
        f.flush()
        os.fsync(f.fileno())


def load_artifacts(folder: Path, run_date: str) -> tuple[DictVectorizer, LinearRegression]:
    """Load a complete set for `run_date`; raise DataError if it is missing or mismatched."""
    paths = artifact_paths(folder, parse_date(run_date))
    try:
        record = json.loads(paths.metrics.read_text())
    except FileNotFoundError:
        raise DataError(
            f"no complete model for {run_date} in {folder} (no {paths.metrics.name})"
        ) from None
    for key, path in (("model", paths.model), ("dv", paths.dv)):
        if not path.is_file() or sha256(path) != record["artifacts"][key]["sha256"]:
            raise DataError(f"{path.name} does not match {paths.metrics.name}; train again")
    with paths.dv.open("rb") as f_dv, paths.model.open("rb") as f_model:
        return pickle.load(f_dv), pickle.load(f_model)
