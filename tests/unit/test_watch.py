"""The watch flow's plain logic: which months to ask about, what counts as published,
and the bookkeeping of announced months (no Prefect, no network)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fhvlab.data.months import Month
from fhvlab.errors import BadInput
from fhvlab.orchestration import watch as w

AUG = Month(2021, 8)


def _probe(**kw) -> w.Probe:
    fields = {
        "month": AUG,
        "url": "http://x/trip-data/fhv_tripdata_2021-08.parquet",
        "method": "HEAD",
        "status": 200,
        "size": 20_000_000,
        "last_modified": "Tue, 21 Sep 2021 10:00:00 GMT",
        "content_type": "binary/octet-stream",
    }
    return w.Probe(**{**fields, **kw})


@pytest.mark.parametrize(
    ("month", "day"),
    [(Month(2021, 8), date(2021, 9, 15)), (Month(2021, 12), date(2022, 1, 15))],
)
def test_training_date_is_the_15th_of_the_month_after(month, day):
    assert w.training_date(month) == day


def test_newest_known_takes_the_newest_of_data_dir_announced_and_watch_from():
    local = [Month(2021, 6), Month(2021, 7)]
    assert w.newest_known(local, [], None) == Month(2021, 7)
    assert w.newest_known(local, [AUG], None) == AUG
    assert w.newest_known(local, [], Month(2021, 10)) == Month(2021, 10)
    assert w.newest_known(local, [AUG], Month(2021, 1)) == AUG
    # Once months were announced, DATA_DIR no longer moves the start (a training run may
    # have downloaded a month no watch announced yet).
    assert w.newest_known([*local, Month(2021, 9)], [AUG], None) == AUG
    assert w.newest_known([], [], None) is None


def test_months_to_probe_are_the_next_ahead_months_across_a_year_end():
    assert w.months_to_probe(Month(2021, 11), 3) == [
        Month(2021, 12),
        Month(2022, 1),
        Month(2022, 2),
    ]
    assert w.months_to_probe(AUG, 1) == [Month(2021, 9)]


def test_months_to_probe_refuses_no_start_and_a_bad_ahead():
    with pytest.raises(w.WatchError, match="WATCH_FROM is empty"):
        w.months_to_probe(None, 3)
    with pytest.raises(w.WatchError, match="WATCH_AHEAD=0"):
        w.months_to_probe(AUG, 0)


@pytest.mark.parametrize("text", ["0", "-1", "x", "", "2.5"])
def test_parse_ahead_refuses_what_is_not_a_whole_number_from_1(text):
    with pytest.raises(BadInput, match="WATCH_AHEAD="):
        w.parse_ahead(text)


def test_parse_ahead():
    assert w.parse_ahead(" 3 ") == 3
    assert w.parse_ahead(5) == 5


def test_local_months_reads_only_month_files(tmp_path: Path):
    (tmp_path / "fhv_tripdata_2021-06.parquet").write_bytes(b"x" * 10)
    (tmp_path / "fhv_tripdata_2021-07.parquet").write_bytes(b"x" * 20)
    (tmp_path / ".fhv_tripdata_2021-08.parquet.abc.part").write_bytes(b"x")
    (tmp_path / "README.md").write_text("hi")
    assert w.local_months(tmp_path) == {Month(2021, 6): 10, Month(2021, 7): 20}
    assert w.local_months(tmp_path / "missing") == {}


def test_min_size_is_a_fraction_of_the_smallest_local_month_with_a_floor():
    assert w.min_size([20_000_000, 30_000_000]) == 2_000_000
    assert w.min_size([]) == w.MIN_BYTES
    assert w.min_size([1000]) == w.MIN_BYTES


def test_judge_published():
    assert w.judge(_probe(), 2_000_000) == w.Verdict("published")
    ranged = _probe(method="GET", status=206, first_bytes=b"PAR1\x15\x04")
    assert w.judge(ranged, 2_000_000).kind == "published"


@pytest.mark.parametrize("status", [403, 404])
def test_judge_not_published(status):
    assert w.judge(_probe(status=status, size=None), 1).kind == "not-published"


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (_probe(content_type="text/html; charset=utf-8", size=5000), "HTML page"),
        (_probe(method="GET", content_type="", first_bytes=b"  <!DOCTYPE html>"), "HTML page"),
        (_probe(method="GET", first_bytes=b"GIF89a"), "not a parquet file"),
        (_probe(size=50_000), "50,000 bytes, far below a real month (at least 2,000,000"),
        (_probe(size=None), "without a size"),
    ],
)
def test_judge_rejects_html_non_parquet_and_tiny_bodies(probe, reason):
    verdict = w.judge(probe, 2_000_000)
    assert verdict.kind == "rejected"
    assert reason in verdict.reason


def test_event_resource_and_payload_carry_what_the_trigger_needs():
    resource = w.event_resource(_probe(), already_trained=False)
    assert resource["prefect.resource.id"] == "fhv.month.2021-08"
    assert resource["fhv.trained"] == "false"
    assert resource["fhv.training-date"] == "2021-09-15"
    assert w.event_resource(_probe(), already_trained=True)["fhv.trained"] == "true"
    payload = w.event_payload(_probe(), already_trained=False)
    assert payload["month"] == "2021-08"
    assert payload["size"] == 20_000_000
    assert payload["last_modified"] == "Tue, 21 Sep 2021 10:00:00 GMT"
    assert payload["training_date"] == "2021-09-15"


def test_event_id_is_the_months_own():
    assert w.event_id(AUG) == w.event_id(Month(2021, 8))  # any run, any time: the same id
    assert w.event_id(AUG) != w.event_id(Month(2021, 9))
    assert str(w.event_id(AUG)) == "74de03d9-f8ae-55ef-af7e-84fdd5084e52"


def test_month_of_resource():
    assert w.month_of_resource("fhv.month.2021-08") == AUG
    assert w.month_of_resource("fhv.month.nope") is None
    assert w.month_of_resource("prefect.flow-run.123") is None


def test_summary_lists_each_month_asked_and_its_outcome():
    found = w.Findings(
        [_probe()], _probe(month=Month(2021, 9), status=404), w.Verdict("not-published", "HTTP 404")
    )
    text = w.summary_markdown(["2021-08", "2021-09", "2021-10"], found)
    assert "| 2021-08 | 20,000,000 bytes (HEAD) | announced |" in text
    assert "| 2021-09 | HTTP 404 | not published yet |" in text
    assert "| 2021-10 | not asked |" in text


def test_checked_line_says_where_the_watch_stopped():
    found = w.Findings(
        [_probe()],
        _probe(month=Month(2021, 9), status=404, url="http://x/9"),
        w.Verdict("not-published", "HTTP 404"),
    )
    payload = w.checked_payload(["2021-08", "2021-09"], found)
    assert payload["announced"] == ["2021-08"]
    assert w.checked_line(payload) == "2021-09: not published yet (HTTP 404) http://x/9"
    rejected = w.Findings([], _probe(status=200, url="http://x/8"), w.Verdict("rejected", "HTML"))
    assert w.checked_line(w.checked_payload(["2021-08"], rejected)) == (
        "2021-08: not announced (HTML) http://x/8"
    )
    everything = w.checked_payload(["2021-08"], w.Findings([_probe()]))
    assert w.checked_line(everything) == "asked 2021-08: all published"


def test_make_events_pairs_each_announcement_with_the_first_run_after_it():
    from datetime import UTC, datetime

    from fhvlab.orchestration import trained

    def run(name: str, day: str, created: str):
        when = datetime.fromisoformat(created).replace(tzinfo=UTC)
        return trained.DateRun(date.fromisoformat(day), "COMPLETED", when, name=name)

    runs = [
        run("late", "2021-09-15", "2021-09-21T10:05:00"),
        run("before", "2021-09-15", "2021-09-01T00:00:00"),
        run("other", "2021-10-15", "2021-09-21T10:00:01"),
    ]
    event = {"occurred": "2021-09-21T10:00:00Z"}
    assert trained.first_after(runs, "2021-09-15", event).name == "late"
    assert trained.first_after(runs, "2022-01-15", event) is None
