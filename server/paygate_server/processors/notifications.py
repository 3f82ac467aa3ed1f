"""A processor's own notifications (SPEC §7): verified by the account's connector, then fed
to the same exactly-once settle path as the request and the reconciler.

The notification names an operation (by the gateway's reference, or by the processor's id
of its payment); only an operation sent through *this* account can be settled by it, so a
notification signed with one account's secret can never touch another's payments. What
it states is an outcome like any other answer: the store applies the first one and
ignores the rest, so a notification racing a reconciler's look-up, or replayed by the
processor, settles the operation once. One that *contradicts* a capture's, void's or
refund's settled outcome (Adyen's ``REFUND_FAILED`` after its ``REFUND``) changes nothing
either, but is recorded for the operator (``late_outcomes``; docs/processors.md, "Adyen").
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from paygate_server.clock import now_us
from paygate_server.processing.connectors import (
    ChargeOutcome,
    ChargeResult,
    OtherAccountItem,
    ProcessorEvent,
    RefundResult,
    WebhookRejected,
    WebhookReply,
    is_definitive,
    keepable_id,
    other_money,
    processor_text,
)
from paygate_server.processing.service import charge_outcome, follow_up_outcome
from paygate_server.processing.settle import refund_outcome
from paygate_server.processors.registry import AccountMissing
from paygate_server.storage.port import Attempt, LateOutcome, Row

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
    settled = await apply_events(gateway, account_id, reply.events)
    if reply.other_accounts:
        settled += await _for_other_accounts(gateway, account_id, headers, body, reply.other_accounts)
    return reply, settled


async def _for_other_accounts(gateway: Gateway, account_id: str, headers: Mapping[str, str], body: bytes,
                              items: Sequence[OtherAccountItem]) -> int:
    """A verified batch also holds items for other accounts at the processor (an Adyen
    company-level webhook carries every merchant account's). Each goes to the account of
    the same merchant, of the same kind, that takes it as its own: whose connector verifies
    the batch under that account's own secret and whose processor account the item names —
    what that account's own URL would accept, applied only to operations sent through that
    account. An item no such account takes is acknowledged (the processor would send the
    batch again for ever) and applied to nothing; logged by its ids only. Never an account of
    another merchant: a notification at one merchant's URL writes that merchant's payments
    only (docs/processors.md, "Processor notifications")."""
    left = {item.index: item for item in items}
    settled = 0
    for sibling in await gateway.processors.siblings(account_id):
        if not left:
            break
        try:
            theirs = (await gateway.processors.connector(sibling, gateway.connector)).parse_webhook(headers, body)
        except (AccountMissing, ValueError, WebhookRejected):
            continue  # not verified with its secret: not a batch its processor account sent it
        taken = set(left) - {item.index for item in theirs.other_accounts}
        if taken:
            settled += await apply_events(gateway, sibling, theirs.events)
            for index in taken:
                log.info("processor notification for %s: item %d applied for %s, whose processor account it names",
                         account_id, index, sibling)
                del left[index]
    for item in left.values():
        log.warning("processor notification for %s: item %d is for processor account %r (pspReference %r, %s), "
                    "which no account of this merchant verifies: acknowledged, applied to nothing", account_id,
                    item.index, processor_text(item.account, 80), processor_text(item.processor_id, 64),
                    processor_text(item.event_code, 40))
    return settled


async def apply_events(gateway: Gateway, route: str, events: Sequence[ProcessorEvent]) -> int:
    """Apply verified events about operations sent through ``route`` (an account's id, or
    the default connector's name); returns how many operations they settled. The
    simulation's processor notifies through here: what it sends needs no verifying."""
    settled = 0
    for event in events:
        settled += await _apply(gateway, route, event)
    return settled


# The longest reference the gateway gives (storage/schema.py: transactions.reference,
# refunds.reference).
_MAX_REFERENCE = 64


async def _apply(gateway: Gateway, account_id: str, event: ProcessorEvent) -> int:
    result = event.result
    if not is_definitive(result.outcome):
        return 0  # "still working on it": the reconciler keeps asking
    if not (keepable_id(result.reference, _MAX_REFERENCE) and keepable_id(event.payment_processor_id)
            and keepable_id(result.processor_id)):
        # Names no operation of the gateway's, or one by an id it could not keep: acknowledged,
        # applied to nothing (an operation settled with it could never be found by it).
        log.info("processor notification (%s) for %s names ids the gateway never gives or keeps", event.kind,
                 account_id)
        return 0
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
        outcome = refund_outcome(RefundResult(result.reference, result.outcome, result.message), schedule=schedule)
        row = await store.settle_refund(found["id"], outcome)
        changed = row is not None and row["status"] != found["status"]
        status_now = None if row is None else row["status"]  # as it is after the settle, by this or before
    else:
        attempt = Attempt.of(found)
        if event.kind == "charge":
            outcome = charge_outcome(result, schedule=schedule)
            settled, _ = await store.settle_attempt(attempt, outcome)
        else:
            outcome = follow_up_outcome(attempt.kind, result, schedule=schedule)
            settled, _ = await store.settle_follow_up(attempt, outcome)
        changed = settled is not None
        status_now = outcome.status if changed else await _settled_as(gateway, account_id, event, found)
    if changed:
        gateway.notifier.publish(found["intent_id"])
    # Not "elif": a refund settled otherwise by a racing settle counts as changed above.
    if event.kind in _MONEY_MOVED_LATER and status_now in _SETTLED and status_now != outcome.status:
        await _contradicted(gateway, account_id, event.kind, found, str(status_now), outcome.status,
                            result.message)
    return int(changed)


# Whose settled outcome a processor may contradict later: Adyen's CAPTURE_FAILED and
# REFUND_FAILED come after their success once the scheme refuses it; a void's is the same
# kind of answer. Not a charge: a success after ``failed`` is the normal end of an
# authorization the reconciler canceled by its reference (its AUTHORISATION, late), and
# the money of that one is released, not moved.
_MONEY_MOVED_LATER = frozenset({"capture", "void", "refund"})
_SETTLED = frozenset({"succeeded", "failed"})


async def _settled_as(gateway: Gateway, account_id: str, event: ProcessorEvent, found: Row) -> str | None:
    """The operation's status when this settle changed nothing: as read before it if it was
    settled then (a settled status never changes), else read again (settled meanwhile)."""
    if found["status"] in _SETTLED:
        return str(found["status"])
    again = await gateway.payments.find_operation(account_id, event.kind, event.result.reference,
                                                  event.payment_processor_id)
    return None if again is None else str(again["status"])


async def _contradicted(gateway: Gateway, account_id: str, kind: str, found: Row, had: str, said: str,
                        text: str | None) -> None:
    """The processor says a settled operation ended otherwise. Outcomes settle once and SPEC
    §6 has no status for "reversed later", so the operation keeps its status; the operator is
    told — durably (``paygate reconcile``, the console's Reconciliation page) and in the log
    — because the gateway now shows money moved that did not (or the reverse)."""
    late = LateOutcome(kind=kind, object_id=found["id"], intent_id=found["intent_id"],
                       merchant_id=found["merchant_id"], connector=account_id, gateway_status=had,
                       processor_status=said, processor_text=processor_text(text, 500), received_at=now_us())
    if await gateway.payments.record_late_outcome(late):
        log.warning("processor notification contradicts a settled %s %s of %s (merchant %s): the gateway has %s, "
                    "%s now says %s; the operation keeps its status, for an operator (paygate reconcile)",
                    kind, found["id"], found["intent_id"], found["merchant_id"], had, account_id, said)


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
