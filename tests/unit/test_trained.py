"""The one question without a server: run names, origins, which dates to run or skip."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from fhvlab.errors import BadInput
from fhvlab.orchestration import trained

T0 = datetime(2026, 1, 1, 12, 0)


def _run(day: str, state: str, minutes: int, run_id: str = "", started: int | None = None):
    start = T0 + timedelta(minutes=started) if started is not None else None
    when = T0 + timedelta(minutes=minutes)
    return trained.DateRun(date.fromisoformat(day), state, when, run_id, start=start, name="n")


def test_run_names_round_trip():
    assert trained.run_name(date(2021, 3, 15)) == "train-2021-03-15"
    assert trained.run_name("2021-03-15") == "train-2021-03-15"
    assert trained.date_of_run_name("train-2021-03-15") == date(2021, 3, 15)
    assert trained.date_of_run_name("train-2021-03-15_x") is None
    assert trained.date_of_run_name("backfill-2021-03-15") is None
    assert trained.date_of_run_name("crimson-fox") is None


def test_origin_is_the_tag_else_what_the_server_says():
    assert trained.origin(["fhv-lab", "backfill"], False, False) == "backfill"
    assert trained.origin(["fhv-lab"], True, False) == "event"
    assert trained.origin(["fhv-lab"], False, True) == "schedule"
    assert trained.origin([], False, False) == "manual"


def test_only_runs_no_one_asked_for_by_hand_ask_the_question():
    assert trained.asks("dep-id", ["fhv-lab"])  # the schedule's or the trigger's run
    assert not trained.asks("dep-id", ["fhv-lab", "manual"])  # make run
    assert not trained.asks(None, ["backfill"])  # a backfill's subflow run
    assert not trained.asks(None, [])  # make train, python flows/train.py


def test_the_answer_skips_trained_and_in_flight_dates_and_reruns_the_rest():
    days = [date(2021, m, 15) for m in range(3, 9)]
    found = trained.answer(
        [
            _run("2021-03-15", "COMPLETED", 1),
            _run("2021-04-15", "FAILED", 1),
            _run("2021-05-15", "CRASHED", 1),
            _run("2021-06-15", "RUNNING", 1),
            _run("2021-07-15", "COMPLETED", 1),
            _run("2021-07-15", "FAILED", 5),  # trained once: trained
            _run("2021-08-15", "SCHEDULED", 1),
        ]
    )
    assert sorted(found.completed) == [date(2021, 3, 15), date(2021, 7, 15)]
    assert sorted(found.in_flight) == [date(2021, 6, 15), date(2021, 8, 15)]
    assert found.to_run(days) == [date(2021, 4, 15), date(2021, 5, 15)]
    everything = found.to_run(days, "all")  # never a second run of a date in flight
    assert everything == [date(2021, 3, 15), date(2021, 4, 15), date(2021, 5, 15), days[4]]
    assert found.shown(date(2021, 7, 15)).state == "COMPLETED"
    assert found.shown(date(2021, 4, 15)).state == "FAILED"
    assert found.shown(date(2021, 9, 15)) is None


def test_a_schedule_or_event_run_skips_a_trained_date_or_an_earlier_run():
    day = date(2021, 9, 15)
    done = trained.answer([_run("2021-09-15", "COMPLETED", 1, "a")])
    skip = trained.skip_for(done, day, "me", T0)
    assert skip is not None
    assert skip.trained
    assert "already trained" in skip.message
    earlier = trained.answer([_run("2021-09-15", "RUNNING", 1, "a", started=1)])
    skip = trained.skip_for(earlier, day, "me", T0 + timedelta(minutes=2))
    assert skip is not None
    assert not skip.trained
    assert trained.skip_for(earlier, day, "me", T0) is None  # I started first: I train
    tie = trained.answer([_run("2021-09-15", "RUNNING", 1, "b", started=1)])
    same = T0 + timedelta(minutes=1)
    assert trained.skip_for(tie, day, "a", same) is None  # ties: the smaller id trains
    assert trained.skip_for(tie, day, "c", same) is not None
    waiting = trained.answer([_run("2021-09-15", "SCHEDULED", 1, "a")])
    assert trained.skip_for(waiting, day, "me", T0) is None  # not started: I train
    mine = trained.answer([_run("2021-09-15", "RUNNING", 1, "me", started=0)], exclude="me")
    assert trained.skip_for(mine, day, "me", T0) is None


@pytest.mark.parametrize("text", ["", "some", "yes"])
def test_rerun_is_failed_or_all(text):
    with pytest.raises(BadInput, match="RERUN"):
        trained.parse_rerun(text)
    assert trained.parse_rerun(" ALL ") == "all"


def test_a_run_not_started_yet_is_dated_by_its_parameter_else_its_scheduled_day():
    from types import SimpleNamespace

    when = datetime(2021, 9, 15, 9, 0)
    by_trigger = SimpleNamespace(parameters={"date": "2021-10-15"}, expected_start_time=when)
    by_schedule = SimpleNamespace(parameters={}, expected_start_time=when)
    broken = SimpleNamespace(parameters={"date": "soon"}, expected_start_time=when)
    assert trained.waiting_date(by_trigger) == date(2021, 10, 15)
    assert trained.waiting_date(by_schedule) == date(2021, 9, 15)
    assert trained.waiting_date(broken) is None
