"""The shop's own database (SQLite, stdlib ``sqlite3``): orders, their lines, refunds, and
the webhook deliveries received.

Amounts are INTEGER columns in cents. Every write is one ``BEGIN IMMEDIATE`` transaction
that reads, derives the new state with :mod:`storefront.states`, and writes — so updates
from the pay call, the status poll and webhooks, racing on threads, never lose each other.
Receiving a webhook records its ``webhook-id`` and applies it in the same transaction:
a redelivery is recognised and changes nothing.
"""
from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storefront.cart import CartLine, Totals
from storefront.sqlite import SQLiteDatabase
from storefront.states import (
    PAID_STATUSES,
    OrderStatus,
    PaymentState,
    PaymentUpdate,
    apply_refunded_total,
    apply_update,
    release_refund,
)

__all__ = ["Order", "OrderLine", "OrderStore", "WebhookReceipt"]

log = logging.getLogger("storefront.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    currency TEXT NOT NULL,
    subtotal INTEGER NOT NULL,
    shipping INTEGER NOT NULL,
    total INTEGER NOT NULL CHECK (total > 0),
    status TEXT NOT NULL,
    amount_refunded INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded BETWEEN 0 AND total),
    intent_id TEXT UNIQUE,
    client_secret TEXT,
    intent_updated_at TEXT,
    error_code TEXT,
    decline_code TEXT,
    error_message TEXT,
    card_brand TEXT,
    card_last4 TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    paid_at TEXT,
    capture_method TEXT NOT NULL DEFAULT 'automatic',
    amount_capturable INTEGER NOT NULL DEFAULT 0,
    amount_received INTEGER
);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL REFERENCES orders(id),
    position INTEGER NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    unit_price INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, position)
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    status TEXT NOT NULL,
    reason TEXT,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_events (
    webhook_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    order_id TEXT,
    received_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_events_order ON webhook_events (order_id);
"""

# Columns added after the first release: a shop database made before them gains them.
_ADDED_COLUMNS = {
    "capture_method": "TEXT NOT NULL DEFAULT 'automatic'",
    "amount_capturable": "INTEGER NOT NULL DEFAULT 0",
    "amount_received": "INTEGER",
    "checkout_key": "TEXT",
}
# After the columns exist (an index cannot be made on a column an older database lacks).
_ADDED_INDEXES = ("CREATE UNIQUE INDEX IF NOT EXISTS orders_checkout_key ON orders (checkout_key)",)

# Refund statuses that count towards what was refunded (the gateway reserves pending ones).
_COUNTED_REFUNDS = ("succeeded", "pending", "unknown")
# Of those, the ones the processor has not confirmed: reserved, not yet refunded.
_PENDING_REFUNDS = ("pending", "unknown")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _is_refund_of(data: Mapping[str, Any], order: Order) -> bool:
    """A refund object the shop can record against ``order``: an id and an amount in the
    order's range (anything else would fail the table's checks: a 500, and the gateway
    retrying one event for days)."""
    amount = data.get("amount")
    return (isinstance(data.get("refundId"), str) and isinstance(amount, int) and not isinstance(amount, bool)
            and 0 < amount <= order.total)


_INTENT_AMOUNTS = ("amount", "amountReceived", "amountRefunded", "amountCapturable")


def _is_intent_of(data: Mapping[str, Any], order: Order) -> bool:
    """An intent object the shop can apply to ``order``: each amount it states an integer
    within the order's total (anything else would fail the table's checks, or the SDK's
    reading of it: a 500, and the gateway retrying one event for days). The event is still
    recorded, and acknowledged."""
    for name in _INTENT_AMOUNTS:
        value = data.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= order.total):
            log.warning("webhook for order %s not applied: %s is %.40r", order.id, name, value)
            return False
    return True


@dataclass(frozen=True)
class OrderLine:
    sku: str
    name: str
    unit_price: int
    quantity: int

    @property
    def total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Order:
    id: str
    number: int
    currency: str
    subtotal: int
    shipping: int
    total: int
    payment: PaymentState
    intent_id: str | None
    client_secret: str | None
    created_at: str
    updated_at: str
    paid_at: str | None
    lines: tuple[OrderLine, ...]

    @property
    def status(self) -> OrderStatus:
        return self.payment.status

    @property
    def capture_method(self) -> str:
        return "manual" if self.payment.manual_capture else "automatic"

    @property
    def item_count(self) -> int:
        return sum(line.quantity for line in self.lines)


@dataclass(frozen=True)
class WebhookReceipt:
    duplicate: bool
    order_id: str | None


class OrderStore(SQLiteDatabase):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)
        with self._write() as conn:
            have = {row["name"] for row in conn.execute("PRAGMA table_info(orders)")}
            for name, decl in _ADDED_COLUMNS.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE orders ADD COLUMN {name} {decl}")
            for statement in _ADDED_INDEXES:
                conn.execute(statement)

    # --- reading ----------------------------------------------------------------------

    def _load(self, conn: sqlite3.Connection, row: sqlite3.Row | None) -> Order | None:
        if row is None:
            return None
        lines = tuple(
            OrderLine(r["sku"], r["name"], r["unit_price"], r["quantity"])
            for r in conn.execute(
                "SELECT * FROM order_lines WHERE order_id = ? ORDER BY position", (row["id"],))
        )
        payment = PaymentState(
            amount_refund_pending=self._refund_total(conn, row["id"], _PENDING_REFUNDS),
            status=OrderStatus(row["status"]), total=row["total"],
            amount_refunded=row["amount_refunded"], intent_updated_at=_time(row["intent_updated_at"]),
            error_code=row["error_code"], decline_code=row["decline_code"],
            error_message=row["error_message"], card_brand=row["card_brand"], card_last4=row["card_last4"],
            manual_capture=row["capture_method"] == "manual", amount_capturable=row["amount_capturable"],
            amount_received=row["amount_received"],
        )
        return Order(
            id=row["id"], number=row["number"], currency=row["currency"], subtotal=row["subtotal"],
            shipping=row["shipping"], total=row["total"], payment=payment, intent_id=row["intent_id"],
            client_secret=row["client_secret"], created_at=row["created_at"],
            updated_at=row["updated_at"], paid_at=row["paid_at"], lines=lines,
        )

    def get(self, order_id: str) -> Order | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
            return self._load(conn, row)

    def list_orders(self, limit: int = 100) -> list[Order]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM orders ORDER BY number DESC LIMIT ?", (limit,)).fetchall()
            return [order for row in rows if (order := self._load(conn, row)) is not None]

    def refunds(self, order_id: str) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT refund_id, amount, status, reason, source, created_at FROM refunds "
                "WHERE order_id = ? ORDER BY rowid", (order_id,))
            return [dict(r) for r in rows]

    def pending_refund_ids(self, order_id: str) -> list[str]:
        """This order's refunds the processor has not confirmed or refused yet."""
        placeholders = ",".join("?" * len(_PENDING_REFUNDS))
        with self._connect() as conn:
            rows = conn.execute(f"SELECT refund_id FROM refunds WHERE order_id = ? AND status IN ({placeholders}) "
                                "ORDER BY rowid", (order_id, *_PENDING_REFUNDS))
            return [str(r["refund_id"]) for r in rows]

    def webhook_events(self, order_id: str) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT webhook_id, type, received_at, deliveries FROM webhook_events "
                "WHERE order_id = ? ORDER BY rowid", (order_id,))
            return [dict(r) for r in rows]

    # --- writing ----------------------------------------------------------------------

    def create(self, lines: list[CartLine], totals: Totals, currency: str,
               checkout_key: str | None = None) -> Order:
        """The capture method is decided here, once: an order with a made-to-order item
        (``ships_later``) is authorized at checkout and captured when it ships.

        ``checkout_key`` names the checkout request (the cart it was made from): the same
        key again — a double-click, a browser's retry — returns the order already made
        instead of a second one."""
        if not lines or totals.total <= 0:
            raise ValueError("an order needs at least one line")
        capture_method = "manual" if any(line.product.ships_later for line in lines) else "automatic"
        order_id = "ord_" + secrets.token_urlsafe(18)  # the order page's URL: unguessable
        now = _now()
        with self._write() as conn:
            if checkout_key is not None:
                made = conn.execute("SELECT id FROM orders WHERE checkout_key = ?", (checkout_key,)).fetchone()
                if made is not None:
                    return self._locked(conn, made["id"])
            number = conn.execute("SELECT COALESCE(MAX(number), 1000) + 1 FROM orders").fetchone()[0]
            conn.execute(
                "INSERT INTO orders (id, number, currency, subtotal, shipping, total, status,"
                " capture_method, checkout_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, number, currency, totals.subtotal, totals.shipping, totals.total,
                 OrderStatus.AWAITING_PAYMENT.value, capture_method, checkout_key, now, now))
            conn.executemany(
                "INSERT INTO order_lines (order_id, position, sku, name, unit_price, quantity)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(order_id, i, line.product.sku, line.product.name, line.product.price, line.quantity)
                 for i, line in enumerate(lines)])
        order = self.get(order_id)
        assert order is not None
        return order

    def attach_intent(self, order_id: str, intent_id: str, client_secret: str | None) -> Order:
        with self._write() as conn:
            conn.execute(
                "UPDATE orders SET intent_id = ?, client_secret = COALESCE(?, client_secret),"
                " updated_at = ? WHERE id = ? AND (intent_id IS NULL OR intent_id = ?)",
                (intent_id, client_secret, _now(), order_id, intent_id))
        order = self.get(order_id)
        if order is None or order.intent_id != intent_id:
            raise ValueError(f"order {order_id} belongs to another payment intent")
        return order

    def _save_payment(self, conn: sqlite3.Connection, order: Order, state: PaymentState) -> Order:
        if state == order.payment:
            return order
        now = _now()
        paid_at = order.paid_at or (now if state.status in PAID_STATUSES else None)
        conn.execute(
            "UPDATE orders SET status = ?, amount_refunded = ?, intent_updated_at = ?, error_code = ?,"
            " decline_code = ?, error_message = ?, card_brand = ?, card_last4 = ?, updated_at = ?,"
            " paid_at = ?, amount_capturable = ?, amount_received = ? WHERE id = ?",
            (state.status.value, state.amount_refunded,
             state.intent_updated_at.isoformat() if state.intent_updated_at else None,
             state.error_code, state.decline_code, state.error_message, state.card_brand,
             state.card_last4, now, paid_at, state.amount_capturable, state.amount_received, order.id))
        return replace(order, payment=state, updated_at=now, paid_at=paid_at)

    def _locked(self, conn: sqlite3.Connection, order_id: str) -> Order:
        order = self._load(conn, conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone())
        if order is None:
            raise KeyError(order_id)
        return order

    def apply(self, order_id: str, update: PaymentUpdate) -> Order:
        with self._write() as conn:
            order = self._locked(conn, order_id)
            return self._save_payment(conn, order, apply_update(order.payment, update))

    def _record_refund(self, conn: sqlite3.Connection, order: Order, refund: Mapping[str, Any],
                       source: str) -> Order:
        # The reason is the merchant's text; anything else the gateway sends there (an object,
        # an integer past SQLite's range) is not stored, rather than fail the whole event.
        reason = refund.get("reason")
        conn.execute(
            "INSERT INTO refunds (refund_id, order_id, amount, status, reason, source, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (refund_id) DO UPDATE SET status = excluded.status",
            (refund["refundId"], order.id, int(refund["amount"]), str(refund.get("status") or "succeeded"),
             reason if isinstance(reason, str) else None, source, _now()))
        refunded = self._refund_total(conn, order.id, _COUNTED_REFUNDS)
        pending = self._refund_total(conn, order.id, _PENDING_REFUNDS)
        return self._save_payment(conn, order, apply_refunded_total(order.payment, refunded, pending))

    @staticmethod
    def _refund_total(conn: sqlite3.Connection, order_id: str, statuses: tuple[str, ...]) -> int:
        placeholders = ",".join("?" * len(statuses))
        total = conn.execute(
            f"SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ? AND status IN ({placeholders})",
            (order_id, *statuses)).fetchone()[0]
        return int(total)

    def settle_refunds(self, order_id: str, outcomes: Mapping[str, str]) -> Order:
        """Final outcomes (refund id → ``succeeded``/``failed``) of this order's refunds that
        were still pending or unknown here; other ids and statuses change nothing."""
        with self._write() as conn:
            order = self._locked(conn, order_id)
            placeholders = ",".join("?" * len(_PENDING_REFUNDS))
            pending = conn.execute(
                f"SELECT refund_id, amount FROM refunds WHERE order_id = ? AND status IN ({placeholders})",
                (order_id, *_PENDING_REFUNDS)).fetchall()
            state = order.payment
            for row in pending:
                outcome = outcomes.get(row["refund_id"])
                if outcome not in ("succeeded", "failed"):
                    continue
                conn.execute("UPDATE refunds SET status = ? WHERE refund_id = ?", (outcome, row["refund_id"]))
                if outcome == "failed":
                    state = release_refund(state, int(row["amount"]))
            refunded = self._refund_total(conn, order.id, _COUNTED_REFUNDS)
            still_pending = self._refund_total(conn, order.id, _PENDING_REFUNDS)
            return self._save_payment(conn, order, apply_refunded_total(state, refunded, still_pending))

    def record_refund(self, order_id: str, refund: Mapping[str, Any], source: str = "admin") -> Order:
        """``refund``: the gateway's refund object (``refundId``, ``amount``, ``status``, …)."""
        with self._write() as conn:
            return self._record_refund(conn, self._locked(conn, order_id), refund, source)

    def receive_webhook(self, webhook_id: str, payload: Mapping[str, Any]) -> WebhookReceipt:
        """Record a verified delivery and apply it, once per ``webhook-id``."""
        event_type = str(payload.get("type") or "")
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        assert isinstance(data, dict)
        with self._write() as conn:
            seen = conn.execute(
                "UPDATE webhook_events SET deliveries = deliveries + 1 WHERE webhook_id = ?"
                " RETURNING order_id", (webhook_id,)).fetchone()
            if seen is not None:
                return WebhookReceipt(duplicate=True, order_id=seen[0])
            order = self._order_for_event(conn, event_type, data)
            conn.execute(
                "INSERT INTO webhook_events (webhook_id, type, order_id, received_at, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                (webhook_id, event_type, order.id if order else None, _now(),
                 json.dumps(payload, separators=(",", ":"))))
            if order is not None:
                if event_type.startswith("payment_intent.") and _is_intent_of(data, order):
                    self._save_payment(conn, order, apply_update(order.payment, PaymentUpdate.from_payload(data)))
                elif event_type == "refund.succeeded" and _is_refund_of(data, order):
                    self._record_refund(conn, order, data, "webhook")
            return WebhookReceipt(duplicate=False, order_id=order.id if order else None)

    def _order_for_event(self, conn: sqlite3.Connection, event_type: str, data: dict[str, Any]) -> Order | None:
        intent_id = data.get("paymentIntentId")
        if not isinstance(intent_id, str):
            intent_id = None  # not an id (a list, a number): SQLite could not even bind it
        if intent_id is not None:
            row = conn.execute("SELECT * FROM orders WHERE intent_id = ?", (intent_id,)).fetchone()
            if row is not None:
                return self._load(conn, row)
        # payment_intent.created can arrive before the shop has stored the intent's id.
        metadata = data.get("metadata")
        if event_type.startswith("payment_intent.") and isinstance(metadata, dict):
            order_id = metadata.get("orderId")
            if isinstance(order_id, str):
                row = conn.execute(
                    "SELECT * FROM orders WHERE id = ? AND (intent_id IS NULL OR intent_id = ?)",
                    (order_id, intent_id)).fetchone()
                return self._load(conn, row)
        return None
