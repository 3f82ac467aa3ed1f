"""Nonces written in batches: concurrent requests share one statement, replays still lose;
a nonce is stored as its digest, never as sent."""
from __future__ import annotations

import asyncio
import hashlib
import itertools

import pytest
from sqlalchemy import text

from paygate_server.auth.nonces import NonceBook
from paygate_server.cards.pan import contains_card_number
from paygate_server.storage import create_database
from paygate_server.storage.statements import Sql, fetch_all, fetch_value

_COUNT = Sql("SELECT count(*) AS n FROM request_nonces")


async def test_concurrent_nonces_share_a_batch_and_each_is_fresh_once(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    book = NonceBook(db)
    try:
        keys = [f"pk_test_{i % 4:08d}" for i in range(200)]
        nonces = [f"nonce-{i:012d}" for i in range(200)]
        results = await asyncio.gather(*(book.remember(k, n, 10**15) for k, n in zip(keys, nonces, strict=True)))
        assert all(results) and book.batches == 1
        # The same 200 again (a replay of each), concurrently with 50 new ones.
        again = await asyncio.gather(*(book.remember(k, n, 10**15) for k, n in zip(keys, nonces, strict=True)),
                                     *(book.remember("pk_test_other000", f"new-nonce-{i:08d}", 1) for i in range(50)))
        assert again == [False] * 200 + [True] * 50
        async with db.read() as conn:
            assert await fetch_value(conn, _COUNT) == 250
    finally:
        await db.dispose()


async def test_the_same_nonce_twice_in_one_batch_is_fresh_only_once(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    book = NonceBook(db)
    try:
        first, second, other_key = await asyncio.gather(
            book.remember("pk_test_aaaaaaaa", "n" * 16, 1), book.remember("pk_test_aaaaaaaa", "n" * 16, 1),
            book.remember("pk_test_bbbbbbbb", "n" * 16, 1))
        assert (first, second, other_key) == (True, False, True)
    finally:
        await db.dispose()


async def test_a_full_batch_is_written_without_waiting_for_the_loop(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    book = NonceBook(db, max_batch=10)
    try:
        assert all(await asyncio.gather(*(book.remember("pk_test_aaaaaaaa", f"nonce-{i:010d}", 1)
                                          for i in range(35))))
        assert book.batches == 4
    finally:
        await db.dispose()


async def test_a_failed_write_fails_every_request_of_the_batch(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    book = NonceBook(db)
    try:
        async with db.write() as conn:
            await conn.execute(text("DROP TABLE request_nonces"))
        results = await asyncio.gather(*(book.remember("pk_test_aaaaaaaa", f"nonce-{i:010d}", 1) for i in range(3)),
                                       return_exceptions=True)
        assert len(results) == 3 and all(isinstance(r, Exception) for r in results)
        # The driver's own error (sqlite3 or asyncpg): no common type narrower than this.
        with pytest.raises(Exception):  # noqa: B017
            await book.remember("pk_test_aaaaaaaa", "nonce-after-failure", 1)
    finally:
        await db.dispose()


def _hex_digest_looks_like_a_card(nonce: str) -> bool:
    return contains_card_number(hashlib.sha256(nonce.encode()).hexdigest())


async def test_a_nonce_is_stored_as_a_digest_that_never_looks_like_a_card_number(fresh_database_url: str) -> None:
    """Neither the nonce as sent (here one holding a test card number) nor a hex SHA-256
    (here one whose hex digest the card detector flags) is what the table holds."""
    card_like = "nonce-4242424242424242"
    hex_card_like = next(n for n in (f"nonce-{i:010d}" for i in itertools.count()) if _hex_digest_looks_like_a_card(n))
    db = create_database(fresh_database_url)
    book = NonceBook(db)
    try:
        assert await asyncio.gather(book.remember("pk_test_aaaaaaaa", card_like, 10**15),
                                    book.remember("pk_test_aaaaaaaa", hex_card_like, 10**15)) == [True, True]
        async with db.read() as conn:
            stored = [row["nonce"] for row in await fetch_all(
                conn, Sql("SELECT nonce FROM request_nonces ORDER BY nonce"))]
        assert len(stored) == 2
        for value in stored:
            assert len(value) == 64 and set(value) <= set("abcdefghijklmnop"), value
            assert not contains_card_number(value)
        assert not {card_like, hex_card_like} & set(stored)
        # Found again by the digest: both replays are refused.
        assert await asyncio.gather(book.remember("pk_test_aaaaaaaa", card_like, 10**15),
                                    book.remember("pk_test_aaaaaaaa", hex_card_like, 10**15)) == [False, False]
    finally:
        await db.dispose()
