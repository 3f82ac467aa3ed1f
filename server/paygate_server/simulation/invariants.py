"""The invariants (SPEC §4, §7), checked against the processor's ledger.

The gateway's view is read from its change history alone (``change_log``: every insert
and update of intents, transactions and refunds, with the row after it), so the history
is checked too: a state the history does not show is not the gateway's state.

After every processor operation (:meth:`~.processor.Ledger.check`): at most one
successful charge or authorization per intent, at most one capture, captured ≤
authorized, refunded ≤ received — at the processor, where the money is.

At quiescence (faults stopped, in-flight calls finished, the reconciler run until its
queue is empty), :func:`check_quiescent`:

- nothing left to settle: no intent ``in_progress``, no attempt or refund ``pending`` or
  ``unknown``, the reconciler's queue empty;
- every intent final (``succeeded``, ``failed``, ``canceled``), ``requires_capture``, or
  ``created`` with no attempt;
- the gateway's view equals the processor's: every operation the processor approved is
  ``succeeded`` in the gateway with its reference, and every one the gateway says
  ``succeeded`` the processor approved; an intent is ``succeeded`` exactly when the
  processor took its money (a charge, or a capture), with ``amountReceived`` what it took,
  ``requires_capture`` exactly when it holds an authorization neither captured nor voided,
  and ``amountRefunded`` is the sum of the refunds the processor made;
- each intent's history is gap-free: its ``intent_seq`` runs 1, 2, 3, … in the order
  the changes were written.

And the webhooks (once the relay has delivered every change and the dispatcher has nothing
left to send), :func:`check_webhooks`:

- exactly one event per change that makes one, and none for any other change: an
  intent's every change of status (its insert included) is ``payment_intent.<status>``, a
  refund reaching ``succeeded`` is ``refund.succeeded`` (SPEC §6) — worked out here from
  the history alone, not by the gateway's own rule;
- each event has one delivery (the merchant has one endpoint), ``delivered`` — or
  ``failed`` only once every retry of the schedule was spent;
- the merchant received every delivered event, each time with the same body, of the
  event's type and object; and never an event the gateway has no record of.

And the merchant's ``Idempotency-Key`` s (every request is sent with one, and sent again
with it after no answer, a 5xx or a 409 in progress: :mod:`.client`), :func:`check_keys`:

- **one key, at most one operation begun**: the requests under one key began at most one
  charge attempt, capture, void or refund reservation between them — never a second refund
  (money paid out twice), whatever happened to the first request;
- every answer under a key whose request began something is about what it began: a 200
  whose refund (refunds) or intent (payments, captures, cancels) is that one — or ``409
  idempotency_request_in_progress`` while it runs. A retry past the lock timeout of a
  request cut off after its first phase is answered with what that request began, never
  with ``409 intent_state_conflict`` nor a refund of its own — nor ``409 in progress``: a
  send more than the lock timeout after the key's operation began finds its claim abandoned.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from paygate_server import jsoncodec
from paygate_server.simulation.client import KeyRecord
from paygate_server.simulation.processor import Ledger
from paygate_server.state import Gateway
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import Change
from paygate_server.storage.console_payment import WebhookEventView, payment_detail

__all__ = ["GatewayView", "check_keys", "check_quiescent", "check_webhooks", "gateway_view"]

Row = dict[str, Any]
_WHOLE_LOG = 1_000_000


@dataclass
class GatewayView:
    intents: dict[str, Row] = field(default_factory=dict)
    transactions: dict[str, Row] = field(default_factory=dict)
    refunds: dict[str, Row] = field(default_factory=dict)
    seqs: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    queued: int = 0  # rows left on the reconciler's queue
    changes: list[Change] = field(default_factory=list)  # the whole history, in order
    events: list[WebhookEventView] = field(default_factory=list)  # every intent's webhook events


async def gateway_view(gateway: Gateway, *, events: bool = True) -> GatewayView:
    """What the gateway's history says, and (``events``) every intent's webhook events."""
    view = GatewayView()
    tables = {"payment_intent": view.intents, "transaction": view.transactions, "refund": view.refunds}
    view.changes = await ChangeLog(gateway.db).after(0, _WHOLE_LOG)
    for change in view.changes:
        tables[change.entity][change.entity_id] = change.snapshot()
        view.seqs[change.intent_id].append(change.intent_seq)
    view.queued = len(await gateway.payments.all_checks())
    for intent_id in view.intents if events else ():
        detail = await payment_detail(gateway.db, intent_id)
        assert detail is not None  # its history says it exists
        view.events += detail.webhook_events
    return view


def expected_events(changes: list[Change]) -> dict[int, tuple[str, str]]:
    """change id → (event type, object id), for each change that makes an event (SPEC §6)."""
    expected: dict[int, tuple[str, str]] = {}
    last: dict[tuple[str, str], Any] = {}
    for change in changes:
        key = (change.entity, change.entity_id)
        status, previous = change.snapshot().get("status"), last.get(key)
        last[key] = status
        if status == previous:
            continue
        if change.entity == "payment_intent" or (change.entity == "refund" and status == "succeeded"):
            expected[change.id] = (f"{change.entity}.{status}", change.entity_id)
    return expected


def check_webhooks(view: GatewayView, received: dict[str, list[bytes]], retries: int) -> list[str]:
    """The webhook invariants (module doc); ``received``: event id → every body the merchant
    got; ``retries``: the length of the retry schedule."""
    found: list[str] = []
    expected = expected_events(view.changes)
    made: dict[int, list[WebhookEventView]] = defaultdict(list)
    for event in view.events:
        made[event.change_id].append(event)
    for change_id in sorted(expected.keys() | made.keys()):
        want, got = expected.get(change_id), [(e.type, e.object_id) for e in made.get(change_id, [])]
        if got != ([want] if want else []):
            found.append(f"change {change_id}: events {got}, expected {[want] if want else []}")
    known = {event.id: event for event in view.events}
    for event in view.events:
        states = [(d.status, d.attempts) for d in event.deliveries]
        if len(states) != 1:
            found.append(f"event {event.id}: {len(states)} deliveries, expected 1")
            continue
        status, attempts = states[0]
        if status == "failed" and attempts <= retries:
            found.append(f"event {event.id}: failed after {attempts} attempt(s), before its retries ran out")
        elif status == "pending":
            found.append(f"event {event.id}: still pending")
        bodies = received.get(event.id, [])
        if status == "delivered" and not bodies:
            found.append(f"event {event.id}: delivered, but the merchant never received it")
        if len(set(bodies)) > 1:
            found.append(f"event {event.id}: the merchant received {len(set(bodies))} different bodies")
        for body in set(bodies):
            told = jsoncodec.loads(body)
            data = told.get("data", {})
            about = data.get("refundId") or data.get("paymentIntentId")  # the object's id, by its kind
            if (told.get("type"), about) != (event.type, event.object_id):
                found.append(f"event {event.id}: the merchant received {told.get('type')} of {about}, "
                             f"not {event.type} of {event.object_id}")
    found += [f"the merchant received {event_id}, an event the gateway has no record of"
              for event_id in sorted(received.keys() - known.keys())]
    return found


def check_quiescent(view: GatewayView, ledger: Ledger) -> list[str]:
    found: list[str] = []
    if view.queued:
        found.append(f"{view.queued} check(s) left on the reconciler's queue")
    by_intent: dict[str, list[Row]] = defaultdict(list)
    for txn in view.transactions.values():
        by_intent[txn["intent_id"]].append(txn)
    refunds: dict[str, list[Row]] = defaultdict(list)
    for refund in view.refunds.values():
        refunds[refund["intent_id"]].append(refund)
    for intent_id, intent in view.intents.items():
        found += [f"{intent_id}: {problem}" for problem in
                  _intent_problems(intent, by_intent[intent_id], refunds[intent_id], ledger)]
        seqs = view.seqs[intent_id]
        if seqs != list(range(1, len(seqs) + 1)):
            found.append(f"{intent_id}: history not gap-free: intent_seq {seqs}")
    return found


def _intent_problems(intent: Row, txns: list[Row], refunds: list[Row], ledger: Ledger) -> list[str]:
    problems = []
    status = intent["status"]
    if status not in ("succeeded", "failed", "canceled", "requires_capture", "created"):
        problems.append(f"left {status}")
    if status == "created" and txns:
        problems.append("created with attempts")
    ops = {op.reference: op for op in ledger.of_intent(intent["id"])}
    ours = {row["reference"]: row for row in [*txns, *refunds]}
    for row in [*txns, *refunds]:
        if row["status"] not in ("succeeded", "failed"):
            problems.append(f"{row['id']} left {row['status']}")
        op = ops.get(row["reference"])
        done = op is not None and op.approved
        if (row["status"] == "succeeded") != done:
            problems.append(f"{row.get('kind', 'refund')} {row['reference']} is {row['status']} in the gateway, "
                            f"{'approved' if done else 'not approved'} at the processor")
    for op in ops.values():
        if op.approved and op.reference not in ours:
            problems.append(f"the processor's {op.kind} {op.reference} is unknown to the gateway")
    approved = [op for op in ops.values() if op.approved]
    taken = sum(op.amount for op in approved if op.kind in ("charge", "capture"))
    held = any(op.kind == "authorization" for op in approved) and not any(
        op.kind in ("capture", "void") for op in approved)
    took = any(op.kind in ("charge", "capture") for op in approved)
    if (status == "succeeded") != took:
        problems.append(f"is {status}, the processor {'took' if took else 'took no'} money")
    if (status == "requires_capture") != held:
        problems.append(f"is {status}, the processor {'holds' if held else 'holds no'} authorization")
    if intent["amount_received"] != taken:
        problems.append(f"amountReceived {intent['amount_received']}, the processor took {taken}")
    refunded = sum(op.amount for op in approved if op.kind == "refund")
    if intent["amount_refunded"] != refunded:
        problems.append(f"amountRefunded {intent['amount_refunded']}, the processor refunded {refunded}")
    if intent["amount_refunded"] > intent["amount_received"]:
        problems.append(f"amountRefunded {intent['amount_refunded']} > amountReceived {intent['amount_received']}")
    return problems


def check_keys(records: list[KeyRecord], *, lock_timeout_s: float) -> list[str]:
    """The idempotency-key invariants (module doc), over every key the merchant used."""
    found: list[str] = []
    lock_us = round(lock_timeout_s * 1_000_000)
    for record in records:
        if len(record.begun) > 1:
            found.append(f"key {record.key}: {len(record.begun)} operations begun under one key: "
                         + ", ".join(f"{kind} {of}" for kind, of in record.begun))
        if not record.begun:
            continue
        kind, begun = record.begun[0]
        for answer in record.answers:
            if answer.code == "idempotency_request_in_progress" and record.begun_us is not None \
                    and answer.sent_us - record.begun_us > lock_us:
                # Its claim was older than the lock timeout: abandoned, to be answered now.
                found.append(f"key {record.key}: send {answer.send} answered 409 in progress past the lock timeout"
                             f" ({(answer.sent_us - record.begun_us) / 1e6:.1f} s after its request began {kind})")
                continue
            if answer.code == "idempotency_request_in_progress" or answer.status >= 500:
                continue  # not the request's answer: the client sends it again
            if answer.status != 200 or answer.about != begun:
                told = answer.code if answer.status != 200 else answer.about
                found.append(f"key {record.key}: send {answer.send} answered {answer.status} {told}, "
                             f"its request began {kind} {begun}")
    return found
