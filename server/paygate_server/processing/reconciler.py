"""The reconciler: settles every processor operation (charge, authorization, capture, void,
refund) whose outcome is not known, and voids holds past ``PAYGATE_AUTHORIZATION_TTL_S``.

It works off ``reconcile_queue`` (a row per unsettled attempt, written in the same
transaction that made the attempt). Event-driven: every change signal wakes it (at most
every ``WAKE_MIN_INTERVAL_S``), and a periodic sweep is the safety net. For each due row
it takes a lease (a conditional update of ``due_at``: two reconcilers never work one row
at once), asks the processor about the *reference*, and applies the answer with the same
exactly-once functions the request path uses:

- approved / declined → applied;
- not found → failed, but only once the attempt is older than the safety window
  (``PAYGATE_RECONCILE_NOT_FOUND_AFTER_S``): before that the request may still be on its
  way. It never resends a charge: a direct ``encryptedCard`` is decrypted in memory only,
  and a vaulted card (token payment), though kept encrypted — the number for as long as
  the used token's row lives, the CVC until the attempt's outcome or the token's expiry —
  was given for this attempt, not for a new authorization nobody asked for. So the policy
  is to fail (the customer can pay again). Until then it is asked again at the earlier of
  the back-off step and the window's end, so the charge fails at the window's end, not at
  the first back-off step after it;
- no answer or an answer it cannot classify → stays ``unknown``, asked again on the
  back-off schedule, and listed by ``paygate reconcile`` for the operator;
- a processor that cannot be asked at all (Adyen: outcomes come only by notification)
  answers every look-up "unknown": the attempt waits for its notification; past the same
  safety window the reconciler cancels the authorization by its reference (once; the
  processor keeps it idempotent), so that a lost authorization does not hold the shopper's
  funds. A cancel whose answer never came (a timeout) is sent again, under the same key, at
  the next check, until the processor says it has it. It is still never failed by guesswork:
  the cancel's own notification settles it (success: the authorization existed and is
  released — nothing charged), or the authorization's does (docs/processors.md, "Adyen").
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, TypeVar

from paygate_server.clock import now_us, to_rfc3339
from paygate_server.config import Settings
from paygate_server.logs import RECONCILER_LOGGER
from paygate_server.processing.connectors import (
    CaptureRequest,
    ChargeOutcome,
    ChargeResult,
    Connector,
    RefundRequest,
    RefundResult,
    VoidRequest,
    is_definitive,
    other_money,
)
from paygate_server.processing.service import charge_outcome, follow_up_outcome
from paygate_server.processing.settle import refund_outcome
from paygate_server.processors.registry import (
    AccountMissing,
    ProcessorRoutes,
    default_for,
    is_account,
)
from paygate_server.realtime import ChangeNotifier
from paygate_server.storage.availability import log_failure
from paygate_server.storage.port import Attempt, Check, NewVoid, PaymentStore, Row, StoreRefusal
from paygate_server.waiting import wait_event

__all__ = ["LATE_OUTCOMES_LISTED", "Reconciler", "PassReport", "list_late_outcomes", "list_unresolved"]

log = logging.getLogger(RECONCILER_LOGGER)
_US = 1_000_000
WAKE_MIN_INTERVAL_S = 0.1
# The check's last result once the authorization was canceled by reference (sent once).
_CANCEL_SENT = "canceled by reference at the processor; its notification settles the attempt"
BATCH = 200
# A resend's answers that say "nothing done" (_as_resent).
_REFUSED = (ChargeOutcome.FAILED, ChargeOutcome.DECLINED)
_Sent = TypeVar("_Sent", ChargeResult, RefundResult)


@dataclass
class PassReport:
    checked: int = 0
    settled: int = 0
    still_unknown: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    holds_expired: int = 0  # voids begun for holds past PAYGATE_AUTHORIZATION_TTL_S


class Reconciler:
    def __init__(self, store: PaymentStore, connector: Connector, settings: Settings,
                 notifier: ChangeNotifier | None = None, processors: ProcessorRoutes | None = None) -> None:
        self._store = store
        self.connector = connector  # the default processor's
        self._processors = processors  # the merchants' accounts (None: the default only)
        self._settings = settings
        self._notifier = notifier
        self._wake = asyncio.Event()
        # A check's calls — a look-up, perhaps a resend — are over within _check_s, and its
        # lease outlasts that by more than a request's transit: another reconciler takes the
        # row only once no call of this one can still reach the processor.
        self._check_s = 2 * settings.attempt_deadline_s
        self._lease_s = self._check_s + 30.0
        self._holds_due = 0.0  # the loop's time of the next expiry sweep

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        if self._notifier is not None:
            self._notifier.add_listener(lambda _intent_id: self._wake.set())
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.run_once()
                next_due = await self._seconds_until_next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failure(log, "reconciler pass failed")
                next_due = None
            timeout = self._settings.reconcile_sweep_interval_s
            if next_due is not None:
                timeout = max(0.0, min(timeout, next_due))
            self._wake.clear()
            await wait_event(self._wake, timeout)
            # Many changes in a burst cost one pass, not one each.
            await asyncio.sleep(max(0.0, WAKE_MIN_INTERVAL_S - (loop.time() - started)))

    async def _seconds_until_next_due(self) -> float | None:
        due = await self._store.next_check_due()
        return None if due is None else max(0.0, (due - now_us()) / _US)

    async def expire_holds(self, limit: int = BATCH) -> int:
        """Begin a void of every hold older than ``PAYGATE_AUTHORIZATION_TTL_S`` (its intent
        ends ``canceled``, ``expired``), due for checking at once: the check sends it, like
        any void the processor has not heard of. Returns how many were begun."""
        cutoff = now_us() - int(self._settings.authorization_ttl_s * _US)
        begun = 0
        for row in await self._store.expired_holds(cutoff, limit):
            try:
                await self._store.begin_void(NewVoid(row["merchant_id"], row["id"], "expired", 0), None)
            except StoreRefusal:
                continue  # captured, voided or being worked on since it was listed
            begun += 1
            log.info("hold of %s past PAYGATE_AUTHORIZATION_TTL_S: void begun", row["id"])
            if self._notifier is not None:
                self._notifier.publish(row["id"])
        return begun

    async def run_once(self) -> PassReport:
        """Void expired holds (at most once per sweep interval: a pass runs on every change
        signal), then check everything due now; returns what happened."""
        report = PassReport()
        # The loop's clock (monotonic; a simulation's virtual time), like every timer here.
        now = asyncio.get_running_loop().time()
        if now >= self._holds_due:
            self._holds_due = now + self._settings.reconcile_sweep_interval_s
            report.holds_expired = await self.expire_holds()
        while True:
            rows = await self._store.due_checks(now_us(), BATCH)
            if not rows:
                return report
            results = await asyncio.gather(*(self._check(row) for row in rows), return_exceptions=True)
            progressed = False
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("reconciling %s %s failed: %r", row.kind, row.object_id, result)
                    continue
                if result is None:
                    continue  # another reconciler holds the lease
                progressed = True
                report.checked += 1
                report.outcomes[result] = report.outcomes.get(result, 0) + 1
                if result in ("unknown", "not_found_yet", "cancel_sent") or result.endswith(
                        ("_unknown", "_retry", "_not_found_yet")):
                    report.still_unknown += 1
                else:
                    report.settled += 1
            if not progressed:
                return report

    async def check_now(self, kind: str, object_id: str) -> str | None:
        """Ask the processor about one operation now, whenever its check is due (an
        operator's "ask now"). A look-up only: an outcome it learns is applied (once, as
        every outcome is, and a charge the processor never received past its window is
        failed, as a pass would), but nothing is sent — no capture, void or refund again,
        no cancel — and an answer that settles nothing leaves the check as scheduled. A
        reconciler's pass may be working the same operation meanwhile (its lease looks like
        a later due time): a resend here could be refused ("nothing done") while the pass's
        own send is still on its way, and settle the operation against what the processor
        then does. Returns the check's label (as a pass counts it), or None when the
        operation is not waiting for an outcome (settled, or no such one). ``kind``: its
        queue row's — ``charge`` (a charge or an authorization), ``capture``, ``void`` or
        ``refund``."""
        check = await self._store.check_of(kind, object_id)
        if check is None:
            return None
        return await self._check(check, send=False)

    async def _connector(self, route: str) -> Connector:
        """Where the operation went is where it is asked about: never another processor."""
        if self._processors is None:
            if is_account(route):  # built without the accounts: it must not ask the default instead
                raise AccountMissing(route)
            return default_for(route, self.connector)
        return await self._processors.connector(route, self.connector)

    async def _check(self, check: Check, *, send: bool = True) -> str | None:
        """``send``: a pass's check, under a lease, which may send what the processor never
        received; otherwise a look-up only (see :meth:`check_now`)."""
        if send and not await self._store.lease_check(check, now_us() + int(self._lease_s * _US)):
            return None
        async with asyncio.timeout(self._check_s):  # past it: the row waits out its lease
            if check.kind == "refund":
                label, route = await self._check_refund(check, send)
            else:
                label, route = await self._check_attempt(check, send)
        # One line a check: which process asked which processor about an operation, and what
        # it learnt, is the first thing to know about one that stays unsettled. Checks are
        # rare (an operation settled by its request has none).
        log.info("checked %s %s of %s at %s (check %d): %s", check.kind, check.object_id, check.intent_id, route,
                 check.checks + 1, label)
        return label

    async def _check_attempt(self, check: Check, send: bool) -> tuple[str, str]:
        txn = await self._store.attempt_for_check(check.object_id)
        assert txn is not None
        attempt = Attempt.of(txn)
        connector = await self._connector(attempt.connector)
        if attempt.kind in ("capture", "void"):
            return await self._check_follow_up(check, txn, attempt, connector, send)
        # What a look-up says is the processor's state when the look-up reached it, not when its
        # answer came back: the windows below are judged at the time it was asked.
        asked_at = now_us()
        result = other_money(await connector.lookup(txn["reference"], processor_id=attempt.processor_id),
                             attempt.amount, attempt.currency)
        label = result.outcome.value
        check_by = None
        # Integer µs on both sides: a check due exactly at the window's end is past it.
        window_end = txn["created_at"] + round(self._settings.not_found_fail_after_s * _US)
        past_window = asked_at >= window_end
        if result.outcome is ChargeOutcome.UNKNOWN and past_window and send:
            sent = check.last_result == _CANCEL_SENT
            # Sent (again) until the processor says it has it: one whose answer never came
            # may never have reached it. Under the same key, which the processor does once,
            # for as long as it keeps the key.
            if not sent and asked_at < txn["created_at"] + round(connector.resend_answers_s * _US):
                # The cancel's own reference is the payment's: its notification names the attempt.
                canceled = await connector.cancel_by_reference(attempt.reference, attempt.reference)
                sent = canceled is not None and canceled.outcome is ChargeOutcome.APPROVED  # the processor has it
                if canceled is not None and canceled.outcome is ChargeOutcome.UNKNOWN:
                    result, label = ChargeResult(attempt.reference, ChargeOutcome.UNKNOWN, message=(
                        f"cancel by reference sent, whether the processor has it is unknown ({canceled.message}): "
                        "sent again at the next check")), "cancel_unknown"
            if sent:
                result, label = ChargeResult(attempt.reference, ChargeOutcome.UNKNOWN, message=_CANCEL_SENT), "cancel_sent"
        if result.outcome is ChargeOutcome.NOT_FOUND:
            if past_window:
                result = ChargeResult(txn["reference"], ChargeOutcome.FAILED,
                                      message="the processor never received this attempt")
                label = "failed_never_received"
            else:
                label = "not_found_yet"
                check_by = window_end
        if not send and not is_definitive(result.outcome):
            return label, attempt.connector  # a look-up that settles nothing changes nothing
        await self._store.settle_attempt(attempt, charge_outcome(
            result, schedule=self._settings.reconcile_schedule_s, checks=check.checks + 1, check_by=check_by))
        if self._notifier is not None:
            self._notifier.publish(check.intent_id)
        return label, attempt.connector

    @staticmethod
    def _send_again(connector: Connector, looked_up: ChargeOutcome, asked_at: int, created_at: int) -> bool:
        """Whether a capture, void or refund a look-up did not settle is one to send again
        with its same reference (once no earlier send can still be on its way): the processor
        has no record of it, or it cannot be asked and answers a resend with the first
        answer for a while yet (``Connector.resend_answers_s``: Adyen) — else one it never
        received would wait for a notification forever, a hold-expiry void that nobody has
        sent first among them."""
        if looked_up is ChargeOutcome.NOT_FOUND:
            return True
        return looked_up is ChargeOutcome.UNKNOWN and asked_at < created_at + round(connector.resend_answers_s * _US)

    def _in_flight_until(self, created_at: int) -> int:
        """Until when the request that sent an operation may still reach the processor."""
        return created_at + round(self._settings.in_flight_grace_s * _US)

    async def _check_follow_up(self, check: Check, txn: Row, attempt: Attempt, connector: Connector,
                               send: bool) -> tuple[str, str]:
        """A capture or void: looked up by its reference; one the processor has not heard
        of is sent (again) with that same reference — it was asked for, and the processor
        does it once per reference, so this can neither double it nor guess its outcome.

        But only once no earlier send can still be on its way: a resend answered "nothing
        done" settles the operation as refused, and an earlier request arriving afterwards
        would then do it at the processor behind the gateway's back (found by the
        simulation, docs/reliability.md). So: not before the request path's in-flight grace
        (a hold-expiry void is the reconciler's own: nobody sent it before), and after a
        resend without an answer, not before that resend's own grace. Judged at the time the
        look-up was asked: a "not found" answer that took a while to come back may be older than
        a send that arrived meanwhile (found by the long simulation run: seed 84555)."""
        assert attempt.charge_reference is not None
        asked_at = now_us()
        result = await connector.lookup(attempt.reference, "capture" if attempt.kind == "capture" else "void",
                                        processor_id=attempt.processor_id)
        if attempt.kind == "capture":
            result = other_money(result, attempt.amount, attempt.currency)
        label = f"{attempt.kind}_{result.outcome.value}"
        check_by = not_before = None
        looked_up = result.outcome
        if self._send_again(connector, looked_up, asked_at, txn["created_at"]):
            sent_by_request = not (attempt.kind == "void" and txn["reason"] == "expired")
            in_flight_until = self._in_flight_until(txn["created_at"]) if sent_by_request else 0
            if asked_at < in_flight_until:
                if result.outcome is ChargeOutcome.NOT_FOUND:
                    label, check_by = f"{attempt.kind}_not_found_yet", in_flight_until
            elif send:
                if attempt.kind == "capture":
                    result = await connector.capture(CaptureRequest(attempt.reference, attempt.charge_reference,
                                                                    attempt.amount, attempt.currency,
                                                                    attempt.processor_id))
                else:
                    result = await connector.void(VoidRequest(attempt.reference, attempt.charge_reference,
                                                              attempt.processor_id))
                # Nothing was sent before only for a hold-expiry void at its first check.
                result = _as_resent(looked_up, sent_by_request or check.checks > 0, result)
                label = f"{attempt.kind}_sent_{result.outcome.value}"
                not_before = self._in_flight_until(now_us())
        if not send and not is_definitive(result.outcome):
            return label, attempt.connector
        await self._store.settle_follow_up(attempt, follow_up_outcome(
            attempt.kind, result, schedule=self._settings.reconcile_schedule_s, checks=check.checks + 1,
            check_by=check_by, not_before=not_before))
        if self._notifier is not None:
            self._notifier.publish(check.intent_id)
        return label, attempt.connector

    async def _check_refund(self, check: Check, send: bool) -> tuple[str, str]:
        refund = await self._store.refund_for_check(check.object_id)
        assert refund is not None
        connector = await self._connector(refund["connector"])
        # Looked up by its reference first; one the processor has not heard of is sent
        # (again) with that same reference, which the processor refunds once.
        # Not while an earlier send may still be on its way (see _check_follow_up).
        asked_at = now_us()  # the look-up's answer is the processor's state then (see _check_follow_up)
        looked_up = await connector.lookup(refund["reference"], "refund", processor_id=refund["charge_processor_id"])
        looked_up = other_money(looked_up, refund["amount"], refund["currency"])
        result = RefundResult(refund["reference"], looked_up.outcome, looked_up.message)
        label = f"refund_{result.outcome.value}"
        check_by = not_before = None
        if self._send_again(connector, looked_up.outcome, asked_at, refund["created_at"]):
            in_flight_until = self._in_flight_until(refund["created_at"])
            if asked_at < in_flight_until:
                if looked_up.outcome is ChargeOutcome.NOT_FOUND:
                    label, check_by = "refund_not_found_yet", in_flight_until
            elif send:
                result = await connector.refund(RefundRequest(refund["reference"], refund["charge_reference"],
                                                              refund["amount"], refund["currency"],
                                                              refund["charge_processor_id"]))
                result = _as_resent(looked_up.outcome, True, result)  # a refund is sent by its request first
                label = f"refund_sent_{result.outcome.value}"
                not_before = self._in_flight_until(now_us())
        if not send and not is_definitive(result.outcome):
            return label, refund["connector"]
        await self._store.settle_refund(check.object_id, refund_outcome(
            result, schedule=self._settings.reconcile_schedule_s, checks=check.checks + 1,
            check_by=check_by, not_before=not_before))
        if self._notifier is not None:
            self._notifier.publish(check.intent_id)
        return label, refund["connector"]


def _as_resent(looked_up: ChargeOutcome, sent_before: bool, result: _Sent) -> _Sent:
    """A capture's, void's or refund's outcome as its resend was answered. After a look-up that
    said "not found" (and past the in-flight grace) the processor never had the operation:
    the resend's answer is its outcome. After one that could not tell (``UNKNOWN``: Adyen,
    whose look-ups cannot be made), an earlier send may be at the processor, doing it: a
    resend refused or never sent (it could not connect; the key is refused before the
    processor looks for the request it has) says nothing of that one. Settled on it, a
    refund the processor is making would be failed and its amount released (the merchant
    may refund it twice), a capture it is making would give the hold back. The operation
    stays unknown, for the processor's notification (and the next resend, which a
    processor that has the earlier request answers with that one's answer)."""
    if looked_up is not ChargeOutcome.UNKNOWN or not sent_before or result.outcome not in _REFUSED:
        return result
    said = result.message or result.outcome.value
    return dataclasses.replace(result, outcome=ChargeOutcome.UNKNOWN, message=(
        f"sent again and {said}: that says nothing of the earlier send, which the processor may have; "
        "outcome unknown"))


