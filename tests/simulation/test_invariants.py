"""The quiescence checks can fail: each broken state of a small view is reported."""
from __future__ import annotations

import random
from typing import Any

from paygate_server import jsoncodec
from paygate_server.simulation.client import Answer, KeyRecord
from paygate_server.simulation.invariants import (
    GatewayView,
    check_keys,
    check_quiescent,
    check_webhooks,
    expected_events,
)
from paygate_server.simulation.processor import Ledger, Operation
from paygate_server.storage.changes import Change
from paygate_server.storage.console_payment import DeliveryView, WebhookEventView


def _view(intent_status: str = "succeeded", txn_status: str = "succeeded", received: int = 1000,
          refunded: int = 0, seqs: list[int] | None = None) -> GatewayView:
    view = GatewayView()
    view.intents["pi_1"] = {"id": "pi_1", "status": intent_status, "amount_received": received,
                            "amount_refunded": refunded}
    view.transactions["txn_1"] = {"id": "txn_1", "intent_id": "pi_1", "kind": "charge", "status": txn_status,
                                  "reference": "ref_1"}
    view.seqs["pi_1"] = [1, 2, 3] if seqs is None else seqs
    return view


def _ledger(*ops: Operation) -> Ledger:
    lines: list[Any] = []
    ledger = Ledger(random.Random(0), 0.0, lines.append)
    for op in ops:
        ledger.ops[op.reference] = op
    return ledger


CHARGED = Operation("charge", "ref_1", "pi_1", 1000, True)


def test_a_consistent_view_passes() -> None:
    assert check_quiescent(_view(), _ledger(CHARGED)) == []


def test_each_broken_state_is_reported() -> None:
    cases = {
        "left in_progress": (_view(intent_status="in_progress", txn_status="unknown"), _ledger(CHARGED)),
        "approved at the processor": (_view(intent_status="failed", txn_status="failed", received=0), _ledger(CHARGED)),
        "not approved at the processor": (_view(), _ledger()),
        "amountRefunded": (_view(refunded=500), _ledger(CHARGED)),
        "not gap-free": (_view(seqs=[1, 3]), _ledger(CHARGED)),
    }
    for expected, (view, ledger) in cases.items():
        found = check_quiescent(view, ledger)
        assert any(expected in problem for problem in found), (expected, found)
    view = _view()
    view.queued = 1
    assert any("reconciler's queue" in p for p in check_quiescent(view, _ledger(CHARGED)))


def test_the_processor_side_invariants_are_checked_after_every_operation() -> None:
    ledger = _ledger()
    ledger.ops["ref_1"] = CHARGED
    ledger.ops["ref_2"] = Operation("charge", "ref_2", "pi_1", 1000, True)
    ledger.ops["ref_3"] = Operation("refund", "ref_3", "pi_1", 2500, True, charge_reference="ref_1")
    ledger.check("pi_1")
    assert any("2 successful charges" in v for v in ledger.violations)
    assert any("refunded 2500 > received" in v for v in ledger.violations)


# --- the webhook checks -------------------------------------------------------------

def _change(change_id: int, entity: str, entity_id: str, status: str) -> Change:
    return Change(change_id, entity, entity_id, "insert" if change_id == 1 else "update", "pi_1", "m_1",
                  change_id, jsoncodec.dumps({"id": entity_id, "status": status}).decode(), None, 0)


def _event(event_id: str, change_id: int, type_: str, object_id: str, status: str = "delivered",
           attempts: int = 1) -> WebhookEventView:
    return WebhookEventView(event_id, type_, change_id, object_id, 0,
                            [DeliveryView("we_1", "https://shop.invalid/webhooks", status, attempts, 200, None, 0,
                                          None, 0)])


def _body(type_: str, object_id: str) -> bytes:
    key = "refundId" if type_.startswith("refund.") else "paymentIntentId"
    return jsoncodec.dumps({"type": type_, "timestamp": "t", "data": {key: object_id}})


def _webhook_view() -> tuple[GatewayView, dict[str, list[bytes]]]:
    """An intent created, processed, succeeded, its amountRefunded bumped (no event) and a
    refund succeeded: four events, each received once (one of them twice, the same body)."""
    view = GatewayView()
    view.changes = [_change(1, "payment_intent", "pi_1", "created"),
                    _change(2, "payment_intent", "pi_1", "in_progress"),
                    _change(3, "payment_intent", "pi_1", "succeeded"),
                    _change(4, "refund", "re_1", "pending"),
                    _change(5, "payment_intent", "pi_1", "succeeded"),
                    _change(6, "refund", "re_1", "succeeded")]
    view.events = [_event("evt_1", 1, "payment_intent.created", "pi_1"),
                   _event("evt_2", 2, "payment_intent.in_progress", "pi_1"),
                   _event("evt_3", 3, "payment_intent.succeeded", "pi_1"),
                   _event("evt_4", 6, "refund.succeeded", "re_1")]
    received = {e.id: [_body(e.type, e.object_id)] for e in view.events}
    received["evt_2"].append(received["evt_2"][0])  # a lost answer: sent again, the same body
    return view, received


