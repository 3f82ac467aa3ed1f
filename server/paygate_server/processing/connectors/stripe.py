"""Connector for Stripe's PaymentIntents API (SPEC §7 "Real processors", issue #18).

Account settings ``apiBase`` (default ``https://api.stripe.com``; a plain ``http://`` base
is for a fake Stripe on loopback, e.g. localstripe in the tests); credentials ``secretKey``
(sent as ``Authorization: Bearer``, never in a repr, message or log) and ``webhookSecret``.

Every request carries ``Stripe-Version: 2024-06-20`` (:data:`STRIPE_VERSION`): the answers
this module reads are those of that version, whatever the account's default is, so a
version upgrade on Stripe's dashboard cannot change what the connector sees. 2024-06-20 is
the last dated release before Stripe's named (``acacia``, …) series, and it has everything
read here (``latest_charge`` as an id, ``cancellation_reason``, ``last_payment_error``,
refund statuses); moving to a newer version is a deliberate change of this constant, made
with its changelog in hand. Bodies are form-encoded (``metadata[paygate_reference]=…``).

**A charge is three requests and a checkpoint**, so that there is always a Stripe id to
ask about before anything can move money:

1. ``POST /v1/payment_methods`` — the card (forwarding card numbers needs Stripe's
   raw-card-data access, PCI DSS; without it Stripe refuses with a 400: FAILED, nothing
   charged); moves no money;
2. ``POST /v1/payment_intents`` — amount, currency, ``capture_method`` (``manual`` for an
   authorization), that payment method, ``metadata[paygate_reference]``/``[paygate_intent]``
   /``[paygate_merchant]``; moves no money;
3. ``record_processor_id(pi_id)``: the gateway commits the intent's id (if it raises, the
   connector stops: nothing charged, FAILED);
4. ``POST /v1/payment_intents/{id}/confirm`` — the one request that charges.

Each request has its own ``Idempotency-Key``: ``<reference>-pm``, ``-create``, ``-confirm``
(a retry of the attempt with the same reference replays each step). Because money moves
only at step 4, an answer at steps 1–2 that is not an outcome (a timeout, a 5xx) is
FAILED, not UNKNOWN: nothing was ever confirmed, so nothing can have been charged —
whatever Stripe did with the request, an intent it may have created stays unconfirmed for
good (and a look-up of the attempt says NOT_FOUND). The same holds for the tag before a
capture or a void (below): the hold is as it was.

The payment method comes first, not with the confirm (``payment_method_data``), because
localstripe accepts neither ``payment_method_data`` nor ``payment_method`` on a confirm;
real Stripe accepts this order as well.

Captures and voids first tag the intent (``POST /v1/payment_intents/{id}`` with
``metadata[paygate_capture]``/``[paygate_void]`` = the operation's reference, key
``<reference>-tag``), then capture (``amount_to_capture``) or cancel with the reference as
``Idempotency-Key``: the tag is how a settlement report and a webhook name the capture.
A refund is ``POST /v1/refunds`` (``payment_intent``, ``amount``,
``metadata[paygate_reference]``), key = the reference.

``auth_code``: a payment intent has no authorization code; the charge's id
(``latest_charge``, ``ch_…``) stands in for it: it is what an operator looks up on
Stripe's dashboard. Stripe ids are 27 characters today but may grow (Stripe allows for
255); one longer than the gateway's 32-character column is left out (no auth code) rather
than cut.

What each answer means is :mod:`.stripe_rules`'s (the classifier, the status tables);
webhooks are :mod:`.stripe_webhooks`'s.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from paygate_server import jsoncodec
from paygate_server.http1client import Transport

from ._transport import PooledConnector, connection_pool, report_amount, retry_after_s
from .base import (
    CaptureRequest,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    ConnectorError,
    ConnectorKind,
    RefundRequest,
    RefundResult,
    SettlementRecord,
    SyncKind,
    VoidRequest,
    WebhookReply,
    other_money,
)
from .minor_units import STRIPE, Unrepresentable
from .stripe_rules import (
    Answer,
    Step,
    capture_answer,
    charge_answer,
    classify_error,
    error_body,
    refund_answer,
    refusal_by_payment_intent,
    stripe_result,
    void_answer,
    with_stated_money,
)
from .stripe_webhooks import parse_webhook as _parse_webhook

__all__ = ["KIND", "STRIPE_VERSION", "StripeConnector"]

STRIPE_VERSION = "2024-06-20"
DEFAULT_API_BASE = "https://api.stripe.com"
_PAGE = 100  # Stripe's largest page
_MAX_PAGES = 1000  # a bound on one listing: 100,000 objects
# What may go into a header line: visible ASCII, no spaces (keys, ids, references).
_HEADER_SAFE = re.compile(r"[!-~]{1,255}")
O = ChargeOutcome  # noqa: E741 - a short alias keeps the flows readable
Form = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class _Exchange:
    """One request's result: the object of a 2xx answer, or what its failure means."""

    status: int | None
    obj: dict[str, Any] | None
    answer: Answer | None
    error: dict[str, Any] | None = None  # Stripe's error object, if the answer had one


