"""The simulator's durable store: one SQLite file (WAL, ``synchronous=FULL``).

Why a single writer thread: every decision that must be atomic ("is this reference
new? then record it") runs inside that thread, one operation after another, so the same
reference posted by 200 clients at once is recorded exactly once without any locking
in the request handlers. The writer drains its queue in batches and commits each batch
in one transaction (group commit), so thousands of charges per second cost a few
hundred fsyncs, and no request is answered before its batch is durable: a SIGKILL right
after an answer cannot lose the charge. Reads go through a small pool of read-only
connections, which WAL lets run beside the writer.

Only the card's brand and last four digits are stored, never the number or the CVC.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import enum
import operator
import pathlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from paygate_server.private_files import private_dir, private_file

__all__ = [
    "ChargeDisposition",
    "ChargeMode",
    "ChargeRecord",
    "RefundDisposition",
    "RefundRecord",
    "Store",
    "StoreClosed",
]

T = TypeVar("T")

# Upper bound of operations per transaction: big enough to amortise the fsync, small
# enough that one batch never holds the write lock for long.
MAX_BATCH = 1024
READ_THREADS = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    reference         TEXT PRIMARY KEY,
    payment_intent_id TEXT NOT NULL,
    merchant_id       TEXT NOT NULL,
    amount            INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    card_brand        TEXT NOT NULL,
    card_last4        TEXT NOT NULL,
    status            TEXT NOT NULL,
    auth_code         TEXT,
    decline_code      TEXT,
    created_at        TEXT NOT NULL,
    amount_refunded   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS charges_by_intent ON charges (payment_intent_id);
CREATE INDEX IF NOT EXISTS charges_by_merchant ON charges (merchant_id);
CREATE INDEX IF NOT EXISTS charges_by_created ON charges (created_at);
CREATE TABLE IF NOT EXISTS refunds (
    reference        TEXT PRIMARY KEY,
    charge_reference TEXT NOT NULL,
    amount           INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refunds_by_charge ON refunds (charge_reference);
CREATE INDEX IF NOT EXISTS refunds_by_created ON refunds (created_at);
-- References of card 4000000000001034 that already got their one 503 (no charge).
CREATE TABLE IF NOT EXISTS retry_marks (
    reference  TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
"""

@dataclass(frozen=True, slots=True)
class ChargeRecord:
    reference: str
    payment_intent_id: str
    merchant_id: str
    amount: int
    currency: str
    card_brand: str
    card_last4: str
    status: str  # "approved" | "declined"
    auth_code: str | None
    decline_code: str | None
    created_at: str
    amount_refunded: int = 0

    def same_request(self, other: ChargeRecord) -> bool:
        """Whether ``other`` asks for the same charge (the idempotency check)."""
        return (
            self.amount == other.amount
            and self.currency == other.currency
            and self.merchant_id == other.merchant_id
            and self.payment_intent_id == other.payment_intent_id
            and self.card_brand == other.card_brand
            and self.card_last4 == other.card_last4
        )


@dataclass(frozen=True, slots=True)
class RefundRecord:
    reference: str
    charge_reference: str
    amount: int
    currency: str
    status: str  # "succeeded"
    created_at: str


# The tables' columns are named after the records' fields, in the same order: a row is a
# record's fields, and a record's values are a row.
_CHARGE_FIELDS = [f.name for f in fields(ChargeRecord)]
_REFUND_FIELDS = [f.name for f in fields(RefundRecord)]
_CHARGE_COLUMNS = ", ".join(_CHARGE_FIELDS)
_REFUND_COLUMNS = ", ".join(_REFUND_FIELDS)
_charge_values = operator.attrgetter(*_CHARGE_FIELDS)
_refund_values = operator.attrgetter(*_REFUND_FIELDS)


class ChargeMode(enum.Enum):
    RECORD = "record"  # record the charge unless the reference exists
    ERROR_IF_NEW = "error_if_new"  # never record; replay an existing reference
    RETRY_FIRST = "retry_first"  # first sighting: mark and refuse; second: record


class ChargeDisposition(enum.Enum):
    CREATED = "created"
    EXISTING = "existing"  # the same request again: replay the first result
    CONFLICT = "conflict"  # the reference exists with other details
    ERROR = "error"  # nothing recorded (ERROR_IF_NEW on a new reference)
    RETRY_LATER = "retry_later"  # nothing recorded (RETRY_FIRST, first sighting)


class RefundDisposition(enum.Enum):
    CREATED = "created"
    EXISTING = "existing"
    CONFLICT = "conflict"
    CHARGE_NOT_FOUND = "charge_not_found"
    NOT_REFUNDABLE = "not_refundable"
    EXCEEDS_REMAINING = "exceeds_remaining"


