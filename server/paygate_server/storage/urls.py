"""Database URLs: which driver a URL gets, which kind of database it names, where it is.

Operators write plain URLs (``sqlite:///…``, ``postgresql://…``); the driver in the
URL's scheme is chosen here, beside the engine that uses it, so nothing outside the
storage package spells a driver or decides a database kind from a URL.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# SQLAlchemy's URL parser is imported where a URL is parsed, not with this module: the
# settings (config.py) import it, and so does every command, `paygate --help` too.

__all__ = ["database_kind", "database_url_problem", "session_url_problem", "normalize_database_url", "server_address", "database_file"]

POSTGRESQL_DEFAULT_PORT = 5432


def normalize_database_url(url: str) -> str:
    """Pick the async driver for a plain URL: aiosqlite for SQLite, asyncpg for PostgreSQL."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


# The drivers the engine is built for (normalize_database_url picks them for plain URLs).
_DRIVERS = {("sqlite", "aiosqlite"), ("postgresql", "asyncpg")}
_URL_EXAMPLES = "like sqlite:///path/to/paygate.db or postgresql://user@host:5432/paygate"


def database_url_problem(url: str) -> str | None:
    """Why ``url`` names no database this gateway can open, in words that never repeat
    the URL (it may hold a password); None if it can be tried."""
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = _parse(normalize_database_url(url))
        kind, driver, port = parsed.get_backend_name(), parsed.get_driver_name(), parsed.port
    except (ArgumentError, ValueError):  # unparseable, or a port that is not a number
        return f"not a database URL: write one {_URL_EXAMPLES}"
    if (kind, driver) not in _DRIVERS:
        return f"not a database paygate supports ({kind}+{driver}): write an SQLite or PostgreSQL URL, {_URL_EXAMPLES}"
    if kind == "postgresql" and importlib.util.find_spec("asyncpg") is None:
        # The demo's virtualenv (make demo: ".[server]") has no PostgreSQL driver; without this
        # the first connection ends in SQLAlchemy's ModuleNotFoundError traceback.
        return ("PostgreSQL needs the asyncpg driver, which is not installed: "
                "pip install \".[server,postgres]\" from your checkout")
    if kind == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        return f"an SQLite URL names a file (every process opens the same one), {_URL_EXAMPLES}"
    if port is not None and not 0 < port < 65536:
        return "the port is not 1 to 65535"
    return None


def _parse(url: str) -> URL:
    from sqlalchemy.engine import make_url

    return make_url(url)


def session_url_problem(session_url: str, database_url: str) -> str | None:
    """Why ``session_url`` cannot be the session URL beside ``database_url`` (None if it can)."""
    if problem := database_url_problem(session_url):
        return problem
    if database_kind(session_url) != "postgresql" or database_kind(database_url) != "postgresql":
        return "only for PostgreSQL behind a transaction pooler: the database URL and this one both postgresql://…"
    return None


def database_kind(url: str) -> str:
    """``sqlite`` or ``postgresql`` (whatever the driver or alias in the URL), else the
    URL's scheme: the name logs and bench reports show."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return "postgresql" if scheme in {"postgresql", "postgres"} else scheme


def database_file(url: str) -> Path | None:
    """The file the database lives in: an SQLite URL's (None for a database server or an
    in-memory database)."""
    parsed = _parse(normalize_database_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def server_address(url: str) -> tuple[str, int] | None:
    """The host and port of a PostgreSQL URL's server (None for SQLite: no server)."""
    if database_kind(url) != "postgresql":
        return None
    parsed = _parse(normalize_database_url(url))
    return parsed.host or "127.0.0.1", parsed.port or POSTGRESQL_DEFAULT_PORT
