"""A month file's sha256, computed once and kept beside it in a small JSON sidecar.

`fhv_tripdata_2021-06.parquet` gets `fhv_tripdata_2021-06.sha256.json`:
{"sha256": ..., "size": ..., "mtime_ns": ..., "inode": ...}. The sidecar is trusted only
while the file's size, modification time (ns) and inode are the ones it records; a file
replaced or rewritten since is hashed again (and the sidecar rewritten). The content's hash
is the same on every machine, so it can key a cache any machine can hit; the stat fields
only say whether this machine's sidecar still describes this machine's file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from fhvlab.files import atomic_path

log = logging.getLogger(__name__)
BLOCK = 1 << 20  # bytes read at a time


@dataclass(frozen=True)
class Checksum:
    """A file's sha256 and the stat it was taken at."""

    sha256: str
    size: int
    mtime_ns: int
    inode: int

    def describes(self, st: os.stat_result) -> bool:
        """Whether this checksum was taken of the file `st` describes, unchanged since."""
        return (self.size, self.mtime_ns, self.inode) == (st.st_size, st.st_mtime_ns, st.st_ino)


def sidecar_path(path: Path) -> Path:
    """Where the sidecar of `path` lives: `name.parquet` -> `name.sha256.json`.

    (Not `name.parquet.*`: its temporary file would look like a killed download's.)
    """
    return path.with_suffix(".sha256.json")


def read_sidecar(path: Path) -> Checksum | None:
    """The sidecar of `path` as written, or None if it is missing or unreadable."""
    try:
        found = json.loads(sidecar_path(path).read_text())
        return Checksum(
            str(found["sha256"]), *(int(found[k]) for k in ("size", "mtime_ns", "inode"))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compute(path: Path) -> Checksum:
    """Hash `path` and note the stat of the very file read (fstat of the open descriptor)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return Checksum(digest.hexdigest(), st.st_size, st.st_mtime_ns, st.st_ino)


def write_sidecar(path: Path, checksum: Checksum) -> None:
    """Write the sidecar of `path` atomically (a reader sees the old one or the new one)."""
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(asdict(checksum), sort_keys=True) + "\n")


def file_sha256(path: Path) -> str:
    """The sha256 of `path`: from its sidecar while that describes the file, else computed
    (reading the whole file once) and the sidecar written."""
    kept = read_sidecar(path)
    if kept is not None and kept.describes(path.stat()):
        return kept.sha256
    fresh = compute(path)
    try:
        write_sidecar(path, fresh)
    except OSError as exc:  # a read-only data folder: right answer, hashed again next time
        log.warning("%s: could not keep its sha256 in %s: %s", path.name, sidecar_path(path), exc)
    return fresh.sha256
