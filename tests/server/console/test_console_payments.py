"""The console's payments pages and actions over HTTP (httpx → the console's ASGI app with
its real lifespan), on SQLite and PostgreSQL, with payments made for real: an in-process
gateway (its relay, webhook dispatcher and reconciler running) charging a real simulator
process. Search and its refusals, a payment's page, refund / capture / cancel through the
API's operations with the API's idempotency, "ask the processor now", replaying a failed
webhook delivery, roles, and hostile input — a readable page, never a 500."""
from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import paygate
from paygate_server.clock import to_rfc3339
from paygate_server.console.pages import payments as payments_page
from paygate_server.currencies import AmountError, format_minor, parse_major
from paygate_server.simulator.testing import SimulatorProcess
from paygate_server.storage.console_reads import payment_detail
from tests.server.console.conftest import InProcessConsole, running_console
from tests.server.webhooks.receiver import Received, Receiver
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings
from tests.support.eventually import eventually
from tests.support.signing import SignedClient

FAST = dict(run_background=True, webhook_allow_private=True, webhook_retry_schedule_s=(0.05,),
            webhook_poll_interval_s=0.02, relay_poll_interval_s=0.02, relay_lease_retry_s=0.05,
            processor_timeout_s=1.0, processor_connect_timeout_s=0.5, process_wait_budget_s=3.0,
            # The reconciler would settle an unknown attempt by itself: not before the test asks.
            reconcile_schedule_s=(600.0,), reconcile_sweep_interval_s=600.0)
PAN = "4242424242424242"
LOST_ANSWER = "4000000000001026"  # the simulator approves it, the answer never arrives


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(tmp_path_factory.mktemp("sim") / "simulator.db", slow_card_delay_s=6.0) as sim:
        yield sim


@dataclass
class Bench:
    gw: InProcessGateway
    con: InProcessConsole
    shop: SignedClient
    jwks: dict[str, Any]

    async def pay(self, amount: int = 2500, currency: str = "USD", number: str = PAN,
                  capture: str = "automatic", until: frozenset[str] = frozenset({"succeeded", "requires_capture"}),
                  ) -> str:
        intent = await self.shop.create_intent(amount=amount, currency=currency, captureMethod=capture)
        pid: str = intent["paymentIntentId"]
        jwe = paygate.encrypt_card(self.jwks, number=number, exp_month=12, exp_year=2034, cvc="731")
        r = await self.shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                             "paymentDetails": {"encryptedCard": jwe}})
        assert r.status_code == 200, r.text
        if until:
            await self.shop.final_status(pid, until=until)
        return pid

    async def intent(self, pid: str) -> dict[str, Any]:
        r = await self.shop.get(f"/api/v1/payment/intent/{pid}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def signed_in(self, role: str) -> None:
        self.con.http.cookies.clear()
        r = await self.con.log_in(await self.con.operator(role))
        assert r.status_code == 303, r.text

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> httpx.Response:
        return await self.con.http.post(path, data={"csrf": await self.con.csrf(), **data},
                                        headers={"origin": self.con.origin}, **kw)


@pytest.fixture
async def bench(database_url: str, tmp_path: Path, simulator: SimulatorProcess) -> AsyncIterator[Bench]:
    settings = make_settings(database_url, tmp_path, processor_url=simulator.base_url, **FAST)
    async with running_gateway(settings) as gw, running_console(settings) as con:
        shop = await gw.new_merchant()
        jwks = (await gw.http.get("/checkout/v1/keys")).json()
        yield Bench(gw, con, shop, jwks)


def form_key(page: str, action: str) -> str:
    """The idempotency key of the page's ``action`` form."""
    form = re.search(rf'action="/payments/pi_\w+/{action}".*?</form>', page, re.S)
    assert form is not None, f"no {action} form on the page"
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form.group(0))
    assert key is not None
    return key.group(1)


def alert(page: str) -> str:
    found = re.search(r'role="alert">(.*?)</p>', page, re.S)
    assert found is not None, page[:2000]
    return html.unescape(found.group(1))


def assert_no_card_data(page: str) -> None:
    # "cvc" as a word (a label, a field, a key): a random id may hold the letters
    # (txn_ugobipcvc773…), and did, one run in a few hundred.
    assert PAN not in page and not re.search(r"\bcvc\b", page, re.I)
    assert not re.search(r"\b\d{13,19}\b", page), "a card-number-like run of digits on a console page"


