"""The crash-detection automations' definitions (orchestration.automations), no server."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import Posture

from fhvlab.orchestration.automations import FINAL_EVENTS, MISSED_AFTER_SECONDS, zombie_automation


def _related(automation) -> list[dict[str, object]]:
    spec = automation.trigger.match_related
    specs = spec if isinstance(spec, list) else [spec]
    return [s.model_dump() for s in specs]


def test_backfill_zombie_watches_every_run_tagged_backfill() -> None:
    auto = zombie_automation("fhv-backfill: crash runs without heartbeat", tag="backfill")
    trigger = auto.trigger
    # parent run (a deployment run) and per-date subflow runs (no deployment) share the tag
    assert _related(auto) == [
        {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.backfill"}
    ]
    assert trigger.match.model_dump() == {"prefect.resource.id": "prefect.flow-run.*"}
    assert trigger.posture == Posture.Proactive
    assert set(trigger.after) == {"prefect.flow-run.Running", "prefect.flow-run.heartbeat"}
    assert set(trigger.expect) == {"prefect.flow-run.heartbeat", *FINAL_EVENTS}
    assert set(trigger.for_each) == {"prefect.resource.id"}
    assert trigger.within.total_seconds() == MISSED_AFTER_SECONDS
    (action,) = auto.actions
    assert isinstance(action, ChangeFlowRunState)
    assert action.state == StateType.CRASHED


def test_deployment_zombie_is_unchanged() -> None:
    dep = uuid4()
    auto = zombie_automation("fhv-monthly: crash runs without heartbeat", dep)
    assert _related(auto) == [
        {"prefect.resource.role": "deployment", "prefect.resource.id": f"prefect.deployment.{dep}"}
    ]


@pytest.mark.parametrize("kwargs", [{}, {"deployment_id": "x", "tag": "backfill"}])
def test_exactly_one_filter(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        zombie_automation("z", **kwargs)