class StoreClosed(RuntimeError):
    pass


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    else:
        conn.execute("PRAGMA query_only = ON")
    return conn


_SELECT_CHARGE = f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE reference = ?"
_INSERT_CHARGE_IF_NEW = (
    f"INSERT INTO charges ({_CHARGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (reference) DO NOTHING"
)


# --- operations run by the writer thread -------------------------------------------------


def _op_charge(
    conn: sqlite3.Connection, record: ChargeRecord, mode: ChargeMode
) -> tuple[ChargeDisposition, ChargeRecord | None]:
    if mode is ChargeMode.RECORD:
        # The common case in one statement: a new reference is inserted, an existing one
        # is left alone (and read back below).
        inserted = conn.execute(_INSERT_CHARGE_IF_NEW, _charge_values(record)).rowcount
        if inserted:
            return ChargeDisposition.CREATED, record
    row = conn.execute(_SELECT_CHARGE, (record.reference,)).fetchone()
    if row is not None:
        existing = ChargeRecord(*row)
        if existing.same_request(record):
            return ChargeDisposition.EXISTING, existing
        return ChargeDisposition.CONFLICT, existing
    if mode is ChargeMode.ERROR_IF_NEW:
        return ChargeDisposition.ERROR, None
    # RETRY_FIRST on a new reference.
    removed = conn.execute(
        "DELETE FROM retry_marks WHERE reference = ?", (record.reference,)
    ).rowcount
    if not removed:
        conn.execute(
            "INSERT INTO retry_marks (reference, created_at) VALUES (?, ?)",
            (record.reference, record.created_at),
        )
        return ChargeDisposition.RETRY_LATER, None
    conn.execute(_INSERT_CHARGE_IF_NEW, _charge_values(record))
    return ChargeDisposition.CREATED, record


def _op_refund(
    conn: sqlite3.Connection, reference: str, charge_reference: str, amount: int, created_at: str
) -> tuple[RefundDisposition, RefundRecord | None, ChargeRecord | None]:
    row = conn.execute(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE reference = ?", (reference,)
    ).fetchone()
    if row is not None:
        existing = RefundRecord(*row)
        if existing.charge_reference == charge_reference and existing.amount == amount:
            return RefundDisposition.EXISTING, existing, None
        return RefundDisposition.CONFLICT, existing, None
    row = conn.execute(_SELECT_CHARGE, (charge_reference,)).fetchone()
    if row is None:
        return RefundDisposition.CHARGE_NOT_FOUND, None, None
    charge = ChargeRecord(*row)
    if charge.status != "approved":
        return RefundDisposition.NOT_REFUNDABLE, None, charge
    if charge.amount_refunded + amount > charge.amount:
        return RefundDisposition.EXCEEDS_REMAINING, None, charge
    refund = RefundRecord(
        reference, charge_reference, amount, charge.currency, "succeeded", created_at
    )
    conn.execute(
        f"INSERT INTO refunds ({_REFUND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", _refund_values(refund)
    )
    conn.execute(
        "UPDATE charges SET amount_refunded = amount_refunded + ? WHERE reference = ?",
        (amount, charge_reference),
    )
    return RefundDisposition.CREATED, refund, charge


_Item = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


def _deliver(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, error in results:
        if fut.done():  # the awaiting request was cancelled
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)


