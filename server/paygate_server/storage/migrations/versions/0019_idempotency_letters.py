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
they are rolled (docs/operations.md, "Upgrades"); what remains for that time is in
docs/api.md ("Idempotency keys across the upgrade to 0019"): a request a new worker claimed,
retried at a worker of the older code, is not recognised there. It is always recorded, on
a fresh database too (it cannot tell an empty table from one an old worker is about to
write to): a fresh install probes for the window, at the cost measured in docs/api.md.

The table holds one row. Downgrade drops it; rows stored in letters stay, and the older code
cannot find them: a retry across a downgrade within the TTL runs again.

Revision ID: 0019
Revises: 0017
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.clock import now_us

revision = "0019"
down_revision = "0017"  # 0018 is another change's; set this to it when both are merged
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("idempotency_letters_since", sa.Column("upgraded_at", sa.BigInteger(), primary_key=True))
    op.get_bind().execute(sa.text("INSERT INTO idempotency_letters_since (upgraded_at) VALUES (:now)"),
                          {"now": now_us()})


def downgrade() -> None:
    op.drop_table("idempotency_letters_since")
