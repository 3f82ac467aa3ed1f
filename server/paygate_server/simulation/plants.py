"""Known bugs the simulation must find: each one undoes a rule of the payment core for
the length of a run (``paygate simulate --plant NAME``; the tests plant them too).

A simulation that never reports anything proves nothing: these show that it catches the
mistakes the rules exist for, within a stated number of seeds, and prints the command
that replays the seed that caught it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from paygate_server.cdc.relay import Consumer, Relay
from paygate_server.config import Settings
from paygate_server.http.api import IdempotencyScope
from paygate_server.processing import service
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.payments import SqlPaymentStore
from paygate_server.storage.port import ExistingKey, KeyClaim, PaymentStore
from paygate_server.storage.relay_leases import ConsumerLease
from paygate_server.storage.statements import Connection
from paygate_server.webhooks.dispatcher import AttemptResult, Claim, Dispatcher

__all__ = ["PLANTS", "planted"]


@contextlib.contextmanager
def _replaced(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """``owner.name`` is ``replacement`` for the length of the run, then what it was."""
    real = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, real)


def _unknown_is_failure() -> contextlib.AbstractContextManager[None]:
    """The request path records a charge whose answer it never got (timeout, reset) as
    failed — the one thing a connector's "unknown" must never become."""
    real = service.charge_outcome

    def charge_outcome(result: ChargeResult, **kwargs: Any) -> Any:
        if result.outcome is ChargeOutcome.UNKNOWN:
            result = ChargeResult(result.reference, ChargeOutcome.FAILED, message="planted: unknown taken as failed")
        return real(result, **kwargs)

    return _replaced(service, "charge_outcome", charge_outcome)


def _early_never_received() -> contextlib.AbstractContextManager[None]:
    """The reconciler fails a charge the processor has not seen at its first look-up,
    without waiting out the window in which the request may still be on its way."""
    return _replaced(Settings, "not_found_fail_after_s", property(lambda self: 0.0))


def _offset_before_events() -> contextlib.AbstractContextManager[None]:
    """The relay records a batch as delivered before it delivers it: the offset in one
    transaction, the webhook events in the next. A crash between the two loses the batch's
    events (at most once, where the rule is exactly once)."""
    async def deliver(self: Relay, consumer: Consumer, lease: ConsumerLease, changes: list[Change],
                      pos: Position) -> None:
        await lease.save_offset(pos, len(changes))
        async with lease.write() as tx:
            await consumer.deliver(changes, tx)
        consumer.after_commit()

    return _replaced(Relay, "_deliver_batch", deliver)


def _no_answer_is_delivered() -> contextlib.AbstractContextManager[None]:
    """The dispatcher takes an attempt that got no answer (a timeout, a reset) as delivered,
    though the endpoint may never have had the event."""
    real = Dispatcher._record

    async def record(self: Dispatcher, claim: Claim, attempts: int, result: AttemptResult) -> None:
        await real(self, claim, attempts, AttemptResult(200, None) if result.status_code is None else result)

    return _replaced(Dispatcher, "_record", record)


def _abandoned_claim_run_again() -> contextlib.AbstractContextManager[None]:
    """The store takes over a claim abandoned past the lock timeout and the operation runs
    again (as before e40068f): a refund whose request was cut off after its reservation
    reserves and sends a second refund under the same key; a payment's retry is answered
    409 intent_state_conflict."""
    real = SqlPaymentStore._claim

    async def claim(self: SqlPaymentStore, conn: Connection, claim: KeyClaim,
                    resource_id: str | None = None) -> ExistingKey | None:
        found = await real(self, conn, claim, resource_id)
        # Treated as claimed (the old take-over also moved its lock on; that changes nothing here).
        return None if isinstance(found, ExistingKey) and found.abandoned else found

    return _replaced(SqlPaymentStore, "_claim", claim)


def _spent_token_retry_in_progress() -> contextlib.AbstractContextManager[None]:
    """The token path's look at the key (its token is spent, so a retry never reaches the
    claim) ignores that the claim is abandoned: a token payment retried past the lock timeout
    after its request was cut off is answered 409 in progress, each time, for ever."""
    real = IdempotencyScope.peek

    async def peek(self: IdempotencyScope, store: PaymentStore) -> ExistingKey | None:
        found = await real(self, store)
        return None if found is None else replace(found, abandoned=False)

    return _replaced(IdempotencyScope, "peek", peek)


PLANTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "unknown-is-failure": _unknown_is_failure,
    "early-never-received": _early_never_received,
    "offset-before-events": _offset_before_events,
    "no-answer-is-delivered": _no_answer_is_delivered,
    "abandoned-claim-run-again": _abandoned_claim_run_again,
    "spent-token-retry-in-progress": _spent_token_retry_in_progress,
}


def planted(name: str | None) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if name is None else PLANTS[name]()
