"""The lab's fast pipeline against the course's reference, on generated months."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fhvlab import model, training
from fhvlab.errors import DataError
from fhvlab.months import parse_month
from fhvlab.synthetic import synthetic_month, write_synthetic_month
from tests import reference


@pytest.fixture(scope="module")
def months(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("months")
    train = write_synthetic_month(folder / "train.parquet", parse_month("2021-06"), 40_000, seed=3)
    val = write_synthetic_month(folder / "val.parquet", parse_month("2021-07"), 40_000, seed=3)
    return train, val


def _reference(train_path: Path, val_path: Path):
    df_train = reference.read_data(train_path)
    df_val = reference.read_data(val_path)
    lr, dv, train_rmse = reference.train_model(df_train, reference.CATEGORICAL)
    val_rmse, val_pred = reference.run_model(df_val, reference.CATEGORICAL, dv, lr)
    return dv, lr, train_rmse, val_rmse, val_pred


def test_lab_matches_the_reference_within_1e_6(months):
    train_path, val_path = months
    ref_dv, _, ref_train_rmse, ref_val_rmse, ref_pred = _reference(train_path, val_path)
    train, val = model.load_trips(train_path), model.load_trips(val_path)
    dv, lr = model.fit(train)
    assert dv.feature_names_ == ref_dv.feature_names_
    assert abs(model.rmse(dv, lr, train) - ref_train_rmse) < 1e-6
    assert abs(model.rmse(dv, lr, val) - ref_val_rmse) < 1e-6
    np.testing.assert_allclose(model.predict(dv, lr, val), ref_pred, rtol=0, atol=1e-6)
    assert 5 < ref_val_rmse < 15  # the generated data has real signal and noise


def test_design_matrix_equals_dictvectorizer_transform(months):
    train = model.load_trips(months[0])
    dv, _ = model.fit(train)
    records = [{"PUlocationID": str(p), "DOlocationID": str(d)} for p, d in train.codes[:5000]]
    expected = dv.transform(records)
    assert (model.design_matrix(dv, train.codes[:5000]) != expected).nnz == 0


def test_location_ids_never_seen_in_training_are_ignored_like_the_reference(tmp_path):
    frame = synthetic_month(parse_month("2021-06"), 5000, seed=5)
    train_path = tmp_path / "train.parquet"
    frame.to_parquet(train_path)
    val = frame.head(200).copy()
    val["PUlocationID"] = 999.0  # never seen in training
    val.loc[val.index[:50], "DOlocationID"] = 998.0
    val_path = tmp_path / "val.parquet"
    val.to_parquet(val_path)
    _, _, _, ref_val_rmse, ref_pred = _reference(train_path, val_path)
    dv, lr = model.fit(model.load_trips(train_path))
    val_trips = model.load_trips(val_path)
    assert "PUlocationID=999" not in dv.vocabulary_
    assert model.design_matrix(dv, val_trips.codes)[:, :].sum(axis=1).min() == 0  # both unseen
    np.testing.assert_allclose(model.predict(dv, lr, val_trips), ref_pred, rtol=0, atol=1e-6)
    assert abs(model.rmse(dv, lr, val_trips) - ref_val_rmse) < 1e-6


def test_duration_bounds_are_inclusive():
    start = pd.Timestamp("2021-06-01 10:00:00")
    minutes = [0.99, 1.0, 30.0, 60.0, 60.01, -5.0]
    frame = pd.DataFrame(
        {
            "pickup_datetime": [start] * len(minutes),
            "dropOff_datetime": [start + pd.Timedelta(minutes=m) for m in minutes],
            "PUlocationID": [np.nan, 1.0, 2.0, 3.0, 4.0, 5.0],
            "DOlocationID": [1.0, np.nan, 2.0, 3.0, 4.0, 5.0],
        }
    )
    trips = model.prepare(frame, "x.parquet")
    assert trips.duration.tolist() == [1.0, 30.0, 60.0]
    assert trips.codes.tolist() == [[1, -1], [2, 2], [3, 3]]
    assert trips.rows_read == 6


def test_missing_column_names_the_file_and_column(tmp_path):
    path = tmp_path / "fhv_tripdata_2021-06.parquet"
    synthetic_month(parse_month("2021-06"), 100).drop(columns=["DOlocationID"]).to_parquet(path)
    with pytest.raises(DataError, match=r"fhv_tripdata_2021-06.parquet: missing column\(s\) DOloc"):
        model.load_trips(path)


def test_no_rows_left_after_the_filter_names_the_file(tmp_path):
    path = tmp_path / "fhv_tripdata_2021-07.parquet"
    frame = synthetic_month(parse_month("2021-07"), 100)
    frame["dropOff_datetime"] = frame["pickup_datetime"] + pd.Timedelta(hours=5)
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"fhv_tripdata_2021-07.parquet: no rows left .*100 rows"):
        model.load_trips(path)


def test_not_a_parquet_file_is_a_data_error(tmp_path):
    path = tmp_path / "fhv_tripdata_2021-07.parquet"
    path.write_text("<html>")
    with pytest.raises(DataError, match="not a readable parquet file"):
        model.load_trips(path)


# ---- artifacts --------------------------------------------------------------------------


def _fitted(months):
    train, val = (model.load_trips(p) for p in months)
    dv, lr = model.fit(train)
    return dv, lr, {"date": "2021-08-15", **training.evaluate(dv, lr, train, val)}


def test_artifacts_load_with_plain_pickle_and_serve_a_prediction(months, tmp_path):
    dv, lr, metrics = _fitted(months)
    run_date = training.plan("2021-08-15").run_date
    paths, record = training.save_artifacts(tmp_path, run_date, dv, lr, metrics)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dv-2021-08-15.pkl",
        "metrics-2021-08-15.json",
        "model-2021-08-15.pkl",
    ]
    with paths.model.open("rb") as f_model, paths.dv.open("rb") as f_dv:
        loaded_lr, loaded_dv = pickle.load(f_model), pickle.load(f_dv)
    assert type(loaded_lr).__name__ == "LinearRegression"
    assert type(loaded_dv).__name__ == "DictVectorizer"
    pred = loaded_lr.predict(loaded_dv.transform([{"PUlocationID": "10", "DOlocationID": "50"}]))
    assert pred.shape == (1,)
    assert 1 < pred[0] < 60
    assert record["artifacts"]["dv"]["bytes"] == paths.dv.stat().st_size
    assert training.load_artifacts(tmp_path, "2021-08-15")[0].feature_names_ == dv.feature_names_


def test_a_failure_before_the_commit_keeps_the_previous_set(months, tmp_path):
    dv, lr, metrics = _fitted(months)
    run_date = training.plan("2021-08-15").run_date
    training.save_artifacts(tmp_path, run_date, dv, lr, metrics)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full while pickling")

    with pytest.raises(RuntimeError, match="disk full"):
        training.save_artifacts(tmp_path, run_date, Unpicklable(), lr, metrics)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    training.load_artifacts(tmp_path, "2021-08-15")


def test_a_crash_between_model_and_vectorizer_never_leaves_a_mismatched_pair(
    months, tmp_path, monkeypatch
):
    dv, lr, metrics = _fitted(months)
    run_date = training.plan("2021-08-15").run_date
    paths, _ = training.save_artifacts(tmp_path, run_date, dv, lr, metrics)
    old_dv = paths.dv.read_bytes()
    real_replace = training.os.replace

    def crash_on_dv(src, dst):
        if Path(dst).name.startswith("dv-"):
            raise KeyboardInterrupt  # the process dies right after the model was renamed
        real_replace(src, dst)

    monkeypatch.setattr(training.os, "replace", crash_on_dv)
    lr.intercept_ = lr.intercept_ + 1.0  # a different model
    with pytest.raises(KeyboardInterrupt):
        training.save_artifacts(tmp_path, run_date, dv, lr, metrics)
    monkeypatch.undo()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model-2021-08-15.pkl"]  # new model alone: no old dv beside it
    assert not paths.dv.exists() or paths.dv.read_bytes() != old_dv
    with pytest.raises(DataError, match="no complete model"):
        training.load_artifacts(tmp_path, "2021-08-15")
