"""Prepared months kept in memory for the life of one process, keyed on the file's identity.

A backfill runs many dates in one process, and date D validates on the month that date D+1
trains on: each month is then read and reduced once instead of twice. A one-date `make train`
reads two different months and never hits the cache. Month files only ever appear by rename
(src/fhvlab/atomic.py), so (path, device, inode, size, mtime) names one content.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
FileKey = tuple[str, int, int, int, int]


def file_key(path: Path) -> FileKey:
    """The file's identity: absolute path, device, inode, size and mtime (ns)."""
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileCache(Generic[T]):
    """At most `size` values computed from files, each computed once even across threads."""

    def __init__(self, size: int = 4) -> None:
        """An empty cache keeping the `size` most recently used values."""
        self.size = size
        self._values: OrderedDict[FileKey, T] = OrderedDict()
        self._locks: dict[FileKey, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, compute: Callable[[Path], T]) -> tuple[T, bool]:
        """The value for `path` (computed by `compute(path)` if new) and whether it was reused."""
        try:
            key = file_key(path)
        except OSError:  # missing or unreadable: `compute` raises its own (lab) error
            return compute(path), False
        with self._lock:
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:  # a second thread asking for the same file waits for the first
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key], True
            value = compute(path)  # an error is raised as is and nothing is kept
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.size:
                    old, _ = self._values.popitem(last=False)
                    self._locks.pop(old, None)
            return value, False

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()
            self._locks.clear()
