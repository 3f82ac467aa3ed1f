"""Reading ``change_log``: the relay's commit-safe reader on each database, and the
audit's and timeline's plain reads (:class:`ChangeLog`).

Commit-safe reading: nothing skipped, per-intent order kept.

The polling-outbox trap: ids (and ``txid``) are taken *before* commit, so on PostgreSQL a row
with a smaller id can become visible after one with a larger id. A reader that remembers
"the highest id seen" skips it forever.

PostgreSQL — windows of transaction ids. ``X`` is the oldest transaction still running (as
``pg_snapshot_xmin(pg_current_snapshot())``, but ignoring other databases' transactions, see
``_OLDEST_RUNNING_EXPR``): every transaction with ``txid < X`` has finished, and
every transaction that will ever write a row from now on has ``txid >= X``. So the set of
rows with ``H <= txid < X`` is final: the reader delivers it completely (by id, in pages)
and then moves its horizon ``H`` to ``X``. Nothing committed is skipped, whatever the
commit order.

That alone could still deliver one intent's changes backwards. ``intent_seq`` is assigned
under the intent's row lock, so change ``k+1`` is written only after change ``k`` committed —
but its transaction may be *older* (a smaller txid: it began, wrote something else, then
waited for the lock). With an unrelated transaction still running between the two txids,
``k+1`` falls inside the window and ``k`` outside. So before a window is used, its end is
lowered until no change inside has its predecessor (``intent_seq - 1``) outside:
``X := min(txid of such changes)``, repeated until none is left. Each change carries its
predecessor's txid (``prev_txid``, from the intent's head, storage/capture.py), so the
test reads the window's own rows and never looks a predecessor up (which, the log being
partitioned by id, would visit every partition). By induction no
predecessor is ever left behind a window, and within a window ids follow ``intent_seq``
(change ``k+1`` is inserted after ``k`` committed), so delivering by id keeps per-intent order.

SQLite has one writer at a time (``BEGIN IMMEDIATE``): ids are assigned in commit order,
and "everything after the last id" is exact.

Cost: this runs for every read of every consumer, so the statements go straight to the
driver (no SQLAlchemy construct, compile or result wrapping) outside any transaction —
each is one consistent statement on its own, and the windows need nothing more. On
PostgreSQL opening a window is one round trip: the oldest running transaction, the first
blocked txid, whether committed rows wait beyond the window, and the first page of the
window come back together; only a split intent (rare) costs the lowering loop and a
separate page read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.storage.capture import intent_id_expr, snapshot_expr
from paygate_server.storage.changes import START, Change, Position
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import CAPTURED_TABLES
from paygate_server.storage.statements import Sql, fetch_one, fetch_tuples

__all__ = ["Batch", "ChangeLog", "ChangeReader", "EntityRow", "PostgresReader", "SqliteReader", "reader_for"]

# The columns of a Change, in its field order: ``Change(*row, position)``.
_COLUMNS = "id, entity, entity_id, op, intent_id, merchant_id, intent_seq, data, txid, created_at"

_BLOCKED = Sql("""
SELECT min(txid) FROM change_log
WHERE txid >= :horizon AND txid < :x AND prev_txid >= :x
""")

# The oldest transaction still running *in this database* (else the next txid). A snapshot's
# in-progress list spans the whole cluster, and a long transaction in another database can
# never write our change_log: an xid is skipped only when pg_stat_activity shows it belongs
# to a backend of another database (a backend never changes database); any xid it cannot
# place — a race, a prepared transaction, stats hidden by permissions — counts as ours.
_OLDEST_RUNNING_EXPR = """
least(
  pg_snapshot_xmax(snap)::text::bigint,
  (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snap) AS x
    WHERE NOT EXISTS (
      SELECT 1 FROM pg_stat_activity a
      WHERE a.backend_xid IS NOT NULL
        AND a.backend_xid::text::bigint = x::text::bigint % 4294967296
        AND a.datname IS DISTINCT FROM current_database())))
