"""Key material sealed under the master key (``sealed_keys``): checkout RSA keys and vault
data keys, one ``purpose`` each (and, in a database that has neither yet, the key that only
proves which master key it is: paygate_server/master_key.py).

Exactly one key of a purpose is meant to be ``active`` (the one new data is encrypted
under); rotation retires it and adds the next in one transaction, and retired keys stay so
that what they encrypted keeps decrypting. What a key is, how it is made and sealed, and
when a retired one stops counting, is the caller's business (``cards.keystore``,
``vault.datakeys``): this module only keeps the rows.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.storage.dialect import insert_ignore
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import sealed_keys

__all__ = ["SealedKey", "add_first_key", "keys_of", "oldest_key", "rotate_keys"]

# Serializes the creation of a purpose's first key across PostgreSQL connections (SQLite's
# writers are serialized already: BEGIN IMMEDIATE). A new checkout key has a random kid,
# so the primary key alone would let two starting gateways each add an active one.
_FIRST_KEY_LOCK = 77001


@dataclass(frozen=True, slots=True)
class SealedKey:
    kid: str
    purpose: str
    sealed: bytes = field(repr=False)  # ciphertext under the master key, with the kid as AAD
    public_jwk: str | None  # the public half, as JSON, of a key that has one
    state: str  # "active" | "retired"
    created_at: int
    retired_at: int | None = None


_COLUMNS = (sealed_keys.c.kid, sealed_keys.c.sealed, sealed_keys.c.public_jwk, sealed_keys.c.state,
            sealed_keys.c.created_at, sealed_keys.c.retired_at)


async def _keys(conn: AsyncConnection, purpose: str) -> list[SealedKey]:
    rows = await conn.execute(select(*_COLUMNS).where(sealed_keys.c.purpose == purpose)
                              .order_by(sealed_keys.c.created_at.desc()))
    return [SealedKey(kid, purpose, bytes(sealed), public, state, created_at, retired_at)
            for kid, sealed, public, state, created_at, retired_at in rows]


async def keys_of(db: Database, purpose: str) -> list[SealedKey]:
    """Every key of ``purpose``, active and retired, newest first."""
    async with db.read() as conn:
        return await _keys(conn, purpose)


async def oldest_key(db: Database) -> SealedKey | None:
    """The first key ever sealed in this database, of any purpose (None: none yet)."""
    async with db.read() as conn:
        row = (await conn.execute(select(sealed_keys.c.purpose, *_COLUMNS)
                                  .order_by(sealed_keys.c.created_at, sealed_keys.c.kid).limit(1))).first()
    if row is None:
        return None
    purpose, kid, sealed, public, state, created_at, retired_at = row
    return SealedKey(kid, purpose, bytes(sealed), public, state, created_at, retired_at)


async def _has_active(conn: AsyncConnection, purpose: str) -> bool:
    found = await conn.execute(select(sealed_keys.c.kid).where(
        sealed_keys.c.purpose == purpose, sealed_keys.c.state == "active").limit(1))
    return found.first() is not None


async def add_first_key(db: Database, purpose: str, make: Callable[[], SealedKey]) -> bool:
    """Add ``make()`` unless ``purpose`` has an active key; True when it was added.

    Gateways starting together may all find none: under the write lock (and, on
    PostgreSQL, an advisory lock) only the first adds one, the others see it. ``make`` runs
    only when a key is needed."""
    async with db.read() as conn:
        if await _has_active(conn, purpose):
            return False
    async with db.write() as conn:
        if not db.is_sqlite:
            await conn.execute(select(func.pg_advisory_xact_lock(_FIRST_KEY_LOCK)))
        if await _has_active(conn, purpose):
            return False
        return await insert_ignore(conn, sealed_keys, asdict(make()))


async def rotate_keys(db: Database, purpose: str,
                      make: Callable[[Sequence[SealedKey]], SealedKey]) -> tuple[list[SealedKey], SealedKey]:
    """Retire the active key(s) of ``purpose`` and add ``make(every key before)``, in one
    transaction: (the keys retired, the key added). Raises if the new kid is taken (two
    rotations raced for the same next version: the loser adds nothing)."""
    async with db.write() as conn:
        before = await _keys(conn, purpose)
        await conn.execute(update(sealed_keys).where(
            sealed_keys.c.purpose == purpose, sealed_keys.c.state == "active",
        ).values(state="retired", retired_at=now_us()))
        new = make(before)
        if not await insert_ignore(conn, sealed_keys, asdict(new)):
            raise RuntimeError(f"another {purpose} rotation ran at the same time; try again")
    return [key for key in before if key.state == "active"], new
