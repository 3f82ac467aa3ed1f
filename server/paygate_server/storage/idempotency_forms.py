"""The two spellings of a stored ``Idempotency-Key``, during the window after migration 0019.

Since 0019 a key's digest and its request's hash are stored in the letters ``a``–``p``
(:mod:`paygate_server.letter_digests`); the code before wrote both in hex, and its rows
are kept for the TTL (SPEC §3: at least 24 h). Rewriting them would hold a table of
hundreds of millions of rows at the target rate, so they stay as they are, and a claim
recognizes them instead: while hex rows can still be inside the TTL, each claim statement
also probes the key's hex spelling (one more primary-key probe inside the same statement,
:data:`OLD_KEY_ABSENT`), and the key's row is read under either spelling
(:data:`EITHER_SPELLING`). Hex and letters are a bijection, so one digest gives both.

When: 0019 records the time it ran (``idempotency_letters_since``). Workers of the old code
keep writing hex until they are rolled (docs/operations.md, "Upgrades"), so hex rows may
be written until ``upgraded_at`` + :data:`ROLL_ALLOWANCE_US`; they can be inside the TTL
while that is after the claim's ``kept_since`` (now − TTL). After it the claim statements
are the ones without a probe: the same statements, and as many, as before 0019. A store
reads the time once (one statement, the first claim of the process) and keeps it.

A hex row is only ever read by the new code: its answer (sealed under its hex digest,
http/api.py) is replayed, its request hash compared in letters (:func:`found_in_hex`);
the answer of an old-code claim is stored by that worker, as before. The other direction —
an old worker claiming in hex a key a new one holds in letters — is refused by 0019's
trigger (its docstring).
"""
from __future__ import annotations

from paygate_server.letter_digests import as_letters, hex_spelling
from paygate_server.storage.port import KeyClaim, Row
from paygate_server.storage.statements import Connection, Sql, fetch_value

__all__ = ["EITHER_SPELLING", "MERCHANT_SELECTED", "OLD_KEY_ABSENT", "ROLL_ALLOWANCE_US", "found_in_hex", "hex_written_until",
           "old_spelling", "request_hash_in_letters"]

# How long after `paygate db upgrade` workers of the old code may still write hex keys.
ROLL_ALLOWANCE_US = 24 * 3600 * 1_000_000

_UPGRADED_AT = Sql("SELECT max(upgraded_at) FROM idempotency_letters_since")

# SQL fragments: ``{merchant}``, ``{key}``, ``{old_key}`` are the statement's parameter names.
OLD_KEY_ABSENT = ("NOT EXISTS (SELECT 1 FROM idempotency_keys WHERE merchant_id = :{merchant}"
                  " AND idempotency_key = :{old_key})")
# The merchant's id where a claim inserts it from a SELECT list: PostgreSQL would type the
# parameter text there, and varchar in OLD_KEY_ABSENT (one parameter, one type).
MERCHANT_SELECTED = "CAST(:{merchant} AS VARCHAR)"
EITHER_SPELLING = "merchant_id = :{merchant} AND idempotency_key IN (:{key}, :{old_key})"


async def hex_written_until(conn: Connection) -> int:
    """Until when (µs) hex keys may have been written: 0 on a database 0019 did not upgrade
    (it records nothing there: no row, no probe)."""
    upgraded_at = await fetch_value(conn, _UPGRADED_AT)
    return 0 if upgraded_at is None else int(upgraded_at) + ROLL_ALLOWANCE_US


def old_spelling(claim: KeyClaim, hex_until: int) -> str | None:
    """The key's hex spelling while a hex row of it can be inside the TTL; None: no probe."""
    return hex_spelling(claim.key) if hex_until > claim.kept_since else None


def found_in_hex(row: Row, claim: KeyClaim) -> bool:
    """Whether ``row`` (with its ``idempotency_key``) is the key's hex row, not its own."""
    return bool(row["idempotency_key"] != claim.key)


def request_hash_in_letters(row: Row, in_hex: bool) -> str:
    """The row's request hash in letters, whichever spelling it was stored in."""
    stored: str = row["request_hash"]
    return as_letters(stored) if in_hex else stored
