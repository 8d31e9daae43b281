"""`make postgres` / `make postgres-stop`: past one machine, a PostgreSQL for the server;
and the warning `make up` and `make worker` give a cohort on a SQLite server."""

from __future__ import annotations

import argparse
import sys

from fhvlab import settings
from fhvlab.local import database, record
from fhvlab.local.cohort import crowd_warning, online_workers
from fhvlab.local.postgres import DATABASE, HOST, Cluster, cluster_dir, start, stop


def warn_if_crowded(api_url: str, joining: int = 0) -> None:
    """One `warning:` line when the lab's server runs on SQLite and more than a few workers
    poll it (those ONLINE in its pools, plus `joining` about to start). Silent on PostgreSQL,
    for a server the lab did not start (its database is unknown here), or when it cannot tell.
    """
    if not record.is_lab_server(api_url):
        return
    if not database.started_on(settings.prefect_home()).startswith("SQLite"):
        return
    online = online_workers(record.Api(api_url).call)
    line = crowd_warning(True, online + joining) if online is not None else ""
    if line:
        print(f"warning: {line}", file=sys.stderr)


def cmd_postgres_start(args: argparse.Namespace) -> int:
    """Start (or find running) the lab's cluster; print the DATABASE_URL to export."""
    cluster = Cluster(cluster_dir())
    url, started, pg = start(cluster, args.port, args.bin)
    port = url.rsplit(":", 1)[1].split("/")[0]
    state = "started" if started else "already running"
    print(
        f"postgres: {state}: PostgreSQL {pg.version_text} on {HOST}:{port}, role and database "
        f"{DATABASE!r}, pg_trgm ready; data {cluster.data}; log {cluster.log_file}"
    )
    print(f"postgres: password in {cluster.password_file} (readable only by you); use:")
    print(f"export DATABASE_URL='{url}'")
    return 0


def cmd_postgres_stop(args: argparse.Namespace) -> int:
    """Stop the lab's cluster; its data stays in PG_DIR."""
    cluster = Cluster(cluster_dir())
    if stop(cluster, args.bin):
        print(f"postgres: stopped (data kept in {cluster.data})")
    else:
        print("postgres: not running; nothing to stop")
    return 0


def add_parsers(sub: argparse._SubParsersAction, knobs: settings.Settings) -> None:
    """postgres start|stop."""
    pg = sub.add_parser("postgres", help="the lab's PostgreSQL cluster").add_subparsers(
        dest="action", required=True
    )
    for name, func in (("start", cmd_postgres_start), ("stop", cmd_postgres_stop)):
        cmd = pg.add_parser(name)
        cmd.add_argument("--port", default=knobs.pg_port.strip())
        cmd.add_argument("--bin", default=knobs.pg_bin.strip())
        cmd.set_defaults(func=func)
