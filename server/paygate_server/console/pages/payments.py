"""``GET /payments``: the payments search (SPEC §12 "Payments").

A plain GET form — it works without script; with htmx the search (form and results, so
a field's problem shows beside it) is swapped in place (``hx-select``), and the URL is the
search either way, so a search can be bookmarked or
sent to a colleague. Newest first, a page at a time by keyset (``after`` carries
``PaymentPage.next_cursor``). Amounts are typed in the currency's major unit and turned into
minor units by :func:`paygate_server.currencies.parse_major` (digits only, never a float);
dates are UTC days. A field that cannot be read is named on the form, with what to type.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.clock import parse_day
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import console_of, page, render
from paygate_server.currencies import AmountError, format_minor, is_currency, parse_major
from paygate_server.intents.schemas import MAX_AMOUNT, STATUSES
from paygate_server.storage.console_reads import (
    InvalidSearch,
    PaymentPage,
    PaymentSearch,
    search_payments,
)

__all__ = ["PAGE_SIZE", "SearchForm", "parse_search", "routes"]

PAGE_SIZE = 50
_MAX_FIELD = 64  # ids are shorter; anything longer is not one
_ID_TEXT = re.compile(r"[A-Za-z0-9_]+")
_US_PER_DAY = 86_400 * 1_000_000
FIELDS = ("id", "merchant", "status", "currency", "amount_min", "amount_max", "last4", "from", "to")


@dataclass
class SearchForm:
    """The form as typed (shown back as it was) and what is wrong with each field."""
    values: dict[str, str]
    problems: dict[str, str] = field(default_factory=dict)
    search: PaymentSearch | None = None  # None when there are problems

    @property
    def filtered(self) -> bool:
        return any(self.values[name] for name in FIELDS)


def _day_start(text: str) -> int:
    """Microseconds at 00:00 UTC of ``YYYY-MM-DD``; ValueError for anything else."""
    day = parse_day(text)
    if day is None:
        raise ValueError(text)
    return (day - dt.date(1970, 1, 1)).days * _US_PER_DAY


def parse_search(query: Mapping[str, str]) -> SearchForm:
    """The query string's filters as a :class:`PaymentSearch`, or the problems to show."""
    values = {name: query.get(name, "").strip()[:_MAX_FIELD * 4] for name in FIELDS}
    form = SearchForm(values)
    problems = form.problems
    # A card number in any filter never gets here: every page refuses one (web.page, SPEC §12).
    for name, label in (("id", "A payment id"), ("merchant", "A merchant id")):
        if len(values[name]) > _MAX_FIELD:
            problems[name] = f"{label} is at most {_MAX_FIELD} characters."
        elif values[name] and not _ID_TEXT.fullmatch(values[name]):
            problems[name] = f"{label} is letters, digits and _ only, like {'pi_' if name == 'id' else 'mer_'}…"
    if values["status"] and values["status"] not in STATUSES:
        problems["status"] = "Choose a status from the list."
    currency = values["currency"].upper()
    if currency and not is_currency(currency):
        problems["currency"] = "Type an ISO 4217 code, like USD or JPY."
    amounts: dict[str, int] = {}
    for name in ("amount_min", "amount_max"):
        if not values[name]:
            continue
        if not currency:
            problems.setdefault("currency", "Choose the currency of the amounts (they are in its major unit).")
            continue
        if "currency" in problems:
            continue
        try:
            amounts[name] = parse_major(values[name], currency)
        except AmountError as exc:
            problems[name] = f"{str(exc).capitalize()}."
            continue
        if amounts[name] > MAX_AMOUNT:
            problems[name] = f"No payment is larger than {format_minor(MAX_AMOUNT, currency)} {currency}."
    if "amount_min" in amounts and "amount_max" in amounts and amounts["amount_min"] > amounts["amount_max"]:
        problems["amount_max"] = "The largest amount is smaller than the smallest."
    if values["last4"] and not re.fullmatch(r"[0-9]{4}", values["last4"]):
        problems["last4"] = "Type the card's last 4 digits, like 4242."
    days: dict[str, int] = {}
    for name in ("from", "to"):
        if values[name]:
            try:
                days[name] = _day_start(values[name])
            except ValueError:
                problems[name] = "Type a date as YYYY-MM-DD, like 2026-12-03."
    if "from" in days and "to" in days and days["from"] > days["to"]:
        problems["to"] = "The last day is before the first."
    if problems:
        return form
    try:
        form.search = PaymentSearch(
            intent_id=values["id"] or None, merchant_id=values["merchant"] or None,
            status=values["status"] or None, currency=currency or None,
            amount_min=amounts.get("amount_min"), amount_max=amounts.get("amount_max"),
            card_last4=values["last4"] or None, created_from=days.get("from"),
            created_to=days["to"] + _US_PER_DAY - 1 if "to" in days else None,
            limit=PAGE_SIZE, after=query.get("after") or None)
    except InvalidSearch as exc:  # a cursor someone edited
        problems["form"] = f"{str(exc).capitalize()}."
    return form


def _search_link(form: SearchForm, cursor: str | None = None) -> str:
    """This search's URL: its first page, or the page after ``cursor``."""
    query = {name: value for name, value in form.values.items() if value}
    if cursor is not None:
        query["after"] = cursor
    return "/payments?" + urlencode(query) if query else "/payments"


@page("read")
async def payments_page(request: Request, signed_in: SignedIn) -> Response:
    form = parse_search(request.query_params)
    results: PaymentPage | None = None
    if form.search is not None:
        results = await search_payments(console_of(request).gateway.db, form.search)
    context: dict[str, Any] = {
        "form": form, "values": form.values, "problems": form.problems, "statuses": STATUSES,
        "results": results, "paged": bool(request.query_params.get("after")),
        "older": _search_link(form, results.next_cursor) if results and results.next_cursor else None,
        "newest": _search_link(form),
    }
    # htmx swaps only a 2xx answer: its request gets the form's problems with a 200, so
    # they show; a plain GET (no script) gets the 400 they are.
    refused = 400 if request.headers.get("hx-request") != "true" else 200
    return render(request, "payments.html", signed_in, status=refused if form.problems else 200, **context)


routes = [Route("/payments", payments_page, methods=["GET"])]
