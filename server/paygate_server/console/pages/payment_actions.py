"""The payment page's actions (SPEC §12): refund, capture, cancel, ask the processor now,
replay a webhook delivery — each a POST form (CSRF token and ``Origin`` checked by
:func:`~paygate_server.console.web.form_action`, the role's permission asked again).

Refund, capture and cancel run the API's very operations (``gateway.refunds.refund``,
``gateway.processing.capture`` / ``cancel``) under the API's idempotency: the form's key
(made when the page was rendered) is claimed for the payment's merchant with the request
the API would have received (its method, path and JSON body), through
:meth:`~paygate_server.http.api.IdempotencyScope.run`. A form sent twice is one operation:
the second gets the first's stored answer. "Ask now" is
:meth:`~paygate_server.processing.reconciler.Reconciler.check_now`; a replay is
``paygate webhooks replay``'s ``DeliveryQueue.replay_failed`` for one delivery, never
re-enabling its endpoint (console/pages/replay.py).

Every action — done, replayed or refused — is recorded (who, what, on which payment,
amount, outcome, from where) and the page is shown again with what happened.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server import jsoncodec
from paygate_server.console.actions import Detail, record_action
from paygate_server.console.pages.payment import Notice, intent_id_of, payment_view
from paygate_server.console.pages.replay import replay_delivery
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import Form, console_of, error_page, form_action, remote_addr
from paygate_server.currencies import AmountError, format_minor, parse_major
from paygate_server.errors import ApiError
from paygate_server.http.api import IdempotencyScope, Replayed, parse_idempotency_key
from paygate_server.http.middleware import request_id_of
from paygate_server.intents.schemas import MAX_AMOUNT
from paygate_server.processing.connectors import ConnectorError
from paygate_server.processing.service import CapturePayment
from paygate_server.processors.registry import AccountMissing, is_account
from paygate_server.refunds.service import RefundPayment
from paygate_server.storage.console_reads import PaymentDetail, payment_detail
from paygate_server.storage.port import ExistingKey, KeyClaim

__all__ = ["routes"]

KEY_FIELD = "idempotency_key"
_MAX_REASON = 200  # the API's limit on a refund's reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """An operation's result for the page and the record."""
    message: str
    label: str  # the record's outcome: done | replayed | refused:<code>
    failed: bool = False
    facts: dict[str, str | int | None] | None = None
    status: int | None = None  # the page's status; None: 409 when failed, else 200


class Unusable(Exception):
    """A field of the form that cannot be used; ``str()`` says what to type."""


def _amount(form: Form, detail: PaymentDetail) -> int | None:
    """The typed amount in minor units (None: left blank, meaning all of it)."""
    typed = form.get("amount", "").strip()
    if not typed:
        return None
    currency = detail.intent.currency
    try:
        amount = parse_major(typed, currency)
    except AmountError as exc:
        raise Unusable(f"The amount cannot be used: {exc}.") from None
    if not 1 <= amount <= MAX_AMOUNT:
        raise Unusable(f"The amount must be from {format_minor(1, currency)} to {format_minor(MAX_AMOUNT, currency)} "
                       f"{currency}.")
    return amount


async def _idempotently(request: Request, detail: PaymentDetail, form: Form, api_path: str, body: dict[str, Any],
                        operation: Callable[[KeyClaim | None], Awaitable[Any | ExistingKey]],
                        done: Callable[[Any], Outcome]) -> Outcome:
    """Run ``operation`` as the API would a POST of ``body`` to ``api_path`` with the form's key."""
    gateway = console_of(request).gateway
    try:
        key = parse_idempotency_key(form.get(KEY_FIELD))
    except ApiError:
        key = None
    if key is None:
        raise Unusable("This form has no usable idempotency key: reload the page and try again.")
    scope = IdempotencyScope(gateway, detail.intent.merchant_id, key, "POST", api_path, jsoncodec.dumps(body))
    try:
        return done(await scope.run(gateway.payments, operation, request_id_of(request.scope)))
    except Replayed as replayed:
        stored = json.loads(bytes(replayed.response.body))
        if replayed.response.status_code >= 400:
            error = stored.get("error", {})
            return Outcome(f"This form was sent before and refused then: {error.get('message', 'see the timeline')}. "
                           "Nothing was changed.", f"replayed:{error.get('code', 'error')}", failed=True)
        return Outcome("This form was sent before: it was done once, as shown below (a form is one operation however "
                       "often it is sent).", "replayed")
    except ApiError as exc:
        return Outcome(f"Not done: {exc.message}. Nothing was changed.", f"refused:{exc.code}", failed=True,
                       facts={"code": exc.code})