# --- money ------------------------------------------------------------------------------

def test_major_units_convert_exactly_by_the_currency_exponent() -> None:
    assert [parse_major(t, c) for t, c in [("12.50", "USD"), ("12.5", "USD"), ("0.29", "USD"), ("1250", "JPY"),
                                           ("1.234", "KWD"), ("7", "EUR"), (".5", "USD")]] == \
        [1250, 1250, 29, 1250, 1234, 700, 50]
    for text, currency in [("12.505", "USD"), ("12.5", "JPY"), ("-1", "USD"), ("1e3", "USD"), ("1,000", "USD"),
                           ("", "USD"), (".", "USD"), ("12.50", "XXX"), ("١٢", "USD"), ("9" * 40, "USD"),
                           ("NaN", "USD"), ("inf", "USD"), ("0x10", "USD")]:
        with pytest.raises(AmountError):
            parse_major(text, currency)
    assert [format_minor(a, c) for a, c in [(1250, "USD"), (5, "USD"), (1250, "JPY"), (5, "KWD"), (0, "EUR"),
                                            (-5, "USD")]] == ["12.50", "0.05", "1250", "0.005", "0.00", "-0.05"]


# --- search ------------------------------------------------------------------------------

async def test_search_by_last4_amount_status_and_merchant(bench: Bench) -> None:
    visa = await bench.pay(2500)
    mastercard = await bench.pay(1000, number="5555555555554444")
    await bench.signed_in("viewer")
    merchant = bench.shop.creds.merchant_id
    by_card = await bench.con.http.get("/payments", params={"last4": "4444", "merchant": merchant})
    assert by_card.status_code == 200 and mastercard in by_card.text and visa not in by_card.text
    assert "10.00 USD" in by_card.text and "····4444" in by_card.text
    by_amount = await bench.con.http.get("/payments", params={"merchant": merchant, "currency": "usd",
                                                              "amount_min": "25", "amount_max": "25.00"})
    assert visa in by_amount.text and mastercard not in by_amount.text
    both = await bench.con.http.get("/payments", params={"merchant": merchant, "status": "succeeded"})
    assert both.text.index(mastercard) < both.text.index(visa)  # newest first
    by_id = await bench.con.http.get("/payments", params={"id": visa})
    assert visa in by_id.text and mastercard not in by_id.text
    assert_no_card_data(both.text)


async def test_search_by_date_range_takes_whole_utc_days(bench: Bench) -> None:
    """SPEC §12's date range through the form: ``from``/``to`` are UTC days, both included
    (``to`` reaches the day's last microsecond)."""
    intent = await bench.shop.create_intent(amount=777)
    pid = intent["paymentIntentId"]
    day = dt.datetime.fromisoformat(intent["createdAt"].replace("Z", "+00:00")).astimezone(dt.UTC).date()
    await bench.signed_in("viewer")
    merchant = bench.shop.creds.merchant_id

    async def found(**days: dt.date) -> bool:
        r = await bench.con.http.get("/payments", params={"merchant": merchant,
                                                          **{k: v.isoformat() for k, v in days.items()}})
        assert r.status_code == 200, r.text[:500]
        return pid in r.text
    one = dt.timedelta(days=1)
    assert await found(**{"from": day, "to": day}) and await found(to=day) and await found(**{"from": day})
    assert await found(**{"from": day - one, "to": day + one})
    assert not await found(to=day - one) and not await found(**{"from": day + one})


async def test_search_pages_with_an_older_link(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payments_page, "PAGE_SIZE", 2)
    pids = [(await bench.shop.create_intent(amount=100 + i))["paymentIntentId"] for i in range(3)]
    await bench.signed_in("viewer")
    first = await bench.con.http.get("/payments", params={"merchant": bench.shop.creds.merchant_id})
    assert pids[2] in first.text and pids[1] in first.text and pids[0] not in first.text
    older = re.search(r'href="(/payments\?[^"]+)">Older →', first.text)
    assert older is not None and "merchant=" in older.group(1)
    second = await bench.con.http.get(html.unescape(older.group(1)))
    assert pids[0] in second.text and pids[1] not in second.text and "Older →" not in second.text
    newest = re.search(r'href="([^"]+)">Newest</a>', second.text)
    assert newest is not None and "after=" not in newest.group(1) and "merchant=" in newest.group(1)