"""

# Opening a window (:horizon, :page_size), one round trip: X (the oldest running
# transaction, computed once), the smallest txid in [H, X) whose predecessor lies at or
# beyond X (NULL when no intent is split), whether committed rows already wait at or beyond
# X, and — when nothing is split — the window's first page (no page: one row of NULL change
# columns). min() keeps every lookup on the txid index whatever plan the statement gets.
_OPEN_WINDOW = Sql(f"""
WITH w AS MATERIALIZED (
  SELECT {_OLDEST_RUNNING_EXPR} AS x FROM (SELECT pg_current_snapshot() AS snap) s),
b AS MATERIALIZED (
  SELECT w.x,
    (SELECT min(c.txid) FROM change_log c
      WHERE c.txid >= :horizon AND c.txid < w.x AND c.prev_txid >= w.x) AS blocked,
    (SELECT min(l.txid) FROM change_log l WHERE l.txid >= w.x) IS NOT NULL AS beyond
  FROM w)
SELECT b.x, b.blocked, b.beyond, {", ".join("c." + n for n in _COLUMNS.split(", "))}
FROM b LEFT JOIN LATERAL (
  SELECT {_COLUMNS} FROM change_log
  WHERE b.blocked IS NULL AND txid >= :horizon AND txid < b.x
  ORDER BY id LIMIT :page_size) c ON true
ORDER BY c.id
""")

_PAGE = Sql(f"""
SELECT {_COLUMNS} FROM change_log
WHERE txid >= :horizon AND txid < :end AND id > :after ORDER BY id LIMIT :page_size
""")

# SQLite's page, and the audit's walk of the whole log on either database.
_AFTER = Sql(f"SELECT {_COLUMNS} FROM change_log WHERE id > :after ORDER BY id LIMIT :page_size")
# The audit's look-up of one archived segment's id range.
_BETWEEN = Sql(f"SELECT {_COLUMNS} FROM change_log WHERE id > :after AND id <= :upto ORDER BY id LIMIT :page_size")


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read found: ``changes`` in delivery order, the position after them, and
    ``waiting``: committed changes exist that this read could not deliver yet (beyond the
    window end, held back by a transaction still running) — worth looking again soon,
    even if no wake-up comes (that transaction may commit without capturing anything)."""

    changes: list[Change]
    position: Position
    waiting: bool = False


class ChangeReader(Protocol):
    async def read(self, conn: AsyncConnection, pos: Position, limit: int) -> Batch:
        """Up to ``limit`` changes after ``pos``, in delivery order, and the position after them."""
        ...


async def _pg_fetch(conn: AsyncConnection, sql: Sql, **params: Any) -> Sequence[Sequence[Any]]:
    # The relay reads outside any transaction (each statement is its own consistent read);
    # on a connection whose transaction is open, the statement simply runs inside it.
    return await fetch_tuples(conn, sql, begin=False, **params)


async def _lower(conn: AsyncConnection, horizon: int, x: int) -> int:
    while x > horizon:
        blocked = (await _pg_fetch(conn, _BLOCKED, horizon=horizon, x=x))[0][0]
        if blocked is None:
            break
        x = blocked
    return max(x, horizon)


def _change(row: Sequence[Any], position: Position = START) -> Change:
    return Change(*row, position)  # type: ignore[call-arg]  # the row holds _COLUMNS: a Change's fields in order


def _page(rows: Sequence[Any], horizon: int, end: int, limit: int, skip: int = 0) -> Batch:
    """Changes from rows (change columns from index ``skip``); closes an exhausted window."""
    if skip:
        changes = [_change(r[skip:], Position(horizon, end, r[skip])) for r in rows]
    else:
        changes = [_change(r, Position(horizon, end, r[0])) for r in rows]
    if len(changes) < limit:  # the window is exhausted
        closed = Position(end, None, 0)
        if changes:
            changes[-1] = replace(changes[-1], position=closed)
        # The next window may already hold changes committed meanwhile: look again soon.
        return Batch(changes, closed, waiting=True)
    return Batch(changes, changes[-1].position)


