"""Migrations produce exactly the schema the code declares; versions are checked."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from paygate_server.storage import SchemaMismatch, check_schema, create_database
from paygate_server.storage.schema import metadata


async def test_migrated_schema_matches_metadata(database_url: str) -> None:
    db = create_database(database_url)
    try:
        async with db.raw_connection() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        assert diff == []
        await check_schema(db)
    finally:
        await db.dispose()


async def test_newer_schema_is_refused(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaMismatch, match="newer than this code"):
            await check_schema(db)
    finally:
        await db.dispose()


async def test_change_log_is_append_only(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO merchants VALUES ('mer_1', 'x', 1)"))
            await conn.execute(text(
                "INSERT INTO payment_intents (id, merchant_id, status, amount, currency, client_secret_hash, "
                "created_at, updated_at) VALUES ('pi_1', 'mer_1', 'created', 5, 'USD', 'h', 1, 1)"))
        for statement in ("UPDATE change_log SET data = '{}'", "DELETE FROM change_log"):
            with pytest.raises(Exception, match="append-only"):
                async with db.write() as conn:
                    await conn.execute(text(statement))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM change_log"))).scalar_one() == 1
    finally:
        await db.dispose()