async def test_search_refuses_bad_filters_readably(bench: Bench) -> None:
    await bench.signed_in("viewer")
    cases = {
        "amount_min=abc&currency=USD": "digits with at most one decimal point",
        "amount_min=12.505&currency=USD": "at most 2 decimals",
        "amount_min=12.5&currency=JPY": "no decimals",
        "amount_min=-1&currency=USD": "digits with at most one decimal point",
        "amount_min=5": "Choose the currency",
        "amount_min=9&amount_max=1&currency=USD": "smaller than the smallest",
        "amount_max=" + "9" * 25 + "&currency=USD": "No payment is larger than 999999.99 USD",
        "currency=US%24": "ISO 4217",
        "last4=12a4": "last 4 digits",
        "from=2026-13-45": "YYYY-MM-DD",
        "from=2026-12-03&to=2026-12-01": "before the first",
        "status=succeeded%27%20OR%201%3D1--": "Choose a status",
        "id=" + "x" * 10_000: "at most 64 characters",
        "after=not-a-cursor": "cursor is not valid",
        "merchant=%01": "letters, digits and _ only",
        "merchant=%00%01": "character no field takes (NUL)",  # every page refuses a NUL first
        "id=pi_x%27%20OR%20%271%27%3D%271": "letters, digits and _ only",
    }
    for query, says in cases.items():
        r = await bench.con.http.get("/payments?" + query)
        assert r.status_code == 400, (query, r.status_code)
        assert says in html.unescape(r.text), (query, r.text[-1500:])
    swapped = await bench.con.http.get("/payments?last4=12a4", headers={"hx-request": "true"})
    assert swapped.status_code == 200 and "last 4 digits" in swapped.text  # htmx swaps a 2xx only
    nothing = await bench.con.http.get("/payments", params={"id": "pi_" + "0" * 20})
    assert nothing.status_code == 200 and "No payment matches" in nothing.text and "Widen the search" in nothing.text


async def test_a_card_number_typed_into_the_search_is_refused_and_never_shown_back(bench: Bench) -> None:
    # Once: a 200 whose form showed the number back in the id field's value.
    await bench.signed_in("viewer")
    for name, typed in (("id", "4242424242424242"), ("merchant", "4242 4242 4242 4242"), ("last4", "4000-0000-0000-0002")):
        r = await bench.con.http.get("/payments", params={name: typed})
        assert r.status_code == 400 and "looks like a card number" in r.text, (name, r.text[-1500:])
        page = html.unescape(r.text)
        assert typed not in page and typed.replace(" ", "+") not in page and typed.replace(" ", "%20") not in page, name


# --- a payment's page --------------------------------------------------------------------

async def test_a_payments_page_shows_its_timeline_attempts_and_no_card_data(bench: Bench) -> None:
    pid = await bench.pay(2500)
    await bench.signed_in("viewer")
    page = await bench.con.http.get(f"/payments/{pid}")
    assert page.status_code == 200
    text = page.text
    assert 'id="intent-status">succeeded' in text and "25.00 USD" in text
    assert "payment_intent.created" in text and "attempt.created" in text and "attempt.updated" in text  # history
    assert "····4242" in text and bench.shop.creds.merchant_id in text
    assert 'action="/payments/' not in text  # a viewer gets no action form
    assert_no_card_data(text)
    for bad in ("/payments/pi_nosuch0000000000", "/payments/" + "x" * 10_000, "/payments/pi_%27%20OR%201%3D1",
                "/payments/%00", "/payments/pi_" + "a" * 70):
        r = await bench.con.http.get(bad)
        assert r.status_code == 404 and "no such payment" in r.text, bad


