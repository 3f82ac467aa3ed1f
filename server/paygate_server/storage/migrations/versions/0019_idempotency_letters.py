"""Idempotency keys and request hashes are stored in letters from now on; nothing is rewritten.

From this revision ``idempotency_keys.idempotency_key`` and ``request_hash`` hold SHA-256
written in the letters a–p (:mod:`paygate_server.letter_digests`), not hex: about 1.5 % of
hex digests hold a 13–19-digit run that passes the Luhn check, which a PCI DSS data scan
reports as a card number (docs/api.md, "Idempotency").

**The rows already there are not rewritten.** At the target rate (10,000 payments/s) a
day of keys is hundreds of millions of rows: rewriting them in this migration would hold
the table (every keyed request waiting) for far longer than an upgrade may take, and a
rewrite in batches beside running workers would race their claims. Instead this records
when it ran, in ``idempotency_letters_since``, and for the TTL after that, plus a day for
the workers' roll, every claim statement also probes the key's hex spelling in the same
statement (storage/idempotency_forms.py): a retry of a request the older code stored is
still replayed, or refused with 422 for another body, and the operation is not run again.
After that window the claim statements are the same, and as many, as before this
revision. Hex rows leave as they always did: pruned ``PAYGATE_IDEMPOTENCY_TTL_S`` after
they were created (``in_progress`` ones past the window are no longer looked for).

The columns keep their names and types, so workers of the older code go on serving while
they are rolled (docs/operations.md, "Upgrades"). They look a key up in hex only, so a
request a new worker claimed in letters and retried at an old worker would run there again
(a refund: a second refund). A trigger closes that: an insert of a hex key (it holds a
digit; a letters one never does) whose letters spelling is there already fails, and the
old worker answers 500, having run nothing; the retry is recognized at a new worker. Its
condition is checked before its body, so a letters insert costs one pattern match (the
claim costs measured in docs/api.md). It stays after the window, where only the old code
could fire it; a later migration may drop it. What still remains for the roll — two sends of
one key in flight at once at workers of both versions — is in docs/api.md ("Idempotency
keys across the upgrade to 0019").

It rewrites no row: it creates a one-row table and the trigger (PostgreSQL takes the
table's lock for the ``CREATE TRIGGER`` only, waiting for the claims in flight).

On a database created by the same ``paygate db upgrade`` run no time is recorded, so no
claim probes: no worker of the older code can have written there or ever will (the run's
revisions commit at once, and older code refuses a newer schema). An empty table alone
would not tell that: an old worker may be about to write to it.

The table holds one row. Downgrade drops it and the trigger; rows stored in letters stay, and the older code
cannot find them: a retry across a downgrade within the TTL runs again.

Revision ID: 0019
Revises: 0017
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from paygate_server.clock import now_us

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


_REFUSAL = "this Idempotency-Key was claimed by a newer worker: retry"
# A hex key written in letters (paygate_server.letter_digests), in SQL: PostgreSQL has
# translate(); SQLite has not, so a-f are moved to k-p first, then the digits to a-j.
_AS_LETTERS_POSTGRESQL = "translate(NEW.idempotency_key, '0123456789abcdef', 'abcdefghijklmnop')"
_AS_LETTERS_SQLITE = "NEW.idempotency_key"
for _hex, _letter in [*zip("abcdef", "klmnop", strict=True), *zip("0123456789", "abcdefghij", strict=True)]:
    _AS_LETTERS_SQLITE = f"replace({_AS_LETTERS_SQLITE}, '{_hex}', '{_letter}')"
_TWIN = "EXISTS (SELECT 1 FROM idempotency_keys WHERE merchant_id = NEW.merchant_id AND idempotency_key = {letters})"

_TRIGGER_POSTGRESQL = [
    f"""CREATE FUNCTION fn_idempotency_keys_hex_twin() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF {_TWIN.format(letters=_AS_LETTERS_POSTGRESQL)} THEN
    RAISE EXCEPTION '{_REFUSAL}';
  END IF;
  RETURN NEW;
END $$""",
    """CREATE TRIGGER trg_idempotency_keys_hex_twin BEFORE INSERT ON idempotency_keys FOR EACH ROW
WHEN (NEW.idempotency_key ~ '[0-9]') EXECUTE FUNCTION fn_idempotency_keys_hex_twin()""",
]
_TRIGGER_SQLITE = [
    f"""CREATE TRIGGER trg_idempotency_keys_hex_twin BEFORE INSERT ON idempotency_keys FOR EACH ROW
WHEN NEW.idempotency_key GLOB '*[0-9]*' AND {_TWIN.format(letters=_AS_LETTERS_SQLITE)}
BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END""",
]


def upgrade() -> None:
    op.create_table("idempotency_letters_since", sa.Column("upgraded_at", sa.BigInteger(), primary_key=True))
    bind = op.get_bind()
    if not context.config.attributes.get("created_by_this_run", False):
        bind.execute(sa.text("INSERT INTO idempotency_letters_since (upgraded_at) VALUES (:now)"), {"now": now_us()})
    for statement in _TRIGGER_POSTGRESQL if bind.dialect.name == "postgresql" else _TRIGGER_SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_idempotency_keys_hex_twin ON idempotency_keys")
        op.execute("DROP FUNCTION IF EXISTS fn_idempotency_keys_hex_twin()")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_idempotency_keys_hex_twin")
    op.drop_table("idempotency_letters_since")
