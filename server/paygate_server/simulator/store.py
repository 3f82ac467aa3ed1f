"""The simulator's durable store: one SQLite file (WAL, ``synchronous=FULL``).

Why a single writer thread: every decision that must be atomic ("is this reference
new? then record it"; "is this hold still capturable? then capture it") runs inside that
thread, one operation after another, so the same reference posted by 200 clients at once
is recorded exactly once, and a capture racing a void or another capture of the same
authorization finds the other's effect, without any locking in the request handlers. The
writer drains its queue in batches and commits each batch in one transaction (group
commit), so thousands of charges per second cost a few hundred fsyncs, and no request is
answered before its batch is durable: a SIGKILL right after an answer cannot lose the
charge. Across processes on one file, ``BEGIN IMMEDIATE`` serializes the writers. Reads go
through a small pool of read-only connections, which WAL lets run beside the writer.

Only the card's brand and last four digits are stored, never the number or the CVC.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import operator
import pathlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import Any, Generic, TypeVar

from paygate_server.private_files import private_dir, private_file

from .records import (
    ALREADY_CAPTURED,
    AUTHORIZATION_EXPIRED,
    AUTHORIZATION_VOIDED,
    CaptureRecord,
    ChargeDisposition,
    ChargeMode,
    ChargeRecord,
    HoldDisposition,
    OperationReferences,
    RefundDisposition,
    RefundRecord,
    Settlement,
    VoidRecord,
)
from .schema import SCHEMA, migrate
from .writer import Writer

__all__ = [
    "CaptureRecord",
    "ChargeDisposition",
    "ChargeMode",
    "ChargeRecord",
    "HoldDisposition",
    "OperationReferences",
    "RefundDisposition",
    "RefundRecord",
    "Settlement",
    "Store",
    "StoreClosed",
    "VoidRecord",
]

T = TypeVar("T")

READ_THREADS = 4


# The tables' columns are named after the records' fields, in the same order: a row is a
# record's fields, and a record's values are a row.
_CHARGE_FIELDS = [f.name for f in fields(ChargeRecord)]
_CHARGE_COLUMNS = ", ".join(_CHARGE_FIELDS)
_charge_values = operator.attrgetter(*_CHARGE_FIELDS)
_CAPTURE_IX = _CHARGE_FIELDS.index("capture")
_VOIDED_IX = _CHARGE_FIELDS.index("voided")


_Op = TypeVar("_Op", RefundRecord, CaptureRecord, VoidRecord)


class _OperationTable(Generic[_Op]):
    """The table of a refund, capture or void record, found by its reference."""

    def __init__(self, name: str, record: type[_Op]) -> None:
        self.name = name
        self._record: type[_Op] = record
        self.fields = [f.name for f in fields(record)]
        self.columns = ", ".join(self.fields)
        self._values = operator.attrgetter(*self.fields)
        self._insert = f"INSERT INTO {name} ({self.columns}) VALUES ({_marks(self.fields)})"
        self._select = f"SELECT {self.columns} FROM {name} WHERE reference = ?"

    def get(self, conn: sqlite3.Connection, reference: str) -> _Op | None:
        row = conn.execute(self._select, (reference,)).fetchone()
        return None if row is None else self._record(*row)

    def add(self, conn: sqlite3.Connection, record: _Op) -> None:
        conn.execute(self._insert, self._values(record))

    def references_by_charge(
        self, conn: sqlite3.Connection, where: str, params: list[str]
    ) -> dict[str, list[str]]:
        """The references recorded against each charge that ``where`` selects (on the
        charges as ``c``), in the order recorded: by ``created_at`` (milliseconds), ties
        by reference."""
        found: dict[str, list[str]] = {}
        for charge_reference, reference in conn.execute(
            f"SELECT o.charge_reference, o.reference FROM {self.name} o "
            f"JOIN charges c ON c.reference = o.charge_reference WHERE {where} "
            "ORDER BY o.created_at, o.reference",
            params,
        ):
            found.setdefault(charge_reference, []).append(reference)
        return found


def _charge_from(row: tuple[Any, ...]) -> ChargeRecord:
    # SQLite has no boolean: the two flags come back as 0/1.
    values = list(row)
    values[_CAPTURE_IX] = bool(values[_CAPTURE_IX])
    values[_VOIDED_IX] = bool(values[_VOIDED_IX])
    return ChargeRecord(*values)


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


def _marks(names: list[str]) -> str:
    return ", ".join("?" for _ in names)


_SELECT_CHARGE = f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE reference = ?"
_INSERT_CHARGE_IF_NEW = (
    f"INSERT INTO charges ({_CHARGE_COLUMNS}) VALUES ({_marks(_CHARGE_FIELDS)}) "
    "ON CONFLICT (reference) DO NOTHING"
)
_REFUNDS = _OperationTable("refunds", RefundRecord)
_CAPTURES = _OperationTable("captures", CaptureRecord)
_VOIDS = _OperationTable("voids", VoidRecord)


# --- operations run by the writer thread -------------------------------------------------


def _charge(conn: sqlite3.Connection, reference: str) -> ChargeRecord | None:
    row = conn.execute(_SELECT_CHARGE, (reference,)).fetchone()
    return None if row is None else _charge_from(row)


def _op_charge(
    conn: sqlite3.Connection, record: ChargeRecord, mode: ChargeMode
) -> tuple[ChargeDisposition, ChargeRecord | None]:
    if mode is ChargeMode.RECORD:
        # The common case in one statement: a new reference is inserted, an existing one
        # is left alone (and read back below).
        inserted = conn.execute(_INSERT_CHARGE_IF_NEW, _charge_values(record)).rowcount
        if inserted:
            return ChargeDisposition.CREATED, record
    existing = _charge(conn, record.reference)
    if existing is not None:
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
    conn: sqlite3.Connection,
    reference: str,
    charge_reference: str,
    amount: int,
    created_at: str,
    error_if_new: bool = False,
) -> tuple[RefundDisposition, RefundRecord | None, ChargeRecord | None]:
    existing = _REFUNDS.get(conn, reference)
    if existing is not None:
        if existing.charge_reference == charge_reference and existing.amount == amount:
            return RefundDisposition.EXISTING, existing, None
        return RefundDisposition.CONFLICT, existing, None
    if error_if_new:
        return RefundDisposition.ERROR, None, None
    charge = _charge(conn, charge_reference)
    if charge is None:
        return RefundDisposition.CHARGE_NOT_FOUND, None, None
    # Only what was taken can be given back: an authorization before its capture (or
    # after its void) has nothing to refund, a partial capture bounds the refunds.
    if charge.captured_amount == 0:
        return RefundDisposition.NOT_REFUNDABLE, None, charge
    if charge.amount_refunded + amount > charge.captured_amount:
        return RefundDisposition.EXCEEDS_REMAINING, None, charge
    refund = RefundRecord(
        reference, charge_reference, amount, charge.currency, "succeeded", created_at
    )
    _REFUNDS.add(conn, refund)
    conn.execute(
        "UPDATE charges SET amount_refunded = amount_refunded + ? WHERE reference = ?",
        (amount, charge_reference),
    )
    return RefundDisposition.CREATED, refund, charge


def _hold_of(
    conn: sqlite3.Connection, charge_reference: str
) -> tuple[HoldDisposition | None, ChargeRecord | None]:
    """The charge a capture or void names, or why there is no hold to act on."""
    charge = _charge(conn, charge_reference)
    if charge is None:
        return HoldDisposition.CHARGE_NOT_FOUND, None
    if charge.status != "approved":
        return HoldDisposition.NOT_AUTHORIZED, charge
    return None, charge


def _op_capture(
    conn: sqlite3.Connection,
    reference: str,
    charge_reference: str,
    amount: int,
    now: str,
    error_if_new: bool,
) -> tuple[HoldDisposition, CaptureRecord | None, ChargeRecord | None]:
    existing = _CAPTURES.get(conn, reference)
    if existing is not None:
        if existing.charge_reference == charge_reference and existing.amount == amount:
            return HoldDisposition.EXISTING, existing, None
        return HoldDisposition.CONFLICT, existing, None
    if error_if_new:
        return HoldDisposition.ERROR, None, None
    refusal, charge = _hold_of(conn, charge_reference)
    if refusal is not None:
        return refusal, None, charge
    assert charge is not None
    if amount > charge.amount:
        # A malformed request whatever the hold's state: nothing recorded.
        return HoldDisposition.EXCEEDS_AUTHORIZED, None, charge
    decline: str | None = None
    if charge.capture or charge.amount_captured:
        decline = ALREADY_CAPTURED  # an automatic charge was captured when it was made
    elif charge.voided:
        decline = AUTHORIZATION_VOIDED
    elif charge.expired(now):
        decline = AUTHORIZATION_EXPIRED
    else:
        # Conditional, like every transition: a hold captured or voided meanwhile (by
        # another process on this file) is not captured again.
        taken = conn.execute(
            "UPDATE charges SET amount_captured = ? "
            "WHERE reference = ? AND capture = 0 AND amount_captured = 0 AND voided = 0",
            (amount, charge_reference),
        ).rowcount
        if not taken:
            raise RuntimeError("hold changed under the writer's transaction")
    capture = CaptureRecord(
        reference=reference,
        charge_reference=charge_reference,
        amount=amount,
        currency=charge.currency,
        status="refused" if decline else "captured",
        decline_code=decline,
        created_at=now,
    )
    _CAPTURES.add(conn, capture)
    return HoldDisposition.CREATED, capture, charge


def _op_void(
    conn: sqlite3.Connection,
    reference: str,
    charge_reference: str,
    now: str,
    error_if_new: bool,
) -> tuple[HoldDisposition, VoidRecord | None, ChargeRecord | None]:
    existing = _VOIDS.get(conn, reference)
    if existing is not None:
        if existing.charge_reference == charge_reference:
            return HoldDisposition.EXISTING, existing, None
        return HoldDisposition.CONFLICT, existing, None
    if error_if_new:
        return HoldDisposition.ERROR, None, None
    refusal, charge = _hold_of(conn, charge_reference)
    if refusal is not None:
        return refusal, None, charge
    assert charge is not None
    decline: str | None = None
    if charge.capture or charge.amount_captured:
        decline = ALREADY_CAPTURED
    else:
        # A hold already voided or expired is voided all the same: nothing is left to
        # release, and the caller asked for exactly that state.
        conn.execute(
            "UPDATE charges SET voided = 1 WHERE reference = ? AND amount_captured = 0",
            (charge_reference,),
        )
    void = VoidRecord(
        reference=reference,
        charge_reference=charge_reference,
        status="refused" if decline else "voided",
        decline_code=decline,
        created_at=now,
    )
    _VOIDS.add(conn, void)
    return HoldDisposition.CREATED, void, charge


def _op_advance_clock(conn: sqlite3.Connection, by_us: int) -> int:
    conn.execute(
        "INSERT INTO clock (id, offset_us) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET offset_us = offset_us + excluded.offset_us",
        (by_us,),
    )
    return int(conn.execute("SELECT offset_us FROM clock WHERE id = 1").fetchone()[0])


class Store:
    """Async facade over the writer thread and the read pool."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self.path = str(path)
        self._writer: Writer[sqlite3.Connection] | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._read_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # The simulator clock's lead over the wall clock, as last stored (read on open).
        self.clock_offset_us = 0

    # --- lifecycle ------------------------------------------------------------------

    def open(self) -> None:
        """Create the schema and start the writer. Call from the event loop thread."""
        if self.path != ":memory:":
            private_dir(pathlib.Path(self.path).parent, tighten=False)
            private_file(pathlib.Path(self.path))  # SQLite's -wal and -shm take its mode
        self._loop = asyncio.get_running_loop()
        conn = _connect(self.path)
        conn.executescript(SCHEMA)
        migrate(conn)
        row = conn.execute("SELECT offset_us FROM clock WHERE id = 1").fetchone()
        self.clock_offset_us = 0 if row is None else int(row[0])
        self._writer = Writer(conn, self._loop)
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

    async def _read_snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`_read` in one read transaction: every statement of ``fn`` sees the same
        snapshot (a charge's state and its operations, a day's lists)."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await self._read(run)

    # --- writes ---------------------------------------------------------------------

    async def charge(
        self, record: ChargeRecord, mode: ChargeMode = ChargeMode.RECORD
    ) -> tuple[ChargeDisposition, ChargeRecord | None]:
        return await self._write(lambda conn: _op_charge(conn, record, mode))

    async def refund(
        self,
        reference: str,
        charge_reference: str,
        amount: int,
        created_at: str,
        *,
        error_if_new: bool = False,
    ) -> tuple[RefundDisposition, RefundRecord | None, ChargeRecord | None]:
        """``error_if_new``: an injected processing error, which records nothing but
        still replays a reference that was recorded."""
        return await self._write(
            lambda conn: _op_refund(
                conn, reference, charge_reference, amount, created_at, error_if_new
            )
        )

    async def capture(
        self,
        reference: str,
        charge_reference: str,
        amount: int,
        now: str,
        *,
        error_if_new: bool = False,
    ) -> tuple[HoldDisposition, CaptureRecord | None, ChargeRecord | None]:
        """Capture ``amount`` of an authorization's hold, once; ``now`` (the simulator's
        clock) decides whether the hold has expired and stamps the record."""
        return await self._write(
            lambda conn: _op_capture(
                conn, reference, charge_reference, amount, now, error_if_new
            )
        )

    async def void(
        self, reference: str, charge_reference: str, now: str, *, error_if_new: bool = False
    ) -> tuple[HoldDisposition, VoidRecord | None, ChargeRecord | None]:
        return await self._write(
            lambda conn: _op_void(conn, reference, charge_reference, now, error_if_new)
        )

    async def advance_clock(self, by_us: int) -> int:
        """Move the simulator's clock ahead by ``by_us``, durably; the new offset."""
        self.clock_offset_us = await self._write(lambda conn: _op_advance_clock(conn, by_us))
        return self.clock_offset_us

    # --- reads ----------------------------------------------------------------------

    async def get_charge(self, reference: str) -> ChargeRecord | None:
        return await self._read(lambda conn: _charge(conn, reference))

    async def get_capture(self, reference: str) -> CaptureRecord | None:
        return await self._read(lambda conn: _CAPTURES.get(conn, reference))

    async def get_void(self, reference: str) -> VoidRecord | None:
        return await self._read(lambda conn: _VOIDS.get(conn, reference))

    async def get_refund(self, reference: str) -> RefundRecord | None:
        return await self._read(lambda conn: _REFUNDS.get(conn, reference))

    async def list_charges(
        self, *, payment_intent_id: str | None = None, merchant_id: str | None = None
    ) -> list[tuple[ChargeRecord, OperationReferences]]:
        """The charges of an intent or a merchant, oldest first, each with the references
        of the operations recorded against it."""
        clauses: list[str] = []
        params: list[str] = []
        if payment_intent_id is not None:
            clauses.append("c.payment_intent_id = ?")
            params.append(payment_intent_id)
        if merchant_id is not None:
            clauses.append("c.merchant_id = ?")
            params.append(merchant_id)
        where = " AND ".join(clauses) or "1"
        sql = (
            f"SELECT {_CHARGE_COLUMNS} FROM charges c WHERE {where} "
            "ORDER BY created_at, reference"
        )

        def run(conn: sqlite3.Connection) -> list[tuple[ChargeRecord, OperationReferences]]:
            # One snapshot: a capture is in the charge's state and its list, or in neither.
            charges = [_charge_from(row) for row in conn.execute(sql, params)]
            captures, voids, refunds = (
                table.references_by_charge(conn, where, params)
                for table in (_CAPTURES, _VOIDS, _REFUNDS)
            )
            return [
                (
                    charge,
                    OperationReferences(
                        tuple(captures.get(charge.reference, ())),
                        tuple(voids.get(charge.reference, ())),
                        tuple(refunds.get(charge.reference, ())),
                    ),
                )
                for charge in charges
            ]

        return await self._read_snapshot(run)

    async def settlement(self, day: _dt.date) -> Settlement:
        """Approved automatic charges, captures and succeeded refunds recorded on ``day``
        (UTC). An authorization is not in it: what settles is its capture."""
        start = day.isoformat() + "T"
        end = (day + _dt.timedelta(days=1)).isoformat() + "T"
        charge_cols = ", ".join(f"c.{name}" for name in _CHARGE_FIELDS)

        def joined(
            conn: sqlite3.Connection, table: str, columns: list[str], status: str
        ) -> list[tuple[Any, ChargeRecord]]:
            # A joined row: the operation's columns, then its charge's.
            cols = ", ".join(f"o.{name}" for name in columns)
            split = len(columns)
            return [
                (row[:split], _charge_from(row[split:]))
                for row in conn.execute(
                    f"SELECT {cols}, {charge_cols} FROM {table} o "
                    "JOIN charges c ON c.reference = o.charge_reference "
                    "WHERE o.status = ? AND o.created_at >= ? AND o.created_at < ? "
                    "ORDER BY o.created_at, o.reference",
                    (status, start, end),
                )
            ]

        def run(conn: sqlite3.Connection) -> Settlement:
            # One snapshot, so every list is of the same moment.
            charges = [
                _charge_from(row)
                for row in conn.execute(
                    f"SELECT {_CHARGE_COLUMNS} FROM charges WHERE status = 'approved' "
                    "AND capture = 1 AND created_at >= ? AND created_at < ? "
                    "ORDER BY created_at, reference",
                    (start, end),
                )
            ]
            captures = [
                (CaptureRecord(*op), charge)
                for op, charge in joined(conn, _CAPTURES.name, _CAPTURES.fields, "captured")
            ]
            refunds = [
                (RefundRecord(*op), charge)
                for op, charge in joined(conn, _REFUNDS.name, _REFUNDS.fields, "succeeded")
            ]
            return Settlement(charges, captures, refunds)

        return await self._read_snapshot(run)
