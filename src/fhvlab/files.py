"""Files the lab writes: atomically (a temporary file beside, then one rename), and the
one file lock every part of the lab uses (`flock`, released when its holder dies)."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fhvlab.errors import LabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_beside(final: Path) -> Path:
    """Create an empty hidden temporary file in `final`'s folder, with normal permissions."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to `final`; rename it over `final` on success.

    On any exception (Ctrl-C included) the temporary file is removed and `final`, if it
    existed, is untouched. The file gets the permissions a plain `open()` would give it.
    """
    tmp = temp_beside(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def try_lock(path: Path) -> int | None:
    """Open `path` (created if missing) and take its exclusive `flock` without waiting.

    Returns the open descriptor (closing it releases the lock; so does the process's
    death, which is why the lab locks with flock), or None when someone else holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def wait_lock(
    path: Path,
    timeout: float,
    poll: float = 0.05,
    give_up: Callable[[], bool] = lambda: False,
) -> int | None:
    """`try_lock` until it succeeds (the descriptor), `timeout` passes or `give_up()` (None)."""
    deadline = time.monotonic() + timeout
    while (fd := try_lock(path)) is None:
        if give_up() or time.monotonic() >= deadline:
            return None
        time.sleep(poll)
    return fd


@contextmanager
def locked(path: Path, timeout: float, busy: str) -> Iterator[None]:
    """Hold `path`'s lock for the block; LabError(`busy`) if it stays taken `timeout` s."""
    fd = wait_lock(path, timeout, poll=0.1)
    if fd is None:
        raise LabError(busy)
    try:
        yield
    finally:
        os.close(fd)
