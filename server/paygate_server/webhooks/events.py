"""Webhook events derived from the change stream (a relay consumer).

A status transition of an intent (its insert, or an update whose ``status`` differs from
the previous snapshot) becomes ``payment_intent.<status>``; a refund reaching
``succeeded`` becomes ``refund.succeeded``. Other changes (a transaction row, a refund
reservation bumping ``amountRefunded``) make no event. The payload is fixed at creation —
``{"type", "timestamp", "data"}`` with the object in the API's wire shape as of that
change — and every enabled endpoint of the merchant subscribed to the type gets a
delivery row (one disabled by a ``410`` within the webhook retention, 30 days by default,
a row failed at once, for a replay: webhooks/retention.py). The relay runs this inside the transaction that records its offset, so each
change yields its event exactly once (``change_id`` is unique besides); the rows are
written by ``paygate_server.storage.webhook_events`` on that transaction's connection.

Cost per batch, not per change: the previous status of an entity is known from the batch
itself or from the batches this consumer delivered before (remembered once they commit,
forgotten whenever the relay (re)starts the consumer), and only the rest is looked up, in
one query; events and their deliveries (to the merchants' endpoints, joined in SQL) are
written with one statement (PostgreSQL; two on SQLite), sent straight to the driver.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from paygate_server import jsoncodec
from paygate_server.cdc.relay import Consumer
from paygate_server.clock import now_us, to_rfc3339
from paygate_server.config import Settings
from paygate_server.ids import new_id
from paygate_server.intents.history import render_object
from paygate_server.intents.schemas import STATUSES
from paygate_server.storage import Transaction
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.webhook_events import (
    NewEvent,
    entity_statuses,
    insert_events,
    last_event_types,
)

__all__ = ["WebhookConsumer", "event_for"]

_INTENT_EVENTS = frozenset(STATUSES)  # every intent status is an event (SPEC §6)
_ENTITIES = ("payment_intent", "refund")

# How many entities' last status the consumer remembers between batches (the oldest go).
KNOWN_STATUSES_MAX = 20_000


def event_for(change: Change, snapshot: Mapping[str, Any], previous_status: str | None) -> tuple[str, Any] | None:
    """The event type and wire object for this change, or None."""
    status = snapshot.get("status")
    if status == previous_status:
        return None
    if change.entity == "payment_intent" and status in _INTENT_EVENTS:
        return f"payment_intent.{status}", render_object(change.entity, snapshot)
    if change.entity == "refund" and status == "succeeded":
        return "refund.succeeded", render_object(change.entity, snapshot)
    return None


async def _previous_statuses(conn: Transaction,
                             first: Mapping[tuple[str, str], Change]) -> dict[tuple[str, str], Any]:
    """For each entity, the status of its latest change before the given one (None: none)."""
    best: dict[tuple[str, str], tuple[int, Any]] = {}
    for entity, entity_id, seq, status in await entity_statuses(conn, sorted({c.intent_id for c in first.values()})):
        key = (entity, entity_id)
        change = first.get(key)
        if change is None or seq >= change.intent_seq:
            continue
        if key not in best or seq > best[key][0]:
            best[key] = (seq, status)
    # No earlier change in the log: pruning took them (docs/history.md "Retention"). The
    # last event sent for the entity says its status at the last transition that made one —
    # every intent status makes one, so for an intent that is the previous status.
    found = {key: value[1] for key, value in best.items()}
    missing = [key for key in first if key not in best]
    announced = await last_event_types(conn, [entity_id for _, entity_id in missing]) if missing else {}
    for entity, entity_id in missing:
        type_ = announced.get(entity_id)
        if type_ is not None and type_.startswith(f"{entity}."):
            found[(entity, entity_id)] = type_.removeprefix(f"{entity}.")
    return found


class WebhookConsumer(Consumer):
    name = "webhooks"
    transactional = True
    linger_s = 0.0

    def __init__(self, *, batch_size: int, on_created: Callable[[], None] | None = None,
                 retention_s: int = Settings.webhook_retention_s) -> None:
        self.batch_size = batch_size
        self._kept_for_disabled_us = retention_s * 1_000_000  # see storage/webhook_events.py
        self._on_created = on_created
        self._created = 0
        # (entity, entity_id) -> (intent_seq, status) of the last change delivered and
        # committed since start(): the relay delivers each intent's changes in order and
        # every one of them, so that is the predecessor of the entity's next change.
        self._known: dict[tuple[str, str], tuple[int, Any]] = {}
        # The same for the batch being delivered; becomes known only once it committed.
        self._staged: dict[tuple[str, str], tuple[int, Any]] = {}

    async def start(self) -> Position | None:
        # Another relay may have delivered meanwhile: remember nothing from before.
        self._known = {}
        self._staged = {}
        return None

    async def deliver(self, changes: list[Change], conn: Transaction | None) -> None:
        assert conn is not None
        self._created = 0
        staged: dict[tuple[str, str], tuple[int, Any]] = {}
        self._staged = staged
        relevant = [c for c in changes if c.entity in _ENTITIES]
        if not relevant:
            return
        known = self._known
        # The first change of each entity in the batch: its predecessor is known (memory),
        # absent (an insert), or looked up — all of those in one query.
        firsts: dict[tuple[str, str], Change] = {}
        for change in relevant:
            firsts.setdefault((change.entity, change.entity_id), change)
        unknown = {key: change for key, change in firsts.items()
                   if change.op != "insert" and (key not in known or known[key][0] >= change.intent_seq)}
        looked_up = await _previous_statuses(conn, unknown) if unknown else {}

        events: list[NewEvent] = []
        for change in relevant:
            key = (change.entity, change.entity_id)
            snapshot = change.snapshot()
            if key in staged:
                previous = staged[key][1]
            elif change.op == "insert":
                previous = None
            elif key in unknown:
                previous = looked_up.get(key)
            else:
                previous = known[key][1]
            staged[key] = (change.intent_seq, snapshot.get("status"))
            found = event_for(change, snapshot, previous)
            if found is None:
                continue
            type_, obj = found
            payload = jsoncodec.dumps({"type": type_, "timestamp": to_rfc3339(change.created_at), "data": obj})
            events.append(NewEvent(new_id("evt"), change.merchant_id, type_, change.id, change.intent_id,
                                   change.entity_id, payload.decode()))
        if events:
            self._created += await insert_events(conn, events, now_us(),
                                                 kept_for_disabled_us=self._kept_for_disabled_us)

    def after_commit(self) -> None:
        known, staged = self._known, self._staged
        self._staged = {}
        for key, value in staged.items():
            known.pop(key, None)  # re-inserted last: the dict's order is the age
            known[key] = value
        excess = len(known) - KNOWN_STATUSES_MAX
        if excess > 0:
            for key in list(known)[:excess]:
                del known[key]
        if self._created and self._on_created is not None:
            self._on_created()
        self._created = 0
