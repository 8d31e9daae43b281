"""Atomic file writes: a temporary file in the target's folder, then one rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
