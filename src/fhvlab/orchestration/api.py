"""The lab's one way to talk to the Prefect API: Prefect's own client.

Every read and write of the lab's Prefect objects (runs, deployments, events, limits,
automations) goes through `client()`, Prefect's synchronous client of the API in
PREFECT_API_URL, or through Prefect's functions built on it (`wait_for_flow_run`, blocks).
Plain HTTP has one helper, `fhvlab.local.record.Api` (urllib), used only by the checks that
decide, without importing Prefect, whether a command has anything to do: the health check,
a worker's heartbeat, `python -m fhvlab deployed`, the set-up record.

Import only after the environment is set (Prefect reads its settings at import).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventOrder,
    EventRelatedFilter,
)
from prefect.exceptions import FlowRunWaitTimeout, ObjectNotFound
from prefect.flow_runs import wait_for_flow_run

PAGE = 50  # events per read: the API's page size
EVENT_LOOKBACK = timedelta(days=180)  # the server keeps events 7 days by default


def client() -> SyncPrefectClient:
    """Prefect's synchronous client of the API in PREFECT_API_URL."""
    return get_client(sync_client=True)


def workers_online(http: SyncPrefectClient, pool: str) -> int:
    """How many workers of `pool` the server counts as online."""
    try:
        workers = http.read_workers_for_work_pool(pool)
    except ObjectNotFound:
        return 0
    return sum(1 for w in workers if str(getattr(w.status, "value", w.status)) == "ONLINE")


def scheduled_runs(http: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    """The deployment's SCHEDULED flow runs (the cron's next runs, among others)."""
    return http.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
    )


def wait_for_runs(run_ids: Sequence[UUID], timeout: float) -> bool:
    """Wait until each flow run is final (Prefect's `wait_for_flow_run`); False on timeout.

    If the server goes away meanwhile (a restart), wait again once it answers.
    """
    deadline = time.monotonic() + timeout

    async def wait_all() -> None:
        left = max(1, int(deadline - time.monotonic()))
        await asyncio.gather(*(wait_for_flow_run(i, timeout=left) for i in run_ids))

    while True:
        try:
            asyncio.run(wait_all())
            return True
        except FlowRunWaitTimeout:
            return False
        except Exception:  # the events stream or the API dropped (server restarted)
            if time.monotonic() >= deadline:
                return False
            time.sleep(2)


def final_run(run_id: UUID, timeout: float) -> FlowRun | None:
    """The flow run once it is final (`wait_for_runs`), or None after `timeout` seconds."""
    if not wait_for_runs([run_id], timeout):
        return None
    with client() as http:
        return http.read_flow_run(run_id)


def read_events(
    prefix: str, limit: int = PAGE, related_id: str | None = None
) -> list[dict[str, Any]]:
    """Recent events whose name starts with `prefix` (and related to `related_id`), newest
    first, as JSON dicts; at most one page (50)."""
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=datetime.now(UTC) - EVENT_LOOKBACK),
        event=EventNameFilter(prefix=[prefix]),
        order=EventOrder.DESC,
    )
    if related_id:
        event_filter.related = EventRelatedFilter(id=[related_id])
    with client() as http:
        page = http.read_events(filter=event_filter, limit=min(limit, PAGE))
    return [event.model_dump(mode="json") for event in page.events]
