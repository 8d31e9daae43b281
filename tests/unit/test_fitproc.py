"""Fitting in a child process (what `python flows/train.py` does) against fitting here."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from fhvlab import fitproc, model, training
from fhvlab.months import parse_date, parse_month
from fhvlab.synthetic import write_synthetic_month


@pytest.fixture(scope="module")
def stats(tmp_path_factory) -> tuple[model.MonthStats, model.MonthStats]:
    folder = tmp_path_factory.mktemp("months")
    train = write_synthetic_month(folder / "train.parquet", parse_month("2021-06"), 20_000, seed=5)
    val = write_synthetic_month(folder / "val.parquet", parse_month("2021-07"), 20_000, seed=5)
    return model.month_stats(train), model.month_stats(val)


@pytest.fixture
def child():
    """The module's fitting process, started for one test and always stopped after it."""
    fitproc.start()
    started = fitproc.active()
    assert started is not None
    yield started
    started.close()
    fitproc._active.clear()


def test_without_a_child_everything_runs_here(stats):
    train, val = stats
    assert fitproc.active() is None
    fitted = fitproc.fit(train)
    assert isinstance(fitted, tuple)
    dv, lr = fitted
    assert fitproc.evaluate(fitted, train, val) == training.evaluate(dv, lr, train, val)
    assert fitproc.for_saving(fitted) == (dv, lr)


def test_the_child_fits_and_scores_exactly_like_this_process(stats, child, tmp_path: Path):
    train, val = stats
    remote = fitproc.fit(train)
    assert isinstance(remote, fitproc.Remote)
    dv, lr = model.fit(train)
    child_dv, child_lr = pickle.loads(remote.dv), pickle.loads(remote.lr)
    assert type(child_lr).__name__ == "LinearRegression"
    assert child_dv.feature_names_ == dv.feature_names_
    np.testing.assert_array_equal(child_lr.coef_, lr.coef_)
    assert child_lr.intercept_ == lr.intercept_
    assert fitproc.evaluate(remote, train, val) == training.evaluate(dv, lr, train, val)

    # The artifacts written from the child's pickles are the ones this process would write.
    day = parse_date("2021-08-15")
    metrics = {"date": "2021-08-15"}
    here, _ = training.save_artifacts(tmp_path / "here", day, dv, lr, metrics)
    there, _ = training.save_artifacts(
        tmp_path / "there", day, *fitproc.for_saving(remote), metrics
    )
    assert here.model.read_bytes() == there.model.read_bytes()
    assert here.dv.read_bytes() == there.dv.read_bytes()
    assert here.metrics.read_text() == there.metrics.read_text()


def test_an_error_in_the_child_is_raised_here_and_the_child_goes_on(stats, child):
    with pytest.raises(ValueError, match="unknown request 'nonsense'"):
        child.ask("nonsense")
    with pytest.raises(KeyError):
        child.ask("evaluate", 99, *stats)  # no model fitted under that key
    assert isinstance(fitproc.fit(stats[0]), fitproc.Remote)


def test_a_dead_child_falls_back_to_this_process(stats, child, caplog):
    train, val = stats
    remote = fitproc.fit(train)
    assert isinstance(remote, fitproc.Remote)
    expected = fitproc.evaluate(remote, train, val)
    child._proc.kill()
    child._proc.wait()
    with caplog.at_level(logging.WARNING, logger="fhvlab.fitproc"):
        assert fitproc.evaluate(remote, train, val) == expected  # from the pickles, here
        fitted = fitproc.fit(train)
    assert isinstance(fitted, tuple)
    assert fitproc.evaluate(fitted, train, val) == expected
    assert "did not answer" in caplog.text
