"""SPEC §4: the status stream (``…/status/stream``, and the checkout's, which shares
``intent_status_events``) sends one event per status change, in order — none merged when
several changes land between two of the stream's wake-ups, none repeated when a change
keeps the status — and ends at a final status or ``requires_capture``.

The stream is driven here as the generator both endpoints serve: while it is suspended
after an event it reads nothing, so changes made then are all committed before its next
read, deterministically."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from paygate_server.clock import now_us
from paygate_server.intents.endpoints import intent_status_events
from paygate_server.processing.connectors import ChargeOutcome
from paygate_server.storage.change_log_partitions import PARTITION_IDS
from paygate_server.storage.schema import payment_intents
from paygate_server.storage.status_changes import StatusChanges
from tests.server.processing.scripted import ScriptedProcessor, process_body, scripted
from tests.support.app import InProcessGateway
from tests.support.eventually import eventually
from tests.support.pruning import prune_rows
from tests.support.signing import SignedClient

PROCESS = "/api/v1/payment/process"


class _Connected:
    """The request, as the stream asks it (only at a keep-alive): the client is still there."""

    async def is_disconnected(self) -> bool:
        return False


@pytest.fixture
def processor(gw: InProcessGateway) -> ScriptedProcessor:
    return scripted(gw)


def _stream(gw: InProcessGateway, shop: SignedClient, pid: str) -> AsyncIterator[bytes]:
    return intent_status_events(gw.gateway, _Connected(), shop.creds.merchant_id, pid)  # type: ignore[arg-type]  # a stand-in request


def _parsed(event: bytes) -> tuple[str, str]:
    """An event's (id, status)."""
    fields = dict(line.split(": ", 1) for line in event.decode().splitlines() if line)
    assert fields["event"] == "status", event
    return fields["id"], json.loads(fields["data"])["status"]


async def _rest(stream: AsyncIterator[bytes]) -> list[bytes]:
    async def drain() -> list[bytes]:
        return [event async for event in stream]
    return await asyncio.wait_for(drain(), 10)


async def _pay(gw: InProcessGateway, shop: SignedClient, processor: ScriptedProcessor, pid: str,
               outcome: ChargeOutcome) -> None:
    processor.charge_outcome = outcome
    r = await shop.post(PROCESS, process_body(gw, pid))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == ("succeeded" if outcome is ChargeOutcome.APPROVED else "failed"), r.text


def _versions(pid: str, events: list[bytes]) -> list[int]:
    ids = [_parsed(e)[0] for e in events]
    assert all(i.startswith(f"{pid}:") for i in ids), ids
    return [int(i.removeprefix(f"{pid}:")) for i in ids]


@pytest.mark.parametrize("declined_first", [False, True], ids=["from-created", "from-failed"])
async def test_every_status_between_two_wake_ups_is_sent_in_order(
        gw: InProcessGateway, processor: ScriptedProcessor, declined_first: bool) -> None:
    """``in_progress`` comes and goes within one request: the stream reads after it is gone,
    yet sends it — and a retry that fails again is ``in_progress``, ``failed``, never
    ``failed``, ``failed``."""
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    if declined_first:
        await _pay(gw, shop, processor, pid, ChargeOutcome.DECLINED)
    stream = _stream(gw, shop, pid)
    first = await anext(stream)
    start = "failed" if declined_first else "created"
    assert _parsed(first)[1] == start
    # All of it lands while the stream is suspended after its first event.
    await _pay(gw, shop, processor, pid, ChargeOutcome.DECLINED)
    await _pay(gw, shop, processor, pid, ChargeOutcome.DECLINED)
    await _pay(gw, shop, processor, pid, ChargeOutcome.APPROVED)
    events = [first, *await _rest(stream)]
    assert [_parsed(e)[1] for e in events] == [
        start, "in_progress", "failed", "in_progress", "failed", "in_progress", "succeeded"]
    # Each event's id is the intent's version that change left: rising, the last one current.
    versions = _versions(pid, events)
    assert versions == sorted(set(versions)), versions
    row = await gw.gateway.payments.get_intent(shop.creds.merchant_id, pid)
    assert row is not None and versions[-1] == row["version"]