async def _act(request: Request, signed_in: SignedIn, form: Form, action: str,
               run: Callable[[PaymentDetail], Awaitable[Outcome]]) -> Response:
    """Find the payment, run the action, record it, show the page again with what happened."""
    console = console_of(request)
    intent_id = intent_id_of(request)
    detail = None if intent_id is None else await payment_detail(console.gateway.db, intent_id)
    if detail is None:
        return error_page(request, signed_in, 404, "There is no such payment: nothing was done. Find it from the "
                                                   "Payments search.")
    async def record(facts: Detail) -> None:
        await record_action(console.gateway.db, operator_id=signed_in.operator_id, action=f"payment.{action}",
                            target=detail.intent.id, detail=facts, remote_addr=remote_addr(request))

    # Recorded before the operation as well as after: if this process dies while the money
    # moves, the record still says who started what (the operation itself is settled by
    # the reconciler, and a resent form replays it by its key).
    await record({"outcome": "started"})
    try:
        outcome = await run(detail)
    except Unusable as exc:
        await record({"outcome": "unusable"})
        return await payment_view(request, signed_in, detail, status=400, notice=Notice(str(exc), failed=True),
                                  typed={action: form.get("amount", "")[:40]})
    await record({**(outcome.facts or {}), "outcome": outcome.label})
    fresh = await payment_detail(console.gateway.db, detail.intent.id)
    assert fresh is not None  # intents are never deleted
    status = outcome.status or (409 if outcome.failed else 200)
    return await payment_view(request, signed_in, fresh, status=status, notice=Notice(outcome.message, outcome.failed))


@form_action("refund")
async def refund(request: Request, signed_in: SignedIn, form: Form) -> Response:
    async def run(detail: PaymentDetail) -> Outcome:
        intent = detail.intent
        amount = _amount(form, detail)
        reason = form.get("reason", "").strip()
        if len(reason) > _MAX_REASON:
            raise Unusable(f"A reason is at most {_MAX_REASON} characters.")
        command = RefundPayment(intent.merchant_id, intent.id, amount, reason or None)
        body = {"paymentIntentId": intent.id, "amount": amount, "reason": reason or None}

        def done(row: Any) -> Outcome:
            shown = f"{format_minor(row['amount'], row['currency'])} {row['currency']}"
            failed = row["status"] == "failed"
            message = (f"Refund {row['id']} of {shown}: the processor refused it." if failed else
                       f"Refund {row['id']} of {shown}: {row['status']}.")
            return Outcome(message, "done", failed=failed,
                           facts={"amount": row["amount"], "currency": row["currency"], "refund": row["id"],
                                  "status": row["status"]})
        return _with_amount(await _idempotently(
            request, detail, form, "/api/v1/payment/refund", body,
            lambda claim: console_of(request).gateway.refunds.refund(command, claim), done), amount)
    return await _act(request, signed_in, form, "refund", run)


@form_action("capture")
async def capture(request: Request, signed_in: SignedIn, form: Form) -> Response:
    async def run(detail: PaymentDetail) -> Outcome:
        intent = detail.intent
        amount = _amount(form, detail)
        command = CapturePayment(intent.merchant_id, intent.id, amount)

        def done(processed: Any) -> Outcome:
            row = processed.intent
            return Outcome(f"Capture sent: the payment is {row['status']}, "
                           f"{format_minor(row['amount_received'], intent.currency)} {intent.currency} received.",
                           "done", facts={"amount": amount, "status": row["status"]})
        return _with_amount(await _idempotently(
            request, detail, form, "/api/v1/payment/capture", {"paymentIntentId": intent.id, "amount": amount},
            lambda claim: console_of(request).gateway.processing.capture(command, claim), done), amount)
    return await _act(request, signed_in, form, "capture", run)


