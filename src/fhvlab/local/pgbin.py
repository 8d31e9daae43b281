"""PostgreSQL's server programs on this machine: where they are, which version, how to
install them. `fhvlab.local.postgres` runs the lab's cluster with what is found here."""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fhvlab.errors import LabError
from fhvlab.local.database import MIN_VERSION

HOMEBREW = ("/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin")


class PostgresError(LabError):
    """The lab's PostgreSQL cannot be set up or started; the message names the fix."""


@dataclass(frozen=True)
class Binaries:
    """A set of PostgreSQL server programs and their version."""

    bin_dir: Path
    version: tuple[int, ...]

    def __call__(self, name: str) -> str:
        return str(self.bin_dir / name)

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def install_hint() -> str:
    """The command that installs PostgreSQL's server programs on this kind of machine."""
    if platform.system() == "Darwin":
        return "brew install postgresql@16"
    if shutil.which("apt-get"):
        return "sudo apt-get install postgresql"
    if shutil.which("dnf"):
        return "sudo dnf install postgresql-server postgresql-contrib"
    return "install PostgreSQL >= 14.9 (initdb, pg_ctl)"


def parse_version(text: str) -> tuple[int, ...] | None:
    """(15, 18) from `pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`; None if absent."""
    found = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", text)
    if not found:
        return None
    return tuple(int(g) for g in found.groups() if g is not None)


def candidate_dirs(pg_bin: str, path_env: str) -> list[Path]:
    """Folders that may hold initdb/pg_ctl: PG_BIN alone if set, else PATH, Debian, Homebrew."""
    if pg_bin:
        return [Path(pg_bin).expanduser()]
    found = [Path(d) for d in path_env.split(os.pathsep) if d and (Path(d) / "pg_ctl").exists()]

    def newest_first(pattern: str) -> list[Path]:
        dirs = [Path(d) for d in glob.glob(pattern)]
        key = [int(m.group()) if (m := re.search(r"\d+", str(d))) else 0 for d in dirs]
        return [d for _, d in sorted(zip(key, dirs, strict=True), reverse=True)]

    found += newest_first("/usr/lib/postgresql/*/bin")
    for pattern in HOMEBREW:
        found += newest_first(pattern)
    return list(dict.fromkeys(found))


def find_binaries(pg_bin: str = "", path_env: str | None = None) -> Binaries:
    """The first usable (>= 14.9) initdb + pg_ctl; PostgresError with the install command."""
    path_env = os.environ.get("PATH", "") if path_env is None else path_env
    too_old: list[str] = []
    for folder in candidate_dirs(pg_bin, path_env):
        if not all((folder / n).is_file() for n in ("initdb", "pg_ctl", "postgres")):
            continue
        out = subprocess.run(
            [str(folder / "pg_ctl"), "--version"], capture_output=True, text=True, check=False
        ).stdout
        version = parse_version(out)
        if version is None:
            continue
        if version >= MIN_VERSION:
            return Binaries(folder, version)
        too_old.append(f"{'.'.join(map(str, version))} in {folder}")
    need = ".".join(map(str, MIN_VERSION))
    if too_old:
        raise PostgresError(
            f"PostgreSQL {', '.join(too_old)} is older than the {need} Prefect needs: "
            f"{install_hint()} (or pass PG_BIN=/path/to/postgresql/bin)"
        )
    where = f"PG_BIN={pg_bin}" if pg_bin else "PATH, /usr/lib/postgresql/*/bin or Homebrew"
    raise PostgresError(
        f"PostgreSQL's server programs (initdb, pg_ctl) are not in {where}: {install_hint()} "
        "(or pass PG_BIN=/path/to/postgresql/bin)"
    )
