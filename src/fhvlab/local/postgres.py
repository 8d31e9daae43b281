"""`make postgres` / `make postgres-stop`: a PostgreSQL cluster of the lab's own, under env/.

Started from the PostgreSQL binaries on the machine (`initdb`, `pg_ctl`), listening on
127.0.0.1 only, with a role and a database `prefect` (owner `prefect`) and `pg_trgm`
installed. The role's password is generated once and kept in a file only the user can read
(PG_DIR/password); the only place it is shown is the DATABASE_URL line `make postgres` prints.

PostgreSQL refuses to run as root. When the lab runs as root (a container, a CI machine),
the cluster's files belong to an unprivileged system user (`postgres` when it exists, else
`nobody`) and `initdb`/`pg_ctl` run as that user; nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fhvlab import settings
from fhvlab.errors import BadInput
from fhvlab.local.database import SCHEME
from fhvlab.local.pgbin import (  # noqa: F401  (candidate_dirs, parse_version: tests)
    Binaries,
    PostgresError,
    candidate_dirs,
    find_binaries,
    install_hint,
    parse_version,
)
from fhvlab.local.server import parse_port, port_in_use

ROLE = "prefect"
DATABASE = "prefect"
SUPERUSER = "postgres"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Cluster:
    """Where the lab's cluster lives (PG_DIR, default env/postgres)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").is_file()


# ---- running as an unprivileged user when the lab runs as root ------------------------


@dataclass(frozen=True)
class Owner:
    """The OS user the cluster runs as (None fields: the current user)."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None


def cluster_owner() -> Owner:
    """The current user, or `postgres` / `nobody` when running as root."""
    if os.geteuid() != 0:
        return Owner()
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return Owner(name, entry.pw_uid, entry.pw_gid)
    raise PostgresError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


def unreachable_ancestor(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first folder on the way to `path` that user `uid` may not enter, or None."""
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            return None  # created later by us, with the right owner
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


