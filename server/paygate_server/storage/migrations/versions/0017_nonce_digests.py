"""``request_nonces`` keeps each nonce's digest, not the nonce as sent (storage/nonces.py).

The column is renamed ``nonce`` → ``nonce_digest`` and every row still inside the window is
rewritten to its digest, in this migration's one transaction, so:

- a nonce recorded before the upgrade is still refused after it (its row now holds the
  digest the new code looks up);
- a worker of the old code still running after the upgrade fails closed: its insert names
  a column that is gone, so it answers every signed request with an error until it is
  restarted, instead of recording as-sent nonces the new workers would not find (which
  would let a request replayed from an old worker to a new one through). Nothing keeps a
  second way of looking a nonce up.

Rows already expired are deleted first (the timestamp check refuses their replays; pruning
would delete them within a minute anyway). PostgreSQL digests in one statement with
``sha256()``; SQLite has no SHA-256 in SQL, so its rows are rewritten from Python in
batches of ``_BATCH`` by ``rowid``. Both spell :func:`paygate_server.storage.nonces.nonce_digest`
(SHA-256 hex written in the letters a–p); tests/server/test_schema.py holds them to it.
Signed requests wait while it runs (the table is held): 14.5 s on PostgreSQL and 17.6 s on
SQLite for 300,000 rows on a busy 2-core box, most of it the rows' new index entries (a
copy into a new table or one ``UPDATE`` through a Python SQL function took as long).

Downgrade renames the column back and leaves the digests: the old code cannot find a
nonce by its digest, so a request signed in the last window before a downgrade could be
replayed after it.

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.clock import now_us
from paygate_server.storage.nonces import nonce_digest

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_BATCH = 1000

_DIGEST_POSTGRESQL = ("UPDATE request_nonces SET nonce_digest = translate("
                      "encode(sha256(convert_to(nonce_digest, 'UTF8')), 'hex'),"
                      " '0123456789abcdef', 'abcdefghijklmnop')")


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM request_nonces WHERE expires_at < :now"), {"now": now_us()})
    op.execute("ALTER TABLE request_nonces RENAME COLUMN nonce TO nonce_digest")
    if bind.dialect.name == "postgresql":
        op.execute(_DIGEST_POSTGRESQL)
        return
    after = 0
    while True:
        rows = bind.execute(sa.text("SELECT rowid, nonce_digest FROM request_nonces WHERE rowid > :after"
                                    " ORDER BY rowid LIMIT :limit"), {"after": after, "limit": _BATCH}).all()
        if not rows:
            return
        bind.execute(sa.text("UPDATE request_nonces SET nonce_digest = :digest WHERE rowid = :rowid"),
                     [{"rowid": rowid, "digest": nonce_digest(nonce)} for rowid, nonce in rows])
        after = rows[-1][0]


def downgrade() -> None:
    op.execute("ALTER TABLE request_nonces RENAME COLUMN nonce_digest TO nonce")