class _Writer(threading.Thread):
    """Owns the only write connection; runs operations in group-committed batches."""

    def __init__(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="simulator-store-writer", daemon=True)
        self._conn = conn
        self._loop = loop
        self.queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()

    def run(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._loop.call_soon_threadsafe(_deliver, self._run_batch(batch))
        self._conn.close()

    def _run_batch(
        self, batch: list[_Item]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = [
                (fut, op(conn), None) for op, fut in batch
            ]
            conn.execute("COMMIT")
            return results
        except Exception:  # noqa: BLE001 - retried below, one operation at a time
            _rollback(conn)
        # Something in the batch failed: run each operation in its own transaction, so
        # that one bad operation neither half-commits nor takes the others down with it.
        # (Cheaper than a savepoint per operation on the fast path.)
        out: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for op, fut in batch:
            value, error = self._run_alone(op)
            out.append((fut, value, error))
        return out

    def _run_alone(
        self, op: Callable[[sqlite3.Connection], Any]
    ) -> tuple[Any, BaseException | None]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            value = op(conn)
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting request
            _rollback(conn)
            return None, exc
        return value, None


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction was open


class Store:
    """Async facade over the writer thread and the read pool."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = str(path)
        self._writer: _Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._read_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ------------------------------------------------------------------

    def open(self) -> None:
        """Create the schema and start the writer. Call from the event loop thread."""
        if self.path != ":memory:":
            private_dir(pathlib.Path(self.path).parent, tighten=False)
            private_file(pathlib.Path(self.path))  # SQLite's -wal and -shm take its mode
        self._loop = asyncio.get_running_loop()
        conn = _connect(self.path)
        conn.executescript(_SCHEMA)
        self._writer = _Writer(conn, self._loop)
        self._writer.start()
        self._readers = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="simulator-store-read")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.queue.put(None)
            await asyncio.to_thread(writer.join)
        readers, self._readers = self._readers, None
        if readers is not None:
            readers.shutdown(wait=True)
        with self._lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    # --- plumbing -------------------------------------------------------------------

    def _write(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        writer = self._writer
        if writer is None or self._loop is None:
            raise StoreClosed("store is closed")
        fut: asyncio.Future[T] = self._loop.create_future()
        writer.queue.put((op, fut))
        return fut

    def _read_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._read_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None or self._loop is None:
            raise StoreClosed("store is closed")
        return await self._loop.run_in_executor(self._readers, lambda: fn(self._read_conn()))

    # --- writes ---------------------------------------------------------------------

    async def charge(
        self, record: ChargeRecord, mode: ChargeMode = ChargeMode.RECORD
    ) -> tuple[ChargeDisposition, ChargeRecord | None]:
        return await self._write(lambda conn: _op_charge(conn, record, mode))

    async def refund(
        self, reference: str, charge_reference: str, amount: int, created_at: str
    ) -> tuple[RefundDisposition, RefundRecord | None, ChargeRecord | None]:
        return await self._write(
            lambda conn: _op_refund(conn, reference, charge_reference, amount, created_at)
        )

    # --- reads ----------------------------------------------------------------------

    async def get_charge(self, reference: str) -> ChargeRecord | None:
        def run(conn: sqlite3.Connection) -> ChargeRecord | None:
            row = conn.execute(_SELECT_CHARGE, (reference,)).fetchone()
            return None if row is None else ChargeRecord(*row)

        return await self._read(run)

    async def get_refund(self, reference: str) -> RefundRecord | None:
        def run(conn: sqlite3.Connection) -> RefundRecord | None:
            row = conn.execute(
                f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE reference = ?", (reference,)
            ).fetchone()
            return None if row is None else RefundRecord(*row)

        return await self._read(run)

    async def list_charges(
        self, *, payment_intent_id: str | None = None, merchant_id: str | None = None
    ) -> list[ChargeRecord]:
        clauses: list[str] = []
        params: list[str] = []
        if payment_intent_id is not None:
            clauses.append("payment_intent_id = ?")
            params.append(payment_intent_id)
        if merchant_id is not None:
            clauses.append("merchant_id = ?")
            params.append(merchant_id)
        where = " AND ".join(clauses) or "1"
        sql = f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE {where} ORDER BY created_at, reference"

        def run(conn: sqlite3.Connection) -> list[ChargeRecord]:
            return [ChargeRecord(*row) for row in conn.execute(sql, params)]

        return await self._read(run)

    async def settlement(
        self, day: _dt.date
    ) -> tuple[list[ChargeRecord], list[tuple[RefundRecord, ChargeRecord]]]:
        """Approved charges and succeeded refunds recorded on ``day`` (UTC)."""
        start = day.isoformat() + "T"
        end = (day + _dt.timedelta(days=1)).isoformat() + "T"
        refund_cols = ", ".join(f"r.{name}" for name in _REFUND_FIELDS)
        charge_cols = ", ".join(f"c.{name}" for name in _CHARGE_FIELDS)
        split = len(_REFUND_FIELDS)  # a joined row: the refund's columns, then the charge's

        def run(
            conn: sqlite3.Connection,
        ) -> tuple[list[ChargeRecord], list[tuple[RefundRecord, ChargeRecord]]]:
            # One read transaction, so charges and refunds come from the same snapshot.
            conn.execute("BEGIN")
            try:
                charges = [
                    ChargeRecord(*row)
                    for row in conn.execute(
                        f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE status = 'approved' "
                        "AND created_at >= ? AND created_at < ? ORDER BY created_at, reference",
                        (start, end),
                    )
                ]
                refunds = [
                    (RefundRecord(*row[:split]), ChargeRecord(*row[split:]))
                    for row in conn.execute(
                        f"SELECT {refund_cols}, {charge_cols} FROM refunds r "
                        "JOIN charges c ON c.reference = r.charge_reference "
                        "WHERE r.status = 'succeeded' AND r.created_at >= ? AND r.created_at < ? "
                        "ORDER BY r.created_at, r.reference",
                        (start, end),
                    )
                ]
            finally:
                conn.execute("COMMIT")
            return charges, refunds

        return await self._read(run)