async def list_unresolved(store: PaymentStore) -> list[dict[str, Any]]:
    """Everything still on the queue, oldest first: what the operator should look at."""
    rows = await store.all_checks()
    return [{"kind": r.kind, "id": r.object_id, "paymentIntentId": r.intent_id, "merchantId": r.merchant_id,
             "checks": r.checks, "lastResult": r.last_result, "nextCheckAt": to_rfc3339(r.due_at),
             "since": to_rfc3339(r.created_at)} for r in rows]


# How many late outcomes ``paygate reconcile`` lists: open ones come first, so a limit cuts
# only handled ones unless thousands are open (then the operator has a bigger problem).
LATE_OUTCOMES_LISTED = 500


async def list_late_outcomes(store: PaymentStore, *, open_only: bool = True) -> list[dict[str, Any]]:
    """Settled outcomes a processor contradicted later (``late_outcomes``), open ones first:
    the gateway shows money moved that did not, or the reverse — an operator's to-do."""
    rows = await store.late_outcomes(limit=LATE_OUTCOMES_LISTED)
    return [{"id": r.id, "kind": r.kind, "objectId": r.object_id, "paymentIntentId": r.intent_id,
             "merchantId": r.merchant_id, "route": r.connector, "gatewayStatus": r.gateway_status,
             "processorStatus": r.processor_status, "processorText": r.processor_text,
             "receivedAt": to_rfc3339(r.received_at),
             "handledAt": None if r.handled_at is None else to_rfc3339(r.handled_at), "handledBy": r.handled_by}
            for r in rows if not (open_only and r.handled_at is not None)]
