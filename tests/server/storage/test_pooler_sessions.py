"""Sessions that must not go through a transaction pooler (storage/sessions.py), with a real
PgBouncer in transaction mode: a relay lease is refused there instead of being held by two
relays, and `paygate serve` refuses to start in one line. Skipped with the reason where
pgbouncer is not installed or PAYGATE_TEST_DATABASE_URL is unset."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate_server.storage import create_database
from paygate_server.storage.relay_leases import ConsumerLease
from paygate_server.storage.sessions import SessionNotBound
from tests.support.databases import another_database, pg_base_url
from tests.support.pgbouncer import (
    PgBouncer,
    lease_holders,
    migrate_through,
    paygate,
    pgbouncer_or_skip,
    through,
)
from tests.support.processes import gateway_env


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    with pgbouncer_or_skip() as pooler:
        yield pooler


@pytest.fixture
def database(bouncer: PgBouncer, tmp_path: Path) -> Iterator[str]:
    """A fresh database (its direct URL), migrated through the pooler."""
    with another_database(pg_base_url(), tmp_path, migrated=False) as url:
        migrate_through(bouncer, url, tmp_path)
        yield url


async def test_a_relay_lease_through_the_pooler_is_refused_never_held_twice(bouncer: PgBouncer,
                                                                          database: str) -> None:
    """Through a transaction pooler a session advisory lock stays on a server connection
    that the next client gets too, and its try is granted there (re-entrant): two relays
    both held the lease. The lease refuses instead; on a direct session URL it is exclusive."""
    pooled = through(bouncer, database)
    # Two processes whose session URL is the pooler's too (a mistake the lease must survive).
    one, two = create_database(pooled, session_url=pooled), create_database(pooled, session_url=pooled)
    try:
        a, b = ConsumerLease(one, "archive"), ConsumerLease(two, "archive")
        with pytest.raises(SessionNotBound, match="pooler"):
            await a.acquire()
        with pytest.raises(SessionNotBound, match="pooler"):
            await b.acquire()
        assert not a.held and not b.held
        assert await lease_holders(database) == []  # undone where it was taken
    finally:
        await one.dispose()
        await two.dispose()

    one, two = create_database(pooled, session_url=database), create_database(pooled, session_url=database)
    try:
        a, b = ConsumerLease(one, "archive"), ConsumerLease(two, "archive")
        assert await a.acquire()
        assert not await b.acquire()
        holders = await lease_holders(database)
        assert len(holders) == 1 and holders[0] not in bouncer.server_pids()
        await a.release()
        assert await b.acquire()
        await b.release()
    finally:
        await one.dispose()
        await two.dispose()


def test_serve_refuses_to_start_where_a_session_would_go_through_the_pooler(bouncer: PgBouncer, database: str,
                                                                             tmp_path: Path) -> None:
    env = gateway_env(through(bouncer, database), tmp_path)
    done = paygate("serve", "--port", "0", env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "PAYGATE_DATABASE_SESSION_URL" in done.stderr, done.stderr

    # A session URL that is the pooler too, or another database: refused as well.
    done = paygate("serve", "--port", "0", env={**env, "PAYGATE_DATABASE_SESSION_URL": through(bouncer, database)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "pooler" in done.stderr, done.stderr
    with another_database(database, tmp_path) as elsewhere:
        done = paygate("serve", "--port", "0", env={**env, "PAYGATE_DATABASE_SESSION_URL": elsewhere})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "another database" in done.stderr, done.stderr


def test_named_statements_through_the_pooler_are_one_line_naming_the_session_url(bouncer: PgBouncer, database: str,
                                                                                  tmp_path: Path) -> None:
    """Without a session URL the driver's named statements meet another client's of the
    same name on the server connection PgBouncer hands out (the first command leaves its
    own there): once a driver error, now one line saying what to set."""
    env = gateway_env(through(bouncer, database), tmp_path)
    first = paygate("merchants", "create", "--name", "Shop", env=env)
    assert first.returncode == 0, first.stderr
    second = paygate("merchants", "create", "--name", "Shop", env=env)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert "transaction-mode pooler" in second.stderr and "PAYGATE_DATABASE_SESSION_URL" in second.stderr
