"""Prefect automations of the lab: crashed runs detected and re-run once, failures alerted.

Everything here is Prefect's own machinery on the open-source server:
- the flow-run processes send heartbeat events every HEARTBEAT_SECONDS (the deployment's
  `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` job variable in prefect.yaml);
- "zombie" automation (Prefect's "detect zombie flows" recipe): a run of the lab's deployment
  whose RUNNING state or heartbeat is followed by neither another heartbeat nor a final state
  within MISSED_AFTER_SECONDS is set to CRASHED; a second one does the same for every run
  tagged `backfill` (a backfill's parent run and its per-date subflow runs);
- "re-run" automation: a run of the deployment that becomes CRASHED after its first attempt
  (event label `prefect.run-count` = "1") is set back to SCHEDULED; the same flow run is run
  again by the next worker. A second crash has run count 2 and matches no more: once.
- "alerts" automation: each run of the deployment that becomes FAILED or CRASHED sends one
  message through a CustomWebhookNotificationBlock whose URL is kept in the block's secrets.

Each automation has a fixed name per deployment and is created or updated in place (never
duplicated; stray duplicates from a race are deleted). Import after the environment is set.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound

from fhvlab.errors import BadInput, LabError

HEARTBEAT_SECONDS = 30  # Prefect's minimum; its default is 180
MISSED_AFTER_SECONDS = 75  # 2.5 heartbeats: no heartbeat and no final state -> CRASHED
ALERT_BLOCK = "fhvlab-alerts"
FINAL_EVENTS = [f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")]


def _for_deployment(deployment_id: UUID | str) -> dict[str, str]:
    return {
        "prefect.resource.role": "deployment",
        "prefect.resource.id": f"prefect.deployment.{deployment_id}",
    }


def _for_tag(tag: str) -> dict[str, str]:
    return {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}


def zombie_automation(
    name: str, deployment_id: UUID | str | None = None, tag: str | None = None
) -> AutomationCore:
    """Runs of the deployment (or, with `tag`, every run so tagged) whose heartbeats stop
    become CRASHED."""
    if (deployment_id is None) == (tag is None):
        raise ValueError("zombie_automation: give exactly one of deployment_id and tag")
    related = _for_deployment(deployment_id) if tag is None else _for_tag(tag)
    return AutomationCore(
        name=name,
        description=(
            f"No heartbeat and no final state within {MISSED_AFTER_SECONDS} s after a "
            f"heartbeat (sent every {HEARTBEAT_SECONDS} s): the flow-run process is gone."
        ),
        trigger=EventTrigger(
            # Prefect's recipe starts the window at a heartbeat only; a process killed before
            # its first heartbeat reached the server (a kill a few seconds after
            # RUNNING, tests/integration/test_crash.py) would stay RUNNING for good.
            # The RUNNING event opens it too.
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=related,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=MISSED_AFTER_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {MISSED_AFTER_SECONDS} s: the flow-run process "
                    "(or its machine) died"
                ),
            )
        ],
    )


def rerun_automation(name: str, deployment_id: UUID | str) -> AutomationCore:
    """A run of the deployment that crashed on its first attempt is scheduled again, once."""
    return AutomationCore(
        name=name,
        description="Crashed on its first attempt (run count 1): the same run is scheduled again.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": "1"},
            match_related=_for_deployment(deployment_id),
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="Re-run after crash",
                message="crashed on its first attempt; run again once by the lab's automation",
            )
        ],
    )


ALERT_SUBJECT = (
    "{{ flow.name }}: run {{ flow_run.name }} {{ event.resource['prefect.state-name'] }}"
)
ALERT_BODY = "\n".join(
    [
        "Prefect flow run ended {{ event.resource['prefect.state-name'] }}",
        "flow: {{ flow.name }}",
        "run: {{ flow_run.name }}",
        "date: {{ flow_run.parameters.get('date') or flow_run.expected_start_time.date() }}",
        "state: {{ event.resource['prefect.state-name'] }}",
        "message: {{ event.resource['prefect.state-message'] }}",
        "link: {{ flow_run|ui_url }}",
    ]
)


def alerts_automation(name: str, deployment_id: UUID | str, block_id: UUID) -> AutomationCore:
    """Each run of the deployment that ends FAILED or CRASHED sends one message."""
    return AutomationCore(
        name=name,
        description="One message per run of the deployment that ends FAILED or CRASHED.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_for_deployment(deployment_id),
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(block_document_id=block_id, subject=ALERT_SUBJECT, body=ALERT_BODY)
        ],
    )


def webhook_style(url: str) -> str:
    """'slack', 'discord' or 'generic', from an incoming-webhook URL; BadInput if not http(s)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            "WEBHOOK_URL is not an http(s) URL (expected e.g. https://hooks.slack.com/services/...)"
        )
    host = parts.hostname.lower()
    if host == "hooks.slack.com" or host.endswith(".slack.com"):
        return "slack"
    if host in ("discord.com", "discordapp.com") or host.endswith(".discord.com"):
        return "discord"
    return "generic"


def webhook_payload(style: str) -> dict[str, Any]:
    """The JSON template the webhook block posts: Slack reads `text`, Discord `content`."""
    text = "*{{subject}}*\n{{body}}" if style == "slack" else "**{{subject}}**\n{{body}}"
    if style == "slack":
        return {"text": text}
    if style == "discord":
        return {"content": text, "username": "fhv-lab"}
    return {"text": "{{subject}}\n{{body}}", "content": "{{subject}}\n{{body}}"}