def _run(
    owner: Owner, cmd: list[str], cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the cluster's owner; PostgresError with its output if asked."""
    extra = {}
    if owner.uid is not None:
        extra = {"user": owner.uid, "group": owner.gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    if owner.name:
        env.update(HOME=str(cwd), USER=owner.name, LOGNAME=owner.name)
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, **extra
    )
    if check and done.returncode != 0:
        detail = " ".join((done.stderr or done.stdout).split())[:400]
        raise PostgresError(f"{Path(cmd[0]).name} failed: {detail}")
    return done


def _make_dir(path: Path, owner: Owner, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if owner.uid is not None:
        os.chown(path, owner.uid, owner.gid)
    os.chmod(path, mode)


# ---- the cluster ----------------------------------------------------------------------


def is_running(cluster: Cluster, pg: Binaries, owner: Owner) -> bool:
    """Whether the cluster's postmaster is up (`pg_ctl status`)."""
    if not cluster.initialized:
        return False
    done = _run(owner, [pg("pg_ctl"), "status", "-D", str(cluster.data)], cluster.root, False)
    return done.returncode == 0


def running_port(cluster: Cluster) -> int | None:
    """The port the running postmaster listens on (line 4 of postmaster.pid)."""
    try:
        lines = (cluster.data / "postmaster.pid").read_text().splitlines()
        return int(lines[3])
    except (OSError, IndexError, ValueError):
        return None


def _init(cluster: Cluster, pg: Binaries, owner: Owner) -> None:
    """initdb into a temporary folder, then rename it: never a half-made cluster."""
    tmp = cluster.root / ".data.initdb"
    shutil.rmtree(tmp, ignore_errors=True)
    _make_dir(tmp, owner, 0o700)
    try:
        _run(
            owner,
            [
                pg("initdb"),
                "-D",
                str(tmp),
                "-U",
                SUPERUSER,
                "--auth-local=trust",  # the socket folder is the owner's alone (0700)
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            cluster.root,
        )
        with (tmp / "postgresql.conf").open("a") as conf:
            conf.write("\n# the lab's settings (written by `make postgres` at each start)\n")
            conf.write("include_if_exists = 'lab.conf'\n")
        os.replace(tmp, cluster.data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_lab_conf(cluster: Cluster, port: int, owner: Owner) -> None:
    """listen on 127.0.0.1:port only; the socket in PG_DIR/run."""
    text = (
        f"listen_addresses = '{HOST}'\n"
        f"port = {port}\n"
        f"unix_socket_directories = '{cluster.socket_dir}'\n"
        "log_min_messages = warning\n"
    )
    conf = cluster.data / "lab.conf"
    tmp = cluster.data / ".lab.conf.tmp"
    tmp.write_text(text)
    if owner.uid is not None:
        os.chown(tmp, owner.uid, owner.gid)
    os.replace(tmp, conf)


def _password(cluster: Cluster) -> str:
    """The role's password: read, or generated once into a 0600 file."""
    if cluster.password_file.exists():
        return cluster.password_file.read_text().strip()
    value = secrets.token_hex(16)
    tmp = cluster.password_file.with_name(".password.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.replace(tmp, cluster.password_file)
    return value


def _choose_port(cluster: Cluster, pg_port: str) -> int:
    """PG_PORT if given, else the port used last time, else a free one."""
    if pg_port:
        return parse_port_knob(pg_port)
    try:
        return int(cluster.port_file.read_text().strip())
    except (OSError, ValueError):
        import socket

        with socket.socket() as sock:
            sock.bind((HOST, 0))
            return sock.getsockname()[1]


def parse_port_knob(text: str) -> int:
    """PG_PORT as a port number; BadInput naming PG_PORT otherwise."""
    try:
        return parse_port(text)
    except BadInput:
        raise BadInput(f"PG_PORT={text!r} is not a port number (expected 1-65535)") from None


async def _ensure_objects(cluster: Cluster, port: int, password: str) -> None:
    """Role, database and pg_trgm for Prefect, created only when missing."""
    import asyncpg

    host = str(cluster.socket_dir)
    conn = await asyncpg.connect(host=host, port=port, user=SUPERUSER, database="postgres")
    try:
        literal = password.replace("'", "''")
        if await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", ROLE):
            await conn.execute(f"ALTER ROLE {ROLE} LOGIN PASSWORD '{literal}'")
        else:
            await conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{literal}'")
        if not await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(host=host, port=port, user=SUPERUSER, database=DATABASE)
    try:
        if not await conn.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"
        ):
            raise PostgresError(
                "this PostgreSQL has no pg_trgm extension (Prefect needs it): install its "
                "contrib package (Debian's `postgresql` includes it; "
                "Red Hat: postgresql-contrib)"
            )
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    finally:
        await conn.close()


def database_url(cluster: Cluster, port: int, password: str) -> str:
    """The DATABASE_URL of the lab's cluster (with its password: print it nowhere else)."""
    return f"{SCHEME}://{ROLE}:{password}@{HOST}:{port}/{DATABASE}"


def lab_database_url(cluster: Cluster) -> str:
    """The DATABASE_URL of a cluster `make postgres` set up; PostgresError if there is none."""
    try:
        password = cluster.password_file.read_text().strip()
        port = int(cluster.port_file.read_text().strip())
    except (OSError, ValueError):
        raise PostgresError(f"no lab PostgreSQL in {cluster.root}: run `make postgres`") from None
    return database_url(cluster, port, password)


def start(cluster: Cluster, pg_port: str = "", pg_bin: str = "") -> tuple[str, bool, Binaries]:
    """Set up and start the cluster unless it runs; return (DATABASE_URL, started_now, pg)."""
    pg = find_binaries(pg_bin)
    owner = cluster_owner()
    if owner.uid is not None:
        gids = {owner.gid} | {g.gr_gid for g in _groups_of(owner.name)}
        blocked = unreachable_ancestor(cluster.root, owner.uid, gids)
        if blocked is not None:
            raise PostgresError(
                f"PostgreSQL refuses to run as root, so the lab runs it as user {owner.name!r}, "
                f"who cannot enter {blocked}: chmod o+x {blocked}, or pass PG_DIR=<a folder "
                f"{owner.name} can reach>"
            )
    if is_running(cluster, pg, owner):
        port = running_port(cluster)
        if port is None:
            raise PostgresError(f"the lab's PostgreSQL runs but {cluster.data} has no port")
        if pg_port and parse_port_knob(pg_port) != port:
            raise PostgresError(
                f"the lab's PostgreSQL already runs on port {port}, not PG_PORT={pg_port}: "
                "make postgres-stop first"
            )
        started = False
    else:
        port = _choose_port(cluster, pg_port)
        if port_in_use(HOST, port):
            raise PostgresError(
                f"port {port} on {HOST} is taken by another program; pick another: "
                f"make postgres PG_PORT={port + 1 if port < 65535 else 5433}"
            )
        cluster.root.mkdir(parents=True, exist_ok=True)
        if not cluster.initialized:
            _init(cluster, pg, owner)
        _make_dir(cluster.socket_dir, owner, 0o700)
        _write_lab_conf(cluster, port, owner)
        if owner.uid is not None and not cluster.log_file.exists():
            cluster.log_file.touch()
            os.chown(cluster.log_file, owner.uid, owner.gid)
        _run(
            owner,
            [
                pg("pg_ctl"),
                "start",
                "-D",
                str(cluster.data),
                "-l",
                str(cluster.log_file),
                "-w",
                "-t",
                "60",
                "-s",
            ],
            cluster.root,
        )
        started = True
    cluster.port_file.write_text(f"{port}\n")
    password = _password(cluster)
    asyncio.run(_ensure_objects(cluster, port, password))
    return database_url(cluster, port, password), started, pg


def _groups_of(name: str | None) -> list:
    import grp

    return [g for g in grp.getgrall() if name in g.gr_mem] if name else []


def stop(cluster: Cluster, pg_bin: str = "") -> bool:
    """Stop the lab's cluster (fast shutdown, data kept); False if it was not running."""
    if not cluster.initialized:
        return False
    pg = find_binaries(pg_bin)
    owner = cluster_owner()
    if not is_running(cluster, pg, owner):
        return False
    _run(
        owner,
        [pg("pg_ctl"), "stop", "-D", str(cluster.data), "-m", "fast", "-w", "-t", "60", "-s"],
        cluster.root,
    )
    return True


def cluster_dir() -> Path:
    """PG_DIR (lab.mk: env/postgres in the checkout)."""
    return settings.current().pg_dir
