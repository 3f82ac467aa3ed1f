"""``request_nonces.nonce`` keeps each nonce's digest, not the nonce as sent (storage/nonces.py).

Every row still inside the window is rewritten to its digest, in this migration's one
transaction, so a nonce recorded before the upgrade is still refused after it (its row now
holds the digest the new code looks up). Nothing keeps a second way of looking one up.

The column keeps its name, so workers of the old code go on serving while they are rolled
(docs/operations.md, "Upgrades"): they record and look up nonces as sent, the new ones by
digest. For the length of the roll a request could therefore be replayed once from a worker
of one version to one of the other, within its 300 s — a captured signed request and a
deploy at the same moment. Failing the old workers closed instead (renaming the column)
would answer every signed request they take with a 500 until each is restarted: an outage
of the whole API for the roll, to close a window that needs a captured request.

Rows already expired are deleted first (the timestamp check refuses their replays; pruning
would delete them within a minute anyway). PostgreSQL digests in one statement with
``sha256()``; SQLite has no SHA-256 in SQL, so its rows are rewritten from Python in
batches of ``_BATCH`` by ``rowid``. Both spell :func:`paygate_server.storage.nonces.nonce_digest`
(SHA-256 hex written in the letters a–p); tests/server/test_schema.py holds them to it, and
the function must never change in place (a new form needs a new migration).
Signed requests wait while it runs (the table is held): 14.5 s on PostgreSQL and 17.6 s on
SQLite for 300,000 rows on a busy 2-core box, most of it the rows' new index entries (a
copy into a new table or one ``UPDATE`` through a Python SQL function took as long).

Downgrade leaves the digests: the old code cannot find a nonce by its digest, so a request
signed in the last window before a downgrade could be replayed after it.

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

_DIGEST_POSTGRESQL = ("UPDATE request_nonces SET nonce = translate("
                      "encode(sha256(convert_to(nonce, 'UTF8')), 'hex'),"
                      " '0123456789abcdef', 'abcdefghijklmnop')")


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM request_nonces WHERE expires_at < :now"), {"now": now_us()})
    if bind.dialect.name == "postgresql":
        op.execute(_DIGEST_POSTGRESQL)
        return
    after = 0
    while True:
        rows = bind.execute(sa.text("SELECT rowid, nonce FROM request_nonces WHERE rowid > :after"
                                    " ORDER BY rowid LIMIT :limit"), {"after": after, "limit": _BATCH}).all()
        if not rows:
            return
        bind.execute(sa.text("UPDATE request_nonces SET nonce = :digest WHERE rowid = :rowid"),
                     [{"rowid": rowid, "digest": nonce_digest(nonce)} for rowid, nonce in rows])
        after = rows[-1][0]


def downgrade() -> None:
    pass  # the digests stay (above)
