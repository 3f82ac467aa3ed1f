"""The dispatcher's leases, with the clock in hand (tests/support/clock.py) and attempts that
end when the test says: an attempt that outlived its lease, its delivery claimed again by
another process, records nothing over the new attempt (nor frees its endpoint's slot); a
delivery whose event or endpoint row is gone is finished at once, not claimed again at
every lease's end."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from paygate_server.crypto import MasterKey
from paygate_server.storage import Database
from paygate_server.storage.schema_history import webhook_deliveries
from paygate_server.storage.webhook_deliveries import DeliveryQueue
from paygate_server.storage.webhook_events import NewEvent, insert_events
from paygate_server.webhooks import model
from paygate_server.webhooks.dispatcher import AttemptResult, Dispatcher
from tests.server.cdc.conftest import db, new_merchant  # noqa: F401 (fixture)
from tests.support.app import TEST_MASTER_KEY
from tests.support.app import test_settings as gateway_settings
from tests.support.clock import FakeClock, fake_clock

MASTER = MasterKey(bytes.fromhex(TEST_MASTER_KEY))
TIMEOUT_S = 5.0
LEASE_S = TIMEOUT_S + 15.0  # the dispatcher's: the attempt's timeout and a margin to record it
_US = 1_000_000


class HeldDispatcher(Dispatcher):
    """One process's dispatcher, an endpoint's limit of 1, whose attempts end when the test
    answers them (``answers``, in the order they started)."""

    def __init__(self, db: Database, database_url: str, tmp_path: Path) -> None:  # noqa: F811
        super().__init__(db, MASTER, gateway_settings(database_url, tmp_path, webhook_timeout_s=TIMEOUT_S,
                                                      webhook_endpoint_concurrency=1))
        self.answers: list[asyncio.Future[AttemptResult]] = []
        self.started = asyncio.Event()

    async def attempt(self, url: str, secret: str, event_id: str, body: bytes) -> AttemptResult:
        answer: asyncio.Future[AttemptResult] = asyncio.get_running_loop().create_future()
        self.answers.append(answer)
        self.started.set()
        return await answer


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    with fake_clock() as fake:
        yield fake


async def _endpoint(db: Database, merchant: str) -> str:  # noqa: F811
    async with db.write() as conn:
        endpoint, _ = await model.create_endpoint(conn, MASTER, merchant, "https://hooks.test/a", None)
    return endpoint.id


async def _event(db: Database, merchant: str, n: int, now: int) -> str:  # noqa: F811
    """An event and its delivery to the merchant's endpoint, due at ``now``."""
    event = NewEvent(f"evt_lease_{n}_{merchant}", merchant, "payment_intent.created", n, "pi_x", "pi_x",
                     f'{{"n": {n}}}')
    async with db.write() as conn:
        assert await insert_events(conn, [event], now, kept_for_disabled_us=0) == 1
    return event.id


async def _row(db: Database, event_id: str) -> tuple[str, int, int | None, str | None]:  # noqa: F811
    """The delivery's (status, attempts, lease_until, last_error)."""
    async with db.read() as conn:
        row = (await conn.execute(select(webhook_deliveries.c.status, webhook_deliveries.c.attempts,
                                         webhook_deliveries.c.lease_until, webhook_deliveries.c.last_error)
                                  .where(webhook_deliveries.c.event_id == event_id))).one()
    return row[0], row[1], row[2], row[3]


