"""Fitting and scoring in a Python process of its own, for a process that trains once.

`make train` is one short process, and almost all of its CPU time is two imports: Prefect
(~1.3 s) and scikit-learn (~1.4 s: `sklearn.utils.fixes` pulls in scipy.stats and pandas).
In one process they take turns on one core (the GIL), even with scikit-learn imported in a
background thread. `python flows/train.py` therefore starts a child Python first thing
(`start`), which imports scikit-learn on the other core while the flow's process imports
Prefect, reads the months and talks to the server; the child then fits and scores.

Only plain data crosses the pipe: the months' per-pair statistics one way, the fitted
DictVectorizer and LinearRegression as the bytes of their pickles (written to the artifacts
as they are) and the scores the other way. The flow's process never imports scikit-learn.
If the child is gone, everything falls back to fitting in-process, with the same numbers.

A process that trains many dates (a backfill's parent run, a deployment run) imports
scikit-learn once itself and never starts a child: `fit` and `evaluate` run in-process
when `start` was not called.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any

from fhvlab import model, training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Remote:
    """A model fitted in the child: the pickles of its DictVectorizer and LinearRegression."""

    key: int
    dv: bytes
    lr: bytes


class FitProcessError(RuntimeError):
    """The child did not answer (it died, or never started)."""


class FitProcess:
    """The child (`main` below, in a new Python) and one request at a time to it."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from fhvlab.fitproc import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self._lock = threading.Lock()

    def ask(self, op: str, *args: Any) -> Any:
        """Send one request, return its answer; re-raise the child's exception."""
        requests, answers = self._proc.stdin, self._proc.stdout
        if requests is None or answers is None:  # never: both are pipes
            raise FitProcessError("the fitting process has no pipes")
        with self._lock:
            try:
                pickle.dump((op, args), requests, protocol=pickle.HIGHEST_PROTOCOL)
                requests.flush()
                status, value = pickle.load(answers)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                raise FitProcessError(
                    f"the fitting process did not answer ({exc!r}; exit {self._proc.poll()})"
                ) from exc
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        """Close its input (it exits) and reap it."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_active: list[FitProcess] = []


def start() -> None:
    """Start the child once (it begins importing scikit-learn at once)."""
    if not _active:
        _active.append(FitProcess())


def active() -> FitProcess | None:
    return _active[0] if _active else None


def fit(stats: model.MonthStats) -> Remote | tuple[Any, Any]:
    """The fitted (dv, lr): in the child when one was started, else in this process."""
    child = active()
    if child is not None:
        try:
            return child.ask("fit", stats)
        except FitProcessError as exc:
            log.warning("%s: fitting in this process instead", exc)
    return model.fit(stats)


def evaluate(
    fitted: Remote | tuple[Any, Any], train: model.MonthStats, val: model.MonthStats
) -> dict[str, Any]:
    """Training and validation RMSE and the number of features (`training.evaluate`)."""
    if isinstance(fitted, Remote):
        child = active()
        if child is not None:
            try:
                return child.ask("evaluate", fitted.key, train, val)
            except FitProcessError as exc:
                log.warning("%s: scoring in this process instead", exc)
        dv, lr = pickle.loads(fitted.dv), pickle.loads(fitted.lr)
    else:
        dv, lr = fitted
    return training.evaluate(dv, lr, train, val)


def for_saving(fitted: Remote | tuple[Any, Any]) -> tuple[Any, Any]:
    """(dv, lr) as `training.save_artifacts` takes them: objects, or their pickles' bytes."""
    return (fitted.dv, fitted.lr) if isinstance(fitted, Remote) else fitted


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The child's loop: import scikit-learn, then answer requests until its input closes."""
    model.warm_up()
    models: dict[int, tuple[Any, Any]] = {}
    while True:
        try:
            op, args = pickle.load(requests)
        except EOFError:
            return
        try:
            if op == "fit":
                dv, lr = model.fit(*args)
                key = len(models)
                models[key] = (dv, lr)
                value: Any = Remote(key, training.pickled(dv), training.pickled(lr))
            elif op == "evaluate":
                key, train, val = args
                value = training.evaluate(*models[key], train, val)
            else:
                raise ValueError(f"unknown request {op!r}")
            answer: tuple[str, Any] = ("ok", value)
        except Exception as exc:  # sent back and raised in the flow's process
            answer = ("error", exc)
        pickle.dump(answer, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


def main() -> None:
    # Answers go to the original stdout; anything the libraries print goes to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)
