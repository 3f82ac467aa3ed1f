"""A processor's own notifications (SPEC §7): verified by the account's connector, then fed
to the same exactly-once settle path as the request and the reconciler.

The notification names an operation (by the gateway's reference, or by the processor's id
of its payment); only an operation sent through *this* account can be settled by it, so a
notification signed with one account's secret can never touch another's payments. What
it states is an outcome like any other answer: the store applies the first one and
ignores the rest, so a notification racing a reconciler's look-up, or replayed by the
processor, settles the operation once.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from paygate_server.processing.connectors import (
    ChargeOutcome,
    ChargeResult,
    ProcessorEvent,
    RefundResult,
    WebhookReply,
    is_definitive,
    other_money,
)
from paygate_server.processing.service import charge_outcome, follow_up_outcome
from paygate_server.processing.settle import refund_outcome
from paygate_server.processors.registry import AccountMissing
from paygate_server.storage.port import Attempt, Row

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["AccountUnknown", "apply_events", "receive_notification"]

log = logging.getLogger("paygate.processors")


class AccountUnknown(LookupError):
    """No processor account has this id."""


async def receive_notification(gateway: Gateway, account_id: str, headers: Mapping[str, str],
                               body: bytes) -> tuple[WebhookReply, int]:
    """Verify (raises ``WebhookRejected``) and apply; returns the processor's expected
    answer and how many operations this notification settled."""
    try:  # built once per process, then kept: no read of the account per notification
        connector = await gateway.processors.connector(account_id, gateway.connector)
    except AccountMissing:
        raise AccountUnknown(account_id) from None
    reply = connector.parse_webhook(headers, body)
    return reply, await apply_events(gateway, account_id, reply.events)


async def apply_events(gateway: Gateway, route: str, events: Sequence[ProcessorEvent]) -> int:
    """Apply verified events about operations sent through ``route`` (an account's id, or
    the default connector's name); returns how many operations they settled. The
    simulation's processor notifies through here: what it sends needs no verifying."""
    settled = 0
    for event in events:
        settled += await _apply(gateway, route, event)
    return settled


async def _apply(gateway: Gateway, account_id: str, event: ProcessorEvent) -> int:
    result = event.result
    if not is_definitive(result.outcome):
        return 0  # "still working on it": the reconciler keeps asking
    store = gateway.payments
    found = await store.find_operation(account_id, event.kind, result.reference, event.payment_processor_id)
    if found is None and event.kind == "void" and result.reference:
        found = await store.find_operation(account_id, "charge", result.reference, None)
        if found is not None:
            return await _canceled_by_reference(gateway, found, event)
    if found is None:
        # Not one of ours (another integration on the same processor account), or not yet
        # committed: acknowledged, the reconciler settles ours by asking.
        log.info("processor notification (%s) names no operation of %s", event.kind, account_id)
        return 0
    if event.kind != "void":  # a void moves no money: its notification's amount is the hold's
        result = other_money(result, found["amount"], found["currency"])
        if not is_definitive(result.outcome):
            # Acknowledged (the processor would only send it again), applied to nothing: the
            # operation stays as it is, for the reconciler and the operator.
            log.warning("processor notification about %s %s not applied: %s", event.kind, found["id"], result.message)
            return 0
    schedule = gateway.settings.reconcile_schedule_s
    if event.kind == "refund":
        row = await store.settle_refund(found["id"], refund_outcome(
            RefundResult(result.reference, result.outcome, result.message), schedule=schedule))
        changed = row is not None and row["status"] != found["status"]
    else:
        attempt = Attempt.of(found)
        if event.kind == "charge":
            settled, _ = await store.settle_attempt(attempt, charge_outcome(result, schedule=schedule))
        else:
            settled, _ = await store.settle_follow_up(attempt, follow_up_outcome(attempt.kind, result,
                                                                                 schedule=schedule))
        changed = settled is not None
    if changed:
        gateway.notifier.publish(found["intent_id"])
    return int(changed)


async def _canceled_by_reference(gateway: Gateway, found: Row, event: ProcessorEvent) -> int:
    """The reconciler canceled an authorization whose outcome never arrived, by its own
    reference (processing/reconciler.py). Success proves the authorization existed and is
    released: the attempt charged nothing. A refused cancel proves nothing (the payment may
    have been captured): the attempt stays unknown, for its own notification or the operator."""
    if event.result.outcome is not ChargeOutcome.APPROVED:
        log.warning("a cancel by reference was refused for %s: the attempt stays unknown", found["id"])
        return 0
    nothing = ChargeResult(found["reference"], ChargeOutcome.FAILED,
                           message="canceled at the processor by reference (its outcome never arrived)",
                           processor_id=event.payment_processor_id)
    settled, _ = await gateway.payments.settle_attempt(Attempt.of(found), charge_outcome(
        nothing, schedule=gateway.settings.reconcile_schedule_s))
    if settled is not None:
        gateway.notifier.publish(found["intent_id"])
    return int(settled is not None)