async def test_a_payments_page_shows_each_attempt_refund_and_webhook_delivery(bench: Bench) -> None:
    """SPEC §12: the attempts (account, reference, outcome, times), the refunds, and the
    webhooks sent with their deliveries — each row as the database has it."""
    async def ok(_: Received) -> tuple[int, dict[str, str]]:
        return 200, {}

    async with Receiver(ok) as receiver:
        assert (await bench.shop.post("/api/v1/webhooks", {"url": receiver.url()})).status_code == 201
        pid = await bench.pay(2500)
        refund = await bench.shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 700},
                                       idempotency_key="page-refund-" + pid)
        assert refund.status_code in (200, 201), refund.text
        await bench.signed_in("viewer")
        db = bench.con.console.gateway.db

        async def delivered() -> Any:
            return await payment_detail(db, pid)
        detail = await eventually(delivered, what="every event delivered", until=lambda d: d.webhook_events and all(
            x.status == "delivered" for e in d.webhook_events for x in e.deliveries) and d.refunds[0].status not in
            ("pending", "unknown"))
    page = (await bench.con.http.get(f"/payments/{pid}")).text

    def row(first_cell: str) -> str:
        found = re.search(rf"<tr><td>{re.escape(first_cell)}</td>.*?</tr>", page, re.S)
        assert found is not None, (first_cell, page[-3000:])
        return found.group(0)
    [attempt] = detail.attempts
    cells = row(attempt.id)
    for fact in (attempt.kind, attempt.status, attempt.connector, attempt.reference, to_rfc3339(attempt.created_at),
                 to_rfc3339(attempt.updated_at), "25.00 USD", "····4242"):
        assert fact in cells, (fact, cells)
    [made] = detail.refunds
    cells = row(made.id)
    for fact in ("7.00 USD", made.status, made.reference, to_rfc3339(made.created_at)):
        assert fact in cells, (fact, cells)
    assert len(detail.webhook_events) >= 2  # created, succeeded, the refund's
    for event in detail.webhook_events:
        [delivery] = event.deliveries
        cells = row(event.id)
        for fact in (event.type, delivery.endpoint_id, "delivered, 1 attempt", "200", to_rfc3339(delivery.updated_at)):
            assert fact in cells, (fact, cells)
    assert_no_card_data(page)


# --- actions -----------------------------------------------------------------------------

async def test_support_refunds_part_once_however_often_the_form_is_sent(bench: Bench) -> None:
    pid = await bench.pay(2500)
    await bench.signed_in("support")
    page = (await bench.con.http.get(f"/payments/{pid}")).text
    key = form_key(page, "refund")
    first = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": key, "amount": "12.50"})
    assert first.status_code == 200, first.text
    assert "of 12.50 USD: succeeded" in alert(first.text)
    again = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": key, "amount": "12.50"})
    assert again.status_code == 200 and "sent before" in alert(again.text)
    intent = await bench.intent(pid)
    assert intent["amountRefunded"] == 1250
    r = await bench.shop.get(f"/api/v1/payment/intent/{pid}/history")
    assert [e["type"] for e in r.json()["data"]].count("refund.created") == 1
    # The same key for another amount is another request: refused as the API refuses it.
    reused = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": key, "amount": "1.00"})
    assert reused.status_code == 409 and "different request" in alert(reused.text)
    # More than remains: the operation's own refusal, nothing changed.
    over = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": "k-over-" + pid, "amount": "12.51"})
    assert over.status_code == 409 and "Nothing was changed" in alert(over.text)
    assert (await bench.intent(pid))["amountRefunded"] == 1250
    shown = await bench.con.http.get(f"/payments/{pid}")
    assert "Operator actions" in shown.text and "payment.refund" in shown.text and "amount=1250" in shown.text
    activity = await bench.con.http.get("/activity", params={"target": pid})
    # Each of the 4 forms: recorded when it started and with its outcome.
    assert activity.text.count("payment.refund") == 8 and activity.text.count("outcome=started") == 4
    assert "outcome=replayed" in activity.text
    assert "203.0.113.7" in activity.text  # from where


async def test_refund_amounts_that_cannot_be_used_change_nothing(bench: Bench) -> None:
    pid = await bench.pay(2500)
    await bench.signed_in("support")
    for amount, says in [("abc", "digits"), ("-5", "digits"), ("0", "from 0.01"), ("12.505", "at most 2 decimals"),
                         ("99999999999", "to 999999.99"), ("1" * 10_000, "too long"), ("1" * 20_000, "larger than 16 KiB"),
                         ("1; DROP TABLE refunds", "digits")]:
        r = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": "k" + amount[:20], "amount": amount})
        assert r.status_code in (400, 413), (amount, r.status_code)
        assert says in html.unescape(r.text), (amount, r.text[-800:])
    nul = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": "k-nul", "amount": "1", "reason": "a\x00b"})
    assert nul.status_code == 400 and "NUL" in nul.text
    for key in ("", "é" * 3, "k" * 256):
        r = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": key, "amount": "1"})
        assert r.status_code == 400 and "idempotency key" in r.text
    assert (await bench.intent(pid))["amountRefunded"] == 0
    missing = await bench.post("/payments/pi_nosuch0000000000/refund", {"idempotency_key": "k", "amount": "1"})
    assert missing.status_code == 404 and "nothing was done" in missing.text


