"""Which database the lab's Prefect server keeps its state in: SQLite (default) or PostgreSQL.

`DATABASE_URL` empty: SQLite in the lab's Prefect home, as Prefect does by default.
`DATABASE_URL=postgresql+asyncpg://user:password@host:port/db`: PostgreSQL, handed to the
server as `PREFECT_SERVER_DATABASE_CONNECTION_URL`. Before a server is started on it,
`preflight` connects once and turns each way it can fail into one line with the fix.
The password is never printed: every message shows the URL through `mask`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from fhvlab.errors import BadInput, LabError

SCHEME = "postgresql+asyncpg"
SETTING = "PREFECT_SERVER_DATABASE_CONNECTION_URL"
LEGACY_SETTING = "PREFECT_API_DATABASE_CONNECTION_URL"
MIN_VERSION = (14, 9)  # Prefect 3.9's floor for PostgreSQL
EXAMPLE = f"{SCHEME}://prefect:PASSWORD@127.0.0.1:5432/prefect"


class DatabaseError(LabError):
    """The database named by DATABASE_URL cannot hold the Prefect server's state."""


@dataclass(frozen=True)
class PgUrl:
    """The parts of a PostgreSQL URL the lab needs (password kept, never shown)."""

    user: str
    password: str
    host: str
    port: int
    database: str

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ***."""
        secret = ":***" if self.password else ""
        return f"{SCHEME}://{self.user}{secret}@{self.host}:{self.port}/{self.database}"


def mask(url: str) -> str:
    """`url` with any password replaced by ***; safe to print even when malformed."""
    if "@" not in url:
        return url
    head, _, tail = url.rpartition("@")
    scheme, sep, userinfo = head.partition("://")
    if not sep:
        return "***@" + tail
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in userinfo else ''}@{tail}"


def parse_url(text: str) -> PgUrl:
    """A postgresql+asyncpg://user:password@host:port/db URL; BadInput (masked) otherwise."""
    value = text.strip()
    parts: SplitResult = urlsplit(value)
    shown = mask(value)
    if parts.scheme != SCHEME:
        raise BadInput(
            f"DATABASE_URL={shown!r} is not a {SCHEME}:// URL (expected e.g. {EXAMPLE}; "
            "leave DATABASE_URL empty for SQLite)"
        )
    try:
        port = parts.port or 5432
    except ValueError:
        raise BadInput(f"DATABASE_URL={shown!r} has a bad port (expected 1-65535)") from None
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not parts.username or not database or "/" in database:
        raise BadInput(
            f"DATABASE_URL={shown!r} needs a user, a host and a database (expected e.g. {EXAMPLE})"
        )
    return PgUrl(
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        host=parts.hostname,
        port=port,
        database=database,
    )


def configured_url(environ: Mapping[str, str] | None = None) -> str:
    """The database URL in effect: DATABASE_URL, else Prefect's own setting, else '' (SQLite)."""
    env = os.environ if environ is None else environ
    for name in ("DATABASE_URL", SETTING, LEGACY_SETTING):
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def server_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the server's environment needs for DATABASE_URL (nothing for SQLite)."""
    url = configured_url(environ)
    return {SETTING: url} if url else {}


def describe(home: Path, environ: Mapping[str, str] | None = None) -> str:
    """One phrase naming the database, password masked: for status lines and logs."""
    url = configured_url(environ)
    if not url:
        return f"SQLite {home / 'prefect.db'}"
    return f"PostgreSQL {mask(url)}"


def note_started_on(home: Path, environ: Mapping[str, str] | None = None) -> None:
    """Note (masked) which database the server just started on, for status and doctor."""
    (home / "server.database").write_text(describe(home, environ) + "\n")


def started_on(home: Path) -> str:
    """Which database the running server was started on (masked), as `note_started_on`
    noted it."""
    try:
        return (home / "server.database").read_text().strip()
    except OSError:
        return describe(home)


def preflight_configured(timeout: float = 10.0) -> str | None:
    """`preflight` the database in effect; None for SQLite (nothing to check)."""
    url = configured_url()
    return preflight(url, timeout) if url else None


async def _probe(url: PgUrl, timeout: float) -> tuple[tuple[int, ...], bool, bool, bool]:
    """Connect once: (server version, pg_trgm installed, available, creatable by this role)."""
    import asyncpg

    conn = await asyncpg.connect(
        user=url.user,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
        timeout=timeout,
        ssl=False if url.host in ("127.0.0.1", "localhost", "::1") else "prefer",
    )
    try:
        version = tuple(conn.get_server_version()[:2])
        installed = await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname='pg_trgm'")
        available = await conn.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name='pg_trgm'"
        )
        creatable = await conn.fetchval(
            "SELECT rolsuper OR has_database_privilege(current_database(), 'CREATE') "
            "FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()
    return version, bool(installed), bool(available), bool(creatable)


def preflight(text: str, timeout: float = 10.0) -> str:
    """Check a DATABASE_URL before a server starts on it; its masked form, or DatabaseError."""
    url = parse_url(text)
    import asyncpg

    where = f"{url.host}:{url.port}"
    try:
        version, installed, available, creatable = asyncio.run(_probe(url, timeout))
    except asyncpg.InvalidPasswordError:
        raise DatabaseError(
            f"PostgreSQL at {where} rejected the password of user {url.user!r} "
            f"(DATABASE_URL={url.masked}); fix the password in DATABASE_URL "
            "(`make postgres` prints the lab's)"
        ) from None
    except asyncpg.InvalidCatalogNameError:
        raise DatabaseError(
            f"PostgreSQL at {where} has no database {url.database!r} "
            f"(DATABASE_URL={url.masked}); create it (createdb -O {url.user} {url.database}) "
            "or fix the name"
        ) from None
    except (TimeoutError, OSError) as exc:
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:.0f} s"
        else:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise DatabaseError(
            f"no PostgreSQL answers at {where} ({reason}; DATABASE_URL={url.masked}): "
            "start it (`make postgres` for the lab's own) or fix host and port"
        ) from None
    except asyncpg.PostgresError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseError(
            f"PostgreSQL at {where} refused the connection: {first.replace(url.password, '***')} "
            f"(DATABASE_URL={url.masked})"
        ) from None
    if version < MIN_VERSION:
        raise DatabaseError(
            f"PostgreSQL at {where} is {'.'.join(map(str, version))}; Prefect needs "
            f"{'.'.join(map(str, MIN_VERSION))} or newer"
        )
    if not installed and not available:
        raise DatabaseError(
            f"PostgreSQL at {where} has no pg_trgm extension, which Prefect needs: install "
            "the server's contrib package (Debian: postgresql-contrib; it ships with "
            "`postgresql`), then run CREATE EXTENSION pg_trgm in database "
            f"{url.database!r} as a superuser"
        )
    if not installed and not creatable:
        raise DatabaseError(
            f"user {url.user!r} may not create the pg_trgm extension Prefect needs in database "
            f"{url.database!r} at {where}: have a superuser run CREATE EXTENSION pg_trgm there "
            f"(or GRANT CREATE ON DATABASE {url.database} TO {url.user})"
        )
    return url.masked
