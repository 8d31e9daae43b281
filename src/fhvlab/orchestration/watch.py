"""Watching DATA_URL for newly published months: plain functions, no Prefect.

The watch flow (flows/watch.py) wires these: which months to ask about, one HTTP question
per month (HEAD, or a ranged GET where HEAD is refused), whether an answer is a real month
(not an HTML page, not a body far smaller than a real month), and what the event of a
published month says (its id is derived from the month: Prefect's server stores an id once).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import requests

from fhvlab.data import http
from fhvlab.data.download import month_url
from fhvlab.data.months import Month, parse_month
from fhvlab.errors import BadInput, LabError

EVENT = "fhv.month.published"
CHECKED_EVENT = "fhv.watch.checked"  # one per watch run: what it asked and why it stopped
RESOURCE_PREFIX = "fhv.month."
DEPLOYMENT = "fhv-watch/fhv-watch"  # flow/deployment, made by `make deploy`
# A real FHV month is megabytes (2021: 20-30 MB). "Far below" = under MIN_FRACTION of the
# smallest month already in DATA_DIR, and never under MIN_BYTES (an error page's size).
MIN_FRACTION = 0.1
MIN_BYTES = 4096
PARQUET_MAGIC = b"PAR1"
HEAD_REFUSED = (405, 501)  # HEAD not allowed / not implemented: ask with a ranged GET
NOT_PUBLISHED = (403, 404)  # what the TLC's CloudFront answers for a month not out yet
_LOCAL_RE = re.compile(r"fhv_tripdata_(\d{4}-\d{2})\.parquet")


class WatchError(LabError):
    """DATA_URL cannot be asked (unreachable, 5xx, unexpected answer): nothing announced."""


@dataclass(frozen=True)
class Probe:
    """One month's answer from DATA_URL."""

    month: Month
    url: str
    method: str  # HEAD or GET (ranged)
    status: int
    size: int | None = None
    last_modified: str | None = None
    content_type: str = ""
    first_bytes: bytes = b""  # the body's first bytes (ranged GET only)


@dataclass(frozen=True)
class Verdict:
    """What a probe means: 'published', 'not-published' or 'rejected' (with the reason)."""

    kind: str
    reason: str = ""


def parse_ahead(text: str | int) -> int:
    """WATCH_AHEAD as a whole number >= 1; BadInput otherwise."""
    value = str(text).strip()
    if not value.isdigit() or int(value) < 1:
        raise BadInput(f"WATCH_AHEAD={text!r} is not a whole number >= 1 (e.g. 3)")
    return int(value)


def training_date(month: Month) -> date:
    """The run date whose validation month is `month`: the 15th of the month after."""
    nxt = month.shift(1)
    return date(nxt.year, nxt.month, 15)


def local_months(data_dir: Path) -> dict[Month, int]:
    """Months in DATA_DIR (fhv_tripdata_YYYY-MM.parquet) and their sizes in bytes."""
    if not data_dir.is_dir():
        return {}
    found = {}
    for path in data_dir.iterdir():
        match = _LOCAL_RE.fullmatch(path.name)
        if match and path.is_file():
            found[parse_month(match[1])] = path.stat().st_size
    return found


def newest_known(
    local: Iterable[Month], announced: Iterable[Month], watch_from: Month | None
) -> Month | None:
    """The newest month already known, or None: the newest announced (the server's events)
    or WATCH_FROM; before any announcement, the newest in DATA_DIR or WATCH_FROM.

    Once the server holds announcements they are the truth: a month a training run
    downloaded into DATA_DIR is still announced (marked trained when its date is trained or
    in flight), so what DATA_DIR holds at that moment changes nothing.
    """
    first = [*announced] or [*local]
    known = [*first, *([watch_from] if watch_from else [])]
    return max(known) if known else None


