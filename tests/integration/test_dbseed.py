"""A new SQLite Prefect home starts from a copy of Prefect's migrated database (#19)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from fhvlab.errors import LabError
from fhvlab.local import dbseed

pytestmark = pytest.mark.integration


def _alembic_version(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("select version_num from alembic_version").fetchone()[0]


def test_a_new_home_gets_the_migrated_database_once(tmp_path):
    home = tmp_path / "home"
    assert dbseed.seed(home, {"PATH": "/usr/bin:/bin"}) is True
    db = home / "prefect.db"
    template = dbseed.template_path()
    assert template.is_file()
    assert _alembic_version(db) == _alembic_version(template)  # Prefect's schema, at head
    assert not list(home.glob(".prefect.db.*"))  # no temporary file left beside it
    before = db.stat().st_mtime_ns
    assert dbseed.seed(home, {}) is False  # an existing database is never replaced
    assert db.stat().st_mtime_ns == before


def test_a_deleted_databases_leftover_log_is_not_replayed_into_the_copy(tmp_path):
    home = tmp_path / "home"
    assert dbseed.seed(home, {}) is True
    db = home / "prefect.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:  # as a server leaves it when killed
        conn.execute("pragma journal_mode=wal")
        conn.execute("pragma wal_autocheckpoint=0")
        conn.execute("create table left_behind (x)")
        conn.commit()
        wal = (home / "prefect.db-wal").read_bytes()
    db.unlink()
    (home / "prefect.db-wal").write_bytes(wal)
    assert dbseed.seed(home, {}) is True
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master")}
    assert "left_behind" not in tables
    assert "alembic_version" in tables


def test_postgresql_homes_are_left_alone(tmp_path):
    url = "postgresql+asyncpg://prefect:secret@127.0.0.1:5432/prefect"
    assert dbseed.seed(tmp_path, {"DATABASE_URL": url}) is False
    assert not (tmp_path / "prefect.db").exists()


def test_a_failed_migration_names_the_command_and_leaves_no_template(tmp_path):
    broken = {"PREFECT_LOGGING_LEVEL": "NOT-A-LEVEL", "PATH": "/usr/bin:/bin"}
    template = tmp_path / "t.db"
    with pytest.raises(LabError, match=r"prefect server database upgrade -y"):
        dbseed.build_template(template, broken)
    assert not template.exists()
    assert list(tmp_path.iterdir()) == []
