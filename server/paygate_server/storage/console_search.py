"""The console's payment search (SPEC §12 "Payments"): filters, newest first, keyset pages.

A page is read with one statement. Pagination is by keyset, never ``OFFSET``: the cursor
is the ``(created_at, id)`` of the last row shown, and the next page is the rows strictly
before it in the order ``created_at DESC, id DESC`` — so a later page costs what the first
does, and payments created while an operator pages do not shift or repeat rows. The
indexes that keep every filter fast at 100,000 payments are migration 0008's
(docs/perf/console.md).

Exceptions::

    ValueError
     └── InvalidSearch   a filter or a cursor the search cannot take (the message says which)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, exists, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from paygate_server.storage.engine import Database
from paygate_server.storage.schema import payment_intents, transactions

__all__ = ["InvalidSearch", "PaymentSearch", "PaymentRow", "PaymentPage", "search_payments",
           "encode_cursor", "decode_cursor", "MAX_PAGE_SIZE"]

MAX_PAGE_SIZE = 200
COMMON_CARD = 5000  # attempts with one last 4 past which its payments are found by walking
_LAST4 = re.compile(r"[0-9]{4}")
_CURSOR = re.compile(r"([0-9]{1,19})\.([A-Za-z0-9_]{1,64})")
_MAX_ID = 64  # the id columns' size

_pi = payment_intents.c
_tx = transactions.c
# An attempt at the processor that carries the card: a charge or an authorization (a
# capture or void repeats its authorization's card).
_CARD_KINDS = ("charge", "authorization")


class InvalidSearch(ValueError):
    """A filter or cursor the search refuses; ``str()`` is a message for the operator."""


@dataclass(frozen=True, slots=True)
class PaymentSearch:
    """Filters, all optional and combined with AND. Amounts are minor units and times
    microseconds since the epoch; both ranges include their edges. ``after`` is the
    ``next_cursor`` of the previous page."""

    intent_id: str | None = None  # exact pi_…
    merchant_id: str | None = None
    status: str | None = None  # a payment intent status
    currency: str | None = None  # exact ISO code: an amount range means one currency's units
    amount_min: int | None = None
    amount_max: int | None = None
    card_last4: str | None = None  # any of the intent's attempts
    created_from: int | None = None
    created_to: int | None = None
    limit: int = 50
    after: str | None = None

    def __post_init__(self) -> None:
        for name in ("intent_id", "merchant_id", "status", "currency"):
            value = getattr(self, name)
            if value is not None and (not value or len(value) > _MAX_ID):
                raise InvalidSearch(f"{name} must be 1 to {_MAX_ID} characters")
        for name in ("amount_min", "amount_max", "created_from", "created_to", "limit"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 0 or value >= 2**63):
                raise InvalidSearch(f"{name} must be a whole number from 0")
        if self.card_last4 is not None and not _LAST4.fullmatch(self.card_last4):
            raise InvalidSearch("card_last4 must be exactly 4 digits")
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidSearch(f"limit must be from 1 to {MAX_PAGE_SIZE}")
        if self.after is not None:
            decode_cursor(self.after)


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: str
    merchant_id: str
    status: str
    amount: int
    currency: str
    amount_received: int
    amount_refunded: int
    created_at: int  # microseconds
    card_brand: str | None  # of the latest charge or authorization; None before any
    card_last4: str | None


@dataclass(frozen=True, slots=True)
class PaymentPage:
    rows: list[PaymentRow]  # newest first
    next_cursor: str | None  # pass as ``PaymentSearch.after``; None on the last page


def encode_cursor(created_at: int, intent_id: str) -> str:
    return f"{created_at}.{intent_id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(created_at, id)`` of a cursor; InvalidSearch for anything this module did not make."""
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None or int(match.group(1)) >= 2**63:
        raise InvalidSearch("the page cursor is not valid: start the search again")
    return int(match.group(1)), match.group(2)


