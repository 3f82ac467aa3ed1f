"""Which failures mean "the database is unavailable right now" (SPEC §2 ``503``).

A restarted or unreachable PostgreSQL, a connection the server dropped, a pool with no
connection free within its timeout, a SQLite database locked past its busy timeout, a SQLite
write batch lost with its connection (:class:`DatabaseUnavailable`): none
of these is the request's fault or a bug, and retrying shortly will most likely work. The
HTTP layer answers them ``503 service_unavailable`` with ``Retry-After`` instead of
``500 internal_error`` (http/middleware.py). Everything about drivers and pools is decided
here, so the HTTP layer names no driver. :class:`StaleConnections` makes the pool recover
from such an outage by itself: every connection opened before a dead one is replaced.
"""
from __future__ import annotations

import logging
import socket
import sqlite3
import sys
import time
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import ConnectionPoolEntry

try:  # the PostgreSQL driver is an optional extra
    import asyncpg
    from asyncpg import exceptions as pg_exc
except ImportError:  # pragma: no cover - SQLite-only installs
    asyncpg = None  # type: ignore[assignment]

__all__ = ["RETRY_AFTER_S", "DatabaseUnavailable", "StaleConnections", "connection_found_dead",
           "is_database_unavailable", "log_failure", "opened_before_dead"]

# What a 503 tells the client to wait: long enough for a pool to reconnect or a failover
# to finish its first step, short enough that a checkout customer does not notice.
RETRY_AFTER_S: Final = 2

if asyncpg is not None:
    _PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
        pg_exc.PostgresConnectionError,       # class 08: connection gone / refused / failed
        pg_exc.OperatorInterventionError,     # 57P01-03: admin shutdown, crash, starting up
        pg_exc.TooManyConnectionsError,       # 53300: the server's connection slots are full
    )
    _PG_INTERFACE: tuple[type[BaseException], ...] = (pg_exc.InterfaceError,)
    _PG_INTERNAL: tuple[type[BaseException], ...] = (pg_exc.InternalClientError,)
else:  # pragma: no cover
    _PG_UNAVAILABLE = ()
    _PG_INTERFACE = ()
    _PG_INTERNAL = ()

class DatabaseUnavailable(Exception):
    """An outage the storage layer found by itself rather than a driver error: a SQLite
    write batch lost with its connection (group_commit.BatchLost), where nothing was
    written and a retry is safe."""


# Network failures reaching the server. Not every OSError: a full disk or a missing file
# is not something a retry in two seconds fixes.
_NETWORK: Final = (ConnectionError, TimeoutError, socket.gaierror)


def _is_unavailable_one(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection within its timeout
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, _PG_UNAVAILABLE):
        return True
    if isinstance(exc, _PG_INTERFACE):
        # asyncpg's InterfaceError is also raised for misuse; only a closed connection is
        # an outage ("connection is closed", "connection was closed in the middle of …").
        return "closed" in str(exc)
    if isinstance(exc, _PG_INTERNAL):
        # A connection the server is closing under a statement (a restart: "terminating
        # connection due to administrator command") is left consuming that error when the
        # next statement starts on it: "cannot switch to state 11; another operation (2) is
        # in progress". Seen under load across `pg_ctl restart` (tests/e2e/test_postgres_restart.py).
        return str(exc).startswith("cannot switch to state")
    if isinstance(exc, _NETWORK):
        return True
    if type(exc) is OSError:  # asyncpg's "Multiple exceptions: [Errno 111] Connect call failed …"
        return True
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc)
        return "database is locked" in message or "database is busy" in message
    return False


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` — or what it wraps (SQLAlchemy's ``.orig``, an explicit
    ``__cause__``) — is the database being unreachable, restarting or saturated. Not
    ``__context__``: an error raised while handling an outage is not itself one."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen or len(seen) > 16:
            continue
        seen.add(id(item))
        if _is_unavailable_one(item):
            return True
        todo.extend((getattr(item, "orig", None), item.__cause__))
    return False


def log_failure(logger: logging.Logger, message: str, *args: object) -> None:
    """Log the exception being handled by a background loop that goes on (the reconciler,
    the relay, the webhook dispatcher, housekeeping): an outage of the database is one
    warning line naming the failure's type — it is expected, every pass fails the same way
    until it is over, and the pool recovers by itself — while anything else is a bug,
    logged as an error with its traceback. Call it only inside an ``except`` block."""
    exc = sys.exc_info()[1]
    if exc is not None and is_database_unavailable(exc):
        logger.warning(message + ": the database is unavailable (%s)", *args, type(exc).__name__)
    else:
        logger.exception(message, *args)


# Keys of the pooled connection's ``info`` (SQLAlchemy's per-connection dict for its users).
_OPENED = "paygate_opened_at"
_STALE = "paygate_stale_connections"


class StaleConnections:
    """Every pooled connection opened before a dead one is replaced at its next checkout.

    SQLAlchemy does this itself when one of its own statements meets a dropped connection;
    the statements run on the driver (storage/statements.py) report theirs through
    :func:`connection_found_dead`. A restart or a terminated backend kills every connection
    of the pool at once: replaced at checkout, none is handed out to fail one more request.
    Built on the pool's public events: ``connect`` stamps a connection's opening time,
    ``checkout`` raises SQLAlchemy's ``DisconnectionError`` for one older than the last dead
    connection, and the pool then reconnects it before handing it out.
    """

    def __init__(self, engine: Engine) -> None:
        self.dead_at = 0.0  # time.monotonic() when a dead connection was last found
        event.listen(engine, "connect", self._opened)
        event.listen(engine, "checkout", self._checkout)

    def _opened(self, _dbapi_connection: Any, entry: ConnectionPoolEntry) -> None:
        entry.info[_OPENED] = time.monotonic()
        entry.info[_STALE] = self

    def _checkout(self, _dbapi_connection: Any, entry: ConnectionPoolEntry, _proxy: Any) -> None:
        if opened_before_dead(entry.info):
            raise sa_exc.DisconnectionError("opened before a connection found dead")


def opened_before_dead(info: dict[Any, Any]) -> bool:
    """Whether the pooled connection whose ``info`` this is was opened before a connection
    of its pool was last found dead (:class:`StaleConnections`): one the pool replaces at
    its next checkout, and storage/engine.py's kept connections likewise."""
    stale = info.get(_STALE)
    return stale is not None and info.get(_OPENED, 0.0) < stale.dead_at


def connection_found_dead(info: dict[Any, Any]) -> None:
    """The connection whose ``info`` this is was found dead: every pooled connection opened
    before now is stale (:class:`StaleConnections`). A no-op on an unwatched pool."""
    stale = info.get(_STALE)
    if stale is not None:
        stale.dead_at = time.monotonic()
