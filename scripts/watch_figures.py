"""Seconds from a watch run to the training run its event started, read from the Prefect API.

For each `fhv.month.published` event still on the server (newest 50): the watch run that
emitted it, and the training run for its date created by the automation. Prints, per month,
watch run start -> training run created / COMPLETED, and event -> training run created.

    make watch WATCH=1 PREFECT_PORT=4230          # announce a month, wait for its training
    PREFECT_PORT=4230 .venv/bin/python scripts/watch_figures.py

API: --api-url, else API_URL, else http://127.0.0.1:$PREFECT_PORT/api (4200).
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import datetime

import requests


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _post(api: str, path: str, body: dict) -> dict | list:
    response = requests.post(f"{api}{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def _get(api: str, path: str) -> dict:
    response = requests.get(f"{api}{path}", timeout=10)
    response.raise_for_status()
    return response.json()


def main() -> int:
    """Print one line per announced month, then the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("API_URL") or (
        f"http://127.0.0.1:{os.environ.get('PREFECT_PORT', '4200')}/api"
    )
    parser.add_argument("--api-url", default=default)
    api = parser.parse_args().api_url.rstrip("/")
    body = {"filter": {"event": {"name": ["fhv.month.published"]}, "order": "ASC"}, "limit": 50}
    events = _post(api, "/events/filter", body)["events"]
    flow = {"flows": {"name": {"any_": ["fhv-duration-training"]}}, "limit": 200}
    training = _post(api, "/flow_runs/filter", flow)
    rows = []
    for event in events:
        payload = event["payload"]
        watch_ids = [
            r["prefect.resource.id"].removeprefix("prefect.flow-run.")
            for r in event["related"]
            if r["prefect.resource.id"].startswith("prefect.flow-run.")
        ]
        runs = [
            r
            for r in training
            if r["parameters"].get("date") == payload["training_date"]
            and (r.get("created_by") or {}).get("type") == "AUTOMATION"
            and _when(r["created"]) >= _when(event["occurred"])
        ]
        if not watch_ids or not runs:
            print(f"{payload['month']}: no watch run or no triggered training run; skipped")
            continue
        watch = _get(api, f"/flow_runs/{watch_ids[0]}")
        run = min(runs, key=lambda r: r["created"])
        start = _when(watch["start_time"])
        created = (_when(run["created"]) - start).total_seconds()
        from_event = (_when(run["created"]) - _when(event["occurred"])).total_seconds()
        done = (_when(run["end_time"]) - start).total_seconds() if run["end_time"] else None
        rows.append((created, from_event, done))
        print(
            f"{payload['month']}: watch run {watch['name']!r} start -> training run "
            f"{run['name']!r} created {created:.1f} s, {run['state_type']} "
            + (f"{done:.1f} s" if done is not None else "(not finished)")
            + f"; event -> run created {from_event:.2f} s"
        )
    if rows:
        finished = [r[2] for r in rows if r[2] is not None]
        print(
            f"median of {len(rows)}: watch start -> run created "
            f"{statistics.median(r[0] for r in rows):.1f} s, event -> run created "
            f"{statistics.median(r[1] for r in rows):.2f} s"
            + (
                f", watch start -> COMPLETED {statistics.median(finished):.1f} s"
                if finished
                else ""
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
