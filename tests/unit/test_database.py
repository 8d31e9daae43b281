import os
import re
from pathlib import Path

import pytest

from fhvlab import settings
from fhvlab.errors import BadInput
from fhvlab.local.database import configured_url, describe, mask, parse_url, server_env
from fhvlab.local.postgres import candidate_dirs, parse_version, unreachable_ancestor
from fhvlab.orchestration import checkout

URL = "postgresql+asyncpg://prefect:s3cr%40t@db.example:5433/lab"


def test_parse_url_splits_and_masks():
    url = parse_url(URL)
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "prefect",
        "s3cr@t",
        "db.example",
        5433,
        "lab",
    )
    assert url.masked == "postgresql+asyncpg://prefect:***@db.example:5433/lab"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("postgres://u:hunter2@h/db", "is not a postgresql+asyncpg:// URL"),
        ("sqlite+aiosqlite:///x.db", "is not a postgresql+asyncpg:// URL"),
        ("postgresql+asyncpg://u:hunter2@h:99999/db", "has a bad port"),
        ("postgresql+asyncpg://u:hunter2@h:5432/", "needs a user, a host and a database"),
        ("postgresql+asyncpg://h:5432/db", "needs a user, a host and a database"),
    ],
)
def test_parse_url_rejects_with_the_password_masked(text, message):
    with pytest.raises(BadInput, match=re.escape(message)) as caught:
        parse_url(text)
    assert "hunter2" not in str(caught.value)


def test_mask_never_shows_a_password_even_in_odd_urls():
    assert mask("postgresql+asyncpg://u:p@ss@h/db") == "postgresql+asyncpg://u:***@h/db"
    assert mask("u:pw@h") == "***@h"
    assert mask("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert mask("no-at-sign") == "no-at-sign"


def test_configured_url_and_server_env():
    assert configured_url({}) == ""
    assert server_env({}) == {}
    assert server_env({"DATABASE_URL": URL}) == {"PREFECT_SERVER_DATABASE_CONNECTION_URL": URL}
    own = {"PREFECT_SERVER_DATABASE_CONNECTION_URL": URL}
    assert configured_url(own) == URL
    assert describe(Path("/h"), {}) == "SQLite /h/prefect.db"
    assert "s3cr" not in describe(Path("/h"), {"DATABASE_URL": URL})


def test_parse_version():
    assert parse_version("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") == (15, 18)
    assert parse_version("pg_ctl (PostgreSQL) 16.4") == (16, 4)
    assert parse_version("pg_ctl (PostgreSQL) 17devel") == (17,)
    assert parse_version("something else") is None


def test_pg_bin_alone_is_searched_when_given(tmp_path):
    assert candidate_dirs(str(tmp_path), "/usr/bin") == [tmp_path]
    (tmp_path / "pg_ctl").touch()
    assert candidate_dirs("", str(tmp_path))[0] == tmp_path


def test_unreachable_ancestor(tmp_path):
    closed = tmp_path / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    stranger = os.getuid() + 12345
    assert unreachable_ancestor(inner, os.getuid(), set()) is None
    if tmp_path.stat().st_mode & 0o001:
        assert unreachable_ancestor(inner, stranger, set()) == closed
    closed.chmod(0o711)
    blocked = unreachable_ancestor(inner, stranger, set())
    assert blocked is None or blocked in tmp_path.parents or blocked == tmp_path


def test_enter_checkout_goes_to_the_imported_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert checkout.enter_checkout() == {"directory": str(settings.ROOT)}
    assert Path.cwd() == settings.ROOT
