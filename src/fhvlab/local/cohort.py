"""A cohort on one SQLite server: how many workers poll it, and the one-line warning.

Standard library only, Python 3.8 syntax (no annotation evaluated at run time):
scripts/doctor.py imports it before `make setup`.
The numbers come from the server (its work pools' ONLINE workers), the database kind from
what the lab knows of the server it started (fhvlab.local.database); nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

# More than this many workers online on a SQLite server draws the warning. One student uses
# one to three (`make up`'s, a `make worker` in a terminal, one on a second machine); a
# class sharing a server has one per student. Measured on SQLite: 20 workers polling every
# 3 s, 14 of 20 run creations answered 503; on PostgreSQL 0 of 20 (docs/cohort.md).
WORKER_LIMIT = 3
ONLINE = {"workers": {"status": {"any_": ["ONLINE"]}}}


def online_workers(post: Callable[[str, Any], Any]) -> int | None:
    """Workers ONLINE in all the server's work pools; None when the server does not say.

    `post(path, body)` sends a JSON body to the API path: the decoded answer, None on failure.
    """
    pools = post("/work_pools/filter", {})
    if not isinstance(pools, list):
        return None
    total = 0
    for pool in pools:
        found = post(f"/work_pools/{quote(str(pool.get('name')), safe='')}/workers/filter", ONLINE)
        if not isinstance(found, list):
            return None
        total += sum(1 for worker in found if worker.get("status") == "ONLINE")
    return total


def crowd_warning(on_sqlite: bool | None, workers: int, limit: int = WORKER_LIMIT) -> str:
    """The one-line warning for `workers` polling a server ('' when there is nothing to say).

    `on_sqlite` None: the lab does not know the server's database (a server it did not
    start), so it says nothing.
    """
    if not on_sqlite or workers <= limit:
        return ""
    return (
        f"{workers} workers poll this server and it runs on SQLite, which refuses new runs "
        "under many workers (HTTP 503: 14 of 20 with 20 workers); for a class put it on "
        "PostgreSQL: make postgres (docs/cohort.md)"
    )
