"""Database URLs: which driver a URL gets, which kind of database it names, where it is.

Operators write plain URLs (``sqlite:///…``, ``postgresql://…``); the driver in the
URL's scheme is chosen here, beside the engine that uses it, so nothing outside the
storage package spells a driver or decides a database kind from a URL.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = ["database_kind", "normalize_database_url", "server_address", "database_file"]

POSTGRESQL_DEFAULT_PORT = 5432


def normalize_database_url(url: str) -> str:
    """Pick the async driver for a plain URL: aiosqlite for SQLite, asyncpg for PostgreSQL."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://"):]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def database_kind(url: str) -> str:
    """``sqlite`` or ``postgresql`` (whatever the driver or alias in the URL), else the
    URL's scheme: the name logs and bench reports show."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    return "postgresql" if scheme in {"postgresql", "postgres"} else scheme


def database_file(url: str) -> Path | None:
    """The file the database lives in: an SQLite URL's (None for a database server or an
    in-memory database)."""
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def server_address(url: str) -> tuple[str, int] | None:
    """The host and port of a PostgreSQL URL's server (None for SQLite: no server)."""
    if database_kind(url) != "postgresql":
        return None
    parsed = make_url(normalize_database_url(url))
    return parsed.host or "127.0.0.1", parsed.port or POSTGRESQL_DEFAULT_PORT
