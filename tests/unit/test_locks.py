"""orchestration.locks.ProcessLockManager: Prefect's lock protocol on flock, freed on death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import anyio
import pytest

from fhvlab.orchestration.locks import ProcessLockManager


def test_one_holder_at_a_time_across_threads(tmp_path):
    locks = ProcessLockManager(tmp_path / "locks")
    assert locks.acquire_lock("k", "a")
    assert locks.is_locked("k")
    assert locks.is_lock_holder("k", "a")
    assert not locks.is_lock_holder("k", "b")
    assert not locks.acquire_lock("k", "b", acquire_timeout=0.2)
    got = []
    waiter = threading.Thread(target=lambda: got.append(locks.acquire_lock("k", "b")))
    waiter.start()
    time.sleep(0.2)
    assert got == []  # still waiting
    locks.release_lock("k", "a")
    waiter.join(timeout=5)
    assert got == [True]
    assert locks.is_lock_holder("k", "b")
    locks.release_lock("k", "b")
    assert not locks.is_locked("k")
    assert locks.wait_for_lock("k", timeout=0.1)


def test_release_by_another_holder_is_refused(tmp_path):
    locks = ProcessLockManager(tmp_path)
    locks.acquire_lock("k", "a")
    with pytest.raises(ValueError, match="No lock held by b"):
        locks.release_lock("k", "b")
    assert locks.is_lock_holder("k", "a")


def test_async_acquire_waits_without_blocking(tmp_path):
    locks = ProcessLockManager(tmp_path)
    locks.acquire_lock("k", "a")

    async def scenario() -> tuple[bool, bool]:
        refused = await locks.aacquire_lock("k", "b", acquire_timeout=0.1)
        locks.release_lock("k", "a")
        return refused, await locks.aacquire_lock("k", "b", acquire_timeout=1)

    assert anyio.run(scenario) == (False, True)
    assert anyio.run(locks.await_for_lock, "other", 0.1)


def test_a_killed_holder_leaks_no_lock(tmp_path):
    """A process killed while holding a key's lock (SIGKILL: no clean-up runs) frees it."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from fhvlab.orchestration.locks import ProcessLockManager\n"
        "ProcessLockManager(Path(sys.argv[1])).acquire_lock('k', 'child')\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        locks = ProcessLockManager(tmp_path)
        assert locks.is_locked("k")
        assert not locks.acquire_lock("k", "me", acquire_timeout=0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert locks.acquire_lock("k", "me", acquire_timeout=5)
    finally:
        child.kill()
        child.wait(timeout=10)