def _names(deployment: str) -> dict[str, str]:
    return {
        "zombie": f"{deployment}: crash runs without heartbeat",
        "rerun": f"{deployment}: re-run a crashed run once",
        "alerts": f"{deployment}: alert on failed or crashed runs",
    }


def _upsert(client: Any, automation: AutomationCore) -> str:
    """Create `automation`, or update the one of the same name; delete extra copies."""
    found = sorted(client.read_automations_by_name(automation.name), key=lambda a: str(a.id))
    if not found:
        client.create_automation(automation)
        return f"created automation {automation.name!r}"
    keep, *extra = found
    for dup in extra:
        client.delete_automation(dup.id)
    client.update_automation(keep.id, automation)
    return f"automation {automation.name!r} updated in place" + (
        f" ({len(extra)} duplicate(s) removed)" if extra else ""
    )


def _deployment_id(client: Any, flow: str, deployment: str) -> UUID:
    try:
        return client.read_deployment_by_name(f"{flow}/{deployment}").id
    except ObjectNotFound:
        raise LabError(f"no deployment {flow}/{deployment}: run `make deploy` first") from None


def ensure_crash_automations(flow: str, deployment: str) -> list[str]:
    """Create or update the zombie and re-run automations of the deployment."""
    names = _names(deployment)
    with get_client(sync_client=True) as client:
        dep_id = _deployment_id(client, flow, deployment)
        return [
            _upsert(client, zombie_automation(names["zombie"], dep_id)),
            _upsert(client, rerun_automation(names["rerun"], dep_id)),
        ]


def ensure_backfill_automation(deployment: str, tag: str) -> list[str]:
    """Create or update the zombie automation of every run tagged `tag` (a backfill).

    A backfill's parent run (a run of its deployment, tagged `tag`) and its per-date
    subflow runs (in the parent's process, tagged `tag`, no deployment) all send heartbeats
    (Prefect's flow engine sends them for subflow runs too, with the process's
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY from the backfill deployment's job variables). When the
    parent's process dies, each of them is set to CRASHED; no re-run (a subflow run has no
    deployment to be picked up from: the next `make backfill` runs a crashed date again).
    """
    with get_client(sync_client=True) as client:
        return [_upsert(client, zombie_automation(_names(deployment)["zombie"], tag=tag))]


def ensure_alerts(flow: str, deployment: str, url: str) -> list[str]:
    """Save the webhook block (URL as a secret) and create or update the alerts automation."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    style = webhook_style(url)
    with get_client(sync_client=True) as client:
        dep_id = _deployment_id(client, flow, deployment)
        block = CustomWebhookNotificationBlock(
            name="fhv-lab",
            url="{{webhook_url}}",
            json_data=webhook_payload(style),
            secrets={"webhook_url": url.strip()},
        )
        block_id = block.save(ALERT_BLOCK, overwrite=True)
        done = [f"webhook block {ALERT_BLOCK!r} saved ({style}-style payload; URL kept secret)"]
        done.append(
            _upsert(client, alerts_automation(_names(deployment)["alerts"], dep_id, block_id))
        )
    return done


def remove_alerts(deployment: str) -> list[str]:
    """Delete the alerts automation and the webhook block (nothing to do is fine)."""
    done = []
    with get_client(sync_client=True) as client:
        for found in client.read_automations_by_name(_names(deployment)["alerts"]):
            client.delete_automation(found.id)
            done.append(f"deleted automation {found.name!r}")
        try:
            doc = client.read_block_document_by_name(ALERT_BLOCK, "custom-webhook")
        except ObjectNotFound:
            doc = None
        if doc is not None:
            client.delete_block_document(doc.id)
            done.append(f"deleted webhook block {ALERT_BLOCK!r}")
    return done or ["no alerts were set; nothing to remove"]


# ---- issue 20: the watch deployment's failures are alerted too -----------------------------
WATCH_DEPLOYMENT = ("fhv-watch", "fhv-watch")  # flow, deployment (prefect.yaml)


def ensure_watch_alerts() -> list[str]:
    """The alerts automation for the fhv-watch deployment, with the block `ensure_alerts` saved.

    A watch run that cannot reach DATA_URL FAILS; this posts it once, like a training run.
    """
    flow, deployment = WATCH_DEPLOYMENT
    with get_client(sync_client=True) as client:
        try:
            dep_id = client.read_deployment_by_name(f"{flow}/{deployment}").id
        except ObjectNotFound:
            return [f"no deployment {flow}/{deployment} yet: its runs are not alerted"]
        block = client.read_block_document_by_name(ALERT_BLOCK, "custom-webhook")
        return [_upsert(client, alerts_automation(_names(deployment)["alerts"], dep_id, block.id))]


def remove_watch_alerts() -> list[str]:
    """Delete the fhv-watch deployment's alerts automation (nothing to do is fine)."""
    done = []
    with get_client(sync_client=True) as client:
        for found in client.read_automations_by_name(_names(WATCH_DEPLOYMENT[1])["alerts"]):
            client.delete_automation(found.id)
            done.append(f"deleted automation {found.name!r}")
    return done
