"""Migrations produce exactly the schema the code declares; versions are checked."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from paygate_server.auth.nonces import NonceBook
from paygate_server.storage import (
    SchemaMismatch,
    check_schema,
    create_database,
    schema_version,
    upgrade,
)
from paygate_server.storage.change_log_partitions import is_partition_name
from paygate_server.storage.migrate import alembic_config
from paygate_server.storage.schema import metadata
from paygate_server.storage.schema_version import current_revision, head_revision, known_revisions
from tests.server.test_cli import paygate
from tests.server.test_cli_errors import assert_one_line
from tests.support.databases import another_database


async def test_migrated_schema_matches_metadata(database_url: str) -> None:
    db = create_database(database_url)
    try:
        async with db.raw_connection() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(
                c, opts={"include_name": lambda name, kind, _p: not (kind == "table" and is_partition_name(name))}),
                metadata))
        assert diff == []
        await check_schema(db)
    finally:
        await db.dispose()


async def test_the_migration_scripts_are_read_once_per_process(database_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every gateway start checks the schema against the revisions the migration scripts name;
    they are the installed code's and do not change while it runs: read once per process."""
    reads: list[Path] = []
    read_text = Path.read_text

    def counted(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.parent == schema_version.MIGRATIONS / "versions":
            reads.append(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    schema_version._revisions.cache_clear()  # as in a new process
    db = create_database(database_url)
    try:
        for _ in range(3):
            await check_schema(db)
    finally:
        await db.dispose()
    assert reads and len(reads) == len(set(reads)), reads


async def test_newer_schema_is_refused(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaMismatch, match="newer than this code"):
            await check_schema(db)
    finally:
        await db.dispose()


def test_the_schema_check_reads_the_revisions_as_alembic_does() -> None:
    """The start-up check reads the migration files' text, not Alembic's script directory
    (storage/schema_version.py): a migration written so that the reading misses it, or a
    second head, would make every start refuse or pass wrongly."""
    scripts = ScriptDirectory.from_config(alembic_config())
    assert head_revision() == scripts.get_current_head()
    assert known_revisions() == {s.revision for s in scripts.walk_revisions()}


async def test_the_current_revision_is_read_as_alembic_reads_it(unmigrated_url: str) -> None:
    db = create_database(unmigrated_url)
    try:
        for upgraded_to in (None, "0001", "head"):
            if upgraded_to is not None:
                await upgrade(db, upgraded_to)
            async with db.raw_connection() as conn:
                alembics = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
            assert await current_revision(db) == alembics
        assert alembics == head_revision()
    finally:
        await db.dispose()


async def test_an_older_schema_is_refused_in_one_line(unmigrated_url: str, tmp_path: Path) -> None:
    db = create_database(unmigrated_url)
    try:
        before_head = sorted(known_revisions())[-2]
        await upgrade(db, before_head)
        with pytest.raises(SchemaMismatch, match=f"at revision {before_head} but this code needs {head_revision()}"):
            await check_schema(db)
    finally:
        await db.dispose()
    r = paygate("merchants", "create", "--name", "Shop",
                env={"PAYGATE_DATABASE_URL": unmigrated_url, "PAYGATE_DATA_DIR": str(tmp_path / "data")})
    assert_one_line(r, f"at revision {before_head}", "run `paygate db upgrade`")


async def _merchant_and_intent(conn: Any) -> None:
    """mer_1 and its intent pi_1, by plain SQL: past every gateway module."""
    await conn.execute(text("INSERT INTO merchants VALUES ('mer_1', 'x', 1)"))
    await conn.execute(text(
        "INSERT INTO payment_intents (id, merchant_id, status, amount, currency, client_secret_hash, "
        "created_at, updated_at) VALUES ('pi_1', 'mer_1', 'created', 5, 'USD', 'h', 1, 1)"))


async def test_change_log_is_append_only(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            await _merchant_and_intent(conn)
        for statement in ("UPDATE change_log SET data = '{}'", "DELETE FROM change_log"):
            with pytest.raises(Exception, match="append-only"):
                async with db.write() as conn:
                    await conn.execute(text(statement))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM change_log"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_every_insert_and_update_of_an_intent_transaction_or_refund_is_captured_by_the_database(
        fresh_database_url: str) -> None:
    """SPEC §8: captured in the same transaction and enforced by the database, so no code
    path can forget it: plain SQL, past every gateway module, is in the change log too."""
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            await _merchant_and_intent(conn)
            await conn.execute(text(
                "INSERT INTO transactions (id, intent_id, merchant_id, status, reference, connector, amount, currency,"
                " created_at, updated_at) VALUES ('txn_1', 'pi_1', 'mer_1', 'pending', 'ref_1', 'simulator', 5, 'USD',"
                " 2, 2)"))
            await conn.execute(text(
                "INSERT INTO refunds (id, intent_id, merchant_id, transaction_id, reference, amount, currency, status,"
                " created_at, updated_at) VALUES ('re_1', 'pi_1', 'mer_1', 'txn_1', 'ref_r1', 5, 'USD', 'pending',"
                " 3, 3)"))
        for table in ("payment_intents", "transactions", "refunds"):
            async with db.write() as conn:  # each in a transaction of its own
                await conn.execute(text(f"UPDATE {table} SET status = 'succeeded', updated_at = 9"))
        with pytest.raises(RuntimeError, match="rolled back"):
            async with db.write() as conn:  # a write that does not commit leaves no change behind
                await conn.execute(text("UPDATE refunds SET status = 'failed'"))
                raise RuntimeError("rolled back")
        async with db.read() as conn:
            rows = (await conn.execute(text("SELECT entity_id, op, data FROM change_log ORDER BY id"))).all()
        assert [(r.entity_id, r.op) for r in rows] == [
            ("pi_1", "insert"), ("txn_1", "insert"), ("re_1", "insert"),
            ("pi_1", "update"), ("txn_1", "update"), ("re_1", "update")]
        assert [json.loads(r.data)["status"] for r in rows[3:]] == ["succeeded"] * 3
    finally:
        await db.dispose()


@pytest.fixture
def unmigrated_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with another_database(database_url, tmp_path, migrated=False) as url:
        yield url


async def test_0004_moves_a_database_of_the_old_code_without_losing_a_row(unmigrated_url: str) -> None:
    """A database at 0003 with intents, charges and a refund as the code before manual capture
    wrote them (through its triggers): 0004 keeps every row, says what a succeeded intent
    received, writes no history of its own, and later changes are captured with the new
    columns (SQLite's triggers name every column)."""
    db = create_database(unmigrated_url)
    try:
        await upgrade(db, "0003")
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO merchants VALUES ('mer_1', 'x', 1)"))
            for pid, status in (("pi_paid", "succeeded"), ("pi_new", "created"), ("pi_declined", "failed")):
                await conn.execute(text(
                    "INSERT INTO payment_intents (id, merchant_id, status, amount, amount_refunded, currency,"
                    " client_secret_hash, created_at, updated_at) VALUES (:id, 'mer_1', 'created', 700, 0, 'EUR',"
                    " :h, 1, 1)"), {"id": pid, "h": pid})
                if status != "created":
                    await conn.execute(text(
                        "INSERT INTO transactions (id, intent_id, merchant_id, status, reference, connector, amount,"
                        " currency, created_at, updated_at) VALUES (:t, :id, 'mer_1', :s, :r, 'simulator', 700,"
                        " 'EUR', 2, 2)"), {"t": f"txn_{pid}", "id": pid, "s": status, "r": f"ref_{pid}"})
                    await conn.execute(text("UPDATE payment_intents SET status = :s, updated_at = 3 WHERE id = :id"),
                                       {"s": status, "id": pid})
            await conn.execute(text("UPDATE payment_intents SET amount_refunded = 200 WHERE id = 'pi_paid'"))
        async with db.read() as conn:
            history_before = (await conn.execute(text("SELECT count(*) FROM change_log"))).scalar_one()

        await upgrade(db)
        async with db.read() as conn:
            intents = {r.id: r for r in await conn.execute(text(
                "SELECT id, status, amount_refunded, capture_method, amount_received, amount_capturable,"
                " cancellation_reason FROM payment_intents"))}
            kinds = {r.id: r.kind for r in await conn.execute(text("SELECT id, kind FROM transactions"))}
            assert (await conn.execute(text("SELECT count(*) FROM change_log"))).scalar_one() == history_before
        assert {k: tuple(v)[1:] for k, v in intents.items()} == {
            "pi_paid": ("succeeded", 200, "automatic", 700, 0, None),
            "pi_new": ("created", 0, "automatic", 0, 0, None),
            "pi_declined": ("failed", 0, "automatic", 0, 0, None),
        }
        assert kinds == {"txn_pi_paid": "charge", "txn_pi_declined": "charge"}

        async with db.write() as conn:
            await conn.execute(text("UPDATE payment_intents SET status = 'canceled', updated_at = 4"
                                    " WHERE id = 'pi_new'"))
        async with db.read() as conn:
            last = (await conn.execute(text("SELECT data FROM change_log ORDER BY id DESC LIMIT 1"))).scalar_one()
        snapshot = json.loads(last)
        assert (snapshot["status"], snapshot["capture_method"], snapshot["amount_received"]) == \
            ("canceled", "automatic", 0)
    finally:
        await db.dispose()



async def test_0014_keeps_refunds_and_their_changes_carry_the_failure_reason(unmigrated_url: str) -> None:
    """A refund of a database at 0013 survives 0014, and its later changes carry
    ``failure_reason`` (SQLite's triggers name every column: they are rebuilt over it)."""
    db = create_database(unmigrated_url)
    try:
        await upgrade(db, "0013")
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO merchants VALUES ('mer_1', 'x', 1)"))
            await conn.execute(text(
                "INSERT INTO payment_intents (id, merchant_id, status, amount, amount_refunded, currency,"
                " client_secret_hash, created_at, updated_at) VALUES ('pi_1', 'mer_1', 'succeeded', 700, 200, 'EUR',"
                " 'h', 1, 1)"))
            await conn.execute(text(
                "INSERT INTO refunds (id, intent_id, merchant_id, transaction_id, reference, amount, currency,"
                " status, created_at, updated_at) VALUES ('re_1', 'pi_1', 'mer_1', 'txn_1', 'rref_1', 200, 'EUR',"
                " 'pending', 2, 2)"))
        await upgrade(db)
        async with db.write() as conn:
            await conn.execute(text("UPDATE refunds SET status = 'failed', failure_reason = 'refused', updated_at = 3"))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT id, amount FROM refunds"))).all() == [("re_1", 200)]
            last = (await conn.execute(text("SELECT data FROM change_log WHERE entity = 'refund'"
                                            " ORDER BY id DESC LIMIT 1"))).scalar_one()
        snapshot = json.loads(last)
        assert (snapshot["status"], snapshot["failure_reason"]) == ("failed", "refused")
    finally:
        await db.dispose()


async def test_0017_a_nonce_recorded_before_the_upgrade_is_still_refused_after_it(unmigrated_url: str) -> None:
    """Nonces the code before 0017 stored as sent (more than one of the SQLite rewrite's
    batches) are rewritten to their digests: each replay is still refused, none is stored
    as sent any more, a new nonce is fresh, and rows already out of the window are gone."""
    db = create_database(unmigrated_url)
    book = NonceBook(db)
    in_window = 10**18
    sent = [(f"pk_test_{i % 3:08d}", f"{i:04d}-4242424242424242") for i in range(2500)]
    try:
        await upgrade(db, "0016")
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO request_nonces (api_key, nonce, expires_at) VALUES (:k, :n, :e)"),
                               [{"k": k, "n": n, "e": in_window} for k, n in sent]
                               + [{"k": "pk_test_00000000", "n": "expired-nonce-000", "e": 1}])

        await upgrade(db)
        async with db.read() as conn:
            stored = {row.nonce for row in await conn.execute(text("SELECT nonce FROM request_nonces"))}
        assert len(stored) == len(sent) and not stored & {n for _, n in sent}
        replays = await asyncio.gather(*(book.remember(k, n, in_window) for k, n in sent))
        assert replays == [False] * len(sent)
        assert await book.remember("pk_test_00000000", "a-fresh-nonce-0001", in_window)
        assert await book.remember("pk_test_00000000", "expired-nonce-000", in_window)  # deleted, not rewritten
    finally:
        await db.dispose()




async def test_upgrades_run_at_once_on_a_new_database_take_turns(unmigrated_url: str) -> None:
    """Several hosts (or init containers) running `paygate db upgrade` together on a new
    database: once, each read "no schema" and all but one ended in a traceback ("database is
    locked" on SQLite, a duplicate key in PostgreSQL's catalog; in one process, as here,
    PostgreSQL's runs waited on each other for good). Now one migrates and the others wait,
    then find the schema current."""
    head = head_revision()
    dbs = [create_database(unmigrated_url) for _ in range(3)]
    try:
        results = await asyncio.wait_for(asyncio.gather(*(upgrade(db) for db in dbs), return_exceptions=True), 60)
    finally:
        for db in dbs:
            await db.dispose()
    assert all(not isinstance(r, BaseException) for r in results), results
    assert sorted(results, key=str) == [(head, head), (head, head), (None, head)], results  # type: ignore[arg-type]
