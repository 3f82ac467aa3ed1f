"""The message-broker sink, for deployments that outgrow one machine.

A :class:`BrokerSink` is a relay consumer over a small :class:`BrokerClient` interface —
connect, publish a batch in order (each message with a dedup id and headers), close. :class:`NatsClient` speaks NATS JetStream; a Kafka client
is one more module implementing the same four methods (an idempotent producer keyed by
intent id, the change id as a header), chosen by the ``kafka://`` scheme of
``PAYGATE_BROKER_URL`` — not shipped, as no Kafka broker is available to test it against.

Messages: subject ``<prefix>.<merchant id>.<intent id>`` (subscribers can filter per
merchant or intent, and order per intent is the order of the stream), body the same JSON
record as an archive line, headers ``Nats-Msg-Id: chg-<change id>`` (JetStream drops a
duplicate within the stream's duplicate window) and ``Paygate-Position`` (where the relay
stood after the change: information for subscribers).

The relay resumes from its own offset, never after the stream's last message: a batch is
published pipelined, and a stream can hold a message without every one before it — nats-py,
reconnecting, writes what it still buffered on the new connection while what had gone out on
the dropped one is gone; a clustered stream changing leader drops some too. The batch then
fails (unacknowledged), and resuming after the stream's last message would skip the lost
ones for ever. Publishing the batch again from the offset costs nothing within the stream's
duplicate window (JetStream drops the messages it holds by their ``Nats-Msg-Id``) and, after
it, duplicates subscribers drop by change id (at least once).
"""
from __future__ import annotations

import asyncio
from typing import Any, Protocol

import orjson

from paygate_server.cdc.relay import Consumer
from paygate_server.faults import crash_point
from paygate_server.storage import Transaction
from paygate_server.storage.changes import Change, Position

__all__ = ["BrokerClient", "BrokerMessage", "BrokerSink", "NatsClient", "broker_client_for"]

POSITION_HEADER = "Paygate-Position"


class BrokerMessage:
    __slots__ = ("subject", "body", "msg_id", "headers")

    def __init__(self, subject: str, body: bytes, msg_id: str, headers: dict[str, str]) -> None:
        self.subject, self.body, self.msg_id, self.headers = subject, body, msg_id, headers


class BrokerClient(Protocol):
    async def connect(self) -> None: ...

    async def publish(self, messages: list[BrokerMessage]) -> None:
        """Publish in order; return once the broker has acknowledged every message."""
        ...

    async def close(self) -> None: ...


class NatsClient:
    def __init__(self, url: str, *, stream: str, subject_prefix: str, duplicate_window_s: float = 600.0) -> None:
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix
        self.duplicate_window_s = duplicate_window_s
        self._nc: Any = None
        self._js: Any = None

    async def connect(self) -> None:
        import nats  # the `nats` extra
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        self._nc = await nats.connect(self.url, connect_timeout=5, max_reconnect_attempts=3,
                                      allow_reconnect=True, error_cb=_quiet)
        self._js = self._nc.jetstream()
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(StreamConfig(name=self.stream, subjects=[f"{self.subject_prefix}.>"],
                                                   duplicate_window=self.duplicate_window_s))

    async def publish(self, messages: list[BrokerMessage]) -> None:
        # publish_async sends in order on one connection; the stream keeps that order.
        futures = []
        for m in messages:
            futures.append(await self._js.publish_async(
                m.subject, m.body, stream=self.stream, headers={"Nats-Msg-Id": m.msg_id, **m.headers}))
        async with asyncio.timeout(30):  # not wait_for: see paygate_server.waiting
            await asyncio.gather(*futures)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await nc.close()


async def _quiet(exc: Exception) -> None:
    """nats-py's error callback. Its default logs every failed attempt with a traceback
    (four of them before `paygate relay --once` could say "cannot reach the broker"); the
    failure that matters is raised to the relay, which says it once."""


def broker_client_for(url: str, *, stream: str, subject_prefix: str) -> BrokerClient:
    if url.startswith(("nats://", "tls://")):
        return NatsClient(url, stream=stream, subject_prefix=subject_prefix)
    raise ValueError(f"unsupported PAYGATE_BROKER_URL scheme: {url.split(':', 1)[0]} (nats:// is supported)")


class BrokerSink(Consumer):
    name = "broker"
    transactional = False
    linger_s = 0.0

    def __init__(self, client: BrokerClient, *, subject_prefix: str, batch_size: int,
                 fault_point: str | None = None) -> None:
        self.client = client
        self.subject_prefix = subject_prefix
        self.batch_size = batch_size
        self._fault = fault_point
        self._connected = False

    async def start(self) -> Position | None:
        await self.client.connect()
        self._connected = True
        return None  # never the stream's last message (see the module's docstring)

    def message(self, change: Change) -> BrokerMessage:
        return BrokerMessage(f"{self.subject_prefix}.{change.merchant_id}.{change.intent_id}",
                             orjson.dumps(change.record()), f"chg-{change.id}",
                             {POSITION_HEADER: change.position.encode()})

    async def deliver(self, changes: list[Change], conn: Transaction | None) -> None:
        messages = [self.message(c) for c in changes]
        if self._fault == "broker_mid_batch" and len(messages) > 1:
            await self.client.publish(messages[: len(messages) // 2])
            crash_point(self._fault, "broker_mid_batch")
        await self.client.publish(messages)

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            await self.client.close()
