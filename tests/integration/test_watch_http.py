"""The watch's questions to DATA_URL over real HTTP on 127.0.0.1 (no Prefect): HEAD, the
ranged GET where HEAD is refused, unpublished months, HTML and tiny answers, 5xx and an
unreachable URL. Fast: one in-process HTTP server per test."""

from __future__ import annotations

import pytest

from fhvlab.data.months import Month
from fhvlab.orchestration import watch as w
from tests.conftest import free_port
from tests.fhvhttp import Route, running_server

pytestmark = pytest.mark.integration

JUL, AUG, SEP = Month(2021, 7), Month(2021, 8), Month(2021, 9)
LAST_MODIFIED = "Tue, 21 Sep 2021 10:00:00 GMT"


@pytest.fixture
def http(fhv_files):
    with running_server() as server:
        july = fhv_files["2021-07"]
        server.serve_file(
            "fhv_tripdata_2021-08.parquet", july, last_modified=LAST_MODIFIED
        )  # a month's bytes under the next month's name
        yield server


@pytest.mark.parametrize("allow_head", [True, False])
def test_published_month_by_head_or_ranged_get(http, fhv_files, allow_head):
    http.allow_head = allow_head
    with w.make_session() as session:
        probe = w.probe_month(session, http.url, AUG)
    assert probe.method == ("HEAD" if allow_head else "GET")
    assert probe.status == 200
    assert probe.size == fhv_files["2021-07"].stat().st_size
    assert probe.last_modified == LAST_MODIFIED
    assert w.judge(probe, w.min_size([probe.size])).kind == "published"
    if not allow_head:
        assert probe.first_bytes.startswith(b"PAR1")


def test_find_published_stops_at_the_first_month_not_out(http):
    with w.make_session() as session:
        found = w.find_published(session, http.url, [AUG, SEP, Month(2021, 10)], 1000)
    assert [p.month for p in found.published] == [AUG]
    assert found.stopped_at is not None
    assert found.stopped_at.month == SEP
    assert found.stop == w.Verdict("not-published", "HTTP 404")
    assert "/trip-data/fhv_tripdata_2021-10.parquet" not in http.hits  # never asked


def test_html_and_tiny_answers_are_rejected(http):
    http.routes["/trip-data/fhv_tripdata_2021-09.parquet"] = Route(
        body=b"<html><body>Access denied</body></html>" * 200, content_type="text/html"
    )
    with w.make_session() as session:
        found = w.find_published(session, http.url, [AUG, SEP], 1000)
        tiny = w.probe_month(session, http.url, AUG)
    assert [p.month for p in found.published] == [AUG]
    assert found.stop is not None
    assert found.stop.kind == "rejected"
    assert "HTML page" in found.stop.reason
    verdict = w.judge(tiny, tiny.size * 20)
    assert verdict.kind == "rejected"
    assert "far below a real month" in verdict.reason


def test_5xx_fails_naming_the_url(http):
    http.routes["/trip-data/fhv_tripdata_2021-09.parquet"] = Route(fail_first=99)
    with w.make_session(backoff=0.01) as session, pytest.raises(w.WatchError) as failed:
        w.probe_month(session, http.url, SEP)
    assert str(failed.value) == (
        f"DATA_URL answers HTTP 503: {http.url}/fhv_tripdata_2021-09.parquet"
    )


def test_unreachable_url_fails_in_one_line_naming_it():
    url = f"http://127.0.0.1:{free_port()}/trip-data"
    with w.make_session(backoff=0.01) as session, pytest.raises(w.WatchError) as failed:
        w.probe_month(session, url, SEP)
    message = str(failed.value)
    assert message.startswith(f"cannot reach DATA_URL: {url}/fhv_tripdata_2021-09.parquet (")
    assert "Connection refused" in message
    assert "\n" not in message
