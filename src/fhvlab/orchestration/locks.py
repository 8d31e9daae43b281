"""A Prefect lock manager whose locks die with their holder (`fcntl.flock`).

Prefect's cache isolation (`cache_policy.configure(isolation_level="SERIALIZABLE", ...)`)
makes concurrent task runs with the same cache key take a lock, so one computes and the
others then read its result. Prefect's own `FileSystemLockManager` writes lock files that
never expire: a run killed while holding one (SIGKILL, out of memory, a crashed worker)
would leave every later run of that key waiting for ever. An `flock` is released by the
operating system when its holder's process dies, so nothing can leak.

This implements Prefect's public `prefect.locking.protocol.LockManager` interface.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import anyio
from prefect.locking.protocol import LockManager

from fhvlab import files

POLL_SECONDS = 0.05


class ProcessLockManager(LockManager):
    """Locks on files in `folder`, one per key, held with `flock` until released or exit."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._held: dict[str, tuple[int, str]] = {}  # key -> (open fd, holder)
        self._guard = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.lock"

    def _try(self, key: str) -> int | None:
        """An fd holding the key's flock, or None if someone else holds it."""
        return files.try_lock(self._path(key))

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,  # an flock is held until released or exit
    ) -> bool:
        """Take the key's lock for `holder`, waiting at most `acquire_timeout` seconds."""
        if self.is_lock_holder(key, holder):
            return True
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while (fd := self._try(key)) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        with self._guard:
            self._held[key] = (fd, holder)
        return True

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """`acquire_lock` for async callers (waits in a worker thread, not the event loop)."""
        return await anyio.to_thread.run_sync(
            self.acquire_lock, key, holder, acquire_timeout, hold_timeout
        )

    def release_lock(self, key: str, holder: str) -> None:
        """Release the key's lock; ValueError if `holder` does not hold it."""
        with self._guard:
            held = self._held.get(key)
            if held is None or held[1] != holder:
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            del self._held[key]
        os.close(held[0])  # closing the fd releases the flock

    def is_locked(self, key: str) -> bool:
        """Whether anyone (this process or another) holds the key's lock."""
        with self._guard:
            if key in self._held:
                return True
        fd = self._try(key)
        if fd is None:
            return True
        os.close(fd)
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether `holder` holds the key's lock."""
        with self._guard:
            held = self._held.get(key)
        return held is not None and held[1] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until the key is free (True) or `timeout` passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """`wait_for_lock` for async callers."""
        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)
