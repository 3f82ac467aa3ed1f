"""Hot-path SQL, sent straight to the driver beneath SQLAlchemy.

Every payment runs the same dozen statements. Through SQLAlchemy Core each one costs
~250–300 µs of Python on this machine — building the construct, its cache key, compiling,
wrapping the result — against ~100 µs for the same statement on the driver
(docs/performance.md). So those statements are written once, as SQL text with ``:name``
parameters, and translated once per dialect into the driver's own style: asyncpg's ``$1``
(a prepared statement asyncpg caches per connection) or sqlite3's named ``:name``. They
run on the very connection — and inside the very transaction — that the SQLAlchemy
``AsyncConnection`` of :meth:`Database.write` / :meth:`Database.read` holds, so they mix
freely with ordinary SQLAlchemy statements in one unit of work (savepoints, group commit
and rollback included). Only the drivers' public APIs are used: the connection comes from
SQLAlchemy's ``driver_connection``; asyncpg's ``fetch``/``execute``/``is_in_transaction``,
aiosqlite's ``execute``/``execute_fetchall``/``row_factory`` do the rest.

What SQLAlchemy would otherwise do for us, done here:

* **the lazy BEGIN** — SQLAlchemy's asyncpg adapter opens a transaction at its first
  statement and commits only a transaction it opened itself. So when a PostgreSQL
  connection of a unit of work has no transaction open yet, the statement goes through a
  cursor of the adapter (PEP 249: the same SQL, with the adapter's BEGIN in front); every
  later one goes straight to asyncpg (:func:`_asyncpg`). Autocommit connections never begin;
* **error classes** — a unique or check violation is raised as SQLAlchemy's
  ``IntegrityError`` on both drivers, so callers catch one thing;
* **a dead connection** is invalidated, with every pooled connection older than it, so
  the pool never hands one out again (:func:`_drop_dead`, ``availability.StaleConnections``).

They also run on an :class:`Autocommit` connection (:meth:`Database.read_one`,
:meth:`Database.write_one`): a pooled driver connection with no transaction and no
SQLAlchemy ``Connection`` around it, so each statement commits on its own. That saves the
``Connection`` set-up (~0.1 ms) and, on PostgreSQL, the ``BEGIN``/``COMMIT`` round trips of
a one-statement unit of work.

Rows come back as mappings (asyncpg ``Record``, SQLAlchemy ``RowMapping`` or ``dict``):
index them by column name.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from paygate_server.storage.availability import connection_found_dead, is_database_unavailable

__all__ = ["Autocommit", "Connection", "Sql", "execute", "fetch_all", "fetch_one", "fetch_tuples", "fetch_value"]

try:  # the PostgreSQL driver is an optional extra
    import asyncpg
except ImportError:  # pragma: no cover - SQLite-only installs
    asyncpg = None  # type: ignore[assignment]

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")

Row = Mapping[str, Any]


class Sql:
    """One statement: ``:name`` parameters, translated once per driver."""

    __slots__ = ("text", "names", "positional")

    def __init__(self, text: str) -> None:
        self.text = " ".join(text.split())
        names = list(dict.fromkeys(_PARAM.findall(self.text)))
        self.names = tuple(names)
        # asyncpg: $1, $2, … in order of first appearance (a repeated name reuses its number).
        self.positional = _PARAM.sub(lambda m: f"${names.index(m.group(1)) + 1}", self.text)

    def args(self, params: dict[str, Any]) -> list[Any]:
        if params.keys() != set(self.names):
            missing, extra = set(self.names) - params.keys(), params.keys() - set(self.names)
            raise TypeError(f"statement parameters: missing {sorted(missing)}, unexpected {sorted(extra)}")
        return [params[name] for name in self.names]

    def __repr__(self) -> str:
        return f"Sql({self.text!r})"


class Autocommit:
    """A pooled connection outside any transaction, for statements that stand alone.

    Checked out with SQLAlchemy's pool (so pool limits, recycling and the SQLite pragmas
    still apply) but used on the driver only. Nothing here opens a transaction: on
    PostgreSQL each statement is its own transaction; on SQLite (driver in autocommit mode,
    storage/engine.py) likewise — use it there for reads only, writes go through group commit.
    """

    __slots__ = ("dialect", "driver", "_pooled")

    def __init__(self, dialect: Dialect, pooled: PoolProxiedConnection) -> None:
        self.dialect = dialect  # ``.name`` is "postgresql" or "sqlite"
        self._pooled = pooled
        self.driver: Any = pooled.driver_connection  # asyncpg.Connection or aiosqlite.Connection

    @property
    def info(self) -> dict[Any, Any]:
        """The pooled connection's ``info`` (as ``AsyncConnection.info``)."""
        return self._pooled.info

    @property
    def is_valid(self) -> bool:
        """False once invalidated (found dead): its driver connection is closed."""
        return self._pooled.is_valid

    # The pool's calls are synchronous but may do I/O (closing a connection past the pool's
    # size, say): SQLAlchemy's greenlet bridge runs them.
    async def invalidate(self) -> None:
        await greenlet_spawn(self._pooled.invalidate)

    async def close(self) -> None:
        await greenlet_spawn(self._pooled.close)