def _not_sent(reference: str, problem: Unrepresentable) -> ChargeResult:
    return ChargeResult(reference, O.FAILED, message=f"{problem}: nothing sent")


def _nothing_moved(answer: Answer) -> Answer:
    """A step before the one that moves money did not succeed: an answer that is not an
    outcome still means nothing was done (see the module's docstring)."""
    if answer.outcome is O.UNKNOWN:
        return Answer(O.FAILED, message=f"{answer.message or 'no answer'}; no money moved")
    return answer


class StripeConnector(PooledConnector):
    """Speaks Stripe's PaymentIntents API over one pool of keep-alive HTTP/1.1 connections.

    ``connect_timeout``, ``read_timeout``, ``max_connections`` and ``transport`` are the
    simulator connector's (``transport``: the seam for tests that script the answers).
    ``clock``: the time webhooks are checked against (tests pass a fixed one).
    Idempotency-Keys are sent on every POST; localstripe ignores them, so against it a
    replayed request is executed again (the tests check the header through the seam).
    """

    name = "stripe"
    resend_answers_s = 0.0  # looked up: keys last 24 h, objects for good

    def __init__(self, secret_key: str, webhook_secret: str, *, api_base: str = DEFAULT_API_BASE,
                 connect_timeout: float = 2.0, read_timeout: float = 30.0, max_connections: int = 64,
                 transport: Transport | None = None, clock: Callable[[], float] = time.time) -> None:
        if not _HEADER_SAFE.fullmatch(secret_key):
            raise ValueError("the Stripe secret key is not a header-safe token")  # never its value
        self.api_base = api_base.rstrip("/")
        self._pool, parts = connection_pool(self.api_base, "Stripe", "apiBase", connect_timeout=connect_timeout,
                                            read_timeout=read_timeout, max_connections=max_connections,
                                            transport=transport)
        self._prefix = parts.path
        self._auth = (f"Authorization: Bearer {secret_key}\r\nStripe-Version: {STRIPE_VERSION}\r\n"
                      "User-Agent: paygate-connector\r\n").encode("ascii")
        self._webhook_secret = webhook_secret
        self._clock = clock
        self._read_timeout = read_timeout

    def __repr__(self) -> str:
        return f"StripeConnector({self.api_base!r})"  # never the keys

    # -- HTTP ------------------------------------------------------------------------------

    async def _call(self, step: Step, method: str, path: str, form: Form | None = None,
                    idempotency_key: str | None = None) -> _Exchange:
        headers = self._auth
        if method == "POST":
            headers += b"Content-Type: application/x-www-form-urlencoded\r\n"
        if idempotency_key is not None:
            if not _HEADER_SAFE.fullmatch(idempotency_key):
                return _Exchange(None, None, Answer(O.FAILED, message="reference not usable as an idempotency key"))
            headers += f"Idempotency-Key: {idempotency_key}\r\n".encode("ascii")
        body = urlencode(form).encode("ascii") if form else b""
        # idempotent=True: a request that meets a pooled connection Stripe closed while idle
        # is written once more. Stripe replays a POST with the same Idempotency-Key instead
        # of doing it twice; GETs are reads.
        try:
            response = await self._pool.request(method, self._prefix + path, headers, body, self._read_timeout,
                                                idempotent=True)
        except Exception as exc:  # noqa: BLE001 - every failure to get an answer is classified
            return _Exchange(None, None, classify_error(step, None, None, exc))
        if 200 <= response.status <= 299:
            try:
                data = jsoncodec.loads(response.body)
            except jsoncodec.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                return _Exchange(response.status, None,
                                 Answer(O.UNKNOWN, message=f"unreadable answer (HTTP {response.status}): outcome unknown"))
            return _Exchange(response.status, data, None)
        answer = classify_error(step, response.status, response.body)
        if answer.outcome is O.RETRY:  # "nothing done, try again": when Stripe says, if it does
            answer = dataclasses.replace(answer, retry_after_s=retry_after_s(response.retry_after))
        return _Exchange(response.status, None, answer, error_body(response.body))

    async def _retrieve(self, pi_id: str) -> _Exchange:
        return await self._call(Step.RETRIEVE, "GET", "/v1/payment_intents/" + quote(pi_id, safe=""))

    async def _explain(self, step: Step, exchange: _Exchange, pi_id: str) -> Answer:
        """A 400 to a confirm, capture or void, read with the intent as it is now."""
        assert exchange.answer is not None
        if exchange.status != 400 or exchange.answer.outcome is not O.FAILED:
            return exchange.answer
        embedded = (exchange.error or {}).get("payment_intent")
        if isinstance(embedded, dict):  # real Stripe embeds it in errors of intent endpoints
            return refusal_by_payment_intent(step, exchange.answer, embedded)
        current = await self._retrieve(pi_id)
        return refusal_by_payment_intent(step, exchange.answer, current.obj)

    # -- operations -------------------------------------------------------------------------

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        ref = request.reference
        card = request.card
        try:
            amount = STRIPE.to_processor(request.amount, request.currency)
        except Unrepresentable as problem:
            return _not_sent(ref, problem)  # before the card is sent anywhere
        card_form: Form = [("type", "card"), ("card[number]", card.number),
                           ("card[exp_month]", str(card.exp_month)), ("card[exp_year]", str(card.exp_year))]
        if card.cvc is not None:
            card_form.append(("card[cvc]", card.cvc))
        made = await self._call(Step.PAYMENT_METHOD, "POST", "/v1/payment_methods", card_form, f"{ref}-pm")
        pm_id = _object_id(made.obj, "pm_")
        if pm_id is None:
            return stripe_result(ref, _nothing_moved(made.answer or _no_id("payment method")))
        created = await self._call(Step.CREATE, "POST", "/v1/payment_intents", [
            ("amount", str(amount)), ("currency", request.currency.lower()),
            ("capture_method", "automatic" if request.capture else "manual"),
            ("payment_method", pm_id), ("payment_method_types[]", "card"),
            ("metadata[paygate_reference]", ref), ("metadata[paygate_intent]", request.payment_intent_id),
            ("metadata[paygate_merchant]", request.merchant_id),
        ], f"{ref}-create")
        pi_id = _object_id(created.obj, "pi_")
        if pi_id is None:
            return stripe_result(ref, _nothing_moved(created.answer or _no_id("payment intent")))
        if request.record_processor_id is not None:
            try:
                await request.record_processor_id(pi_id)
            except Exception as exc:  # noqa: BLE001 - whatever it was, the confirm is not sent
                return stripe_result(ref, Answer(O.FAILED, message=f"the processor id was not recorded "
                                                                    f"({type(exc).__name__}): nothing charged"), pi_id)
        path = f"/v1/payment_intents/{quote(pi_id, safe='')}/confirm"
        confirmed = await self._call(Step.CONFIRM, "POST", path, None, f"{ref}-confirm")
        if confirmed.obj is None:
            return stripe_result(ref, await self._explain(Step.CONFIRM, confirmed, pi_id), pi_id)
        if confirmed.obj.get("id") != pi_id:
            return stripe_result(ref, Answer(O.UNKNOWN, message="answer for another payment intent: outcome unknown"),
                                 pi_id)
        answered = with_stated_money(stripe_result(ref, charge_answer(confirmed.obj), pi_id), confirmed.obj, "charge")
        return other_money(answered, request.amount, request.currency)

    async def _follow_up(self, step: Step, reference: str, pi_id: str | None, tag: str, action: str,
                         form: Form | None, read: Callable[[dict[str, Any]], Answer],
                         sent: tuple[int, str] | None = None) -> ChargeResult:
        """A capture or void: tag the intent with the operation's reference, then act."""
        if not pi_id:
            return stripe_result(reference, Answer(O.FAILED, message="no Stripe payment intent recorded: nothing done"))
        quoted = quote(pi_id, safe="")
        tagged = await self._call(Step.TAG, "POST", f"/v1/payment_intents/{quoted}",
                                  [(f"metadata[{tag}]", reference)], f"{reference}-tag")
        if tagged.obj is None:
            assert tagged.answer is not None
            # Nothing but metadata was asked for: the hold is as it was.
            return stripe_result(reference, _nothing_moved(tagged.answer), pi_id)
        done = await self._call(step, "POST", f"/v1/payment_intents/{quoted}/{action}", form, reference)
        if done.obj is None:
            return stripe_result(reference, await self._explain(step, done, pi_id), pi_id)
        if done.obj.get("id") != pi_id:
            return stripe_result(reference, Answer(O.UNKNOWN, message="answer for another payment intent: outcome unknown"),
                                 pi_id)
        if sent is None:
            return stripe_result(reference, read(done.obj), pi_id)
        return other_money(with_stated_money(stripe_result(reference, read(done.obj), pi_id), done.obj, "capture"), *sent)

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        try:
            amount = STRIPE.to_processor(request.amount, request.currency)
        except Unrepresentable as problem:
            return _not_sent(request.reference, problem)
        return await self._follow_up(Step.CAPTURE, request.reference, request.charge_processor_id, "paygate_capture",
                                     "capture", [("amount_to_capture", str(amount))], capture_answer,
                                     (request.amount, request.currency))

    async def void(self, request: VoidRequest) -> ChargeResult:
        return await self._follow_up(Step.VOID, request.reference, request.charge_processor_id, "paygate_void",
                                     "cancel", None, void_answer)

    async def refund(self, request: RefundRequest) -> RefundResult:
        if not request.charge_processor_id:
            return RefundResult(request.reference, O.DECLINED, "no Stripe payment intent recorded: nothing refunded")
        try:
            amount = STRIPE.to_processor(request.amount, request.currency)
        except Unrepresentable as problem:
            return RefundResult(request.reference, O.DECLINED, f"{problem}: nothing sent")
        made = await self._call(Step.REFUND, "POST", "/v1/refunds", [
            ("payment_intent", request.charge_processor_id), ("amount", str(amount)),
            ("metadata[paygate_reference]", request.reference),
        ], request.reference)
        if made.obj is None:
            assert made.answer is not None
            return RefundResult(request.reference, made.answer.outcome, made.answer.message,
                                retry_after_s=made.answer.retry_after_s)
        answer = other_money(with_stated_money(stripe_result(request.reference, refund_answer(made.obj)), made.obj,
                                               "refund"), request.amount, request.currency)
        return RefundResult(request.reference, answer.outcome, answer.message, answer.amount, answer.currency)

    async def lookup(self, reference: str, kind: SyncKind = "charge", *,
                     processor_id: str | None = None) -> ChargeResult:
        """What Stripe recorded, by the payment intent's id (Stripe cannot be asked by the
        gateway's reference).

        A charge with no recorded id is NOT_FOUND: the connector confirms only after
        ``record_processor_id`` returned, so an attempt without a recorded id was never
        confirmed and charged nothing. A capture, void or refund without the
        authorization's id cannot be asked about: UNKNOWN.
        """
        if not processor_id:
            if kind == "charge":
                return stripe_result(reference, Answer(O.NOT_FOUND, message="no payment intent recorded: never confirmed"))
            return stripe_result(reference, Answer(O.UNKNOWN, message="no payment intent recorded: cannot ask Stripe"))
        if kind == "refund":
            refund = await self._lookup_refund(reference, processor_id)
            if isinstance(refund, Answer):
                return stripe_result(reference, refund, processor_id)
            return with_stated_money(stripe_result(reference, refund_answer(refund), processor_id), refund, "refund")
        got = await self._retrieve(processor_id)
        if got.obj is None:
            assert got.answer is not None
            return stripe_result(reference, got.answer, processor_id)
        pi = got.obj
        owner = _metadata(pi, "paygate_reference")
        if kind == "charge" and owner != reference:
            return stripe_result(reference, Answer(O.UNKNOWN, message="the payment intent is another attempt's: "
                                                                      "outcome unknown"), processor_id)
        read = {"charge": charge_answer, "capture": capture_answer, "void": void_answer}[kind]
        found = stripe_result(reference, read(pi, lookup=True), processor_id)
        return found if kind == "void" else with_stated_money(found, pi, kind)

    async def _lookup_refund(self, reference: str, pi_id: str) -> dict[str, Any] | Answer:
        """The refund with this reference, or what the listing said instead."""
        query = {"payment_intent": pi_id}
        async for refund in self._list("/v1/refunds", query, Step.LIST_REFUNDS):
            if isinstance(refund, Answer):
                return refund
            if _metadata(refund, "paygate_reference") == reference:
                return refund
        return Answer(O.NOT_FOUND, message="no refund with this reference")

    async def _list(self, path: str, query: Mapping[str, str], step: Step,
                    expand: tuple[str, ...] = ()) -> AsyncIterator[dict[str, Any] | Answer]:
        """Every object of a Stripe list, page by page; an Answer (and the end) on failure."""
        after: str | None = None
        for _ in range(_MAX_PAGES):
            params = [*query.items(), ("limit", str(_PAGE)), *(("expand[]", e) for e in expand)]
            if after is not None:
                params.append(("starting_after", after))
            page = await self._call(step, "GET", f"{path}?{urlencode(params)}")
            items = page.obj.get("data") if page.obj is not None else None
            if not isinstance(items, list):
                yield page.answer or Answer(O.UNKNOWN, message="unreadable list: outcome unknown")
                return
            for item in items:
                if isinstance(item, dict):
                    yield item
            last = _object_id(items[-1] if items else None, "")
            if page.obj is None or page.obj.get("has_more") is not True or last is None:
                return
            after = last
        yield Answer(O.UNKNOWN, message="list too long: outcome unknown")

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        """The day's (UTC) settled charges, captures and refunds made through the gateway,
        from Stripe's balance transactions with their sources and intents expanded.
        Objects without the gateway's metadata (another integration on the same account,
        localstripe's releases of an uncaptured rest) are left out."""
        start = int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp())
        query = {"created[gte]": str(start), "created[lt]": str(start + 86400)}
        records: list[SettlementRecord] = []
        async for item in self._list("/v1/balance_transactions", query, Step.RETRIEVE,
                                     ("data.source", "data.source.payment_intent")):
            if isinstance(item, Answer):
                raise ConnectorError(f"settlement report: {item.message or item.outcome.value}")
            try:
                record = _settlement_record(item)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConnectorError(f"settlement report: malformed answer ({type(exc).__name__})") from None
            if record is not None:
                records.append(record)
        return records

    async def cancel_by_reference(self, payment_reference: str, reference: str) -> ChargeResult | None:
        """Nothing to do: Stripe answers look-ups (by the intent's id, recorded before the
        confirm), so an authorization whose outcome never arrived is found, not guessed."""
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        return _parse_webhook(self._webhook_secret, headers, body, clock=self._clock)



