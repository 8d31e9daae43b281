"""HTTP for the lab's downloads: retrying sessions, streaming a body to a file, cancelling.

`fhvlab.data.download` fetches months with these; `fhvlab.orchestration.watch` asks
about new months with `make_session`. Transient failures (connection errors, HTTP 429 and
5xx, a body cut short) are retried a bounded number of times; the rest fail at once.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from fhvlab.data.months import Month
from fhvlab.errors import DiskSpaceError, DownloadError

log = logging.getLogger("fhvlab.data.download")

TRANSIENT_STATUS = (429, 500, 502, 503, 504)
CHUNK_BYTES = 1 << 18
# A body that breaks off after the headers: urllib3's Retry covers connecting and status
# codes, not this, so the whole GET is started again (a bounded number of times).
_BODY_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class _BodyInterrupted(Exception):
    """The response body ended early; carries the underlying error."""


# progress(month, bytes_done, bytes_total_or_None, finished)
Progress = Callable[[Month, int, "int | None", bool], None]


class Cancelled(Exception):
    """Raised inside a download when the caller asked all downloads to stop (Ctrl-C)."""


class CancelToken:
    """Stops downloads at once: sets a flag and shuts the sockets of reads under way."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._responses: set[requests.Response] = set()

    def is_set(self) -> bool:
        """Whether cancellation was asked for."""
        return self._event.is_set()

    @contextmanager
    def track(self, response: requests.Response) -> Iterator[None]:
        """Register a response whose socket `cancel()` must shut down."""
        with self._lock:
            self._responses.add(response)
        try:
            yield
        finally:
            with self._lock:
                self._responses.discard(response)

    def cancel(self) -> None:
        """Ask every download to stop; blocked reads fail immediately."""
        self._event.set()
        with self._lock:
            for response in self._responses:
                response.raw.shutdown()


def make_session(
    retries: int = 4,
    backoff: float = 0.5,
    methods: frozenset[str] = frozenset({"GET"}),
    agent: str = "fhvlab-downloader",
) -> requests.Session:
    """A session that retries connection errors and HTTP 429/5xx with exponential backoff."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        status_forcelist=TRANSIENT_STATUS,
        allowed_methods=methods,
        backoff_factor=backoff,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = agent
    return session


def _stream_to(
    response: requests.Response,
    tmp: Path,
    month: Month,
    progress: Progress | None,
    cancel: CancelToken | None,
) -> int:
    """Write the response body to `tmp` chunk by chunk; return the byte count."""
    total = response.headers.get("Content-Length")
    expected = int(total) if total and total.isdigit() else None
    done = 0
    with tmp.open("wb") as out:
        for chunk in response.iter_content(CHUNK_BYTES):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(month, done, expected, False)
        out.flush()
        os.fsync(out.fileno())
    plain = "Content-Encoding" not in response.headers
    if expected is not None and plain and done != expected:
        raise requests.exceptions.ChunkedEncodingError(f"got {done} of {expected} bytes")
    return done


def _fetch_once(
    session: requests.Session,
    url: str,
    month: Month,
    tmp: Path,
    timeout: tuple[float, float],
    progress: Progress | None,
    cancel: CancelToken | None,
) -> int:
    """One GET of `url` into `tmp`; raise DownloadError for answers a retry cannot fix."""
    try:
        response = session.get(url, stream=True, timeout=timeout)
    except requests.RequestException as exc:  # urllib3's Retry already tried again
        raise DownloadError(f"month {month}: cannot fetch {url} ({reason(exc)})") from None
    with response:
        status = response.status_code
        if status in (403, 404):
            raise DownloadError(
                f"month {month} is not available (HTTP {status} from {url}); "
                "check the month, the TLC publishes each month with a delay"
            )
        if status in TRANSIENT_STATUS:
            raise DownloadError(f"month {month}: server kept failing (HTTP {status} from {url})")
        if status != 200:
            raise DownloadError(f"month {month}: unexpected HTTP {status} from {url}")
        check_free_space(month, response.headers.get("Content-Length"), tmp.parent)
        try:
            if cancel is None:
                return _stream_to(response, tmp, month, progress, cancel)
            with cancel.track(response):
                return _stream_to(response, tmp, month, progress, cancel)
        except _BODY_ERRORS as exc:
            raise _BodyInterrupted(exc) from exc


def reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests error, e.g. '[Errno 111] Connection refused'."""
    text = str(exc)
    found = re.findall(r"\[Errno -?\d+\] [^'\")]+", text)
    if found:
        return found[-1]
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return text if len(text) < 160 else f"{type(exc).__name__}"


def fetch_with_retries(
    session: requests.Session,
    url: str,
    month: Month,
    tmp: Path,
    attempts: int,
    backoff: float,
    timeout: tuple[float, float],
    progress: Progress | None,
    cancel: CancelToken | None,
) -> int:
    """GET `url` into `tmp`, starting again when the body is cut short; return its size."""
    for attempt in range(1, attempts + 1):
        try:
            return _fetch_once(session, url, month, tmp, timeout, progress, cancel)
        except _BodyInterrupted as interrupted:
            if cancel is not None and cancel.is_set():
                raise Cancelled from None
            why = reason(interrupted.__cause__ or interrupted)
            if attempt == attempts:
                raise DownloadError(
                    f"month {month}: download from {url} failed after {attempts} attempts "
                    f"(body cut short: {why})"
                ) from None
            log.warning("month %s: attempt %d cut short (%s); retrying", month, attempt, why)
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable: attempts must be >= 1")


def check_free_space(month: Month, content_length: str | None, folder: Path) -> None:
    """Raise DiskSpaceError when the announced body is larger than the free space in `folder`."""
    if not content_length or not content_length.isdigit():
        return
    needed, free = int(content_length), shutil.disk_usage(folder).free
    if needed > free:
        raise DiskSpaceError(
            f"month {month} needs {needed / 1e6:,.1f} MB ({needed:,} bytes) but only "
            f"{free / 1e6:,.1f} MB ({free:,} bytes) are free in {folder}; free some space "
            "or point DATA_DIR elsewhere"
        )