async def test_an_attempt_that_outlived_its_lease_records_nothing_over_the_next_one(
        db: Database, fresh_database_url: str, tmp_path: Path, clock: FakeClock,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    merchant = await new_merchant(db)
    await _endpoint(db, merchant)
    late = await _event(db, merchant, 1, clock.now_us)
    one, another = (HeldDispatcher(db, fresh_database_url, tmp_path) for _ in range(2))  # two processes

    first_pass = asyncio.create_task(one.send_due())
    await one.started.wait()
    clock.set_elapsed(LEASE_S)  # the attempt outlives its lease: the delivery is due again
    second_pass = asyncio.create_task(another.send_due())
    await another.started.wait()  # claimed again, by another process
    second_lease = clock.now_us + int(LEASE_S * _US)
    assert await _row(db, late) == ("pending", 0, second_lease, None)

    # The first attempt ends (a 500: to be retried): nothing of it is recorded over the second's
    # lease, which still holds the endpoint's one slot.
    with caplog.at_level(logging.INFO, logger="paygate.webhooks"):
        one.answers[0].set_result(AttemptResult(500, None))
        assert await first_pass == 1
    assert await _row(db, late) == ("pending", 0, second_lease, None)
    [dropped] = [r for r in caplog.records if late in r.getMessage()]
    assert dropped.levelno == logging.INFO and "not recorded" in dropped.getMessage()
    waiting = await _event(db, merchant, 2, clock.now_us)
    assert await one.run_once() == 0  # the endpoint is full

    # The second attempt's outcome is the delivery's, and frees the slot.
    another.answers[0].set_result(AttemptResult(200, None))
    assert await second_pass == 1
    assert await _row(db, late) == ("delivered", 1, None, None)
    one.started.clear()
    assert await one.run_once() == 1
    await one.started.wait()
    one.answers[1].set_result(AttemptResult(200, None))
    await one.send_due()  # (nothing more due: waits for the attempt running)
    assert await _row(db, waiting) == ("delivered", 1, None, None)


async def _endpoint_status(db: Database, endpoint_id: str) -> str:  # noqa: F811
    async with db.read() as conn:
        return str((await conn.execute(text("SELECT status FROM webhook_endpoints WHERE id = :id"),
                                       {"id": endpoint_id})).scalar_one())


async def test_a_late_410_whose_lease_ran_out_does_not_disable_the_endpoint(
        db: Database, fresh_database_url: str, tmp_path: Path, clock: FakeClock) -> None:  # noqa: F811
    """A fenced-out outcome has no side effect: the 410 of an attempt that outlived its lease
    (the delivery claimed again since, and delivered) leaves the endpoint enabled."""
    merchant = await new_merchant(db)
    endpoint_id = await _endpoint(db, merchant)
    late = await _event(db, merchant, 1, clock.now_us)
    one, another = (HeldDispatcher(db, fresh_database_url, tmp_path) for _ in range(2))
    first_pass = asyncio.create_task(one.send_due())
    await one.started.wait()
    clock.set_elapsed(LEASE_S)
    second_pass = asyncio.create_task(another.send_due())
    await another.started.wait()
    another.answers[0].set_result(AttemptResult(200, None))
    assert await second_pass == 1
    one.answers[0].set_result(AttemptResult(410, None))  # long after: its lease is another's now
    assert await first_pass == 1
    assert await _row(db, late) == ("delivered", 1, None, None)
    assert await _endpoint_status(db, endpoint_id) == "enabled"
    # Under its lease, a 410 disables the endpoint, with the outcome.
    gone = await _event(db, merchant, 2, clock.now_us)
    one.started.clear()
    third_pass = asyncio.create_task(one.send_due())
    await one.started.wait()
    one.answers[1].set_result(AttemptResult(410, None))
    assert await third_pass == 1
    assert await _row(db, gone) == ("failed", 1, None, "410 Gone: endpoint disabled")
    assert await _endpoint_status(db, endpoint_id) == "disabled"


@pytest.mark.parametrize("gone", ["event", "endpoint"])
async def test_a_delivery_whose_event_or_endpoint_is_gone_is_failed_at_once(
        db: Database, fresh_database_url: str, tmp_path: Path, clock: FakeClock, gone: str) -> None:  # noqa: F811
    merchant = await new_merchant(db)
    endpoint_id = await _endpoint(db, merchant)
    event_id = await _event(db, merchant, 1, clock.now_us)
    async with db.write() as conn:  # (nothing deletes these rows today; a restore, or a hand, might)
        table, key = ("webhook_events", event_id) if gone == "event" else ("webhook_endpoints", endpoint_id)
        await conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": key})
    dispatcher = HeldDispatcher(db, fresh_database_url, tmp_path)

    assert await dispatcher.send_due() == 1
    assert dispatcher.answers == []  # nothing to send
    assert await _row(db, event_id) == ("failed", 0, None, f"{gone} missing")  # its slot free at once
    clock.set_elapsed(LEASE_S)
    assert await dispatcher.send_due() == 0  # and not claimed again when the lease would have run out
    # The operator sees it, and why (`paygate webhooks deliveries`, the console's merchant page).
    [listed] = await DeliveryQueue(db).recent(merchant_id=merchant)
    assert (listed["event_id"], listed["status"], listed["last_error"]) == (event_id, "failed", f"{gone} missing")
