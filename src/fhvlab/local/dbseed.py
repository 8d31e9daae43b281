"""A new SQLite Prefect home starts from a migrated copy: Prefect's migrations, run once.

A server on a new Prefect home spends most of its start migrating an empty SQLite database
through Prefect's ~115 migrations, CPU-bound work (docs/operations.md measures it). The
migrated schema is the same for every home with the same Prefect version, so the lab runs
Prefect's own `prefect server database upgrade -y` once per Prefect version, in a scratch
home, keeps that database as a template inside .venv (which holds that version), and gives
each new home a copy (SQLite's online backup). Prefect still runs its migrations at every
start: on a current copy they find nothing to do, an older copy is brought up to date.
Only the default SQLite database is seeded; DATABASE_URL (PostgreSQL) is left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from fhvlab import files
from fhvlab.errors import LabError
from fhvlab.local import database

log = logging.getLogger(__name__)
UPGRADE_TIMEOUT = 600.0  # seconds the one-time migration may take on a slow machine


def template_path() -> Path:
    """The migrated database of this environment's Prefect version (in .venv)."""
    return Path(sys.prefix) / "share" / "fhvlab" / f"prefect-{version('prefect')}.db"


def copy_database(source: Path, dest: Path) -> None:
    """Copy a SQLite database with SQLite's online backup; `dest` appears whole or not at all."""
    with files.atomic_path(dest) as tmp:
        tmp.unlink()  # sqlite3 creates the file itself
        with (
            contextlib.closing(sqlite3.connect(source)) as src,
            contextlib.closing(sqlite3.connect(tmp)) as out,
        ):
            src.backup(out)


def build_template(template: Path, env: Mapping[str, str]) -> None:
    """Run `prefect server database upgrade -y` in a scratch home; keep its database."""
    prefect = Path(sys.executable).with_name("prefect")
    with tempfile.TemporaryDirectory(prefix="fhvlab-migrate-") as scratch:
        run_env = {**env, "PREFECT_HOME": scratch}
        for name in ("DATABASE_URL", database.SETTING, database.LEGACY_SETTING):
            run_env.pop(name, None)
        done = subprocess.run(
            [str(prefect), "server", "database", "upgrade", "-y"],
            env=run_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=UPGRADE_TIMEOUT,
            check=False,
        )
        migrated = Path(scratch) / "prefect.db"
        if done.returncode != 0 or not migrated.is_file():
            raise LabError(
                f"`prefect server database upgrade -y` exited {done.returncode} in a scratch "
                "home; to see why: PREFECT_HOME=$(mktemp -d) prefect server database upgrade -y"
            )
        copy_database(migrated, template)


def seed(home: Path, env: Mapping[str, str]) -> bool:
    """Give a home without a database a copy of the migrated template; True if it did.

    The first call per Prefect version makes the template (one migration, as a start on a
    new home would do); concurrent calls wait for it under a lock.
    """
    if database.configured_url(env) or (home / "prefect.db").exists():
        return False
    template = template_path()
    busy = f"another lab command is making {template} for more than {UPGRADE_TIMEOUT:.0f} s"
    try:
        with files.locked(template.with_suffix(".lock"), UPGRADE_TIMEOUT, busy):
            if not template.is_file():
                build_template(template, env)
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        # Not fatal: the server then migrates the new database itself, as Prefect does.
        log.warning("server: no migrated template (%s); Prefect migrates the database", exc)
        return False
    home.mkdir(parents=True, exist_ok=True)
    # A database deleted under a killed server can leave its write-ahead log behind; SQLite
    # would replay that old log into the copy. Nothing runs on a database that is not there.
    for leftover in ("prefect.db-wal", "prefect.db-shm", "prefect.db-journal"):
        (home / leftover).unlink(missing_ok=True)
    copy_database(template, home / "prefect.db")
    os.chmod(home / "prefect.db", 0o600)
    return True
