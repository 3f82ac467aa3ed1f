"""Why a database cannot be opened, in words an operator can act on (the CLI's one-line errors).

The command line opens the database once per command; a wrong ``PAYGATE_DATA_DIR`` or
``PAYGATE_DATABASE_URL``, a server that is down or a file that is not a database is an
operator's mistake, not a bug, and deserves one line instead of a driver traceback. The
URL/driver knowledge lives here, beside the engine; the CLI adds what to do about it.
"""
from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from paygate_server.config import normalize_database_url

__all__ = ["sqlite_file", "describe_open_error"]


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for another backend or an in-memory database)."""
    parsed = make_url(normalize_database_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def describe_open_error(exc: BaseException) -> str | None:
    """One line for a failure to connect to (or open) the database; None if ``exc`` is not one.

    Only meant for the first statement on a fresh handle: there, any driver or socket error
    is about reaching the database, not about the statement."""
    if isinstance(exc, DBAPIError):
        # The driver's own sentence ("database "x" does not exist", "file is not a
        # database", "password authentication failed …"): first line only.
        return str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        # (asyncpg raises a plain OSError, "Multiple exceptions: …", when the host name has
        # several addresses and every one refused)
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, TimeoutError):
        return "no answer from the server"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return None