async def test_zero_decimal_currency_refund(bench: Bench) -> None:
    pid = await bench.pay(5000, currency="JPY")
    await bench.signed_in("support")
    refused = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": "jpy-1" + pid, "amount": "12.5"})
    assert refused.status_code == 400 and "JPY amounts have no decimals" in html.unescape(refused.text)
    done = await bench.post(f"/payments/{pid}/refund", {"idempotency_key": "jpy-2" + pid, "amount": "1250"})
    assert done.status_code == 200 and "of 1250 JPY" in alert(done.text)
    assert (await bench.intent(pid))["amountRefunded"] == 1250


async def test_a_viewer_has_no_controls_and_its_posts_are_refused(bench: Bench) -> None:
    pid = await bench.pay(2500)
    held = await bench.pay(2500, capture="manual")
    await bench.signed_in("viewer")
    for target in (pid, held):
        page = (await bench.con.http.get(f"/payments/{target}")).text
        assert f'action="/payments/{target}/' not in page
    for action, target in [("refund", pid), ("capture", held), ("cancel", held), ("reconcile", pid),
                           ("replay", pid)]:
        r = await bench.post(f"/payments/{target}/{action}", {"idempotency_key": "v-" + action, "amount": "1"})
        assert r.status_code == 403 and "role cannot" in r.text, action
    assert (await bench.intent(pid))["amountRefunded"] == 0
    assert (await bench.intent(held))["status"] == "requires_capture"
    no_csrf = await bench.con.http.post(f"/payments/{pid}/refund", data={"idempotency_key": "x"},
                                        headers={"origin": bench.con.origin})
    assert no_csrf.status_code == 403


async def test_capture_part_of_a_hold_then_cancel_another(bench: Bench) -> None:
    held = await bench.pay(2500, capture="manual")
    other = await bench.pay(2500, capture="manual")
    await bench.signed_in("support")
    page = (await bench.con.http.get(f"/payments/{held}")).text
    assert "Capture amount" in page and "25.00 USD is held" in page
    r = await bench.post(f"/payments/{held}/capture", {"idempotency_key": form_key(page, "capture"), "amount": "10"})
    assert r.status_code == 200 and "payment is succeeded, 10.00 USD received" in alert(r.text)
    intent = await bench.intent(held)
    assert (intent["status"], intent["amountReceived"]) == ("succeeded", 1000)
    again = await bench.post(f"/payments/{held}/capture", {"idempotency_key": "cap2-" + held, "amount": "1"})
    assert again.status_code == 409 and "Nothing was changed" in alert(again.text)
    page = (await bench.con.http.get(f"/payments/{other}")).text
    r = await bench.post(f"/payments/{other}/cancel", {"idempotency_key": form_key(page, "cancel")})
    assert r.status_code == 200 and "Canceled" in alert(r.text)
    assert (await bench.intent(other))["status"] == "canceled"


async def test_ask_the_processor_now_settles_an_unknown_attempt(bench: Bench) -> None:
    pid = await bench.pay(2500, number=LOST_ANSWER, until=frozenset())
    assert (await bench.intent(pid))["status"] == "in_progress"  # no answer: the reconciler's, not before 600 s
    await bench.signed_in("support")  # SPEC §12: support may not ask the processor; no button, and refused
    page = (await bench.con.http.get(f"/payments/{pid}")).text
    assert f'action="/payments/{pid}/reconcile"' not in page
    txn_id = re.search(r"\b(txn_\w+)", page)
    assert txn_id is not None
    refused = await bench.post(f"/payments/{pid}/reconcile", {"object_id": txn_id.group(1)})
    assert refused.status_code == 403 and "role cannot" in refused.text
    assert (await bench.intent(pid))["status"] == "in_progress"
    await bench.signed_in("admin")
    page = (await bench.con.http.get(f"/payments/{pid}")).text
    found = re.search(r'name="object_id" value="(txn_\w+)"', page)  # a button only on a pending or unknown one
    assert found is not None, page
    txn = found.group(1)
    r = await bench.post(f"/payments/{pid}/reconcile", {"object_id": txn})
    assert r.status_code == 200 and "Asked the processor" in alert(r.text) and "approved" in alert(r.text)
    assert (await bench.intent(pid))["status"] == "succeeded"
    settled = await bench.post(f"/payments/{pid}/reconcile", {"object_id": txn})
    assert settled.status_code == 409 and "not waiting" in alert(settled.text)
    stranger = await bench.post(f"/payments/{pid}/reconcile", {"object_id": "txn_" + "0" * 20})
    assert stranger.status_code == 400 and "not one of this payment" in alert(stranger.text)