Connection = AsyncConnection | Autocommit


def _driver(conn: Connection) -> Any:
    if type(conn) is Autocommit:
        return conn.driver
    # The pool's proxied connection, already checked out by this AsyncConnection.
    return conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]


# What a call wants back: rows as mappings, rows as tuples (column order), or the row count.
_MAPPINGS, _TUPLES, _COUNT = "mappings", "tuples", "count"


async def _run(conn: Connection, sql: Sql, params: dict[str, Any], mode: str,
               begin: bool = True) -> tuple[Sequence[Any], int]:
    if conn.dialect.name == "postgresql":
        return await _asyncpg(conn, sql, sql.args(params), mode, begin)
    return await _sqlite(_driver(conn), sql, params, mode)


def _opens_transactions(conn: AsyncConnection) -> bool:
    """Whether SQLAlchemy's adapter begins a transaction at this connection's next statement."""
    options = conn.sync_connection.get_execution_options()  # type: ignore[union-attr]
    return options.get("isolation_level") != "AUTOCOMMIT"


async def _asyncpg(conn: Connection, sql: Sql, args: list[Any], mode: str,
                   begin: bool) -> tuple[Sequence[Any], int]:
    driver = _driver(conn)  # asyncpg.Connection
    if (begin and not isinstance(conn, Autocommit) and not driver.is_in_transaction()
            and _opens_transactions(conn)):
        return await _first_of_transaction(conn, sql, args, mode)
    try:
        if mode != _COUNT:
            records = await driver.fetch(sql.positional, *args)  # Records: mappings and tuples
            return records, len(records)
        status = await driver.execute(sql.positional, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise _integrity_error(sql, exc) from None
    except Exception as exc:
        if is_database_unavailable(exc):
            await _drop_dead(conn)
        raise
    # "UPDATE 3", "DELETE 0", "INSERT 0 1": the count is the last word.
    count = status.rsplit(" ", 1)[-1]
    return [], int(count) if count.isdigit() else 0


async def _first_of_transaction(conn: AsyncConnection, sql: Sql, args: list[Any],
                                mode: str) -> tuple[Sequence[Any], int]:
    """The statement through a cursor of SQLAlchemy's DBAPI connection (PEP 249), whose
    adapter sends its BEGIN first and then owns the transaction: SQLAlchemy commits or rolls
    it back with the unit of work. The cursor is synchronous (it waits on asyncpg inside
    SQLAlchemy's greenlet bridge) and far cheaper than a SQLAlchemy execution."""
    cursor = conn.sync_connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        await greenlet_spawn(cursor.execute, sql.positional, args)
        if mode == _COUNT:
            return [], cursor.rowcount
        found: Sequence[Any] = cursor.fetchall()  # asyncpg Records, as on the driver
        return found, len(found)
    except Exception as exc:
        # The adapter raises its own DBAPI error, asyncpg's as the cause.
        if asyncpg is not None and isinstance(exc.__cause__, asyncpg.IntegrityConstraintViolationError):
            raise _integrity_error(sql, exc.__cause__) from None
        if is_database_unavailable(exc):
            await _drop_dead(conn)
        raise
    finally:
        cursor.close()


def _integrity_error(sql: Sql, exc: Exception) -> IntegrityError:
    # Neither the parameters nor PostgreSQL's DETAIL ("Key (id)=(…)", "Failing row
    # contains (…)": the values again) may reach a log line through this error's text;
    # the class (hence the SQLSTATE) and the constraint's name stay.
    clean = type(exc)(exc.args[0] if exc.args else "")
    clean.constraint_name = getattr(exc, "constraint_name", None)  # type: ignore[attr-defined]
    return IntegrityError(sql.text, None, clean, hide_parameters=True)


async def _drop_dead(conn: Connection) -> None:
    """Invalidate a connection the server dropped — and every pooled connection opened
    before it: a restart or a terminated backend kills them all, and the pool then replaces
    each at its next checkout instead of handing it out to fail one more request."""
    connection_found_dead(conn.info)
    await conn.invalidate()


def _mapping_rows(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    if not rows:
        return []
    names = rows[0].keys()
    return [dict(zip(names, row, strict=True)) for row in rows]


async def _sqlite(driver: Any, sql: Sql, params: dict[str, Any], mode: str) -> tuple[Sequence[Any], int]:
    # ``driver`` is the SQLite driver connection (storage/loop_sqlite.py's, or aiosqlite's):
    # each call below runs on the loop's thread or is one hop to a worker thread. It
    # runs in autocommit mode (storage/engine.py): outside a unit of work a statement is its
    # own transaction, so there is no lazy BEGIN to mirror here.
    try:
        if mode == _COUNT:
            return [], (await driver.execute(sql.text, params)).rowcount
        if mode == _TUPLES:
            found: list[Any] = await driver.execute_fetchall(sql.text, params)
            return found, len(found)
        # Rows named by column for this statement only: SQLAlchemy reads this connection's
        # rows as tuples. No other statement runs on it meanwhile (one task owns it).
        driver.row_factory = sqlite3.Row
        try:
            found = _mapping_rows(await driver.execute_fetchall(sql.text, params))
        finally:
            driver.row_factory = None
        return found, len(found)
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(sql.text, None, exc, hide_parameters=True) from None


async def fetch_all(conn: Connection, sql: Sql, **params: Any) -> Sequence[Row]:
    return (await _run(conn, sql, params, _MAPPINGS))[0]


async def fetch_one(conn: Connection, sql: Sql, **params: Any) -> Row | None:
    found = (await _run(conn, sql, params, _MAPPINGS))[0]
    return found[0] if found else None


async def fetch_tuples(conn: Connection, sql: Sql, *, begin: bool = True,
                       **params: Any) -> Sequence[Sequence[Any]]:
    """Rows as tuples in column order (cheapest for many rows). ``begin=False``: on a
    PostgreSQL connection with no transaction open, run the statement on its own instead of
    opening one (the relay's long-lived reading connection must never hold a snapshot)."""
    return (await _run(conn, sql, params, _TUPLES, begin))[0]


async def fetch_value(conn: Connection, sql: Sql, **params: Any) -> Any:
    """The first column of the first row, or None when there is no row."""
    row = await fetch_one(conn, sql, **params)
    return None if row is None else next(iter(row.values()))


async def execute(conn: Connection, sql: Sql, **params: Any) -> int:
    """Run a statement for its effect; the number of rows it changed."""
    return (await _run(conn, sql, params, _COUNT))[1]
