"""Tables of the operator console (SPEC §12): its accounts, sessions, failed logins and
the record of what operators did.

``operators``: one row per console account (``op_…``). The email is stored lower-cased
(one account per address whatever its case); the password only as an Argon2id hash; an
account is disabled, never deleted, so the actions it took keep naming it.

``operator_sessions``: one row per login. The cookie carries a random session id; only its
SHA-256 is stored, so a copy of the database does not hand out live sessions. A session
ends at its idle or absolute deadline, at logout and when its account is disabled
(``revoked_at``).

``operator_login_failures``: one row per failed password for an existing account, kept for
the lockout window (ten in 15 minutes lock the account for 15 minutes).

``operator_actions``: who did what, when and from where. ``detail`` is a JSON object of
plain facts (amounts, ids, the outcome): never a card number, a secret or a password.

None is captured into ``change_log``: they are the console's, not a payment's story.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from paygate_server.storage.schema import metadata

__all__ = ["operators", "operator_sessions", "operator_login_failures", "operator_actions"]

operators = Table(
    "operators", metadata,
    Column("id", String(32), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),  # lower-cased
    Column("role", String(16), nullable=False),  # admin | support | viewer
    Column("password_hash", Text, nullable=False),  # Argon2id, PHC string
    Column("created_at", BigInteger, nullable=False),
    Column("disabled_at", BigInteger, nullable=True),
)

operator_sessions = Table(
    "operator_sessions", metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 hex of the cookie's id
    Column("operator_id", String(32), ForeignKey("operators.id"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Column("remote_addr", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    Index("ix_operator_sessions_operator", "operator_id"),
)

operator_login_failures = Table(
    "operator_login_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("operator_id", String(32), ForeignKey("operators.id"), nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("remote_addr", String(64), nullable=True),
    Index("ix_operator_login_failures_operator_at", "operator_id", "at"),
)

operator_actions = Table(
    "operator_actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("operator_id", String(32), ForeignKey("operators.id"), nullable=False),
    Column("action", String(64), nullable=False),  # e.g. refund, capture, login, operator.disable
    Column("target", String(64), nullable=True),  # the object acted on: pi_…, mer_…, op_…
    Column("detail", Text, nullable=True),  # JSON object of plain facts (see the module)
    Column("remote_addr", String(64), nullable=True),
    Column("at", BigInteger, nullable=False),
    Index("ix_operator_actions_at", "at"),
    Index("ix_operator_actions_target", "target", "at"),
)