@form_action("cancel")
async def cancel(request: Request, signed_in: SignedIn, form: Form) -> Response:
    async def run(detail: PaymentDetail) -> Outcome:
        intent = detail.intent
        gateway = console_of(request).gateway

        def done(processed: Any) -> Outcome:
            return Outcome(f"Canceled: the payment is {processed.intent['status']}.", "done",
                           facts={"status": processed.intent["status"]})
        outcome = await _idempotently(request, detail, form, "/api/v1/payment/cancel", {"paymentIntentId": intent.id},
                                      lambda claim: gateway.processing.cancel(intent.merchant_id, intent.id, claim),
                                      done)
        gateway.notifier.publish(intent.id)  # as the API's cancel does: listeners see the change now
        return outcome
    return await _act(request, signed_in, form, "cancel", run)


def _with_amount(outcome: Outcome, amount: int | None) -> Outcome:
    facts: dict[str, str | int | None] = {"amount": amount, **(outcome.facts or {})}
    return Outcome(outcome.message, outcome.label, outcome.failed, facts)


@form_action("reconcile")
async def reconcile(request: Request, signed_in: SignedIn, form: Form) -> Response:
    async def run(detail: PaymentDetail) -> Outcome:
        object_id = form.get("object_id", "")
        attempts = {a.id: a.status for a in detail.attempts}
        refunds = {r.id: r.status for r in detail.refunds}
        if object_id in attempts:
            kind, status = "charge", attempts[object_id]
        elif object_id in refunds:
            kind, status = "refund", refunds[object_id]
        else:
            raise Unusable("That operation is not one of this payment's: reload the page and try again.")
        facts: dict[str, str | int | None] = {"object": object_id}
        try:
            label = await console_of(request).gateway.reconciler.check_now(kind, object_id)
        except (ConnectorError, AccountMissing) as exc:
            # As the Reconciliation page's "Ask again": the processor's silence (or an account
            # gone from this database) is an answer to show, not a 500.
            why = str(exc)
            if isinstance(exc, AccountMissing):  # an account gone, or a default of another kind here
                why = (f"there is no processor account {exc} here" if is_account(str(exc))
                       else f"it went to the default processor {exc}, which is not this process's")
            return Outcome(f"The processor could not be asked about {object_id}: {why}. The reconciler keeps "
                           "trying on its own.", "refused:processor_unreachable", failed=True, facts=facts,
                           status=502)
        if label is None:
            return Outcome(f"{object_id} is not waiting for an outcome (it is {status}): nothing "
                           "to ask. See its outcome below.", "refused:not_waiting", failed=True, facts=facts)
        return Outcome(f"Asked the processor about {object_id}: {label.replace('_', ' ')}.", f"done:{label}",
                       facts=facts)
    return await _act(request, signed_in, form, "reconcile", run)


@form_action("replay")
async def replay(request: Request, signed_in: SignedIn, form: Form) -> Response:
    async def run(detail: PaymentDetail) -> Outcome:
        event_id, endpoint_id = form.get("event_id", ""), form.get("endpoint_id", "")
        statuses = {(event.id, delivery.endpoint_id): delivery.status
                    for event in detail.webhook_events for delivery in event.deliveries}
        if (event_id, endpoint_id) not in statuses:
            raise Unusable("That delivery is not one of this payment's: reload the page and try again.")
        facts: dict[str, str | int | None] = {"event": event_id, "endpoint": endpoint_id}
        outcome = await replay_delivery(console_of(request).gateway.db, merchant_id=detail.intent.merchant_id,
                                        endpoint_id=endpoint_id, event_id=event_id)
        if outcome.refusal:
            return Outcome(outcome.refusal, "refused:endpoint_not_enabled", failed=True, facts=facts)
        if not outcome.replayed:
            return Outcome(f"Only a failed delivery can be sent again; this one is "
                           f"{statuses[(event_id, endpoint_id)]}.", "refused:not_failed", failed=True, facts=facts)
        return Outcome(f"Event {event_id} will be sent to {endpoint_id} again now.", "done", facts=facts)
    return await _act(request, signed_in, form, "replay", run)


routes = [
    Route("/payments/{intent_id}/refund", refund, methods=["POST"]),
    Route("/payments/{intent_id}/capture", capture, methods=["POST"]),
    Route("/payments/{intent_id}/cancel", cancel, methods=["POST"]),
    Route("/payments/{intent_id}/reconcile", reconcile, methods=["POST"]),
    Route("/payments/{intent_id}/replay", replay, methods=["POST"]),
]
