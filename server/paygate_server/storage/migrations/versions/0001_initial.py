"""Initial schema: merchants and keys, nonces, idempotency keys, intents, transactions,
refunds, the reconcile queue, sealed keys, and the change log with its capture triggers.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.storage import capture

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('change_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('op', sa.String(length=8), nullable=False),
    sa.Column('intent_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('intent_seq', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('intent_id', 'intent_seq', name='ux_change_log_intent_seq')
    )
    op.create_table('idempotency_keys',
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('locked_at', sa.BigInteger(), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('merchant_id', 'idempotency_key')
    )
    op.create_index('ix_idempotency_keys_created', 'idempotency_keys', ['created_at'], unique=False)
    op.create_table('merchants',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('reconcile_queue',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('intent_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('due_at', sa.BigInteger(), nullable=False),
    sa.Column('checks', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_result', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'object_id')
    )
    op.create_index('ix_reconcile_queue_due', 'reconcile_queue', ['due_at'], unique=False)
    op.create_table('request_nonces',
    sa.Column('api_key', sa.String(length=128), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('api_key', 'nonce')
    )
    op.create_index('ix_request_nonces_expires', 'request_nonces', ['expires_at'], unique=False)
    op.create_table('sealed_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.Column('public_jwk', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('retired_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('kid')
    )
    op.create_index('ix_sealed_keys_purpose', 'sealed_keys', ['purpose', 'state'], unique=False)
    op.create_table('api_keys',
    sa.Column('api_key', sa.String(length=128), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('secret_sealed', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('api_key')
    )
    op.create_index('ix_api_keys_merchant', 'api_keys', ['merchant_id'], unique=False)
    op.create_table('merchant_origins',
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=300), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('merchant_id', 'origin')
    )
    op.create_table('payment_intents',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount_refunded', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('product_details', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('metadata', sa.Text(), nullable=True),
    sa.Column('client_secret_hash', sa.String(length=64), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('card', sa.Text(), nullable=True),
    sa.Column('version', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_secret_hash')
    )
    op.create_index('ix_payment_intents_merchant_created', 'payment_intents', ['merchant_id', 'created_at', 'id'], unique=False)
    op.create_table('refunds',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('intent_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('transaction_id', sa.String(length=64), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['intent_id'], ['payment_intents.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference')
    )
    op.create_index('ix_refunds_intent', 'refunds', ['intent_id'], unique=False)
    op.create_table('transactions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('intent_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('connector', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('card_brand', sa.String(length=16), nullable=True),
    sa.Column('card_last4', sa.String(length=4), nullable=True),
    sa.Column('card_exp_month', sa.Integer(), nullable=True),
    sa.Column('card_exp_year', sa.Integer(), nullable=True),
    sa.Column('card_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('vault_id', sa.String(length=64), nullable=True),
    sa.Column('auth_code', sa.String(length=32), nullable=True),
    sa.Column('decline_code', sa.String(length=64), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['intent_id'], ['payment_intents.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference')
    )
    op.create_index('ix_transactions_intent', 'transactions', ['intent_id'], unique=False)
    op.create_index('ux_transactions_one_in_flight', 'transactions', ['intent_id'], unique=True, sqlite_where=sa.text("status IN ('pending', 'unknown')"), postgresql_where=sa.text("status IN ('pending', 'unknown')"))
    op.create_index('ux_transactions_one_success', 'transactions', ['intent_id'], unique=True, sqlite_where=sa.text("status = 'succeeded'"), postgresql_where=sa.text("status = 'succeeded'"))
    dialect = op.get_bind().dialect.name
    for statement in capture.install_statements(dialect, capture.live_columns(op.get_bind()), revision=1):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in capture.uninstall_statements(dialect):
        op.execute(statement)
    for table in ("reconcile_queue", "change_log", "refunds", "transactions", "payment_intents", "sealed_keys",
                  "idempotency_keys", "request_nonces", "api_keys", "merchant_origins",
                  "merchants"):
        op.drop_table(table)