def months_to_probe(newest: Month | None, ahead: int) -> list[Month]:
    """The `ahead` months after `newest`, oldest first (none without a starting month)."""
    if ahead < 1:
        raise WatchError(f"WATCH_AHEAD={ahead} must be a whole number >= 1")
    if newest is None:
        raise WatchError(
            "nothing to start from: DATA_DIR has no month and WATCH_FROM is empty "
            "(run `make data`, or pass WATCH_FROM=YYYY-MM, the newest month already out)"
        )
    return [newest.shift(i) for i in range(1, ahead + 1)]


def min_size(local_sizes: Iterable[int]) -> int:
    """Smallest size a real month may have: MIN_FRACTION of the smallest local month."""
    sizes = [s for s in local_sizes if s > 0]
    return max(MIN_BYTES, int(min(sizes) * MIN_FRACTION)) if sizes else MIN_BYTES


def judge(probe: Probe, smallest: int) -> Verdict:
    """Published, not yet, or rejected (HTML body, size far below a real month's)."""
    if probe.status in NOT_PUBLISHED:
        return Verdict("not-published", f"HTTP {probe.status}")
    if "html" in probe.content_type.lower() or probe.first_bytes.lstrip()[:1] == b"<":
        return Verdict("rejected", f"answers 200 with an HTML page ({probe.content_type})")
    if probe.first_bytes and not probe.first_bytes.startswith(PARQUET_MAGIC):
        return Verdict("rejected", "answers 200 but the body is not a parquet file")
    if probe.size is None:
        return Verdict("rejected", "answers 200 without a size (no Content-Length)")
    if probe.size < smallest:
        return Verdict(
            "rejected",
            f"answers 200 with {probe.size:,} bytes, far below a real month "
            f"(at least {smallest:,} expected)",
        )
    return Verdict("published")


def make_session(retries: int = 2, backoff: float = 0.3) -> requests.Session:
    """A session that retries connection errors and 5xx a few times (HEAD and GET)."""
    return http.make_session(
        retries, backoff, methods=frozenset({"HEAD", "GET"}), agent="fhvlab-watch"
    )


