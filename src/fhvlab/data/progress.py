"""Download progress: rich's bar on a terminal, log lines elsewhere, a Prefect progress
artifact inside a flow run.

Each is a callable `progress(month, bytes_done, bytes_total_or_None, finished)`, the shape
`fhvlab.data.download` calls.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fhvlab.data.months import Month


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


class RichBar:
    """A rich progress bar per month (size, speed, time left) for `make data` on a terminal."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[Month, Any] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> RichBar:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, month: Month, done: int, total: int | None, finished: bool) -> None:
        with self.lock:
            if month not in self.tasks:
                self.tasks[month] = self.bar.add_task(str(month), total=total)
            self.bar.update(self.tasks[month], completed=done, total=total)


class LogProgress:
    """A log line per month at each quarter of its size (or every 10 MB when size unknown)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self.logger = logger
        self.marks: dict[Month, int] = {}
        self.lock = threading.Lock()

    def __call__(self, month: Month, done: int, total: int | None, finished: bool) -> None:
        if finished:
            return
        step = done * 4 // total if total else done // 10_000_000
        with self.lock:
            if step <= self.marks.get(month, 0):
                return
            self.marks[month] = step
        if total:
            self.logger.info("%s: %s/%s MB (%d%%)", month, _mb(done), _mb(total), step * 25)
        else:
            self.logger.info("%s: %s MB", month, _mb(done))
        self.on_step(month, done, total)

    def on_step(self, month: Month, done: int, total: int | None) -> None:
        """Called after each logged step (subclasses show it elsewhere too)."""


class ArtifactProgress(LogProgress):
    """LogProgress plus a Prefect progress artifact per month, shown on the flow run's page.

    Use it inside a flow or task run: the artifact belongs to that run. It is created at
    the first logged step, so a month already on disk shows no bar.
    """

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter) -> None:
        super().__init__(logger)
        self.artifacts: dict[Month, Any] = {}

    def on_step(self, month: Month, done: int, total: int | None) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        percent = min(100.0, 100.0 * done / total) if total else 0.0
        if month not in self.artifacts:
            self.artifacts[month] = create_progress_artifact(
                progress=percent, description=f"download of FHV month {month}"
            )
        else:
            update_progress_artifact(self.artifacts[month], progress=percent)
