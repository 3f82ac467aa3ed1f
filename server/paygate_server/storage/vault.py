"""The vault's rows (``vault_cards``): sealed cards behind single-use checkout tokens.

Rows come in already sealed (``vault.service`` encrypts the card number and the CVC before
they reach this module) and go out sealed; tokens are kept only as their SHA-256. Each
statement is written once, valid on both databases (:mod:`.statements`): storing and
resolving a token run once per checkout payment.

What is kept, and for how long (:func:`purge_expired`, the vault's background task): a row
lives until its token expires (15 minutes). Then it is deleted — the encrypted number
with it — unless its token was used by an attempt of an intent that still has an operation
pending or unknown (a reconciler policy that retries "with the same reference" would need the
card); such a row only loses its CVC, and goes once the intent has nothing in flight. Nothing
reads a used token's card anyway (``usable_card`` requires ``used_at IS NULL``; captures,
voids, refunds and the reconciler address the processor by reference; the attempt keeps the
brand, last 4, expiry and fingerprint), so keeping it longer would be cardholder data kept
with no use (PCI DSS 3.2.1, docs/checkout.md). The same batch deletes the tokenization
counts (``checkout_limits``) of the intents it touched that are succeeded or canceled: no
clientSecret of theirs can tokenize again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select

from paygate_server.storage.checkout import COUNT_TOKENIZATION, count_tokenization
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import payment_intents, transactions
from paygate_server.storage.schema_checkout import checkout_limits, vault_cards
from paygate_server.storage.statements import Connection, Row, Sql, execute, fetch_one

__all__ = ["PURGE_BATCH", "SealedCard", "VaultCard", "VaultPurge", "insert_card", "insert_counted_card",
           "purge_expired", "usable_card"]


@dataclass(frozen=True, slots=True)
class SealedCard:
    """What a vault row holds about its card: the two ciphertexts and the displayable rest."""

    data_key_version: int
    pan_sealed: bytes = field(repr=False)
    cvc_sealed: bytes | None = field(repr=False)  # None once dropped (authorized or expired)
    fingerprint: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class VaultCard:
    """A vault row: whose it is, and its card."""

    id: str
    merchant_id: str
    intent_id: str
    card: SealedCard


_INSERT_INTO = (
    "INSERT INTO vault_cards (id, token_hash, merchant_id, intent_id, data_key_version, pan_sealed,"
    " cvc_sealed, fingerprint, brand, last4, exp_month, exp_year, created_at, expires_at, used_at)"
)
_VALUES = (":id, :token_hash, :merchant_id, :intent_id, :data_key_version, :pan_sealed, :cvc_sealed,"
           " :fingerprint, :brand, :last4, :exp_month, :exp_year, :created_at, :expires_at, NULL")
_INSERT = Sql(f"{_INSERT_INTO} VALUES ({_VALUES})")
# PostgreSQL: the checkout's conditional count and the new row in one statement (a
# data-modifying CTE), so one autocommit round trip instead of BEGIN, two statements and
# COMMIT: the row is inserted only if the count returned one, i.e. both or neither.
# (SQLite has no DML in a CTE: there the two statements share one group-commit unit.)
_COUNT_AND_INSERT_PG = Sql(f"WITH counted AS ({COUNT_TOKENIZATION}) {_INSERT_INTO} SELECT {_VALUES} FROM counted")
_USABLE = Sql(
    "SELECT id, merchant_id, intent_id, data_key_version, pan_sealed, cvc_sealed, fingerprint, brand, last4,"
    " exp_month, exp_year FROM vault_cards WHERE token_hash = :token_hash AND used_at IS NULL"
    " AND expires_at > :now AND intent_id = :intent_id AND merchant_id = :merchant_id"
)
_DROP_CVCS = Sql("UPDATE vault_cards SET cvc_sealed = NULL WHERE expires_at <= :now AND cvc_sealed IS NOT NULL")

#: Rows deleted per transaction by the purge (it repeats until a batch comes back short).
PURGE_BATCH = 1000
# An intent that can never tokenize again: its checkout_limits row is dead.
_FINAL_INTENT = ("succeeded", "canceled")


async def insert_card(conn: Connection, card: VaultCard, *, token_hash: str, created_at: int,
                      expires_at: int) -> None:
    """A new vault row, inside the caller's unit of work (the checkout counts the
    tokenization in the same transaction)."""
    await execute(conn, _INSERT, **_row(card, token_hash, created_at, expires_at))


def _row(card: VaultCard, token_hash: str, created_at: int, expires_at: int) -> dict[str, Any]:
    return dict(id=card.id, token_hash=token_hash, merchant_id=card.merchant_id, intent_id=card.intent_id,
                created_at=created_at, expires_at=expires_at, **asdict(card.card))


async def insert_counted_card(db: Database, card: VaultCard, *, token_hash: str, created_at: int,
                              expires_at: int, limit: int) -> bool:
    """Count one tokenization of the card's intent (the checkout's card-testing limit,
    ``checkout_limits``) and insert its vault row, both or neither: False, and nothing
    written, when the count is at ``limit``."""
    params = _row(card, token_hash, created_at, expires_at)
    if db.is_sqlite:
        async with db.write() as conn:
            if not await count_tokenization(conn, card.intent_id, limit=limit, now=created_at):
                return False
            await execute(conn, _INSERT, **params)
        return True
    async with db.write_one() as conn:
        return await execute(conn, _COUNT_AND_INSERT_PG, now=created_at, limit=limit, **params) == 1


def _vault_card(row: Row) -> VaultCard:
    cvc = row["cvc_sealed"]
    return VaultCard(row["id"], row["merchant_id"], row["intent_id"], SealedCard(
        row["data_key_version"], bytes(row["pan_sealed"]), None if cvc is None else bytes(cvc),
        row["fingerprint"], row["brand"], row["last4"], row["exp_month"], row["exp_year"],
    ))


async def usable_card(db: Database, *, token_hash: str, merchant_id: str, intent_id: str,
                      now: int) -> VaultCard | None:
    """The row behind a token if it is unused, unexpired at ``now``, and was made for this
    intent of this merchant; None otherwise (which of these failed is not told)."""
    async with db.read_one() as conn:
        row = await fetch_one(conn, _USABLE, token_hash=token_hash, now=now,
                              intent_id=intent_id, merchant_id=merchant_id)
    return None if row is None else _vault_card(row)


@dataclass(frozen=True, slots=True)
class VaultPurge:
    """What one purge removed."""

    cvcs_dropped: int = 0
    cards_deleted: int = 0
    limits_deleted: int = 0


def _done_with(now: int) -> Any:
    """Rows nothing can need any more at ``now``: the token expired, and it was never used
    or its intent has no operation pending or unknown (the partial index
    ``ux_transactions_one_in_flight`` answers that per intent)."""
    in_flight = exists().where(transactions.c.intent_id == vault_cards.c.intent_id,
                               transactions.c.status.in_(("pending", "unknown")))
    return and_(vault_cards.c.expires_at <= now, or_(vault_cards.c.used_at.is_(None), ~in_flight))


async def purge_expired(db: Database, now: int, *, batch: int = PURGE_BATCH) -> VaultPurge:
    """Delete the rows nothing can need any more (the module's docstring), ``batch`` per
    transaction, and the tokenization counts of their final intents; then drop the CVC of
    every expired row left (a used token whose intent still has an operation in flight).
    Safe with several processes: each delete re-checks its condition."""
    cards = limits = 0
    while True:
        async with db.write() as conn:
            rows = (await conn.execute(select(vault_cards.c.id, vault_cards.c.intent_id).where(_done_with(now))
                                       .order_by(vault_cards.c.expires_at).limit(batch))).all()
            if rows:
                ids, intents = [r.id for r in rows], sorted({r.intent_id for r in rows})
                cards += (await conn.execute(delete(vault_cards).where(
                    vault_cards.c.id.in_(ids), _done_with(now)))).rowcount or 0
                final = select(payment_intents.c.id).where(payment_intents.c.id.in_(intents),
                                                           payment_intents.c.status.in_(_FINAL_INTENT))
                limits += (await conn.execute(delete(checkout_limits).where(
                    checkout_limits.c.intent_id.in_(final)))).rowcount or 0
        if len(rows) < batch:
            break
    async with db.write() as conn:
        dropped = await execute(conn, _DROP_CVCS, now=now)
    return VaultPurge(dropped, cards, limits)