async def _payment_with_a_failed_delivery(bench: Bench, url: str) -> tuple[str, str, str]:
    """A payment of the shop's whose event's delivery to a new endpoint at ``url`` failed,
    as support sees it: (the intent, the event, the endpoint), read from the Replay button."""
    r = await bench.shop.post("/api/v1/webhooks", {"url": url})
    assert r.status_code == 201, r.text
    pid = (await bench.shop.create_intent())["paymentIntentId"]
    await bench.signed_in("support")
    failed = await eventually(lambda: _page(bench, pid), until=lambda p: 'aria-label="Replay evt_' in p,
                              what="a failed delivery")
    found = re.search(r'name="event_id" value="(evt_\w+)">\s*<input type="hidden" name="endpoint_id" '
                      r'value="(we_\w+)"', failed)
    assert found is not None
    return pid, found.group(1), found.group(2)


async def _page(bench: Bench, pid: str) -> str:
    return (await bench.con.http.get(f"/payments/{pid}")).text


async def test_replay_a_failed_webhook_delivery(bench: Bench) -> None:
    answers = {"status": 500}

    async def responder(_: Received) -> tuple[int, dict[str, str]]:
        return answers["status"], {}

    async with Receiver(responder) as receiver:
        pid, event_id, endpoint_id = await _payment_with_a_failed_delivery(bench, receiver.url())

        async def page() -> str:
            return await _page(bench, pid)
        answers["status"] = 200
        replayed = await bench.post(f"/payments/{pid}/replay", {"event_id": event_id, "endpoint_id": endpoint_id})
        assert replayed.status_code == 200 and "sent to" in alert(replayed.text)
        await eventually(lambda: receiver.delivered_ids(), until=lambda ids: event_id in ids, what="the replay")
        delivered = await eventually(page, until=lambda p: "delivered" in p and 'aria-label="Replay' not in p,
                                     what="the delivery recorded")
        assert "payment.replay" in delivered
        again = await bench.post(f"/payments/{pid}/replay", {"event_id": event_id, "endpoint_id": endpoint_id})
        assert again.status_code == 409 and "Only a failed delivery" in alert(again.text)
        wrong = await bench.post(f"/payments/{pid}/replay", {"event_id": "evt_x' OR 1=1", "endpoint_id": endpoint_id})
        assert wrong.status_code == 400 and "not one of this payment" in alert(wrong.text)


async def test_a_replay_never_re_enables_an_endpoint_disabled_by_a_410(bench: Bench) -> None:
    """The endpoint's server said it is gone: a support operator's replay of one delivery is
    refused, saying how the endpoint is re-enabled on purpose; the endpoint stays disabled,
    the delivery failed, nothing sent, and the refusal is recorded."""
    async def gone(_: Received) -> tuple[int, dict[str, str]]:
        return 410, {}

    async with Receiver(gone) as receiver:
        pid, event_id, endpoint_id = await _payment_with_a_failed_delivery(bench, receiver.url())
        refused = await bench.post(f"/payments/{pid}/replay", {"event_id": event_id, "endpoint_id": endpoint_id})
        assert refused.status_code == 409, refused.text
        said = alert(refused.text)
        assert "is disabled" in said and "410" in said and f"paygate webhooks replay --endpoint {endpoint_id}" in said
        [listed] = (await bench.shop.get("/api/v1/webhooks")).json()["data"]
        assert listed["status"] == "disabled"
        again = await _page(bench, pid)
        assert 'aria-label="Replay ' + event_id in again and "refused:endpoint_not_enabled" in again
        assert len(receiver.requests) == 1  # the 410 only
