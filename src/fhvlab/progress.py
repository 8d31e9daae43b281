"""Download progress: a live bar on a terminal, plain log lines elsewhere (CI, Prefect)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from fhvlab.months import Month


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


class TerminalBar:
    """One line on a terminal, redrawn at most 10 times a second, for all months at once."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 20) -> None:
        self.stream, self.width = stream, width
        self.state: dict[Month, tuple[int, int | None, bool]] = {}
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.last_draw = 0.0

    def __call__(self, month: Month, done: int, total: int | None, finished: bool) -> None:
        with self.lock:
            self.state[month] = (done, total, finished)
            now = time.monotonic()
            if finished or now - self.last_draw >= 0.1:
                self.last_draw = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        parts, received = [], 0
        for month, (done, total, _) in sorted(self.state.items()):
            received += done
            if total:
                filled = int(self.width * min(done, total) / total)
                bar = "#" * filled + "." * (self.width - filled)
                parts.append(f"{month} [{bar}] {_mb(done)}/{_mb(total)} MB")
            else:
                parts.append(f"{month} {_mb(done)} MB")
        speed = received / 1e6 / max(now - self.start, 1e-6)
        self.stream.write("\r" + " | ".join(parts) + f" | {speed:.1f} MB/s\x1b[K")
        if all(finished for _, _, finished in self.state.values()):
            self.stream.write("\n")
        self.stream.flush()


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
