"""The quiescence checks can fail: each broken state of a small view is reported."""
from __future__ import annotations

import random
from typing import Any

from paygate_server.simulation.invariants import GatewayView, check_quiescent
from paygate_server.simulation.processor import Ledger, Operation


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