def test_consistent_webhooks_pass() -> None:
    view, received = _webhook_view()
    assert expected_events(view.changes) == {1: ("payment_intent.created", "pi_1"),
                                             2: ("payment_intent.in_progress", "pi_1"),
                                             3: ("payment_intent.succeeded", "pi_1"),
                                             6: ("refund.succeeded", "re_1")}
    assert check_webhooks(view, received, retries=8) == []


def test_each_broken_webhook_state_is_reported() -> None:
    def broken(change: Any) -> list[str]:
        view, received = _webhook_view()
        change(view, received)
        return check_webhooks(view, received, retries=8)

    cases: dict[str, Any] = {
        "events [], expected": lambda v, r: v.events.pop(1),  # a change without its event
        "expected []": lambda v, r: v.events.append(_event("evt_5", 5, "payment_intent.succeeded", "pi_1")),
        "events [(": lambda v, r: v.events.append(_event("evt_6", 3, "payment_intent.succeeded", "pi_1")),
        "before its retries ran out": lambda v, r: v.events.__setitem__(
            0, _event("evt_1", 1, "payment_intent.created", "pi_1", "failed", 3)),
        "still pending": lambda v, r: v.events.__setitem__(
            0, _event("evt_1", 1, "payment_intent.created", "pi_1", "pending", 2)),
        "never received it": lambda v, r: r.pop("evt_3"),
        "different bodies": lambda v, r: r["evt_3"].append(_body("payment_intent.failed", "pi_1")),
        "not payment_intent.succeeded": lambda v, r: r.__setitem__("evt_3", [_body("payment_intent.failed", "pi_1")]),
        "no record of": lambda v, r: r.__setitem__("evt_9", [_body("payment_intent.created", "pi_1")]),
    }
    for expected, change in cases.items():
        found = broken(change)
        assert any(expected in problem for problem in found), (expected, found)
    # Failed once every retry was spent: the schedule ran out, not a bug.
    assert broken(lambda v, r: v.events.__setitem__(
        0, _event("evt_1", 1, "payment_intent.created", "pi_1", "failed", 9))) == []


# --- the idempotency-key checks -------------------------------------------------------

def _record(*begun: tuple[str, str], answers: tuple[Answer, ...] = ()) -> KeyRecord:
    return KeyRecord("sim-op-1", "pi_1", list(begun), answers=list(answers), begun_us=0 if begun else None)


S = 1_000_000  # µs


def test_a_key_that_began_one_operation_and_answered_about_it_passes() -> None:
    records = [
        _record(("refund", "re_1"), answers=(Answer(1.0, 1, 409, "idempotency_request_in_progress", None, 1 * S),
                                             Answer(2.0, 1, 500, "internal_error", None, 2 * S),
                                             Answer(95.0, 2, 200, None, "re_1", 95 * S))),
        # In progress within the lock timeout (90 s) of its operation's beginning.
        _record(("charge", "pi_1"), answers=(Answer(90.0, 2, 409, "idempotency_request_in_progress", None, 90 * S),)),
        _record(("charge", "pi_1"), answers=(Answer(1.0, 1, 200, None, "pi_1"),)),
        # Nothing begun (refused before its first phase): any answer.
        _record(answers=(Answer(1.0, 1, 409, "intent_state_conflict", None),)),
    ]
    assert check_keys(records, lock_timeout_s=90) == []


def test_each_broken_key_is_reported() -> None:
    cases = {
        "2 operations begun under one key: refund re_1, refund re_2": _record(("refund", "re_1"), ("refund", "re_2")),
        "send 2 answered 409 intent_state_conflict, its request began charge pi_1": _record(
            ("charge", "pi_1"), answers=(Answer(95.0, 2, 409, "intent_state_conflict", None),)),
        "send 2 answered 200 re_2, its request began refund re_1": _record(
            ("refund", "re_1"), answers=(Answer(95.0, 2, 200, None, "re_2"),)),
        # Its claim abandoned, a retry is answered — never told to wait for it.
        "send 3 answered 409 in progress past the lock timeout (91.0 s after its request began charge)": _record(
            ("charge", "pi_1"), answers=(Answer(91.0, 3, 409, "idempotency_request_in_progress", None, 91 * S),)),
    }
    for expected, record in cases.items():
        found = check_keys([record], lock_timeout_s=90)
        assert any(expected in problem for problem in found), (expected, found)