def _no_id(what: str) -> Answer:
    return Answer(O.UNKNOWN, message=f"no {what} id in the answer: outcome unknown")


def _object_id(obj: Any, prefix: str) -> str | None:
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and value.startswith(prefix) and len(value) > len(prefix) else None


def _metadata(obj: Any, key: str) -> str:
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _settlement_record(txn: dict[str, Any]) -> SettlementRecord | None:
    """One balance transaction as a settlement record (None: not the gateway's, or not a
    charge or refund). The amount and currency are the charge's or refund's own, not the
    balance's (which may be converted), in the gateway's minor units (ISK's ×100 undone):
    an amount that is none of them raises Unrepresentable, a ValueError."""
    source = txn.get("source")
    if not isinstance(source, dict):
        return None
    pi = source.get("payment_intent")
    if not isinstance(pi, dict):
        return None
    charge_reference = _metadata(pi, "paygate_reference")
    if not charge_reference:
        return None
    intent = _metadata(pi, "paygate_intent") or None
    merchant = _metadata(pi, "paygate_merchant") or None
    currency = str(source["currency"]).upper()
    kind: Literal["charge", "capture", "refund"]
    if txn.get("type") in ("charge", "payment"):
        captured = source.get("amount_captured")
        amount = report_amount(captured if captured is not None else source["amount"])
        if pi.get("capture_method") != "manual":
            return SettlementRecord("charge", charge_reference, intent, None, STRIPE.from_processor(amount, currency),
                                    currency, merchant)
        kind, reference = "capture", _metadata(pi, "paygate_capture")
    elif txn.get("type") == "refund":
        kind, reference, amount = "refund", _metadata(source, "paygate_reference"), report_amount(source["amount"])
    else:
        return None
    if not reference:
        return None
    return SettlementRecord(kind, reference, intent, charge_reference, STRIPE.from_processor(amount, currency),
                            currency, merchant)


def _from_account(settings: Mapping[str, str], credentials: Mapping[str, str], **options: Any) -> StripeConnector:
    return StripeConnector(credentials["secretKey"], credentials["webhookSecret"],
                           api_base=settings.get("apiBase") or DEFAULT_API_BASE, **options)


KIND = ConnectorKind("stripe", settings={"apiBase": DEFAULT_API_BASE}, credentials=("secretKey", "webhookSecret"),
                     build=_from_account)
