"""A cohort on one SQLite server is told so (fhvlab.local.cohort): the decision, and the
count of ONLINE workers read from the server's pools."""

from __future__ import annotations

import pytest

from fhvlab.local.cohort import WORKER_LIMIT, crowd_warning, online_workers


@pytest.mark.parametrize(
    ("on_sqlite", "workers", "warned"),
    [
        (True, 0, False),
        (True, 1, False),
        (True, WORKER_LIMIT, False),  # a student: make up's worker, make worker, a 2nd machine
        (True, WORKER_LIMIT + 1, True),
        (True, 20, True),
        (False, 20, False),  # PostgreSQL: a class is fine
        (None, 20, False),  # a server the lab did not start: its database is unknown here
    ],
)
def test_only_a_sqlite_server_with_more_than_a_few_workers_is_warned(on_sqlite, workers, warned):
    line = crowd_warning(on_sqlite, workers)
    assert bool(line) == warned
    if warned:
        assert "\n" not in line
        assert line.startswith(f"{workers} workers poll this server and it runs on SQLite")
        assert "make postgres" in line


def _server(pools: dict[str, list[str]] | None, fail: str = ""):
    """A fake `post(path, body)`: pools -> their workers' statuses; None for `fail`'s path."""
    sent = []

    def post(path, body):
        sent.append((path, body))
        if pools is None or path == fail:
            return None
        if path == "/work_pools/filter":
            return [{"name": name} for name in pools]
        name = path.split("/")[2].replace("%20", " ")
        return [{"name": f"w{i}", "status": s} for i, s in enumerate(pools[name])]

    return post, sent


def test_online_workers_are_counted_over_every_pool():
    post, sent = _server({"fhv-pool": ["ONLINE", "ONLINE", "OFFLINE"], "other pool": ["ONLINE"]})
    assert online_workers(post) == 3
    assert sent[1] == (
        "/work_pools/fhv-pool/workers/filter",
        {"workers": {"status": {"any_": ["ONLINE"]}}},
    )
    assert sent[2][0] == "/work_pools/other%20pool/workers/filter"


@pytest.mark.parametrize("fail", ["/work_pools/filter", "/work_pools/b/workers/filter"])
def test_a_server_that_does_not_answer_gives_no_count(fail):
    post, _ = _server({"a": ["ONLINE"], "b": ["ONLINE"]}, fail=fail)
    assert online_workers(post) is None
    assert online_workers(_server(None)[0]) is None


@pytest.mark.parametrize(
    ("lab_server", "database", "online", "joining", "warned"),
    [
        (True, "SQLite /x/prefect.db", WORKER_LIMIT, 1, True),  # `make worker`: counts itself
        (True, "SQLite /x/prefect.db", WORKER_LIMIT, 0, False),  # `make up`: its worker is online
        (True, "PostgreSQL postgresql+asyncpg://prefect:***@127.0.0.1:5432/prefect", 20, 0, False),
        (False, "SQLite /x/prefect.db", 20, 0, False),  # another's server: database unknown
        (True, "SQLite /x/prefect.db", None, 1, False),  # the server does not say
    ],
)
def test_make_up_and_make_worker_warn_on_stderr_in_one_line(
    monkeypatch, capsys, lab_server, database, online, joining, warned
):
    from fhvlab.cli import cohort

    monkeypatch.setattr(cohort.record, "is_lab_server", lambda url: lab_server)
    monkeypatch.setattr(cohort.database, "started_on", lambda home: database)
    monkeypatch.setattr(cohort, "online_workers", lambda post: online)
    cohort.warn_if_crowded("http://127.0.0.1:4200/api", joining=joining)
    out, err = capsys.readouterr()
    assert out == ""
    if warned:
        assert err.splitlines() == [f"warning: {crowd_warning(True, WORKER_LIMIT + 1)}"]
    else:
        assert err == ""
