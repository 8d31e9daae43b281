"""Download FHV months: stream to a temporary file, validate, then rename into place."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import requests

from fhvlab import files
from fhvlab.data import checksum, http
from fhvlab.data.http import Cancelled, CancelToken, Progress, make_session
from fhvlab.data.months import Month
from fhvlab.errors import DownloadError
from fhvlab.files import atomic_path

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("pickup_datetime", "dropOff_datetime", "PUlocationID", "DOlocationID")
LOCK_WAIT_SECONDS = 900.0  # how long a download waits for another process's download


@dataclass(frozen=True)
class Fetched:
    """One month's outcome: where it is, its size and rows, and whether it was downloaded."""

    month: Month
    path: Path
    rows: int
    size: int
    seconds: float
    downloaded: bool


def month_filename(month: Month) -> str:
    """File name of one month, as published by the TLC."""
    return f"fhv_tripdata_{month}.parquet"


def month_url(base_url: str, month: Month) -> str:
    """URL of one month under `base_url`."""
    return f"{base_url.rstrip('/')}/{month_filename(month)}"


def inspect_parquet(path: Path) -> int:
    """Return the row count of an FHV parquet file; raise DownloadError if it is unusable."""
    try:
        meta = pq.ParquetFile(path).metadata
        names = set(meta.schema.to_arrow_schema().names)
    except Exception as exc:  # pyarrow raises several types for garbage input
        raise DownloadError(f"{path.name}: not a parquet file ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DownloadError(f"{path.name}: missing FHV column(s) {', '.join(missing)}")
    if meta.num_rows < 1:
        raise DownloadError(f"{path.name}: has no rows")
    return meta.num_rows


def valid_rows(path: Path) -> int | None:
    """Row count of `path` if it exists and is a valid FHV file, else None."""
    if not path.is_file():
        return None
    try:
        return inspect_parquet(path)
    except DownloadError:
        return None


def ensure_writable_dir(folder: Path) -> None:
    """Create `folder` if needed; raise DownloadError if files cannot be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DownloadError(f"cannot write to data folder {folder}: {reason}") from None


def lock_path(dest_dir: Path, month: Month) -> Path:
    """The hidden lock file that serialises downloads of `month` into `dest_dir`."""
    return dest_dir / f".{month_filename(month)}.lock"


def stale_parts(dest_dir: Path, month: Month) -> list[Path]:
    """Temporary files a download of `month` leaves behind when it is killed."""
    return sorted(dest_dir.glob(f".{month_filename(month)}.*.part"))


@contextmanager
def month_lock(
    dest_dir: Path,
    month: Month,
    timeout: float = LOCK_WAIT_SECONDS,
    cancel: CancelToken | None = None,
) -> Iterator[None]:
    """Hold the month's lock (an flock, so it works across processes and threads).

    Waits at most `timeout` seconds for another holder, then raises DownloadError. The
    lock file is removed by its holder on release; a waiter that locked a file removed
    meanwhile simply tries again, so two holders can never coexist.
    """
    path = lock_path(dest_dir, month)
    deadline = time.monotonic() + timeout
    while True:
        fd = files.wait_lock(
            path,
            deadline - time.monotonic(),
            give_up=lambda: cancel is not None and cancel.is_set(),
        )
        if fd is None:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            raise DownloadError(
                f"month {month}: another process has been downloading it for over "
                f"{timeout:.0f} s (lock {path}); try again when it is done"
            )
        try:
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    path.unlink(missing_ok=True)  # while still locked: waiters retry
                return
        finally:
            os.close(fd)  # releases the flock


def remove_stale_parts(dest_dir: Path, month: Month) -> list[Path]:
    """Delete a killed download's temporary files; call only while holding the month's lock."""
    found = stale_parts(dest_dir, month)
    for part in found:
        part.unlink(missing_ok=True)
        log.info("month %s: removed %s left by an interrupted download", month, part.name)
    return found


def download_month(
    month: Month,
    dest_dir: Path,
    base_url: str,
    *,
    force: bool = False,
    session: requests.Session | None = None,
    attempts: int = 3,
    backoff: float = 0.5,
    timeout: tuple[float, float] = (10.0, 60.0),
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    lock_timeout: float = LOCK_WAIT_SECONDS,
) -> Fetched:
    """Make `dest_dir/fhv_tripdata_{month}.parquet` a valid FHV file, downloading if needed.

    The body goes to a hidden temporary file in `dest_dir`, is validated (byte count,
    parquet footer, FHV columns, at least one row) and only then renamed over the final
    name, so a previous good copy is untouched by any failure. A body cut short is
    fetched again up to `attempts` times; status and connection errors are retried by
    the session (urllib3's Retry).

    Concurrent calls for the same month (threads or processes) take the month's lock
    in `dest_dir`: one downloads, the others wait and then find the valid file. The
    holder first removes temporary files a killed download left behind, and refuses a
    body larger than the free disk space before writing anything (DiskSpaceError).

    The file's sha256 is kept beside it (fhvlab.data.checksum): computed here once, for a
    download and for a month found without one.
    """
    final = dest_dir / month_filename(month)
    start = time.monotonic()
    # A final file only ever appears by rename, so reading it without the lock is safe.
    if not force and not stale_parts(dest_dir, month) and (rows := valid_rows(final)):
        checksum.file_sha256(final)  # a month from an older lab, or copied in: hashed once
        return Fetched(month, final, rows, final.stat().st_size, 0.0, downloaded=False)
    ensure_writable_dir(dest_dir)
    url = month_url(base_url, month)
    own_session = session is None
    session = session or make_session(backoff=backoff)
    try:
        with month_lock(dest_dir, month, lock_timeout, cancel):
            remove_stale_parts(dest_dir, month)
            if not force and (rows := valid_rows(final)) is not None:
                checksum.file_sha256(final)
                return Fetched(month, final, rows, final.stat().st_size, 0.0, downloaded=False)
            with atomic_path(final) as tmp:
                size = http.fetch_with_retries(
                    session, url, month, tmp, attempts, backoff, timeout, progress, cancel
                )
                rows = inspect_parquet(tmp)
                kept = checksum.compute(tmp)  # the rename keeps its inode, size and time
            checksum.write_sidecar(final, kept)
    finally:
        if own_session:
            session.close()
    seconds = time.monotonic() - start
    if progress:
        progress(month, size, size, True)
    return Fetched(month, final, rows, size, seconds, downloaded=True)


def download_months(
    months: Sequence[Month],
    dest_dir: Path,
    base_url: str,
    *,
    force: bool = False,
    workers: int = 3,
    backoff: float = 0.5,
    progress: Progress | None = None,
) -> list[Fetched]:
    """Fetch several months concurrently (at most `workers` at a time).

    Every month is attempted; if any failed, DownloadError names each failure after the
    others have finished. Ctrl-C stops all downloads and removes their temporary files.
    """
    unique = sorted(set(months))
    cancel = CancelToken()
    session = make_session(backoff=backoff)
    results: dict[Month, Fetched] = {}
    errors: list[str] = []

    def one(month: Month) -> Fetched:
        return download_month(
            month,
            dest_dir,
            base_url,
            force=force,
            session=session,
            backoff=backoff,
            progress=progress,
            cancel=cancel,
        )

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique)))) as pool:
        futures = {month: pool.submit(one, month) for month in unique}
        try:
            for month, future in futures.items():
                try:
                    results[month] = future.result()
                except DownloadError as exc:
                    errors.append(str(exc))
        except BaseException:
            cancel.cancel()
            raise
    session.close()
    if errors:
        raise DownloadError("; ".join(errors))
    return [results[m] for m in unique]


def describe(fetched: Iterable[Fetched]) -> list[str]:
    """Human lines summarising fetched months (rows, size, speed)."""
    lines = []
    for f in fetched:
        mb = f.size / 1e6
        if f.downloaded:
            speed = mb / f.seconds if f.seconds > 0 else float("inf")
            how = f"downloaded in {f.seconds:.1f} s ({speed:.1f} MB/s)"
        else:
            how = "already present, valid"
        lines.append(f"{f.month}: {f.rows:,} rows, {mb:.1f} MB, {how} -> {f.path}")
    return lines
