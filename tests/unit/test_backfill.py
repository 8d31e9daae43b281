"""Backfill logic without servers: dates of a range, what to run, overlap, summary files."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta

import pytest

from fhvlab.errors import BadInput
from fhvlab.orchestration import backfill as bf
from fhvlab.orchestration import trained
from tests.conftest import max_overlap

CRON = "0 9 15 * *"
T0 = datetime(2026, 1, 1, 12, 0)


def test_course_cron_gives_the_15th_of_each_month_both_ends_included():
    dates = bf.plan_dates("2021-03-15", "2021-12-15", CRON, "UTC")
    assert [d.isoformat() for d in dates] == [f"2021-{m:02d}-15" for m in range(3, 13)]


def test_dates_follow_the_time_zone_of_the_cron():
    # 23:30 in Tokyo on the 14th is still the 14th there (14:30 UTC).
    dates = bf.plan_dates("2021-03-01", "2021-04-30", "30 23 14 * *", "Asia/Tokyo")
    assert [d.isoformat() for d in dates] == ["2021-03-14", "2021-04-14"]


def test_a_cron_firing_several_times_a_day_gives_each_day_once():
    dates = bf.plan_dates("2021-03-01", "2021-03-03", "0 * * * *", "UTC")
    assert [d.day for d in dates] == [1, 2, 3]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2021-3-15", "2021-12-15", "FROM: date '2021-3-15' is not in the expected format"),
        ("2021-03-15", "2021-13-01", "TO: date '2021-13-01' is not a real calendar day"),
        ("2021-12-15", "2021-03-15", "FROM=2021-12-15 is after TO=2021-03-15"),
        ("2021-03-16", "2021-04-14", "no date in 2021-03-16..2021-04-14"),
        ("2000-01-01", "2011-01-01", "more than 120 dates"),
        ("", "2021-01-01", "FROM and TO are both required"),
    ],
)
def test_bad_ranges_are_refused(start, end, message):
    with pytest.raises(BadInput, match=message.replace(".", r"\.").replace("(", r"\(")):
        bf.plan_dates(start, end, CRON, "UTC")


def test_exactly_120_dates_are_accepted():
    assert len(bf.plan_dates("2000-01-01", "2009-12-31", CRON, "UTC")) == 120


def test_bad_cron_or_time_zone_is_one_line():
    with pytest.raises(BadInput, match="is not a valid schedule"):
        bf.plan_dates("2021-01-01", "2021-12-31", "61 * * * *", "UTC")
    with pytest.raises(BadInput, match="is not a valid schedule"):
        bf.plan_dates("2021-01-01", "2021-12-31", CRON, "Mars/Olympus")


@pytest.mark.parametrize("text", ["0", "-1", "two", "65", ""])
def test_concurrency_must_be_a_small_whole_number(text):
    with pytest.raises(BadInput, match="CONCURRENCY"):
        bf.parse_concurrency(text)


def test_max_overlap_counts_intervals_open_at_one_instant():
    def iv(a: int, b: int) -> tuple[datetime, datetime]:
        return T0 + timedelta(seconds=a), T0 + timedelta(seconds=b)

    assert max_overlap([]) == 0
    assert max_overlap([iv(0, 10), iv(5, 15), iv(10, 20)]) == 2  # touching ends: no overlap
    assert max_overlap([iv(0, 10), iv(1, 9), iv(2, 8)]) == 3


def test_summary_rows_csv_and_chart(tmp_path):
    days = [date(2021, 3, 15), date(2021, 4, 15), date(2021, 5, 15)]
    found = trained.answer(
        [
            trained.DateRun(days[0], "COMPLETED", T0, "id-1", seconds=4.25),
            trained.DateRun(days[1], "FAILED", T0, "id-2", seconds=1.0, message="month\n404"),
        ]
    )
    metrics = {days[0]: {"val_rmse": 7.5, "train_rmse": 7.0}, days[1]: {"val_rmse": 1.0}}
    rows = bf.summary_rows(days, found, metrics)
    assert [r["state"] for r in rows] == ["COMPLETED", "FAILED", "NOT RUN"]
    assert rows[0]["val_rmse"] == 7.5
    assert rows[1]["val_rmse"] is None  # a failed run's old metrics file is not its result
    assert rows[1]["message"] == "month 404"
    assert (rows[0]["train_month"], rows[0]["val_month"]) == ("2021-01", "2021-02")
    assert bf.format_row(rows[0]).startswith("2021-03-15  COMPLETED  train 2021-01")
    assert "val RMSE 7.5000  4.2 s" in bf.format_row(rows[0])

    csv_path, png_path = bf.report_paths(tmp_path, days[0], days[-1])
    assert csv_path.name == "backfill-2021-03-15_2021-05-15.csv"
    bf.write_csv(rows, csv_path)
    read = list(csv.DictReader(csv_path.open()))
    assert [r["state"] for r in read] == ["COMPLETED", "FAILED", "NOT RUN"]
    assert read[1]["val_rmse"] == ""
    bf.write_chart(rows, png_path, bf.table_markdown_title(days[0], days[-1], rows))
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [csv_path.name, png_path.name]
    assert "3 dates: 1 COMPLETED, 1 FAILED, 1 NOT RUN" in bf.table_markdown_title(
        days[0], days[-1], rows
    )


def test_not_completed_names_failed_dates_and_those_never_started():
    outcomes = [
        {"date": "2021-03-15", "state": "COMPLETED"},
        {"date": "2021-04-15", "state": "FAILED"},
        ConnectionError("All connection attempts failed"),
    ]
    days = ["2021-03-15", "2021-04-15", "2021-05-15"]
    assert bf.not_completed(days, outcomes) == ["2021-04-15 FAILED", "2021-05-15 NOT RUN"]


def test_the_backfill_line_counts_every_date_of_the_range():
    from types import SimpleNamespace

    from fhvlab.cli.backfill import summary_counts

    days = [date(2021, m, 15) for m in (7, 8, 9, 10)]
    found = trained.answer(
        [
            trained.DateRun(days[1], "COMPLETED", T0),
            trained.DateRun(days[2], "FAILED", T0),
            trained.DateRun(days[3], "RUNNING", T0),
        ]
    )
    done = SimpleNamespace(found=found, to_run=found.to_run(days))
    assert summary_counts(done, "failed") == (
        "2 to run (1 new, 1 again), 1 already trained, 1 running (RERUN=failed)"
    )
    done = SimpleNamespace(found=found, to_run=found.to_run(days, "all"))
    assert summary_counts(done, "all") == (
        "3 to run (1 new, 2 again), 0 already trained, 1 running (RERUN=all)"
    )