class PostgresReader:
    async def read(self, conn: AsyncConnection, pos: Position, limit: int) -> Batch:
        horizon = pos.horizon
        if pos.window_end is not None:  # paging through an open window
            rows = await _pg_fetch(conn, _PAGE, horizon=horizon, end=pos.window_end, after=pos.last_id,
                                  page_size=limit)
            return _page(rows, horizon, pos.window_end, limit)
        rows = await _pg_fetch(conn, _OPEN_WINDOW, horizon=horizon, page_size=limit)
        x, blocked, waiting = rows[0][0], rows[0][1], bool(rows[0][2])
        if blocked is not None:
            # An intent is split across X: lower the end until none is (see above).
            end = await _lower(conn, horizon, blocked)
            if end <= horizon:
                return Batch([], pos, waiting=True)
            rows = await _pg_fetch(conn, _PAGE, horizon=horizon, end=end, after=0, page_size=limit)
            return replace(_page(rows, horizon, end, limit), waiting=True)
        if x <= horizon:
            return Batch([], pos, waiting=waiting)
        if rows[0][3] is None:  # an empty window: just move on
            return Batch([], Position(x, None, 0), waiting=waiting)
        return replace(_page(rows, horizon, x, limit, skip=3), waiting=waiting)


class SqliteReader:
    async def read(self, conn: AsyncConnection, pos: Position, limit: int) -> Batch:
        # One hop to the driver's thread; outside a transaction the SELECT is its own
        # consistent read (the driver runs in autocommit mode, see storage/engine.py).
        rows = await fetch_tuples(conn, _AFTER, after=pos.last_id, page_size=limit)
        changes = [_change(r, Position(0, None, r[0])) for r in rows]
        return Batch(changes, changes[-1].position if changes else pos)


def reader_for(db: Database) -> ChangeReader:
    return SqliteReader() if db.is_sqlite else PostgresReader()


# Every transaction that has begun has a smaller txid (PostgreSQL).
_NEXT_TXID = Sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")

_OF_INTENT = Sql(f"SELECT {_COLUMNS} FROM change_log WHERE intent_id = :intent_id ORDER BY intent_seq")
_INTENT_EXISTS = Sql("SELECT 1 AS one FROM payment_intents WHERE id = :intent_id")
_PRUNED_SEQ = Sql("SELECT last_seq FROM change_log_floor WHERE intent_id = :intent_id")
_OF_MERCHANTS_INTENT = Sql(f"SELECT {_COLUMNS} FROM change_log WHERE intent_id = :intent_id"
                           " AND merchant_id = :merchant_id ORDER BY intent_seq")


def _rows_sql(dialect: str, table_name: str) -> Sql:
    """A page of ``table_name``'s rows by id: each row's snapshot as its capture trigger would
    write it now (:func:`.capture.snapshot_expr`, the same expression) and, in the same
    statement — so the same consistent read —, the entity's newest change still in the log
    (found through the intent's changes, ``ix_change_log_intent_seq``)."""
    entity = CAPTURED_TABLES[table_name]
    intent = intent_id_expr(table_name, "t")
    snapshot = snapshot_expr(dialect, table_name, "t")
    if dialect == "postgresql":
        snapshot = f"({snapshot})::text"
    return Sql(f"""
SELECT r.id, r.intent_id, r.snap, c.id, c.intent_seq, c.data FROM (
  SELECT t.id AS id, {intent} AS intent_id, {snapshot} AS snap,
    (SELECT n.id FROM change_log n WHERE n.intent_id = {intent} AND n.entity = '{entity}'
       AND n.entity_id = t.id ORDER BY n.intent_seq DESC LIMIT 1) AS newest
  FROM {table_name} t WHERE t.id > :after ORDER BY t.id LIMIT :page_size) r
LEFT JOIN change_log c ON c.id = r.newest
ORDER BY r.id
""")


