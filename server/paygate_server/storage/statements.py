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
and rollback included).

What SQLAlchemy would otherwise do for us, done here:

* **the lazy BEGIN** — its asyncpg adapter opens the transaction at the first statement,
  so :func:`_asyncpg` does the same (a no-op on autocommit connections);
* **error classes** — a unique or check violation is raised as SQLAlchemy's
  ``IntegrityError`` on both drivers, so callers catch one thing;
* **a dead connection** is invalidated, with every pooled connection older than it, so
  the pool never hands one out again (:func:`_drop_dead`).

They also run on an :class:`Autocommit` connection (:meth:`Database.read_one`,
:meth:`Database.write_one`): a pooled driver connection with no transaction and no
SQLAlchemy ``Connection`` around it, so each statement commits on its own. That saves the
``Connection`` set-up (~0.1 ms) and, on PostgreSQL, the ``BEGIN``/``COMMIT`` round trips of
a one-statement unit of work.

Rows come back as mappings (asyncpg ``Record`` or ``dict``): index them by column name.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import greenlet_spawn

from paygate_server.storage.availability import is_database_unavailable

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
        names: list[str] = []
        for name in _PARAM.findall(self.text):
            if name not in names:
                names.append(name)
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

    __slots__ = ("dialect", "adapter", "_fairy")

    def __init__(self, dialect: Any, fairy: Any) -> None:
        self.dialect = dialect  # SQLAlchemy's Dialect: ``.name`` is "postgresql" or "sqlite"
        self._fairy = fairy  # the pool's proxied connection
        self.adapter = fairy.dbapi_connection

    async def invalidate(self) -> None:
        await greenlet_spawn(self._fairy.invalidate)


Connection = AsyncConnection | Autocommit


def _adapter(conn: Connection) -> Any:
    if type(conn) is Autocommit:
        return conn.adapter
    # The pool's proxied DBAPI connection, already checked out by this AsyncConnection.
    return conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]


# What a call wants back: rows as mappings, rows as tuples (column order), or the row count.
_MAPPINGS, _TUPLES, _COUNT = "mappings", "tuples", "count"


async def _run(conn: Connection, sql: Sql, params: dict[str, Any], mode: str,
               begin: bool = True) -> tuple[Sequence[Any], int]:
    adapter = _adapter(conn)
    if conn.dialect.name == "postgresql":
        return await _asyncpg(conn, adapter, sql, sql.args(params), mode, begin and type(conn) is not Autocommit)
    return await _sqlite(adapter, sql, params, mode)


async def _asyncpg(conn: Connection, adapter: Any, sql: Sql, args: list[Any],
                   mode: str, begin: bool) -> tuple[Sequence[Any], int]:
    if begin and adapter._transaction is None:
        await adapter._start_transaction()  # returns at once on an autocommit connection
    driver = adapter._connection  # asyncpg.Connection
    try:
        if mode != _COUNT:
            records = await driver.fetch(sql.positional, *args)  # Records: mappings and tuples
            return records, len(records)
        status = await driver.execute(sql.positional, *args)
    except asyncpg.IntegrityConstraintViolationError as exc:
        # Neither the parameters nor PostgreSQL's DETAIL ("Key (id)=(…)", "Failing row
        # contains (…)": the values again) may reach a log line through this error's text;
        # the class (hence the SQLSTATE) and the constraint's name stay.
        clean = type(exc)(exc.args[0] if exc.args else "")
        clean.constraint_name = getattr(exc, "constraint_name", None)
        raise IntegrityError(sql.text, None, clean, hide_parameters=True) from None
    except Exception as exc:
        if is_database_unavailable(exc):
            await _drop_dead(conn)
        raise
    # "UPDATE 3", "DELETE 0", "INSERT 0 1": the count is the last word.
    count = status.rsplit(" ", 1)[-1]
    return [], int(count) if count.isdigit() else 0


async def _drop_dead(conn: Connection) -> None:
    """Invalidate a connection the server dropped — and every pooled connection opened
    before it: a restart or a terminated backend kills them all, and the pool then replaces
    each at its next checkout instead of handing it out to fail one more request."""
    if type(conn) is Autocommit:
        fairy = conn._fairy
        fairy._pool._invalidate(fairy, None, _checkin=False)
    else:
        fairy = conn.sync_connection.connection  # type: ignore[union-attr]
        conn.sync_engine.pool._invalidate(fairy, None, _checkin=False)  # type: ignore[union-attr]  # mypy does not narrow on type() is
    await conn.invalidate()


def _sqlite_in_thread(db: sqlite3.Connection, text: str, params: dict[str, Any],
                      mode: str) -> tuple[Sequence[Any], int]:
    cursor = db.execute(text, params)
    try:
        if mode == _COUNT or cursor.description is None:
            return [], cursor.rowcount
        found: list[Any] = cursor.fetchall()
        if mode == _MAPPINGS:
            names = [d[0] for d in cursor.description]
            found = [dict(zip(names, r, strict=True)) for r in found]
        return found, len(found)
    finally:
        cursor.close()


async def _sqlite(adapter: Any, sql: Sql, params: dict[str, Any], mode: str) -> tuple[Sequence[Any], int]:
    # The driver runs in autocommit mode (storage/engine.py): outside a unit of work a statement
    # is its own transaction, so there is no lazy BEGIN to mirror here.
    driver = adapter._connection  # aiosqlite.Connection: one hop to its thread for the lot
    try:
        return await driver._execute(_sqlite_in_thread, driver._conn, sql.text, params, mode)
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
