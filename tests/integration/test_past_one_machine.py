"""Past one machine: the lab's PostgreSQL and bad database input.

The module on PostgreSQL end to end (a worker in another checkout, PostgreSQL restarted
under a running server) is the PostgreSQL leg of tests/integration/test_orchestration.py.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from tests.conftest import free_port, run_make

pytestmark = pytest.mark.integration

FLOW = "fhv-duration-training"


def _one_error(result, *needles: str) -> str:
    """The single `error:` line of a failed make, containing each needle."""
    assert result.returncode != 0, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def pg_dir():
    """An empty folder for a cluster, one the unprivileged PostgreSQL user can enter."""
    folder = Path(tempfile.mkdtemp(prefix="fhvlab-pgdir-"))
    folder.chmod(0o755)
    try:
        yield folder / "pg"
    finally:
        run_make("postgres-stop", env={"PG_DIR": str(folder / "pg")}, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def _nothing_started(env) -> None:
    home = Path(env["PREFECT_HOME"])
    assert not (home / "server.pid").exists()
    assert not (home / "server.log").exists()
    assert not (home / "prefect.db").exists()


# ---- make postgres -----------------------------------------------------------------------


def test_make_postgres_again_changes_nothing(postgres_cluster):
    again = run_make("postgres", env=postgres_cluster)
    assert again.returncode == 0, again.stderr
    assert "postgres: already running: PostgreSQL " in again.stdout
    assert f"export DATABASE_URL='{postgres_cluster['DATABASE_URL']}'" in again.stdout
    password_file = Path(postgres_cluster["PG_DIR"]) / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    # The password shows in the DATABASE_URL line and nowhere else.
    assert [line for line in again.stdout.splitlines() if password in line] == [
        f"export DATABASE_URL='{postgres_cluster['DATABASE_URL']}'"
    ]

    async def trgm() -> int:
        import asyncpg

        url = postgres_cluster["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname='pg_trgm'")
        finally:
            await conn.close()

    assert asyncio.run(trgm()) == 1


def test_make_postgres_on_a_port_another_program_holds(pg_dir):
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = run_make("postgres", f"PG_PORT={port}", env={"PG_DIR": str(pg_dir)})
    _one_error(
        result, f"port {port} on 127.0.0.1 is taken by another program", f"PG_PORT={port + 1}"
    )
    assert not pg_dir.exists()


def test_make_postgres_without_usable_binaries(tmp_path, pg_dir):
    missing = run_make("postgres", env={"PG_DIR": str(pg_dir), "PG_BIN": str(tmp_path / "no")})
    _one_error(missing, "(initdb, pg_ctl) are not in PG_BIN=", "apt-get install postgresql")
    old = tmp_path / "old-bin"
    old.mkdir()
    for name in ("initdb", "postgres", "pg_ctl"):
        (old / name).write_text("#!/bin/sh\necho 'pg_ctl (PostgreSQL) 13.4'\n")
        (old / name).chmod(0o755)
    too_old = run_make("postgres", env={"PG_DIR": str(pg_dir), "PG_BIN": str(old)})
    _one_error(too_old, "PostgreSQL 13.4 in ", "older than the 14.9 Prefect needs")
    assert not pg_dir.exists()


# ---- bad DATABASE_URL: one line, password masked, no server started -------------------------


def test_malformed_database_url(prefect_lab):
    result = run_make("server", "DATABASE_URL=postgres://prefect:hunter2@h/db", env=prefect_lab)
    line = _one_error(result, "DATABASE_URL='postgres://prefect:***@h/db'", "postgresql+asyncpg")
    assert "hunter2" not in result.stdout + result.stderr + line
    _nothing_started(prefect_lab)


def test_wrong_password_and_database_down(prefect_lab, pg_database_url):
    user, rest = pg_database_url.split("@", 1)
    wrong = f"{user.rsplit(':', 1)[0]}:not-the-password@{rest}"
    result = run_make("server", env={**prefect_lab, "DATABASE_URL": wrong})
    _one_error(result, "rejected the password of user 'prefect'", "prefect:***@")
    assert "not-the-password" not in result.stdout + result.stderr
    _nothing_started(prefect_lab)

    down = f"{user}@127.0.0.1:{free_port()}/{rest.rsplit('/', 1)[1]}"
    result = run_make("server", env={**prefect_lab, "DATABASE_URL": down})
    _one_error(result, "no PostgreSQL answers at 127.0.0.1:", "make postgres")
    assert user.rsplit(":", 1)[1] not in result.stdout + result.stderr
    _nothing_started(prefect_lab)


def test_role_that_cannot_create_pg_trgm(prefect_lab, postgres_cluster):
    """A database where the role may not CREATE (a managed database set up by someone else)."""
    import asyncpg

    socket_dir = str(Path(postgres_cluster["PG_DIR"]) / "run")
    port = int(postgres_cluster["PG_PORT"])
    name = f"notrgm_{port}"

    async def admin(*sql: str) -> None:
        conn = await asyncpg.connect(host=socket_dir, port=port, user="postgres")
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"))
    try:
        url = postgres_cluster["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
        result = run_make("server", env={**prefect_lab, "DATABASE_URL": url})
        _one_error(result, "may not create the pg_trgm extension", "CREATE EXTENSION pg_trgm")
        _nothing_started(prefect_lab)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