@dataclass(frozen=True, slots=True)
class EntityRow:
    """A captured row as it is now, next to its newest change still in the log."""

    entity: str
    entity_id: str
    intent_id: str
    data: str  # the snapshot the capture trigger would write for the row now (JSON text)
    newest_id: int | None  # the entity's newest change in the log (None: none left, or never)
    newest_seq: int | None
    newest_data: str | None


class ChangeLog:
    """Plain reads of the whole log, each in a transaction of its own (the audit, timelines)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._rows: dict[str, Sql] = {}

    @property
    def ids_gap_free(self) -> bool:
        """Whether every change id from 1 to the newest was committed. SQLite: yes — an
        ``AUTOINCREMENT`` id's counter (``sqlite_sequence``) is written in the inserting
        transaction and rolled back with it, also when a statement aborts inside a
        transaction, so a rolled-back capture leaves no hole; only pruning deletes rows
        (and it keeps the counter). PostgreSQL: no — ids come from a sequence, which a
        rolled-back transaction does not give back, so a capture that rolls back leaves an
        id that never existed."""
        return self._db.is_sqlite

    async def rows(self, table_name: str, after_id: str, limit: int) -> list[EntityRow]:
        """Up to ``limit`` rows of a captured table with an id above ``after_id``, by id, each
        with its current snapshot and its entity's newest change in the log."""
        sql = self._rows.get(table_name)
        if sql is None:
            sql = self._rows[table_name] = _rows_sql("sqlite" if self._db.is_sqlite else "postgresql", table_name)
        async with self._db.read() as conn:
            rows = await fetch_tuples(conn, sql, after=after_id, page_size=limit)
        entity = CAPTURED_TABLES[table_name]
        return [EntityRow(entity, *r) for r in rows]

    async def after(self, after_id: int, limit: int) -> list[Change]:
        """Up to ``limit`` changes with an id above ``after_id``, by id."""
        async with self._db.read() as conn:
            rows = await fetch_tuples(conn, _AFTER, after=after_id, page_size=limit)
        return [_change(r) for r in rows]

    async def between(self, after_id: int, upto_id: int, limit: int) -> list[Change]:
        """Up to ``limit`` changes with ``after_id < id <= upto_id``, by id."""
        async with self._db.read() as conn:
            rows = await fetch_tuples(conn, _BETWEEN, after=after_id, upto=upto_id, page_size=limit)
        return [_change(r) for r in rows]

    async def of_intent(self, intent_id: str, *, merchant_id: str | None = None) -> list[Change]:
        """An intent's changes, oldest first (only if it is ``merchant_id``'s, when given)."""
        async with self._db.read() as conn:
            if merchant_id is None:
                rows = await fetch_tuples(conn, _OF_INTENT, intent_id=intent_id)
            else:
                rows = await fetch_tuples(conn, _OF_MERCHANTS_INTENT, intent_id=intent_id, merchant_id=merchant_id)
        return [_change(r) for r in rows]

    async def intent_exists(self, intent_id: str) -> bool:
        """Whether the intent exists (one whose history is nowhere has lost it: not empty)."""
        async with self._db.read_one() as conn:
            return await fetch_one(conn, _INTENT_EXISTS, intent_id=intent_id) is not None

    async def pruned_seq(self, intent_id: str) -> int:
        """The intent's last sequence that pruning took out of the database (0: none)."""
        async with self._db.read_one() as conn:
            row = await fetch_one(conn, _PRUNED_SEQ, intent_id=intent_id)
        return 0 if row is None else int(row["last_seq"])

    async def drain_target(self) -> int | None:
        """What a drain must reach to deliver everything committed or in progress now: on
        PostgreSQL the next transaction id (a position whose horizon reaches it has seen
        every transaction begun before), on SQLite None (reading to the last id is exact)."""
        if self._db.is_sqlite:
            return None
        async with self._db.read() as conn:
            return int((await fetch_tuples(conn, _NEXT_TXID))[0][0])
