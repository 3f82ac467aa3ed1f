"""``GET /reconciliation``: what the gateway does not know yet, and a day's settlement
(SPEC §12 "Reconciliation").

* The queue: unknown operations (and pending ones past the safety window), oldest first,
  with their age, route, reference and the processor's last answer
  (:func:`~paygate_server.storage.console_reads.reconciliation_queue`).
* "Ask again" (``POST /reconciliation/check``, admin only: SPEC §12
  gives support no reconcile): the reconciler's own
  :meth:`~paygate_server.processing.reconciler.Reconciler.check_now` — the same look-up
  and settle as its passes, so an operator's click can never settle an operation twice or
  differently, but a look-up only: resending what the processor has not received stays
  the passes' (under their lease). Recorded as ``reconcile.check_now``.
* Settled outcomes the processor contradicted later (``late_outcomes``: Adyen's
  ``REFUND_FAILED`` after the ``REFUND``), open ones first — what ``paygate reconcile``
  lists too. "Mark handled" (``POST /reconciliation/late``, admin only) closes one
  once the operator has dealt with it at the processor and with the merchant; the mark and
  its record (``reconcile.late_outcome_handled``) commit in one transaction.
* The settlement report of a day (``?date=YYYY-MM-DD[&account=pa_…]``): what
  ``paygate reconcile settlement`` prints, through the same
  :func:`~paygate_server.processing.settlement.reconcile_settlement`. The counts (records,
  mismatches, mismatches per problem) are the whole day's; the mismatches are listed
  :data:`SETTLEMENT_PAGE_SIZE` at a time, by problem, kind and reference, by keyset like
  the payments search (``settlement_after``: the last row shown), since a processor that
  lost a batch makes tens of thousands of them.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.clock import now_us
from paygate_server.console.actions import record_action, record_action_in
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import (
    Form,
    console_of,
    error_page,
    form_action,
    page,
    remote_addr,
    render,
)
from paygate_server.processing.connectors import ConnectorError
from paygate_server.processing.settlement import (
    PROBLEMS,
    DayNotYet,
    Mismatch,
    NotADay,
    reconcile_settlement,
    settlement_day,
)
from paygate_server.processors.registry import AccountMissing, is_account
from paygate_server.storage.console_reads import InvalidSearch, reconciliation_queue
from paygate_server.storage.late_outcomes import mark_handled

__all__ = ["routes"]

PAGE_SIZE = 50
SETTLEMENT_PAGE_SIZE = 50
LATE_SHOWN = 100  # open ones first: past this, only handled ones are left out
_KINDS = ("charge", "capture", "void", "refund")
_SETTLED_KINDS = ("charge", "capture", "refund")
_MAX_CURSOR = 300  # a problem, a kind and a processor's reference
_OBJECT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")


@dataclass(frozen=True, slots=True)
class Settlement:
    day: dt.date
    route: str
    counts: dict[str, int]  # the whole day's, as reconcile_settlement counted them
    problems: dict[str, int]  # the whole day's mismatches per problem (only those that occur)
    rows: list[Mismatch]  # this page's
    first: int  # the position of this page's first row among all mismatches, from 1
    next_cursor: str | None  # settlement_after for the next page; None on the last


def _order(m: Mismatch) -> tuple[int, str, str]:
    return PROBLEMS.index(m.problem), m.kind, m.reference


def _cursor(m: Mismatch) -> str:
    return f"{m.problem}.{m.kind}.{m.reference}"  # the reference last: it may hold dots


def _parse_cursor(text: str) -> tuple[int, str, str]:
    parts = text.split(".", 2)
    if len(text) > _MAX_CURSOR or len(parts) != 3 or parts[0] not in PROBLEMS or parts[1] not in _SETTLED_KINDS:
        raise SettlementRefused("That page of mismatches is not valid (was the link changed?): start from the "
                                "first page.")
    return PROBLEMS.index(parts[0]), parts[1], parts[2]


def settlement_page(mismatches: list[Mismatch], after: str | None,
                    limit: int = SETTLEMENT_PAGE_SIZE) -> tuple[list[Mismatch], int, str | None]:
    """One page of a day's mismatches: those after ``after`` (a :func:`_cursor`), at most
    ``limit``; with the first one's position (from 1) and the cursor of the next page. A
    keyset, not an offset: the list is compared afresh for every page, and a mismatch that
    was resolved meanwhile neither repeats a row nor hides one."""
    ordered = sorted(mismatches, key=_order)
    skipped = 0
    if after:
        last = _parse_cursor(after)
        skipped = sum(1 for m in ordered if _order(m) <= last)
    rows = ordered[skipped:skipped + limit]
    more = skipped + limit < len(ordered)
    return rows, skipped + 1, _cursor(rows[-1]) if rows and more else None


def age_text(age_us: int) -> str:
    seconds = age_us // 1_000_000
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


class SettlementRefused(ValueError):
    """A settlement request that cannot be run: the message says what to change."""


async def _settlement(request: Request, date: str, account: str, after: str | None) -> Settlement:
    try:
        day = settlement_day(date)
    except NotADay:
        raise SettlementRefused(f"The date must be a day like 2026-01-31, not {date[:40]!r}.") from None
    except DayNotYet:
        raise SettlementRefused("That day has not happened yet: choose today or an earlier day.") from None
    if after:
        _parse_cursor(after)  # refused before the processor is asked
    gateway = console_of(request).gateway
    default = gateway.reconciler.connector
    connector, route = default, default.name
    if account:
        if not is_account(account):
            raise SettlementRefused(f"The account must be a processor account id (pa_…), not {account[:40]!r}.")
        try:
            connector = await gateway.processors.connector(account, default)
        except AccountMissing:
            raise SettlementRefused(f"There is no processor account {account}.") from None
        route = account
    try:
        mismatches, counts = await reconcile_settlement(gateway.payments, connector, day, route)
    except ConnectorError as exc:
        raise SettlementRefused(f"The processor's settlement report could not be read: {exc}. Try again "
                                "later.") from None
    problems = Counter(m.problem for m in mismatches)
    rows, first, next_cursor = settlement_page(mismatches, after)
    return Settlement(day, route, counts, {p: problems[p] for p in PROBLEMS if problems[p]}, rows, first,
                      next_cursor)


def _link(shown: dict[str, str | None], section: str, **changed: str | None) -> str:
    """This page with one list moved (``changed``: ``after`` for the queue,
    ``settlement_after`` for the day's mismatches; None for its first page) and everything
    else it shows kept — paging through one list does not close or rewind the other."""
    query = {name: value for name, value in {**shown, **changed}.items() if value}
    return f"/reconciliation?{urlencode(query)}#{section}"


async def _page(request: Request, signed_in: SignedIn, *, status: int = 200, message: str = "",
                failed: bool = False) -> Response:
    params = request.query_params
    after = params.get("after") or None
    date, account = params.get("date", "")[:40].strip(), params.get("account", "")[:70].strip()
    try:
        queue = await reconciliation_queue(console_of(request).gateway.db, PAGE_SIZE, after)
    except InvalidSearch as exc:
        return error_page(request, signed_in, 400, f"The queue could not be shown: {exc}.")
    settlement_after = params.get("settlement_after") or None
    settlement, settlement_error = None, ""
    if date:
        try:
            settlement = await _settlement(request, date, account, settlement_after)
        except SettlementRefused as exc:
            settlement_error, status = str(exc), 400 if status == 200 else status
    shown = {"after": after, "date": date, "account": account, "settlement_after": settlement_after}
    late = await console_of(request).gateway.payments.late_outcomes(limit=LATE_SHOWN)
    return render(request, "reconciliation.html", signed_in, status=status, queue=queue, after=after, late=late,
                  age_text=age_text, message=message, failed=failed, date=date, account=account,
                  today=dt.datetime.now(dt.UTC).date().isoformat(), settlement=settlement,
                  settlement_error=settlement_error, settlement_paged=bool(settlement_after),
                  queue_first=_link(shown, "queue", after=None),
                  queue_next=_link(shown, "queue", after=queue.next_cursor) if queue.next_cursor else None,
                  settlement_first=_link(shown, "settlement", settlement_after=None),
                  settlement_next=_link(shown, "settlement", settlement_after=settlement.next_cursor)
                  if settlement and settlement.next_cursor else None)


@page("read")
async def reconciliation_page(request: Request, signed_in: SignedIn) -> Response:
    return await _page(request, signed_in)


@form_action("reconcile")
async def check_now(request: Request, signed_in: SignedIn, form: Form) -> Response:
    console = console_of(request)
    kind, object_id = form.get("kind", ""), form.get("object_id", "")
    if kind not in _KINDS or not _OBJECT_ID.fullmatch(object_id):
        return await _page(request, signed_in, status=400, failed=True,
                           message="That operation cannot be asked about: use the button on its row.")
    async def record(result: str) -> None:
        # Every ask is the operator's action, the ones that learnt nothing included.
        await record_action(console.gateway.db, operator_id=signed_in.operator_id, action="reconcile.check_now",
                            target=object_id, detail={"kind": kind, "result": result},
                            remote_addr=remote_addr(request))

    try:
        label = await console.gateway.reconciler.check_now(kind, object_id)
    except (ConnectorError, AccountMissing) as exc:
        await record("processor unreachable")
        return await _page(request, signed_in, status=502, failed=True,
                           message=f"The processor could not be asked about {object_id}: {exc}. The reconciler "
                                   "keeps trying on its own.")
    if label is None:
        await record("nothing to ask")
        return await _page(request, signed_in, message=f"Nothing to ask about {object_id}: its outcome is known "
                                                        "already, or the reconciler was asking at that moment — "
                                                        "the list below is as it is now.")
    await record(label)
    return await _page(request, signed_in, message=f"Asked the processor about {object_id}: {label}.")


@form_action("reconcile")
async def late_handled(request: Request, signed_in: SignedIn, form: Form) -> Response:
    late_id = form.get("id", "")
    if not (late_id.isascii() and late_id.isdigit() and len(late_id) <= 18):
        return await _page(request, signed_in, status=400, failed=True,
                           message="That late outcome cannot be marked: use the button on its row.")
    db = console_of(request).gateway.db
    async with db.write() as conn:
        marked = await mark_handled(conn, int(late_id), signed_in.operator_id, now_us())
        if marked:
            await record_action_in(conn, operator_id=signed_in.operator_id, action="reconcile.late_outcome_handled",
                                   target=f"late_{late_id}", remote_addr=remote_addr(request))
    if not marked:
        return await _page(request, signed_in, message="That late outcome is handled already (or does not exist): "
                                                        "the list below is as it is now.")
    return await _page(request, signed_in, message="Marked handled.")


routes = [
    Route("/reconciliation", reconciliation_page, methods=["GET"]),
    Route("/reconciliation/check", check_now, methods=["POST"]),
    Route("/reconciliation/late", late_handled, methods=["POST"]),
]