async def test_a_change_that_keeps_the_status_sends_nothing(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    # Which reads the stream's own task finished (it reads nothing else).
    reads: Counter[asyncio.Task[Any] | None] = Counter()
    read_one = gw.gateway.db.read_one

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        async with read_one() as conn:
            yield conn
        reads[asyncio.current_task()] += 1

    monkeypatch.setattr(gw.gateway.db, "read_one", counted)
    events: list[bytes] = []

    async def consume() -> None:
        async for event in _stream(gw, shop, pid):
            events.append(event)

    consumer = asyncio.create_task(consume())
    await eventually(lambda: events, interval=0.005, what="the first event")
    started = reads[consumer]
    # A field of the intent changes and its version moves on; the status stays `created`
    # (no endpoint does this to an intent that is not resting today: a direct update).
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(payment_intents).where(payment_intents.c.id == pid).values(
            description="gift wrap", version=payment_intents.c.version + 1, updated_at=now_us()))
    gw.gateway.notifier.publish(pid)
    await eventually(lambda: reads[consumer] > started or consumer.done(), interval=0.005,
                     what="the stream to read the change")
    assert [_parsed(e)[1] for e in events] == ["created"]
    r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert r.status_code == 200, r.text
    await asyncio.wait_for(consumer, 10)
    assert [_parsed(e)[1] for e in events] == ["created", "canceled"]
    assert _versions(pid, events)[-1] == _versions(pid, events)[0] + 2


async def test_a_stream_over_a_pruned_history(gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    """Pruning takes changes by id and age, whatever the intent's status: a stream opens on
    an intent with no change left in the log (idle past the retention), and changes pruned
    before the stream read them leave it the intent as it is now, then it reads on."""
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    assert await prune_rows(gw.gateway.db, "intent_id = :pid", pid=pid) == 1
    stream = _stream(gw, shop, pid)
    events = [await anext(stream)]
    await _pay(gw, shop, processor, pid, ChargeOutcome.DECLINED)
    assert await prune_rows(gw.gateway.db, "intent_id = :pid", pid=pid) == 4  # the attempt's two, the intent's two
    gw.gateway.notifier.publish(pid)
    events.append(await asyncio.wait_for(anext(stream), 10))  # in_progress went unread: gone
    await _pay(gw, shop, processor, pid, ChargeOutcome.APPROVED)
    events += await _rest(stream)
    assert [_parsed(e)[1] for e in events] == ["created", "failed", "in_progress", "succeeded"]
    versions = _versions(pid, events)
    assert versions == sorted(set(versions)), versions


async def test_changes_below_the_first_reads_guessed_floor_are_read_all_the_same(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    """PostgreSQL: a stream's first read is bounded by the id sequence's position when it
    began, a guess — a change in flight then took its id before, perhaps a partition below.
    Such a read sees the hole and reads again without the bound; a bound that is a change's
    own id is never a guess, and its hole is changes pruned."""
    if gw.gateway.db.is_sqlite:
        pytest.skip("SQLite's change log is one table: its reads take no id floor")
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    history = StatusChanges(gw.gateway.db)
    started = await history.start(shop.creds.merchant_id, pid)
    assert started is not None
    _row, seq, guess = started
    await _pay(gw, shop, processor, pid, ChargeOutcome.DECLINED)
    # As if both changes had taken their ids before the stream began, two partitions below.
    high = guess + 2 * PARTITION_IDS
    read = await history.after(pid, seq, high, guessed=True)
    assert read.complete and [r["status"] for r in read.rows] == ["in_progress", "failed"], read
    assert read.last_id < high
    assert not (await history.after(pid, seq, high)).complete
