"""Why a database cannot be opened, in words an operator can act on (the CLI's one-line errors).

The command line opens the database once per command; a wrong ``PAYGATE_DATA_DIR`` or
``PAYGATE_DATABASE_URL``, a server that is down or a file that is not a database is an
operator's mistake, not a bug, and deserves one line instead of a driver traceback. The
driver knowledge lives here, beside the engine: :func:`first_contact` turns such a failure
into :class:`CannotOpen`, and the CLI adds what to do about it.
"""
from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING

from paygate_server.storage.schema_version import check_schema

if TYPE_CHECKING:
    from paygate_server.storage.engine import Database

__all__ = ["CannotOpen", "first_contact", "database_refusal"]


class CannotOpen(Exception):
    """The database cannot be reached or opened; ``reason`` says why in one line.
    ``pooler``: the failure is a transaction-mode pooler's (a prepared statement of another
    client's there, or of ours gone), met without a session URL (docs/operations.md,
    "Behind PgBouncer")."""

    def __init__(self, reason: str, *, pooler: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pooler = pooler


# PostgreSQL's duplicate_prepared_statement and invalid_sql_statement_name: what the
# driver's named prepared statements meet behind a transaction pooler, where consecutive
# transactions run on whichever server connection is free.
_POOLER_SQLSTATES = frozenset({"42P05", "26000"})


async def first_contact(db: Database, *, check: bool = True) -> None:
    """Reach a fresh handle's database once: check its schema (``check``, may raise
    :class:`~paygate_server.storage.schema_version.SchemaMismatch`) or just connect. A failure to
    reach or open it raises :class:`CannotOpen`; anything else propagates as is."""
    # (here: the command line imports this module for --help too)
    from sqlalchemy.exc import DBAPIError

    try:
        if check:
            await check_schema(db)
        else:
            async with db.raw_connection():
                pass
    except (DBAPIError, OSError) as exc:
        reason = _describe_open_error(exc)
        if reason is None:
            raise
        pooler = getattr(getattr(exc, "orig", None), "sqlstate", None) in _POOLER_SQLSTATES
        raise CannotOpen(reason, pooler=pooler and not db.behind_transaction_pooler) from None


def _describe_open_error(exc: BaseException) -> str | None:
    """One line for a failure to connect to (or open) the database; None if ``exc`` is not one.

    Only meant for the first statement on a fresh handle: there, any driver or socket error
    is about reaching the database, not about the statement."""
    from sqlalchemy.exc import DBAPIError

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


def database_refusal(exc: BaseException) -> str | None:
    """The driver's own first line for a database error that reached a command's top (the
    database locked past the busy timeout, read-only or full, a statement timeout, the
    server shutting the session down); None if ``exc`` is no database error.

    Never ``str()`` of SQLAlchemy's exception: it adds ``[SQL: …]`` and ``[parameters: …]``,
    which can hold sealed secrets or ids. The drivers are looked up in ``sys.modules``, not
    imported: an error of a driver that was never loaded cannot be raised, and ``paygate
    --help`` must not pay SQLAlchemy's import for an except clause."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        if exc.orig is None:
            return type(exc).__name__
        # SQLAlchemy's asyncpg adapter wraps asyncpg's error (its cause) in its own, whose
        # str() is a tuple of the message and that error.
        driver = exc.orig
        if type(driver).__module__.startswith("sqlalchemy.") and driver.__cause__ is not None:
            driver = driver.__cause__
        return _first_line(driver)
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return _first_line(exc)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(exc, asyncpg.PostgresError | asyncpg.ConnectionDoesNotExistError):
        return _first_line(exc)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
