"""The broker sink against the real NATS JetStream server on 127.0.0.1:4222 (a stream per test)."""
from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from paygate_server.cdc.broker import BrokerSink, NatsClient
from paygate_server.cdc.relay import Relay
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.changes import Change
from paygate_server.storage.schema_history import cdc_offsets
from tests.server.cdc.conftest import (
    all_changes,
    assert_exactly_once_in_order,
    new_intent,
    new_merchant,
    touch,
)

NATS_URL = os.environ.get("PAYGATE_TEST_NATS_URL", "nats://127.0.0.1:4222")
FAST = Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.02)


def _nats_up() -> bool:
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
async def stream() -> AsyncIterator[tuple[str, str]]:
    if not _nats_up():
        pytest.skip(f"no NATS server at {NATS_URL} (.ci/run starts one)")
    import nats

    tag = uuid.uuid4().hex[:12]
    name, prefix = f"PGT_{tag}", f"pgt{tag}.changes"
    yield name, prefix
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


async def stream_messages(name: str) -> list[Any]:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(name)
        return [await js.get_msg(name, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    finally:
        await nc.close()


def _sink(name: str, prefix: str, batch: int = 4) -> BrokerSink:
    return BrokerSink(NatsClient(NATS_URL, stream=name, subject_prefix=prefix), subject_prefix=prefix,
                      batch_size=batch)


async def test_jetstream_receives_every_change_once_in_order(db: Database, stream: tuple[str, str]) -> None:
    name, prefix = stream
    merchant = await new_merchant(db)
    for i in range(7):
        async with db.write() as conn:
            pid = await new_intent(conn, merchant)
            await touch(conn, pid, "in_progress")
        if i % 2:
            async with db.write() as conn:
                await touch(conn, pid, "failed")
    counts = await Relay(db, FAST, [_sink(name, prefix)]).drain()
    expected = await all_changes(db)
    assert counts["broker"] == len(expected)

    messages = await stream_messages(name)
    received = [Change.from_record(orjson.loads(m.data)) for m in messages]
    assert_exactly_once_in_order(received, expected)
    first = messages[0]
    assert first.subject == f"{prefix}.{merchant}.{received[0].intent_id}"
    assert first.headers["Nats-Msg-Id"] == f"chg-{received[0].id}"

    # The relay's offset is lost (say, restored from an old backup): it publishes from its
    # offset again, and JetStream drops what it holds already (within its duplicate window).
    async with db.write() as conn:
        await conn.execute(cdc_offsets.delete().where(cdc_offsets.c.consumer == "broker"))
    await Relay(db, FAST, [_sink(name, prefix)]).drain()
    assert len(await stream_messages(name)) == len(expected)

    # And a re-published message (a crash between publish and offset) is dropped by JetStream.
    client = NatsClient(NATS_URL, stream=name, subject_prefix=prefix)
    await client.connect()
    try:
        await client.publish([_sink(name, prefix).message(c) for c in expected[-3:]])
    finally:
        await client.close()
    assert len(await stream_messages(name)) == len(expected)


class _DropsOne(NatsClient):
    """A connection that drops one message of a batch and then fails the batch: nats-py,
    reconnecting, writes what it still buffered on the new connection, but what had gone out
    on the dropped one is gone (a clustered stream changing leader can drop one too). The
    stream then holds the messages after the lost one, not the lost one."""

    def __init__(self, *args: Any, drop: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop = drop

    async def publish(self, messages: list[Any]) -> None:
        await super().publish([m for i, m in enumerate(messages) if i != self.drop])
        raise TimeoutError("no acknowledgement for one message of the batch")


async def test_a_message_lost_inside_a_batch_is_published_again(db: Database, stream: tuple[str, str]) -> None:
    # Before: the relay resumed after the stream's last message (its Paygate-Position), so a
    # change lost before it was never published — lost for every subscriber of the stream.
    name, prefix = stream
    merchant = await new_merchant(db)
    for _ in range(3):
        async with db.write() as conn:
            pid = await new_intent(conn, merchant)
            await touch(conn, pid, "in_progress")
    expected = await all_changes(db)
    lossy = BrokerSink(_DropsOne(NATS_URL, stream=name, subject_prefix=prefix, drop=1), subject_prefix=prefix,
                       batch_size=len(expected))
    with pytest.raises(TimeoutError):
        await Relay(db, FAST, [lossy]).drain()
    assert len(await stream_messages(name)) == len(expected) - 1

    await Relay(db, FAST, [_sink(name, prefix, batch=len(expected))]).drain()
    received = [Change.from_record(orjson.loads(m.data)) for m in await stream_messages(name)]
    assert sorted(c.id for c in received) == [c.id for c in expected]
