"""Webhook deliveries' rows: the dispatcher's queue and the operator's view of it.

A delivery is claimed with a lease: a conditional update moving ``next_attempt_at`` past
the attempt's timeout, guarded by the value just read, so of two dispatchers that read the
same due row only one wins it (webhooks/dispatcher.py). The claim also sets ``lease_until``
(the same time), which recording the attempt's outcome clears: an endpoint's deliveries in
flight, from every process on the database, are its rows whose lease is still to run, and
a claim is refused once they reach the endpoint's limit. A process that dies mid-attempt
leaves its leases to run out, and they stop counting then.

An outcome is recorded only under the lease its attempt claimed (``lease_until`` as the
claim wrote it: the fence). An attempt that outlived its lease, the delivery claimed again
since, finds another lease there and records nothing — the new attempt records its own; a
late outcome applied would free the new attempt's slot while it runs and overwrite what it
records. The value names one claim: a claim writes ``now + lease`` with ``now`` no earlier
than the row's ``next_attempt_at``, which is no earlier than any lease overtaken before it,
so every lease written after one is overtaken ends later than it (hosts' clocks agreeing
to within a lease, which the leases' counting assumes already). No claim token needed.

Each claim counts in its own statement, and claimers of one endpoint take turns: on SQLite
the write lock (``BEGIN IMMEDIATE``) serializes every writer already; on PostgreSQL a round
of claims first takes an advisory lock per endpoint, held to its commit, so of two rounds
the second counts only once the first has committed. Each method opens its own unit of
work on the :class:`Database`; the statements are the same on SQLite and PostgreSQL but
that lock.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, and_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY

from paygate_server.storage.engine import Database
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)

__all__ = ["DueDelivery", "DeliveryTarget", "DeliveryQueue", "MISSING_EVENT", "MISSING_ENDPOINT"]

_MAX_ERROR_LENGTH = 500  # the last_error column's size

_delivery = webhook_deliveries.c

# The claim: the row as read (no other claimer moved it since) and its endpoint below its
# limit — its live leases counted in the same statement, which sees this transaction's
# earlier claims and, on PostgreSQL, runs after the lock below (so sees every other
# claimer's committed ones: a statement's snapshot is taken when it starts).
_live = webhook_deliveries.alias("live")
_CLAIM = update(webhook_deliveries).where(
    _delivery.event_id == bindparam("claimed_event"), _delivery.endpoint_id == bindparam("claimed_endpoint"),
    _delivery.status == "pending", _delivery.next_attempt_at == bindparam("seen"),
    select(func.count()).select_from(_live).where(
        _live.c.endpoint_id == bindparam("claimed_endpoint"), _live.c.lease_until > bindparam("now"),
    ).scalar_subquery() < bindparam("per_endpoint"),
).values(next_attempt_at=bindparam("until"), lease_until=bindparam("until"))

# PostgreSQL: the advisory locks' first key is "a webhook endpoint's claims" (the relay's
# are 7_342_001, migrations' 7_342_002), the second the endpoint id's hash (a collision only
# makes two endpoints' claimers take turns). Taken in the order of the keys, so that two
# claimers of the same endpoints never wait for each other in a cycle (PostgreSQL evaluates
# a volatile function of the select list after sorting).
_CLAIM_LOCK_CLASS = 7_342_003
_LOCK_ENDPOINTS_PG = text(
    "SELECT pg_advisory_xact_lock(:lock_class, k) FROM"
    " (SELECT DISTINCT hashtext(e) AS k FROM unnest(CAST(:endpoint_ids AS text[])) AS e) AS keys ORDER BY k"
).bindparams(bindparam("endpoint_ids", type_=ARRAY(String)))


@dataclass(frozen=True, slots=True)
class DueDelivery:
    event_id: str
    endpoint_id: str
    next_attempt_at: int  # as read: the claim only wins if nobody moved it since


# DeliveryTarget.missing: the row a delivery cannot be sent without, not there.
MISSING_EVENT = "event"
MISSING_ENDPOINT = "endpoint"


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """What one attempt needs: the body, where to send it and the endpoint's sealed secret.
    ``missing`` names the row (:data:`MISSING_EVENT`, :data:`MISSING_ENDPOINT`) that could
    not be loaded, its fields then empty: such a delivery can never be sent."""
    payload: str
    endpoint_id: str
    url: str
    endpoint_status: str
    secret_sealed: bytes
    attempts: int  # made so far
    missing: str | None = None


class DeliveryQueue:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def due(self, now: int, limit: int, *, skip_endpoints: Collection[str] = (),
                  full_at: int | None = None) -> list[DueDelivery]:
        """Pending deliveries due by ``now``, earliest first, except those of ``skip_endpoints``
        and, given ``full_at``, of the endpoints with that many leases running at ``now`` (a
        busy endpoint's backlog would crowd out the others' deliveries; its claims would
        be refused anyway)."""
        query = (select(_delivery.event_id, _delivery.endpoint_id, _delivery.next_attempt_at)
                 .where(_delivery.status == "pending", _delivery.next_attempt_at <= now)
                 .order_by(_delivery.next_attempt_at).limit(limit))
        if skip_endpoints:
            query = query.where(_delivery.endpoint_id.not_in(list(skip_endpoints)))
        if full_at is not None:
            query = query.where(_delivery.endpoint_id.not_in(
                select(_delivery.endpoint_id).where(_delivery.lease_until > now)
                .group_by(_delivery.endpoint_id).having(func.count() >= full_at)))
        async with self._db.read() as conn:
            return [DueDelivery(*row) for row in await conn.execute(query)]

    @asynccontextmanager
    async def claiming(self, now: int, lease_until: int, *, endpoint_ids: Collection[str],
                       per_endpoint: int) -> AsyncIterator[Callable[[DueDelivery], Awaitable[bool]]]:
        """One unit of work for a round of claims of deliveries to ``endpoint_ids``: ``await
        claim(due)`` is True when this caller won the delivery (its lease now runs until
        ``lease_until``); False when another did, or when the endpoint has ``per_endpoint``
        leases running at ``now`` (this round's included), from whichever process."""
        locked = frozenset(endpoint_ids)
        async with self._db.write() as conn:
            if locked and conn.dialect.name == "postgresql":
                await conn.execute(_LOCK_ENDPOINTS_PG, {"lock_class": _CLAIM_LOCK_CLASS, "endpoint_ids": sorted(locked)})

            async def claim(due: DueDelivery) -> bool:
                if due.endpoint_id not in locked:  # (not serialized with its other claimers)
                    return False
                result = await conn.execute(_CLAIM, {
                    "claimed_event": due.event_id, "claimed_endpoint": due.endpoint_id, "seen": due.next_attempt_at,
                    "now": now, "per_endpoint": per_endpoint, "until": lease_until})
                return result.rowcount == 1

            yield claim

    async def target(self, event_id: str, endpoint_id: str) -> DeliveryTarget | None:
        """The delivery's attempt as it would be sent; None when the delivery row is not there.
        Outer joins: an event or endpoint row gone is told apart (``missing``) from a
        delivery gone, so that the dispatcher can finish the delivery rather than drop it."""
        async with self._db.read() as conn:
            row = (await conn.execute(
                select(webhook_events.c.id, webhook_events.c.payload, webhook_endpoints.c.id, webhook_endpoints.c.url,
                       webhook_endpoints.c.status, webhook_endpoints.c.secret_sealed, _delivery.attempts)
                .select_from(webhook_deliveries)
                .outerjoin(webhook_events, webhook_events.c.id == _delivery.event_id)
                .outerjoin(webhook_endpoints, webhook_endpoints.c.id == _delivery.endpoint_id)
                .where(_delivery.event_id == event_id, _delivery.endpoint_id == endpoint_id))).first()
        if row is None:
            return None
        found_event, payload, found_endpoint, url, status, sealed, attempts = row
        if found_event is None or found_endpoint is None:
            return DeliveryTarget("", endpoint_id, "", "", b"", attempts,
                                  missing=MISSING_EVENT if found_event is None else MISSING_ENDPOINT)
        return DeliveryTarget(payload, found_endpoint, url, status, bytes(sealed), attempts)

    async def finish(self, event_id: str, endpoint_id: str, *, lease_until: int, status: str, attempts: int,
                     status_code: int | None, error: str | None, now: int, next_at: int | None = None,
                     disable_endpoint: str | None = None) -> bool:
        """Record an attempt's outcome on a pending delivery: ``delivered``, ``failed``, or
        ``pending`` again (due at ``next_at``). Only while the delivery is still under the
        lease the attempt claimed (``lease_until``, as its claim wrote it): False, nothing
        recorded, when it was claimed again since (the lease ran out) or finished already.
        ``disable_endpoint`` (a reason: the endpoint answered ``410``) disables the endpoint,
        if enabled, in the same transaction and under the same fence: an outcome dropped has
        no side effect either (a late ``410`` never disables an endpoint whose later attempt
        may have been delivered)."""
        values: dict[str, Any] = {"status": status, "attempts": attempts, "last_status_code": status_code,
                                  "last_error": error[:_MAX_ERROR_LENGTH] if error else None, "updated_at": now,
                                  "lease_until": None}  # its endpoint's slot is free
        if next_at is not None:
            values["next_attempt_at"] = next_at
        if status == "delivered":
            values["delivered_at"] = now
        async with self._db.write() as conn:
            result = await conn.execute(update(webhook_deliveries).where(
                _delivery.event_id == event_id, _delivery.endpoint_id == endpoint_id,
                _delivery.status == "pending", _delivery.lease_until == lease_until).values(**values))
            if result.rowcount != 1:
                return False
            if disable_endpoint is not None:
                await conn.execute(update(webhook_endpoints).where(
                    webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.status == "enabled")
                    .values(status="disabled", disabled_reason=disable_endpoint, updated_at=now))
        return True

    async def replay_failed(self, now: int, *, merchant_id: str | None = None, endpoint_id: str | None = None,
                            event_id: str | None = None, enable_endpoints: bool = True) -> int:
        """Failed deliveries matching the filters go back to ``pending``, due now, with a fresh
        retry schedule and nothing of their last attempts (the count starts again, so does
        what the last one got); their disabled endpoints are enabled again (the operator asked:
        ``paygate webhooks replay``). ``enable_endpoints=False`` (the console's replay of one
        delivery) leaves a disabled or deleted endpoint's deliveries as they are, and the
        endpoint too: see :meth:`endpoint_state` for why nothing was replayed."""
        where = [_delivery.status == "failed"]
        if not enable_endpoints:
            where.append(_delivery.endpoint_id.in_(
                select(webhook_endpoints.c.id).where(webhook_endpoints.c.status == "enabled")))
        if merchant_id:
            where.append(_delivery.merchant_id == merchant_id)
        if endpoint_id:
            where.append(_delivery.endpoint_id == endpoint_id)
        if event_id:
            where.append(_delivery.event_id == event_id)
        async with self._db.write() as conn:
            endpoint_ids = [r[0] for r in await conn.execute(select(_delivery.endpoint_id).where(and_(*where)).distinct())]
            if endpoint_ids:
                await conn.execute(update(webhook_endpoints).where(
                    webhook_endpoints.c.id.in_(endpoint_ids), webhook_endpoints.c.status == "disabled")
                    .values(status="enabled", disabled_reason=None, updated_at=now))
            result = await conn.execute(update(webhook_deliveries).where(and_(*where)).values(
                status="pending", attempts=0, next_attempt_at=now, last_status_code=None, last_error=None,
                updated_at=now))
        return result.rowcount

    async def endpoint_state(self, endpoint_id: str) -> tuple[str, str | None] | None:
        """The endpoint's status (enabled, disabled, deleted) and why it was disabled; None if
        there is no such endpoint."""
        async with self._db.read() as conn:
            row = (await conn.execute(select(webhook_endpoints.c.status, webhook_endpoints.c.disabled_reason)
                                      .where(webhook_endpoints.c.id == endpoint_id))).first()
        return None if row is None else (row[0], row[1])

    async def recent(self, *, status: str | None = None, merchant_id: str | None = None,
                     limit: int = 100) -> list[dict[str, Any]]:
        """The most recently updated deliveries (their columns by name), with their endpoint's URL
        (None for a delivery failed as ``endpoint missing``: listed all the same)."""
        query = select(_delivery.event_id, _delivery.endpoint_id, webhook_endpoints.c.url, _delivery.status, _delivery.attempts,
                       _delivery.last_status_code, _delivery.last_error, _delivery.next_attempt_at, _delivery.delivered_at).outerjoin(
            webhook_endpoints, webhook_endpoints.c.id == _delivery.endpoint_id)
        if status:
            query = query.where(_delivery.status == status)
        if merchant_id:
            query = query.where(_delivery.merchant_id == merchant_id)
        async with self._db.read() as conn:
            rows = await conn.execute(query.order_by(_delivery.updated_at.desc()).limit(limit))
            return [dict(row._mapping) for row in rows]
