"""The watch flow: announce each newly published FHV month once, as a Prefect event.

Deployed by `make deploy` as fhv-watch/fhv-watch on WATCH_CRON; run now with `make watch`
(or: .venv/bin/python flows/watch.py). Each new month becomes an event
`fhv.month.published` (resource fhv.month.YYYY-MM); the training deployment's trigger
(prefect.yaml) turns it into a training run for the date that month completes. The
event's id is derived from the month: Prefect's server stores it, and its trigger acts on
it, once, however many watch runs announce the month. See docs/events.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from fhvlab import settings
from fhvlab.data.months import parse_month
from fhvlab.errors import LabError
from fhvlab.orchestration import api, trained
from fhvlab.orchestration import watch as w


@task(cache_policy=NO_CACHE)
def read_known(data_dir: str) -> dict[str, Any]:
    """Months in DATA_DIR (with sizes) and months already announced (the server's events)."""
    events = api.read_events(w.EVENT)  # the server keeps them ~7 days
    months = {w.month_of_resource(e["resource"]["prefect.resource.id"]) for e in events}
    announced = sorted(str(m) for m in months if m is not None)
    local = {str(m): size for m, size in w.local_months(Path(data_dir)).items()}
    get_run_logger().info(
        "known: %s in %s; announced before: %s",
        ", ".join(sorted(local)) or "no month",
        data_dir,
        ", ".join(announced) or "none",
    )
    return {"announced": announced, "local": local}


@task(cache_policy=NO_CACHE)
def find_published(data_url: str, months: list[str], smallest: int) -> w.Findings:
    """Ask DATA_URL about the months in order (HEAD, or a ranged GET); stop at the first gap."""
    logger = get_run_logger()
    with w.make_session() as session:
        found = w.find_published(session, data_url, map(parse_month, months), smallest)
    for probe in found.published:
        logger.info(
            "%s: published (%s bytes, %s) %s", probe.month, probe.size, probe.method, probe.url
        )
    if found.stop is not None and found.stopped_at is not None:
        where = found.stopped_at
        if found.stop.kind == "rejected":
            logger.warning("%s not announced: %s %s", where.month, where.url, found.stop.reason)
        else:
            logger.info(
                "%s: not published yet (%s from %s)", where.month, found.stop.reason, where.url
            )
    return found


@task(cache_policy=NO_CACHE)
def announce(probe: w.Probe) -> None:
    """Emit fhv.month.published for the month, with its id; marked trained when its training
    date has a COMPLETED run or one in flight (the trigger then starts nothing)."""
    day = w.training_date(probe.month)
    with api.client() as http:  # the one question, for one date
        found = trained.answer(trained.ask(http, [day]))
    run = found.completed.get(day) or found.in_flight.get(day)
    event = emit_event(
        event=w.EVENT,
        resource=w.event_resource(probe, run is not None),
        payload=w.event_payload(probe, run is not None),
        id=w.event_id(probe.month),
    )
    if event is None:
        raise LabError("Prefect did not emit the event (no API configured?)")
    get_run_logger().info(
        "announced %s (event %s): training date %s%s",
        probe.month,
        event.id,
        day,
        f": run {run.name!r} is {run.state}, not trained again" if run else "",
    )


@task(cache_policy=NO_CACHE)
def report(months: list[str], found: w.Findings) -> None:
    """The run's outcome as a markdown artifact and an `fhv.watch.checked` event."""
    create_markdown_artifact(
        markdown=w.summary_markdown(months, found),
        key="fhv-watch",
        description="months asked about and announced by the last watch run",
    )
    emit_event(
        event=w.CHECKED_EVENT,
        resource={"prefect.resource.id": "fhv.watch", "prefect.resource.name": "FHV watch"},
        payload=w.checked_payload(months, found),
    )


@flow(name="fhv-watch", log_prints=True)
def watch(
    ahead: int | None = None,
    watch_from: str | None = None,
    data_url: str | None = None,
    data_dir: str | None = None,
) -> list[str]:
    """Announce each month published after the newest known one; returns those months.

    Looks at most `ahead` months past the newest month announced before (before any, the
    newest in DATA_DIR) or `watch_from` (YYYY-MM); those default to WATCH_AHEAD and
    WATCH_FROM, the locations to DATA_URL and DATA_DIR.
    """
    knobs = settings.current()
    ahead = ahead or w.parse_ahead(knobs.watch_ahead)
    watch_from = watch_from or knobs.watch_from.strip() or None
    data_url = data_url or settings.data_url()
    data_dir = data_dir or str(settings.data_dir())
    start_from = parse_month(watch_from) if watch_from else None
    known = read_known(data_dir)
    newest = w.newest_known(
        map(parse_month, known["local"]), map(parse_month, known["announced"]), start_from
    )
    months = [str(m) for m in w.months_to_probe(newest, ahead)]
    found = find_published(data_url, months, w.min_size(known["local"].values()))
    for probe in found.published:
        announce(probe)
    announced = [str(p.month) for p in found.published]
    report(months, found)
    return announced


if __name__ == "__main__":
    try:
        print(f"watch: announced {watch() or 'nothing'}")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
