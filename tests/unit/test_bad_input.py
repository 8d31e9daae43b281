"""Bad knobs at the command-line edge, in this process: one `error:` line, exit 1, nothing
created. The `make` wiring of each family is checked once, by a smoke test beside its
integration tests (test_download, test_backfill, test_orchestration, test_train, test_watch);
the parsers themselves by test_months, test_backfill, test_server and test_watch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import one_error


@pytest.fixture
def knobs(lab_env: dict[str, str]) -> dict[str, str]:
    """Every lab folder in tmp_path (none exists yet) and a DATA_URL nothing answers."""
    return {**lab_env, "DATA_URL": "http://127.0.0.1:9/trip-data"}  # a request would fail


def _nothing_created(knobs: dict[str, str]) -> None:
    assert not any(Path(knobs[k]).exists() for k in ("PREFECT_HOME", "DATA_DIR", "ARTIFACTS_DIR"))


# `make data MONTHS=... / DATE=...` (was: one `make data` per case in test_download)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--months", "2021-13"), "YYYY-MM"),
        (("--months", "21-08"), "YYYY-MM"),
        (("--months", "yesterday"), "YYYY-MM"),
        (("--months", "2021-06", "2021-13"), "YYYY-MM"),  # refused before the good one is fetched
        (("--date", "yesterday"), "YYYY-MM-DD"),
        (("--date", "2021-02-30"), "not a real calendar day"),
    ],
)
def test_malformed_month_or_date_fails_before_any_request(cli, knobs, args, expected):
    line = one_error(cli("data", *args, env=knobs))
    assert expected in line
    assert "cannot fetch" not in line
    _nothing_created(knobs)


# `make backfill FROM=... TO=...` runs `backfill --check` first (was: four `make backfill`)
@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2021-3-15", "2021-06-15", "error: FROM: date '2021-3-15' is not in"),
        ("2021-06-15", "2021-03-15", "error: FROM=2021-06-15 is after TO=2021-03-15"),
        ("2021-03-16", "2021-04-14", "error: no date in 2021-03-16..2021-04-14"),
        ("2000-01-01", "2011-01-01", "has more than 120 dates"),
        ("", "2021-06-15", "FROM and TO are both required"),
    ],
)
def test_bad_backfill_range_is_one_line_and_creates_nothing(cli, knobs, start, end, message):
    result = cli("backfill", "--check", "--from", start, "--to", end, env=knobs)
    assert message in one_error(result)
    _nothing_created(knobs)


def test_bad_backfill_concurrency_is_one_line(cli, knobs):
    args = ("--from", "2021-03-15", "--to", "2021-06-15", "--concurrency", "two")
    assert "CONCURRENCY" in one_error(cli("backfill", "--check", *args, env=knobs))
    _nothing_created(knobs)


# `make server PREFECT_PORT=...` (was: two `make server`)
@pytest.mark.parametrize("port", ["abc", "70000", "0"])
def test_bad_port_is_a_clear_error(cli, knobs, port):
    line = one_error(cli("server", "start", env={**knobs, "PREFECT_PORT": port}))
    assert f"PREFECT_PORT='{port}' is not a port number" in line
    _nothing_created(knobs)


# `make config API_URL=...` (was: three `make config`)
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("not-a-url", "is not a URL of a Prefect API"),
        ("ftp://host/api", "is not a URL of a Prefect API"),
        ("http://127.0.0.1:4200", "must end in /api"),
        ("http://127.0.0.1:99999/api", "is not a URL of a Prefect API"),
    ],
)
def test_bad_api_url_is_a_clear_error_and_writes_no_profile(cli, knobs, url, why):
    line = one_error(cli("config", env={**knobs, "API_URL": url}))
    assert f"API_URL={url!r}" in line
    assert why in line
    assert not (Path(knobs["PREFECT_HOME"]) / "profiles.toml").exists()


# `make watch WATCH_AHEAD=... WATCH_FROM=...` runs `watch --check` first
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--ahead", "zero"), "error: WATCH_AHEAD='zero' is not a whole number >= 1 (e.g. 3)"),
        (("--ahead", "0"), "error: WATCH_AHEAD='0' is not a whole number >= 1 (e.g. 3)"),
        (("--ahead", "3", "--from", "2021-13"), "YYYY-MM"),
    ],
)
def test_bad_watch_knobs_are_one_line(cli, knobs, args, expected):
    line = one_error(cli("watch", "--check", *args, env=knobs))
    assert line == expected or expected in line
    _nothing_created(knobs)


def test_a_malformed_knob_in_the_environment_is_one_line(cli, knobs):
    line = one_error(cli("knobs", env={**knobs, "WATCH_TIMEOUT": "soon"}))
    assert line.startswith("error: WATCH_TIMEOUT='soon': ")
    assert line.endswith("(see lab.mk)")