def _total_size(response: requests.Response) -> int | None:
    """Size of the whole file: Content-Range's total for a 206, else Content-Length."""
    ranged = re.fullmatch(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
    if response.status_code == 206 and ranged:
        return int(ranged[1])
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _ask(session: requests.Session, method: str, url: str, timeout: float) -> requests.Response:
    """One request; WatchError naming DATA_URL's month URL when it cannot be answered."""
    headers = {"Range": "bytes=0-15"} if method == "GET" else {}
    try:
        return session.request(
            method, url, headers=headers, timeout=timeout, stream=True, allow_redirects=True
        )
    except requests.RequestException as exc:  # urllib3's Retry already tried again
        raise WatchError(f"cannot reach DATA_URL: {url} ({http.reason(exc)})") from None


def probe_month(
    session: requests.Session, base_url: str, month: Month, timeout: float = 10.0
) -> Probe:
    """Ask DATA_URL about one month: HEAD, or a ranged GET of its first bytes if refused."""
    url = month_url(base_url, month)
    method = "HEAD"
    response = _ask(session, method, url, timeout)
    if response.status_code in HEAD_REFUSED:
        response.close()
        method = "GET"
        response = _ask(session, method, url, timeout)
    with response:
        status = response.status_code
        if status >= 500:
            raise WatchError(f"DATA_URL answers HTTP {status}: {url}")
        if status not in (200, 206, *NOT_PUBLISHED):
            raise WatchError(f"DATA_URL answers an unexpected HTTP {status}: {url}")
        first = b""
        if method == "GET" and status in (200, 206):
            first = next(response.iter_content(16), b"")  # never the whole body
        return Probe(
            month=month,
            url=url,
            method=method,
            status=status,
            size=_total_size(response) if status in (200, 206) else None,
            last_modified=response.headers.get("Last-Modified"),
            content_type=response.headers.get("Content-Type", ""),
            first_bytes=first[:16],
        )


def event_id(month: Month) -> UUID:
    """The id of month M's announcement, the same for every watch run: the server stores
    it once, and its triggers act on it once, however many runs announce M."""
    return uuid5(NAMESPACE_URL, f"fhvlab:{EVENT}/{month}")


def event_payload(probe: Probe, already_trained: bool) -> dict[str, Any]:
    """What the fhv.month.published event carries (the trigger reads training_date)."""
    return {
        "month": str(probe.month),
        "url": probe.url,
        "size": probe.size,
        "last_modified": probe.last_modified,
        "training_date": training_date(probe.month).isoformat(),
        "already_trained": already_trained,
    }


def event_resource(probe: Probe, already_trained: bool) -> dict[str, str]:
    """The event's resource: fhv.month.YYYY-MM with labels the trigger matches on."""
    return {
        "prefect.resource.id": f"{RESOURCE_PREFIX}{probe.month}",
        "prefect.resource.name": f"FHV month {probe.month}",
        "fhv.training-date": training_date(probe.month).isoformat(),
        # The trigger matches "false" only: a date trained, or in flight, gets no second run.
        "fhv.trained": "true" if already_trained else "false",
    }


def month_of_resource(resource_id: str) -> Month | None:
    """fhv.month.2021-08 -> Month(2021, 8); None for anything else."""
    if not resource_id.startswith(RESOURCE_PREFIX):
        return None
    try:
        return parse_month(resource_id.removeprefix(RESOURCE_PREFIX))
    except LabError:
        return None


@dataclass(frozen=True)
class Findings:
    """The probes of one watch, in month order: the published ones and where it stopped."""

    published: list[Probe]
    stopped_at: Probe | None = None
    stop: Verdict | None = None


def find_published(
    session: requests.Session, base_url: str, months: Iterable[Month], smallest: int
) -> Findings:
    """Ask about `months` in order; stop at the first one not published or rejected.

    The TLC publishes months in order, so nothing after a missing month is asked about.
    """
    published = []
    for month in months:
        probe = probe_month(session, base_url, month)
        verdict = judge(probe, smallest)
        if verdict.kind != "published":
            return Findings(published, probe, verdict)
        published.append(probe)
    return Findings(published)


def summary_markdown(months: list[str], found: Findings) -> str:
    """The watch run's artifact: each month asked about and what came of it."""
    lines = ["| month | answer | outcome |", "|---|---|---|"]
    for probe in found.published:
        lines.append(f"| {probe.month} | {probe.size:,} bytes ({probe.method}) | announced |")
    if found.stopped_at is not None and found.stop is not None:
        outcome = "not announced" if found.stop.kind == "rejected" else "not published yet"
        lines.append(f"| {found.stopped_at.month} | {found.stop.reason} | {outcome} |")
    asked = {str(p.month) for p in found.published} | (
        {str(found.stopped_at.month)} if found.stopped_at else set()
    )
    for month in months:
        if month not in asked:
            lines.append(f"| {month} | not asked | after a month not out yet |")
    return "# FHV months watched\n\n" + "\n".join(lines) + "\n"


def checked_payload(months: list[str], found: Findings) -> dict[str, Any]:
    """What a watch run's fhv.watch.checked event says: months asked, announced, the stop."""
    stopped = found.stopped_at
    return {
        "asked": months,
        "announced": [str(p.month) for p in found.published],
        "stopped_at": str(stopped.month) if stopped else None,
        "stop": found.stop.kind if found.stop else None,
        "reason": found.stop.reason if found.stop else None,
        "url": stopped.url if stopped else None,
    }


def checked_line(payload: Mapping[str, Any]) -> str:
    """One line about a watch run's stop, e.g. '2021-09: not published yet (HTTP 404)'."""
    if not payload.get("stopped_at"):
        return f"asked {', '.join(payload.get('asked') or [])}: all published"
    what = "not published yet" if payload.get("stop") == "not-published" else "not announced"
    return f"{payload['stopped_at']}: {what} ({payload.get('reason')}) {payload.get('url')}"