def _filters(search: PaymentSearch, common_card: bool) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if search.intent_id is not None:
        where.append(_pi.id == search.intent_id)
    if search.merchant_id is not None:
        where.append(_pi.merchant_id == search.merchant_id)
    if search.status is not None:
        where.append(_pi.status == search.status)
    if search.currency is not None:
        where.append(_pi.currency == search.currency)
    if search.amount_min is not None:
        where.append(_pi.amount >= search.amount_min)
    if search.amount_max is not None:
        where.append(_pi.amount <= search.amount_max)
    if search.created_from is not None:
        where.append(_pi.created_at >= search.created_from)
    if search.created_to is not None:
        where.append(_pi.created_at <= search.created_to)
    if search.card_last4 is not None:
        # Written into the statement, not bound: a prepared statement's generic plan (asyncpg's,
        # after five runs) would plan every last 4 as a rare one, 400+ ms for a common one.
        # Safe as text: PaymentSearch only takes four digits.
        last4: BindParameter[str] = bindparam("card_last4", search.card_last4, literal_execute=True)
        if common_card:
            # Many payments: walk the payments newest first and test each (a page fills fast).
            where.append(exists().where(_tx.intent_id == _pi.id, _tx.card_last4 == last4))
        else:
            # Few: start from the card's attempts (the last-4 index), then sort those payments.
            where.append(_pi.id.in_(select(_tx.intent_id).where(_tx.card_last4 == last4)))
    if search.after is not None:
        created_at, intent_id = decode_cursor(search.after)
        # A row value: both databases seek the (created_at, id) index to it.
        where.append(tuple_(_pi.created_at, _pi.id) < tuple_(literal(created_at), literal(intent_id)))
    return where


def _latest_card_attempt(intent_id: ColumnElement[str]) -> ColumnElement[str]:
    """The id of the intent's latest charge or authorization (a scalar subquery per row)."""
    return (select(_tx.id).where(_tx.intent_id == intent_id, _tx.kind.in_(_CARD_KINDS))
            .order_by(_tx.created_at.desc(), _tx.id.desc()).limit(1).scalar_subquery())


async def _is_common_card(conn: AsyncConnection, last4: str) -> bool:
    """More than :data:`COMMON_CARD` attempts with these last 4 (counted no further)? A
    test card or a popular range: then the two ways of finding its payments differ by 10×
    on SQLite, whose planner cannot tell (at 100,000 payments, a last 4 shared by 30 %:
    ~400 ms sorting them all against ~5 ms walking the newest; docs/perf/console.md)."""
    some = select(_tx.intent_id).where(_tx.card_last4 == last4).limit(COMMON_CARD + 1).subquery()
    return int((await conn.execute(select(func.count()).select_from(some))).scalar_one()) > COMMON_CARD


def _page_query(search: PaymentSearch, common_card: bool) -> Select[Any]:
    # The page first, the card of each of its rows after: the latest attempt is looked up
    # for the page's rows only, not for every match before the sort picks the page.
    page = (select(_pi.id, _pi.merchant_id, _pi.status, _pi.amount, _pi.currency, _pi.amount_received,
                   _pi.amount_refunded, _pi.created_at)
            .where(*_filters(search, common_card))
            .order_by(_pi.created_at.desc(), _pi.id.desc())
            .limit(search.limit + 1)  # one more: is there a next page?
            .subquery("page"))
    latest = transactions.alias("latest")
    query = (select(page, latest.c.card_brand, latest.c.card_last4)
             .select_from(page.outerjoin(latest, latest.c.id == _latest_card_attempt(page.c.id)))
             .order_by(page.c.created_at.desc(), page.c.id.desc()))
    return query


async def search_payments(db: Database, search: PaymentSearch) -> PaymentPage:
    """One page of the payments matching ``search``, newest first."""
    async with db.read() as conn:
        common_card = search.card_last4 is not None and await _is_common_card(conn, search.card_last4)
        rows = [PaymentRow(*row) for row in await conn.execute(_page_query(search, common_card))]
    if len(rows) <= search.limit:
        return PaymentPage(rows, None)
    rows = rows[:search.limit]
    return PaymentPage(rows, encode_cursor(rows[-1].created_at, rows[-1].id))
